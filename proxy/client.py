"""A client connection: httptools parses its requests, each becomes a ``Cycle``.

Laid out as uvicorn's httptools protocol is: state per connection, state per request,
parser callbacks together. Requests on one connection are answered in order (pipelined
ones wait, with reading paused); framing the parser cannot make sense of, or that could
be read two ways, is refused with 400 before anything reaches a backend.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

import httptools

from proxy.cycle import Cycle
from proxy.http import (
    PLAIN_CONNECTION,
    Reject,
    named_in_connection,
    new_request_id,
    parser_error_code,
    problem_response,
    valid_request_id,
)
from proxy.timers import Deadline

if TYPE_CHECKING:  # pragma: no cover
    from proxy.server import ProxyServer

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientProtocol(asyncio.Protocol):
    def __init__(self, server: "ProxyServer") -> None:
        self.server = server
        self.config = server.config
        self.loop = server.loop
        # per connection
        self.transport: asyncio.Transport | None = None
        self.peer_ip = b"-"
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.refused = False  # answered with an error: nothing more is read
        self.pending_error = b""  # a refusal written once the request ahead of it is answered
        self.read_pauses: set[str] = set()
        self.write_paused = False
        self.eof = False  # the client will send nothing more
        # the connection's own deadline (head, idle: see timer_callback) and the deadline of
        # the request being answered (Cycle.deadline_passed); both move on every request
        self.deadline = Deadline(self.loop, self._deadline_passed)
        self.cycle_deadline = Deadline(self.loop, self._cycle_deadline_passed)
        self.active: Cycle | None = None  # the request being answered
        self.unstarted: Cycle | None = None  # the active one, started once the bytes in hand are parsed
        self.parsing: Cycle | None = None  # the request whose body is being read
        self.waiting: deque[Cycle] = deque()  # pipelined requests, answered in turn
        # per request, while its head is read
        self.in_head = False
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.reject: Reject | None = None

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = (peer[0] if peer else "-").encode()
        if not self.server.admit(self):
            self.refused = True
            detail = "the proxy is stopping" if self.server.stopping else "the proxy is at its connection limit"
            transport.write(problem_response(503, detail, new_request_id(), close=True,
                                             extra_headers=(b"Retry-After: 1",)))
            transport.close()
            return
        # a new connection must send its first request head in time (slow-loris guard)
        self._set_timer(self.config.client_header_timeout, self._head_timed_out)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.timer_callback = None
        self.deadline.cancel()
        self.cycle_deadline.cancel()
        self.server.release(self)
        cycles = [c for c in (self.active, self.parsing, *self.waiting) if c is not None]
        self.waiting.clear()
        for cycle in dict.fromkeys(cycles):
            cycle.client_gone()

    def eof_received(self):
        """A client that half-closes after its request still gets its answer; one that
        closes while reading a stream has left (a stream has no end to wait for)."""
        self.eof = True
        # True keeps our side open until the response in progress is written.
        return self.active is not None and not self.in_head and not self.active.streaming

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        try:
            self._feed(data)
        finally:
            # the request whose head just came is sent with the body bytes that came with it
            cycle, self.unstarted = self.unstarted, None
            if cycle is not None and not cycle.finished:
                cycle.start()

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # an Upgrade we ignore: its request is being answered, then the connection
            # closes (the parser reads nothing after an upgrade)
            self.pause_reading("upgrade")
        except httptools.HttpParserCallbackError as exc:
            reject = self.reject or Reject(400, f"bad request: {exc.__context__!r}")
            if self.reject is None:
                self.server.log.exception("request callback failed", exc_info=exc.__context__)
            self._refuse(reject.status, reject.detail, reject.code)
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request: {exc}", parser_error_code(str(exc)))
        else:
            if self.in_head and self.head_size + len(self.url) > 2 * (
                    self.config.max_header_bytes + self.config.max_request_line):
                self._refuse(431, "request head too large")

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.active is not None:
            self.active.client_write_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None:
            self.active.client_write_resumed()

    # -- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_head = True
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.reject = None
        if self.timer_callback is not self._head_timed_out:
            self._set_timer(self.config.client_header_timeout, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.config.max_request_line:
            self.reject = Reject(414, f"request target over {self.config.max_request_line} bytes")
            raise self.reject

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.config.max_header_bytes or len(self.headers) > self.config.max_headers:
            self.reject = Reject(431, f"request headers over {self.config.max_header_bytes} bytes "
                                      f"or {self.config.max_headers} fields")
            raise self.reject

    def on_headers_complete(self) -> None:
        self.in_head = False
        try:
            cycle = self._new_cycle()
        except Reject as reject:
            self.reject = reject
            raise
        self.parsing = cycle
        if self.active is None:
            self._cancel_timer()
            self.active = self.unstarted = cycle
            if self.write_paused:
                cycle.client_write_paused()
        else:
            self.waiting.append(cycle)
            self.pause_reading("pipeline")

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None and not self.refused:
            self.parsing.feed_body(body)

    def on_message_complete(self) -> None:
        cycle, self.parsing = self.parsing, None
        if cycle is not None:
            cycle.body_complete()

    # -- requests ------------------------------------------------------------------------
    def _new_cycle(self) -> Cycle:
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise Reject(505, f"HTTP/{version} is not supported")
        method = parser.get_method().decode("ascii")
        if method == "CONNECT":
            raise Reject(501, "CONNECT is not supported")
        upgrade = parser.should_upgrade()
        content_length = None
        chunked = False
        hosts = 0
        request_id = None
        expect = None
        named = False
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length":
                # the parser already refuses a second one and non-digits
                content_length = int(value)
            elif lname == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise Reject(501, "only Transfer-Encoding: chunked is supported")
                chunked = True
            elif lname == b"host":
                hosts += 1
            elif lname == b"x-request-id":
                request_id = value
            elif lname == b"expect":
                expect = value.strip().lower()
            elif lname == b"connection" and value.strip().lower() not in PLAIN_CONNECTION:
                named = True  # it names hop-by-hop fields, dropped when the request is sent on
        if upgrade and (content_length or chunked):
            raise Reject(501, "protocol upgrades are not supported")  # its body would be lost
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise Reject(400, "a request needs exactly one Host header")
        limit = self.config.max_body_bytes
        if limit and content_length is not None and content_length > limit:
            raise Reject(413, f"request body over {limit} bytes")
        if expect is not None:
            if expect != b"100-continue":
                raise Reject(417, "only Expect: 100-continue is supported")
            if content_length or chunked:
                self.write(_CONTINUE)  # we read the body as it comes; ask for it at once
        target = self.url
        if not target.startswith(b"/"):
            if target == b"*" and method == "OPTIONS":
                pass
            elif target.startswith((b"http://", b"https://")):  # absolute form: origin form
                parsed = httptools.parse_url(target)
                target = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
            else:
                raise Reject(400, "request target must be a path")
        if not valid_request_id(request_id):
            request_id = new_request_id()
        # an Upgrade is ignored (RFC 9110 7.8): answered in HTTP/1.1, then the connection closes
        keep_alive = parser.should_keep_alive() and not upgrade and not self.server.stopping
        cycle = Cycle(self, method, target, version, self.headers, request_id, keep_alive,
                      chunked, content_length)
        if named:
            cycle.named = named_in_connection(self.headers)
        if self.server.tracer is not None:
            cycle.span = self.server.tracer.start(method, target, self.headers)
        return cycle

    def _start_next(self, cycle: Cycle) -> None:
        """A pipelined request's turn: it starts on the loop's next turn, once the one
        before it is done with."""
        self.active = cycle
        if self.write_paused:
            cycle.client_write_paused()
        self.loop.call_soon(self._start_unless_finished, cycle)

    def _start_unless_finished(self, cycle: Cycle) -> None:
        if not cycle.finished:
            cycle.start()

    def cycle_done(self, cycle: Cycle, keep_alive: bool) -> None:
        if cycle is not self.active:
            return
        self.active = None
        if self.closed:
            return
        if not keep_alive or self.refused or (self.eof and not self.waiting):
            self.refused = True
            if self.pending_error:
                self.write(self.pending_error)
            self.close()
            return
        if self.waiting:
            self._start_next(self.waiting.popleft())
            if not self.waiting:
                self.resume_reading("pipeline")
        else:
            self.resume_reading("pipeline")
            if self.server.stopping:
                self.close()
            elif not self.in_head and self.parsing is None:
                self._set_timer(self.config.keepalive_timeout, self._idle_timed_out)

    def reject_in_flight(self, status: int, detail: str) -> None:
        """The request whose body is being read is refused part-way (too large, too slow):
        nothing more is read, requests pipelined behind it are dropped."""
        self.pause_reading("refused")
        for waiting in self.waiting:
            waiting.client_gone()
        self.waiting.clear()
        self._refuse(status, detail)

    def _refuse(self, status: int, detail: str, code: str | None = None) -> None:
        self.refused = True
        self.server.metrics.refused(status)
        self.server.log_refusal(self, status, detail)
        if self.parsing is not None and self.parsing is self.active:
            # its head was forwarded: stop that exchange; the client gets the error if it
            # has seen nothing yet, else the connection is cut
            self.parsing.fail_before_response(status, detail, code)
            return
        error = problem_response(status, detail, new_request_id(), close=True, code=code)
        if self.active is not None:  # answer the request ahead first, then this
            self.pending_error = error
            self.pause_reading("refused")
            return
        self.write(error)
        self.close()

    # -- flow control and writes ---------------------------------------------------------
    def pause_reading(self, reason: str) -> None:
        if not self.read_pauses and not self.closed:
            self.transport.pause_reading()
        self.read_pauses.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason in self.read_pauses:
            self.read_pauses.discard(reason)
            if not self.read_pauses and not self.closed:
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> bool:
        """For a graceful stop: close now unless a request is being read or answered; a
        stream being answered is ended (it would never end by itself)."""
        if self.active is not None and self.active.streaming and self.parsing is None:
            self.active.end_stream("the proxy is stopping")
            return True
        if self.active is None and not self.in_head and self.parsing is None:
            self.close()
            return True
        return False

    # -- timers ----------------------------------------------------------------------------
    timer_callback = None  # what the connection's deadline passing means

    def _set_timer(self, delay: float, callback) -> None:
        self.timer_callback = callback
        self.deadline.set(self.loop.time() + delay)

    def _cancel_timer(self) -> None:
        self.deadline.clear()
        self.timer_callback = None

    def _deadline_passed(self) -> None:
        callback, self.timer_callback = self.timer_callback, None
        if callback is not None:
            callback()

    def _cycle_deadline_passed(self) -> None:
        if self.active is not None:
            self.active.deadline_passed()

    def _head_timed_out(self) -> None:
        if self.active is None and self.parsing is None and not self.closed:
            if self.in_head:
                self.server.metrics.refused(408)
                self.server.log_refusal(self, 408, "request head not received in time")
                self.write(problem_response(408, "request head not received in time",
                                            new_request_id(), close=True))
            self.refused = True
            self.close()

    def _idle_timed_out(self) -> None:
        if self.active is None and not self.in_head and self.parsing is None:
            self.close()
