"""A cheap load generator: asyncio keep-alive HTTP/1.1 connections, responses parsed
by httptools (the parser uvicorn uses, already a dependency of the proxy).

The thread-per-client generator (requests) spent more CPU than the server it measured
on this 2-core machine; one event loop over N connections costs a small fraction of
a request's server time, so the figures are the server's.

    async with Connection("127.0.0.1", 8000) as conn:
        response = await conn.request("GET", "/health")

``run_clients(base, make_client, connections, seconds)`` runs one coroutine per
connection until the deadline and returns what they counted.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httptools


@dataclass
class Response:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


class _Reader:
    """httptools callbacks for one response at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.done = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.writer.close()

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes | dict | None = None) -> Response:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers = {**(headers or {}), "Content-Type": "application/json"}
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
        reader = _Reader()
        while not reader.done:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            reader.parser.feed_data(data)
        return Response(reader.parser.get_status_code(), bytes(reader.body))


@dataclass
class Tally:
    """What the clients of one case counted: latencies of the timed operations, errors."""
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else 0.0

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else 0.0


Client = Callable[[Connection, int, Tally, float], Awaitable[None]]


def run_clients(base: str, client: Client, connections: int, seconds: float) -> Tally:
    """``client(conn, i, tally, deadline)`` on each of ``connections`` keep-alive
    connections at once, until ``deadline`` (a ``time.monotonic()`` value)."""
    url = urlparse(base)
    tally = Tally()

    async def one(i: int, deadline: float) -> None:
        async with Connection(url.hostname, url.port or 80) as conn:
            await client(conn, i, tally, deadline)

    async def all_of_them() -> None:
        started = time.monotonic()
        await asyncio.gather(*(one(i, started + seconds) for i in range(connections)))
        tally.elapsed = time.monotonic() - started

    asyncio.run(all_of_them())
    return tally


def getter(path_fn: Callable[[], str], ok: int = 200) -> Client:
    """A client that GETs ``path_fn()`` again and again, timing each request."""
    async def client(conn: Connection, _i: int, tally: Tally, deadline: float) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await conn.request("GET", path_fn())
            tally.latencies.append(time.perf_counter() - started)
            tally.errors += response.status != ok
    return client
