"""One connection to a backend: httptools parses its responses, which flow to the
request in hand (a ``proxy.cycle.Cycle``) as they arrive."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:  # pragma: no cover
    from proxy.backends import Backend
    from proxy.cycle import Cycle


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, backend: "Backend") -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.cycle: "Cycle | None" = None
        self.closed = False
        self.reusable = False  # true only between a complete exchange and the next one
        self.write_paused = False
        self._new_parser()

    def _new_parser(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.backend.open_connections += 1

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.backend.open_connections -= 1
        self.reusable = False
        cycle, self.cycle = self.cycle, None
        if cycle is not None:
            cycle.upstream_lost(exc)
        else:
            self.backend.forget(self)

    def eof_received(self):
        return False  # close our side too

    def data_received(self, data: bytes) -> None:
        if self.cycle is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        cycle = self.cycle
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.cycle = None
            self.close()
            cycle.upstream_failed(f"bad response from backend: {exc}")
        else:
            cycle.flush()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.cycle is not None:
            self.cycle.upstream_write_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.cycle is not None:
            self.cycle.upstream_write_resumed()

    # -- httptools callbacks --------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers, reason = self.headers, self.reason
        self.headers, self.reason = [], b""
        if 100 <= status < 200:
            return  # interim response (e.g. 103); the final one follows
        cycle = self.cycle
        if cycle is not None:
            cycle.response_head(status, reason, headers, self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None:
            self.cycle.response_body(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            return
        cycle = self.cycle
        if cycle is not None:
            cycle.response_complete()

    # -- used by the cycle ----------------------------------------------------------
    def attach(self, cycle: "Cycle") -> None:
        self.cycle = cycle
        self.reusable = False

    def head_response_done(self) -> None:
        """The answer to HEAD has no body whatever its headers say: start a fresh parser
        for the next response (httptools cannot be told to skip the body)."""
        self._new_parser()

    def detach(self, keep_alive: bool) -> None:
        self.cycle = None
        self.reusable = keep_alive and not self.closed and not self.transport.is_closing()
        if self.write_paused:
            self.reusable = False
        if not self.reusable:
            self.close()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()
