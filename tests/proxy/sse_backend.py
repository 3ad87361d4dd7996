"""A fake live process for the proxy tests: server-sent events over chunked HTTP/1.1,
served by asyncio in a thread of the test process, so that a test sees each connection
open and close as the backend sees it. Every response carries ``X-Backend: <name>``.

    GET .../health           200 (503 while ``healthy`` is False); any path ending in /health
    GET .../events?n=N&interval_ms=M&heartbeat_ms=H&last_ms=L
                             a stream: N events M ms apart (``id: i``, ``data: {"i": i,
                             "sent": <epoch seconds>}``), then a heartbeat comment every H ms
                             (0: none) and, L ms after the last event, the end of the body
                             (no L: the stream ends only when the connection does); the
                             connection stays open (keep-alive) after a stream ends
    GET anything else        200, JSON {"backend": name, "path": target}

On its own, for measuring the proxy with many streams (``?n=1&heartbeat_ms=15000``: one
event, then a heartbeat every 15 s, as the live process sends them):

    python -m tests.proxy.sse_backend PORT
"""
from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

import httptools

from tests.helpers import free_port

_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Transfer-Encoding: chunked\r\nX-Backend: %s\r\n\r\n")


_KNOBS = ("n", "interval_ms", "heartbeat_ms", "last_ms")  # the query parameters it reads (others are ignored)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class SseBackend:
    def __init__(self, name: str = "live", port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.healthy = True
        self.received: list[str] = []  # request targets, in order
        self.streams_open = 0  # streams being sent now
        self.streams_closed = 0  # connections that carried a stream and are closed
        self.connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "SseBackend":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the SSE backend did not start")
        return self

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            self._loop.create_server(lambda: _Connection(self), "127.0.0.1", self.port, reuse_address=True))
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    def stop(self) -> None:
        """Stop listening and drop every connection, as a crash would."""
        if self._loop is None or self._thread is None:
            return
        done = threading.Event()

        def shut() -> None:
            self._server.close()
            for conn in list(self.connections):
                conn.transport.abort()
            self._loop.call_soon(self._loop.stop)
            done.set()

        self._loop.call_soon_threadsafe(shut)
        done.wait(5)
        self._thread.join(5)
        self._loop = self._thread = None

    def paths(self) -> list[str]:
        return [urlsplit(target).path for target in list(self.received)]


class _Connection(asyncio.Protocol):
    def __init__(self, backend: SseBackend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.stream: asyncio.Task | None = None
        self.streamed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.backend.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.backend.connections.discard(self)
        if self.stream is not None and not self.stream.done():
            self.stream.cancel()
            self.backend.streams_open -= 1
        if self.streamed:
            self.backend.streams_closed += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        target = self.url.decode("latin-1")
        self.backend.received.append(target)
        parts = urlsplit(target)
        query = {key: int(values[0]) for key, values in parse_qs(parts.query).items() if key in _KNOBS}
        if parts.path.endswith("/health"):
            self._json(200 if self.backend.healthy else 503, {"healthy": self.backend.healthy})
        elif parts.path.endswith("/events"):
            self.streamed = True
            self.backend.streams_open += 1
            self.stream = asyncio.ensure_future(self._send_stream(query))
        else:
            self._json(200, {"backend": self.backend.name, "path": target})

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"X-Backend: %s\r\n\r\n%s" % (status, b"OK" if status == 200 else b"Unavailable",
                                                           len(body), self.backend.name.encode(), body))

    async def _send_stream(self, query: dict) -> None:
        write = self.transport.write
        write(_STREAM_HEAD % self.backend.name.encode())
        for i in range(query.get("n", 3)):
            if i:
                await asyncio.sleep(query.get("interval_ms", 100) / 1000)
            write(_chunk(b"id: %d\ndata: %s\n\n" % (i, json.dumps({"i": i, "sent": time.time()}).encode())))
        await self._heartbeats(query.get("heartbeat_ms", 0) / 1000, query.get("last_ms"))
        write(b"0\r\n\r\n")
        self.backend.streams_open -= 1

    async def _heartbeats(self, every: float, last_ms: int | None) -> None:
        """Comments every ``every`` seconds (0: silence) for ``last_ms`` ms (None: for ever)."""
        end = None if last_ms is None else time.monotonic() + last_ms / 1000
        while end is None or time.monotonic() < end:
            pause = every or 3600.0
            await asyncio.sleep(pause if end is None else max(0.0, min(pause, end - time.monotonic())))
            if every and (end is None or time.monotonic() < end):
                self.transport.write(_chunk(b": heartbeat\n\n"))


if __name__ == "__main__":  # pragma: no cover - a tool for measuring, not a test
    backend = SseBackend("live", int(sys.argv[1])).start()
    print(f"SSE backend on {backend.address}", flush=True)
    threading.Event().wait()
