"""The admin port: status, Prometheus metrics, reload and drain. One request per
connection; bind it to loopback (the default) or set ``admin_token``.

    GET  /status                      pools and their settings, routes, backends (state,
                                      in-flight, latency percentiles), totals
    GET  /metrics                     Prometheus text format
    GET  /health                      200 while the proxy runs
    POST /reload                      re-read pools and routes (as SIGHUP does); 422 and
                                      nothing changed when the file does not load
    POST /backends/{host:port}/drain  no new requests; in-flight ones finish
    POST /backends/{host:port}/undrain

Refusals are problem documents with a ``code``, as on the client port (``proxy.http.CODES``).
"""
from __future__ import annotations

import asyncio
import hmac
import json
from typing import TYPE_CHECKING

import httptools

from proxy.config import ConfigError
from proxy.http import parser_error_code, problem_document, reason_phrase

if TYPE_CHECKING:  # pragma: no cover
    from proxy.server import ProxyServer

_MAX_REQUEST = 16 * 1024


class _TooLarge(Exception):
    """An admin request over ``_MAX_REQUEST`` bytes."""


class _Request:
    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_message_complete(self) -> None:
        self.complete = True


class AdminServer:
    def __init__(self, server: "ProxyServer") -> None:
        self.server = server

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = _Request()
            parser = httptools.HttpRequestParser(request)
            size = 0
            async with asyncio.timeout(10):
                while not request.complete:
                    data = await reader.read(4096)
                    size += len(data)
                    if not data:
                        writer.close()  # the client left: nobody to answer
                        return
                    if size > _MAX_REQUEST:
                        raise _TooLarge
                    parser.feed_data(data)
            status, body, kind = self.route(parser.get_method().decode(), request)
        except httptools.HttpParserError as exc:
            status, body, kind = self._problem(400, f"malformed request: {exc}", parser_error_code(str(exc)))
        except _TooLarge:
            status, body, kind = self._problem(431, f"admin requests are limited to {_MAX_REQUEST} bytes")
        except TimeoutError:
            status, body, kind = self._problem(408, "request not received in time")
        except ConnectionError:
            writer.close()
            return
        try:
            payload = body if kind == "text" else json.dumps(body, indent=2).encode()
            content_type = (b"text/plain; version=0.0.4; charset=utf-8" if kind == "text"
                            else b"application/json" if status < 400 else b"application/problem+json")
            writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         b"Cache-Control: no-store\r\nConnection: close\r\n\r\n%s"
                         % (status, reason_phrase(status), content_type, len(payload), payload))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def route(self, method: str, request: _Request) -> tuple[int, object, str]:
        path = httptools.parse_url(request.url).path.decode("ascii", "replace")
        server = self.server
        if method == "GET":
            if path == "/status":
                return 200, server.status(), "json"
            if path == "/metrics":
                return 200, server.metrics.render(), "text"
            if path == "/health":
                return 200, {"status": "ok"}, "json"
            return self._problem(404, f"no such page: {path}")
        if method != "POST":
            return self._problem(405, "use GET or POST")
        token = server.config.admin_token
        if token:
            given = request.headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + token.encode()):
                return self._problem(401, "admin writes need Authorization: Bearer <admin_token>")
        if path == "/reload":
            try:
                return 200, server.reload(), "json"
            except ConfigError as exc:
                return self._problem(422, f"configuration not reloaded: {exc}")
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "backends" and parts[2] in ("drain", "undrain"):
            backend = server.balancer.by_name(parts[1])
            if backend is None:
                return self._problem(404, f"no backend {parts[1]}")
            server.set_draining(backend, parts[2] == "drain")
            return 200, backend.status(), "json"
        return self._problem(404, f"no such action: {path}")

    @staticmethod
    def _problem(status: int, detail: str, code: str | None = None) -> tuple[int, object, str]:
        return status, problem_document(status, detail, code), "json"
