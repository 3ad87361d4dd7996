"""HTTP/1.1 pieces the proxy writes itself: header rules, problem responses, chunk frames."""
from __future__ import annotations

import errno
import itertools
import json
import os
import re
from http import HTTPStatus

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
VIA = b"1.1 marquee"
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
CHUNK_END = b"0\r\n\r\n"
# The proxy out of file descriptors: its own shortage, never a backend's fault
OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})


# The stable machine ``code`` of every status the proxy answers itself, on the client port
# and the admin port: the app's names (app/api/problems.py, HTTP_CODES) where it has one.
# A 400 says why where the proxy knows it (``PARSER_CODES``); a 503 is ``no_backend`` when
# no backend could take the request (all down, draining or refusing connections) and
# ``service_unavailable`` when the proxy itself turns connections away (at
# ``max_connections``, or stopping).
CODES = {
    400: "bad_request",
    401: "unauthorized",  # admin port
    404: "not_found",  # admin port
    405: "method_not_allowed",  # admin port
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    417: "expectation_failed",
    422: "validation_error",  # admin port
    431: "headers_too_large",
    501: "not_implemented",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
    505: "http_version_not_supported",
}
NO_BACKEND = "no_backend"  # 503: no backend could take the request

# What a 400 for a request the parser (llhttp) could not read is about, found in the
# parser's message; the first match wins. RFC 9112 6.3: framing that could be read two
# ways is refused, never guessed at.
PARSER_CODES = (
    ("can't be present with", "ambiguous_framing"),  # Content-Length and Transfer-Encoding
    ("duplicate content-length", "ambiguous_framing"),
    ("transfer-encoding", "ambiguous_framing"),  # chunked twice, or not last
    ("content-length", "invalid_content_length"),  # signed, not digits, empty, overflowing
    ("chunk", "invalid_chunked_body"),  # a chunk size or chunk end that is not one
)


def parser_error_code(message: str) -> str:
    """The ``code`` of a 400 for a request the parser refused with ``message``."""
    lowered = message.lower()
    for needle, code in PARSER_CODES:
        if needle in lowered:
            return code
    return CODES[400]


class Reject(Exception):
    """A request the proxy answers itself and never forwards."""

    def __init__(self, status: int, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code


_ID_PREFIX = os.urandom(8).hex().encode()  # this process's; a counter makes each id unique
_ID_COUNTER = itertools.count(1)


def new_request_id() -> bytes:
    """32 hex characters like a UUID's, without a system call per request."""
    return b"%s%016x" % (_ID_PREFIX, next(_ID_COUNTER))


def valid_request_id(value: bytes | None) -> bool:
    return bool(value) and _REQUEST_ID.match(value) is not None


def connection_tokens(headers) -> frozenset[bytes]:
    """Header names listed in Connection: hop-by-hop too (RFC 9110 7.6.1)."""
    tokens = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})  # Connection values that name no field


def named_in_connection(headers) -> frozenset[bytes]:
    """Like ``connection_tokens``, less keep-alive/close (which name no header): empty,
    the usual case (no Connection, or a plain keep-alive or close, as most responses
    carry), costs one pass of cheap comparisons."""
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection" and value.strip().lower() not in PLAIN_CONNECTION:
            return connection_tokens(headers) - PLAIN_CONNECTION
    return frozenset()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def problem_document(status: int, detail: str, code: str | None = None) -> dict:
    """An RFC 9457 problem document in the app's shape, with a ``code`` (``CODES[status]``
    unless a more precise one is given)."""
    return {"type": "about:blank", "title": reason_phrase(status).decode() or "Error",
            "status": status, "detail": detail, "code": code or CODES.get(status, "error")}


def problem_response(status: int, detail: str, request_id: bytes, *, close: bool,
                     code: str | None = None, extra_headers: tuple = ()) -> bytes:
    """A whole response with an RFC 9457 problem document, as the app writes them."""
    document = problem_document(status, detail, code)
    document["request_id"] = request_id.decode("ascii", "replace")
    body = json.dumps(document).encode()
    head = [
        b"HTTP/1.1 %d %s" % (status, reason_phrase(status)),
        b"Content-Type: application/problem+json",
        b"Content-Length: %d" % len(body),
        b"X-Request-ID: " + request_id,
        b"Via: " + VIA,
        b"Connection: " + (b"close" if close else b"keep-alive"),
        *extra_headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body
