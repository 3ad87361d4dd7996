"""Email templates (Jinja2), rendered without Flask: ``app/templates``, with
HTML escaped in ``.html`` templates as Flask would."""
from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape


class Templates:
    def __init__(self) -> None:
        self._env = Environment(loader=PackageLoader("app", "templates"),
                                autoescape=select_autoescape(["html"]), keep_trailing_newline=True)

    def render(self, name: str, **context) -> str:
        return self._env.get_template(name).render(**context)
