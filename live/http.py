"""The paths the live process serves, and the few HTTP/1.1 responses it writes: an event
stream's head, small JSON and text answers, and RFC 9457 problem documents in the app's
shape (``status``, ``title``, ``detail``, ``code``, ``request_id``)."""
from __future__ import annotations

import json
import re
from http import HTTPStatus
from urllib.parse import parse_qsl

EVENTS_PATH = re.compile(r"^/api/v1/showtimes/([1-9][0-9]{0,18})/seats/events$")
QUEUE_STATUS_PATH = re.compile(r"^/api/v1/showtimes/([1-9][0-9]{0,18})/queue/status$")
SHOWTIME_PATHS = (("events", EVENTS_PATH), ("queue_status", QUEUE_STATUS_PATH))
RESERVATION_EVENTS_PATH = re.compile(r"^/api/v1/reservations/([1-9][0-9]{0,18})/events$")
MAX_ID = 2 ** 63 - 1  # ids are PostgreSQL bigints, as the app's routes take them


class Refusal(Exception):
    """A request answered with a problem document."""

    def __init__(self, status: int, code: str, detail: str, headers: tuple[bytes, ...] = ()) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def _id_in(pattern: re.Pattern, path: str) -> int | None:
    """The id ``pattern`` finds in ``path``, if it is one (a bigint); else None."""
    match = pattern.match(path)
    return int(match.group(1)) if match is not None and int(match.group(1)) <= MAX_ID else None


def showtime_path(path: str) -> tuple[str, int] | None:
    """What a showtime's path serves (``events`` or ``queue_status``) and the showtime's
    id; None for any other path."""
    for name, pattern in SHOWTIME_PATHS:
        showtime_id = _id_in(pattern, path)
        if showtime_id is not None:
            return name, showtime_id
    return None


def reservation_path(path: str) -> int | None:
    """The reservation id of a reservation's events path; None for any other path."""
    return _id_in(RESERVATION_EVENTS_PATH, path)


def query_params(query: str, known: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """The query's parameters; any other than ``known`` is refused, as the app does."""
    params = parse_qsl(query, keep_blank_values=True)
    unknown = sorted({name for name, _ in params} - known)
    if unknown:
        raise Refusal(400, "unknown_parameter", f"unknown query parameter: {', '.join(unknown)}")
    return params


def since_of(query: str, last_event_id: str | None) -> str | None:
    """The version a stream resumes from: ``Last-Event-ID`` (what a reconnecting
    EventSource sends, newer than the ``since`` of the URL it reconnects to), else
    ``since``; None for neither."""
    since = [value for _, value in query_params(query, frozenset({"since"}))]
    if len(since) > 1:
        raise Refusal(400, "invalid_version", "since is given more than once")
    if last_event_id is not None:
        return last_event_id.strip()
    return since[0] if since else None


def _reason(status: int) -> str:
    return HTTPStatus(status).phrase


def response(status: int, content_type: str, body: bytes, request_id: str, *, keep_alive: bool,
             headers: tuple[bytes, ...] = (), cache_control: bytes = b"no-store") -> bytes:
    head = [
        b"HTTP/1.1 %d %s" % (status, _reason(status).encode()),
        b"Content-Type: " + content_type.encode(),
        b"Content-Length: %d" % len(body),
        b"Cache-Control: " + cache_control,
        b"X-Request-ID: " + request_id.encode(),
        b"Connection: " + (b"keep-alive" if keep_alive else b"close"),
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def problem(refusal: Refusal, request_id: str, *, keep_alive: bool) -> bytes:
    document = {"type": "about:blank", "status": refusal.status, "title": _reason(refusal.status),
                "detail": refusal.detail, "code": refusal.code, "request_id": request_id}
    return response(refusal.status, "application/problem+json", json.dumps(document).encode(), request_id,
                    keep_alive=keep_alive, headers=refusal.headers)


def stream_head(request_id: str, *, chunked: bool) -> bytes:
    """An event stream's head: chunked for HTTP/1.1, to the end of the connection for
    HTTP/1.0. ``X-Accel-Buffering: no`` asks buffering proxies to pass each event on."""
    framing = b"Transfer-Encoding: chunked" if chunked else b"Connection: close"
    return b"\r\n".join([
        b"HTTP/1.1 200 OK",
        b"Content-Type: text/event-stream",
        b"Cache-Control: no-store",
        b"X-Accel-Buffering: no",
        b"X-Request-ID: " + request_id.encode(),
        framing,
    ]) + b"\r\n\r\n"
