"""A test backend for the proxy tests, served by a real gunicorn (one process, many
threads, so its state is one process's): ``gunicorn tests.proxy.backend_app:app``.

Every request the app receives whole is appended to ``$RECEIPTS`` (one JSON line:
backend, method, path, request id, body length), so a test can tell what reached a
backend and what did not. Responses of the app carry ``X-Backend: <name>``.

    GET  /health                 200, or 503 after POST /health/fail
    GET  /whoami                 the backend's name and the headers it received
    GET  /slow?ms=N[&on=NAME]    sleeps N ms (only on backend NAME when given)
    POST /echo                   sha256 and length of the body, and how it was framed
    GET  /download?bytes=N       N bytes, streamed without Content-Length (chunked)
    GET  /sse?n=N&interval_ms=M  N server-sent events, M ms apart
    ANY  /die[?on=NAME]          reads the body, records it, then kills this backend
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from urllib.parse import parse_qs

NAME = os.environ.get("BACKEND_NAME", "backend")
RECEIPTS = os.environ.get("RECEIPTS", "")
_healthy = True
_lock = threading.Lock()
_PATTERN = bytes(range(256)) * 256  # 64 KiB


def _record(environ, length: int) -> None:
    if not RECEIPTS:
        return
    line = json.dumps({"backend": NAME, "method": environ["REQUEST_METHOD"],
                       "path": environ.get("PATH_INFO", ""),
                       "request_id": environ.get("HTTP_X_REQUEST_ID", ""), "length": length})
    with _lock, open(RECEIPTS, "a") as f:
        f.write(line + "\n")


def _read_body(environ):
    digest, length = hashlib.sha256(), 0
    stream = environ["wsgi.input"]
    while True:
        piece = stream.read(65536)
        if not piece:
            break
        digest.update(piece)
        length += len(piece)
    return digest.hexdigest(), length


def _json(start_response, status: str, payload, extra=()):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("X-Backend", NAME), *extra])
    return [body]


def app(environ, start_response):
    global _healthy
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    sha, length = _read_body(environ)
    _record(environ, length)
    on = query.get("on")
    mine = on is None or on == NAME
    if path == "/health":
        if method == "POST":
            _healthy = query.get("ok") == "1"
        return _json(start_response, "200 OK" if _healthy else "503 Service Unavailable",
                     {"healthy": _healthy})
    if path == "/whoami":
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        return _json(start_response, "200 OK", {"backend": NAME, "headers": headers,
                                                "remote_addr": environ.get("REMOTE_ADDR")})
    if path == "/slow":
        if mine:
            time.sleep(int(query.get("ms", "1000")) / 1000)
        return _json(start_response, "200 OK", {"backend": NAME})
    if path == "/echo":
        return _json(start_response, "200 OK", {
            "backend": NAME, "sha256": sha, "length": length,
            "chunked": environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked",
            "content_length": environ.get("CONTENT_LENGTH")})
    if path == "/download":
        size = int(query.get("bytes", "0"))
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("X-Backend", NAME)])
        return _download(size)
    if path == "/sse":
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                  ("X-Backend", NAME)])
        return _events(int(query.get("n", "5")), int(query.get("interval_ms", "200")) / 1000)
    if path == "/die":
        if mine:
            os.killpg(os.getpgid(0), signal.SIGKILL)  # master and worker: the backend is gone
        return _json(start_response, "200 OK", {"backend": NAME, "survived": True})
    return _json(start_response, "404 Not Found", {"detail": "no such path"})


def _download(size: int):
    while size > 0:
        piece = _PATTERN[:min(size, len(_PATTERN))]
        size -= len(piece)
        yield piece


def _events(n: int, interval: float):
    for i in range(n):
        yield f"id: {i}\ndata: event {i} at {time.time():.3f}\n\n".encode()
        if i < n - 1:
            time.sleep(interval)
