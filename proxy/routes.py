"""Routes: which backend pool serves a path. A route is a simple glob, never a regular
expression from the configuration, so that a route cannot be slow or surprising:

    /api/v1/showtimes/*/seats/events    ``*`` is exactly one path segment
    /api/v1/admin/**                    a final ``**`` is any rest (zero or more segments)

Patterns are matched, in order (the first match wins), against the request's path without
its query string, as the client sent it (no percent-decoding: routing only picks a pool,
and every backend refuses what it does not serve). A ``*`` never matches an empty, ``.``
or ``..`` segment. A path no route matches goes to the default pool.
"""
from __future__ import annotations

from dataclasses import dataclass, field

_ANY_ONE = None  # a ``*`` segment
_FORBIDDEN = frozenset("?#% \t\\")
_NOT_A_NAME = (b"", b".", b"..")


class PatternError(ValueError):
    """A route pattern that is not one; the message says why."""


def path_segments(target: bytes) -> list[bytes]:
    """The request target's path split at ``/``, without the query (``/a/b?x`` -> a, b)."""
    path = target.partition(b"?")[0].partition(b"#")[0]
    return path.split(b"/")[1:] if path.startswith(b"/") else []


@dataclass(frozen=True)
class Route:
    path: str
    pool: str
    segments: tuple = field(init=False, repr=False, compare=False)
    open_ended: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        segments, open_ended = _parse(self.path)
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "open_ended", open_ended)

    def matches(self, segments: list[bytes]) -> bool:
        wanted = self.segments
        if len(segments) < len(wanted) or (not self.open_ended and len(segments) != len(wanted)):
            return False
        for want, got in zip(wanted, segments, strict=False):  # past the wanted ones: the ** rest
            if want is _ANY_ONE:
                if got in _NOT_A_NAME:
                    return False
            elif want != got:
                return False
        return True

    def describe(self) -> dict:
        return {"path": self.path, "pool": self.pool}


def _parse(pattern: str) -> tuple[tuple, bool]:
    """The pattern's segments (bytes, or ``_ANY_ONE`` for ``*``) and whether it ends in ``**``."""
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise PatternError(f"route path {pattern!r} must start with /")
    if not pattern.isascii() or not pattern.isprintable() or _FORBIDDEN & set(pattern):
        raise PatternError(f"route path {pattern!r}: printable ASCII only, without ? # % \\ or spaces")
    parts = pattern[1:].split("/")
    open_ended = parts[-1] == "**"
    if open_ended:
        parts.pop()
    segments = []
    for i, part in enumerate(parts):
        if part == "*":
            segments.append(_ANY_ONE)
        elif "*" in part:
            raise PatternError(f"route path {pattern!r}: * stands alone for one segment; ** only at the end")
        elif part in ("", ".", "..") and (i < len(parts) - 1 or open_ended or part != ""):
            raise PatternError(f"route path {pattern!r}: empty, . or .. segment")
        else:
            segments.append(part.encode())
    return tuple(segments), open_ended
