"""GraphQL at ``/graphql``: an HTTP entry point like the REST views, over the same
services (no rule of its own), with the same Bearer tokens, the same idempotency
and the same error codes (``extensions.code``).

- POST ``application/json`` (``{query, variables, operationName}``), or GET
  ``?query=`` for queries; GET from a browser (``Accept: text/html``) is GraphiQL,
  served from ``/graphql/static/`` (no CDN).
- Answers 200 with ``data`` and ``errors``; every error carries ``extensions.code``:
  REST's code for a domain error (``not_found``, ``seats_unavailable``, ...; plus its
  ``status`` and fields such as ``seat_ids`` or ``errors``), ``syntax_error``,
  ``invalid_query``, ``invalid_variables``, ``query_too_large`` (tokens),
  ``query_too_deep``, ``query_too_costly``, ``too_many_aliases`` (refused before
  anything runs), ``internal_error`` (logged, never explained).
- Requests that are not GraphQL at all are problem documents like REST's: 413 past
  ``MAX_BODY_BYTES``, 415 for a body that is not JSON, 400 ``malformed_json`` and
  ``bad_request``, 405 for a mutation over GET.
"""
from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Request, Response, render_template_string, request, url_for
from graphql import GraphQLError, GraphQLSyntaxError
from sqlalchemy.exc import IntegrityError, OperationalError
from strawberry.flask.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse
from webargs.flaskparser import is_json_request

from app import db
from app.api import _max_json_depth, parse_json_body
from app.api.graphql.context import Context, Replayed, error_extensions
from app.api.graphql.schema import schema
from app.api.problems import problem
from app.services import errors

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
ASSETS = ("graphiql.min.css", "react.production.min.js", "react-dom.production.min.js", "graphiql.min.js")

bp = Blueprint("graphql", __name__, static_folder="static", static_url_path="/graphql/static")

GRAPHIQL_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Marquee GraphQL</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="{{ assets['graphiql.min.css'] }}">
  <style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL...</div>
  <script src="{{ assets['react.production.min.js'] }}"></script>
  <script src="{{ assets['react-dom.production.min.js'] }}"></script>
  <script src="{{ assets['graphiql.min.js'] }}"></script>
  <script>
    const fetcher = GraphiQL.createFetcher({ url: {{ endpoint|tojson }} });
    const defaultQuery = `# Marquee: add "Authorization: Bearer <access token>" under Headers for me,
# reservations and the mutations.
{
  showtimes(pageSize: 5) {
    items { id startsAtLocal seatsAvailable movie { title } theater { name } city { name } }
    pageInfo { total }
  }
}
`;
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, { fetcher, defaultQuery, defaultEditorToolsVisibility: true }));
  </script>
</body>
</html>
"""


def _code_of(error: GraphQLError) -> str:
    """The code of an error GraphQL itself raised (no service involved)."""
    if isinstance(error, GraphQLSyntaxError):
        return "query_too_large" if "tokens" in error.message and "Parsing aborted" in error.message \
            else "syntax_error"
    if error.message.startswith("Variable '$"):
        return "invalid_variables"
    return "invalid_query" if error.path is None else "internal_error"


def format_error(error: GraphQLError) -> dict[str, Any]:
    """One error of the answer, with ``extensions.code`` always."""
    out: dict[str, Any] = {"message": error.message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path is not None:
        out["path"] = error.path
    original = error.original_error
    if isinstance(original, errors.DomainError):
        out["message"], extensions = original.detail, error_extensions(original)
    elif isinstance(original, Replayed):
        extensions = original.extensions
    elif isinstance(original, (OperationalError, redis.RedisError)):
        db.session.rollback()
        log.error("graphql: a backing service is unavailable", exc_info=original)
        out["message"] = "A backing service is unavailable; try again shortly"
        extensions = {"code": "dependency_unavailable", "status": 503, "retry_after": 5}
    elif isinstance(original, IntegrityError):
        db.session.rollback()
        log.warning("graphql: unmapped integrity error", exc_info=original)
        out["message"] = "The change conflicts with the current state of the data"
        extensions = {"code": "conflict", "status": 409}
    elif original is not None and not isinstance(original, GraphQLError):
        db.session.rollback()
        log.error("graphql: unhandled error", exc_info=original)
        out["message"] = "An unexpected error occurred; it has been logged"
        extensions = {"code": "internal_error", "status": 500}
    else:
        extensions = dict(error.extensions or {})
        extensions.setdefault("code", _code_of(error))
    out["extensions"] = extensions
    return out


class MarqueeGraphQLView(GraphQLView):
    """Strawberry's Flask view, answering like the rest of Marquee."""

    def get_context(self, request: Request, response: Response) -> Context:  # type: ignore[override]
        return Context(request, response)

    def dispatch_request(self):
        refused = _refuse(request)
        if refused is not None:
            return refused
        try:
            return self.run(request=request)
        except Exception as exc:  # strawberry's HTTP errors (cross_web.HTTPException)
            status = getattr(exc, "status_code", None)
            if status is None:
                raise
            headers = {"Allow": "GET, POST"} if status == 405 else None
            return problem(status, detail=str(getattr(exc, "reason", "")) or None, headers=headers)

    def decode_json(self, data: str | bytes) -> object:
        """Bodies and ``variables`` read as REST reads JSON (UTF-8, depth, numbers)."""
        return parse_json_body(data if isinstance(data, bytes) else data.encode(), _max_json_depth())

    def process_result(self, request: Request, result) -> GraphQLHTTPResponse:  # type: ignore[override]
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [format_error(error) for error in result.errors]
        return answer  # type: ignore[return-value]

    def render_graphql_ide(self, request: Request) -> Response:
        assets = {name: url_for("graphql.static", filename=name) for name in ASSETS}
        html = render_template_string(GRAPHIQL_PAGE, assets=assets, endpoint=url_for("graphql.graphql"))
        return Response(html, content_type="text/html; charset=utf-8")


def _refuse(req: Request) -> Response | None:
    """What is refused before GraphQL reads anything: too large, not JSON."""
    if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
        return problem(413, detail=f"A GraphQL request body is at most {MAX_BODY_BYTES} bytes")
    if req.method == "POST":
        if not is_json_request(req):
            return problem(415, detail=f"The request body must be application/json, not {req.mimetype or 'untyped'}")
        body = req.get_data(cache=True)
        if len(body) > MAX_BODY_BYTES:  # chunked bodies have no length up front
            return problem(413, detail=f"A GraphQL request body is at most {MAX_BODY_BYTES} bytes")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return problem(400, code="malformed_json", title="Malformed JSON",
                           detail=f"The request body is not UTF-8 text (invalid byte at offset {exc.start})")
    elif len(req.query_string) > MAX_BODY_BYTES:
        return problem(414, code="uri_too_long", detail=f"A GraphQL query string is at most {MAX_BODY_BYTES} bytes")
    return None


bp.add_url_rule("/graphql", view_func=MarqueeGraphQLView.as_view("graphql", schema=schema))
