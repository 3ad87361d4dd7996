"""HTTP/1.1 pieces the proxy writes itself: header rules, problem responses, chunk frames."""
from __future__ import annotations

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


class Reject(Exception):
    """A request the proxy answers itself and never forwards."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


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


_PLAIN = frozenset({b"keep-alive", b"close"})


def named_in_connection(headers) -> frozenset[bytes]:
    """Like ``connection_tokens``, less keep-alive/close (which name no header): empty,
    the usual case, costs one pass of cheap comparisons."""
    for name, _ in headers:
        if len(name) == 10 and name.lower() == b"connection":
            return connection_tokens(headers) - _PLAIN
    return frozenset()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def problem_response(status: int, detail: str, request_id: bytes, *, close: bool,
                     extra_headers: tuple = ()) -> bytes:
    """A whole response with an RFC 9457 problem document, as the app writes them."""
    title = reason_phrase(status).decode() or "Error"
    body = json.dumps({
        "type": "about:blank", "title": title, "status": status, "detail": detail,
        "request_id": request_id.decode("ascii", "replace"),
    }).encode()
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
