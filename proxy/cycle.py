"""One request through the proxy: route it to a backend pool, choose a backend there,
send, stream both ways, retry where safe, answer 502/503/504 with problem JSON where not.

A small request body (a Content-Length up to 64 KiB: every JSON call of the API) is
received whole before a backend is chosen, as nginx's ``proxy_request_buffering`` does:
a request whose body never comes whole (a client that stops or half-closes early) is
answered 408 and never reaches a backend, and a slow sender holds no backend connection.
Larger or chunked bodies are not held whole: their bytes go to the backend as they arrive
(only an idempotent request's small body is kept, so it can be sent again). Response bytes
go to the client as they arrive, and a client that reads slowly pauses reading from the
backend.

Retry rules (DESIGN.md): a connect failure may be retried for any request, since nothing
reached a backend; a failure after the request was sent only for an idempotent method
whose body we still have; never once the response has started towards the client.

Streams (a ``text/event-stream`` response: server-sent events) are relayed byte for byte
as they come, like every body, and differ in these ways: once their head has come the
pool's ``read_timeout`` no longer applies, its ``stream_idle_timeout`` does (the backend's
heartbeats keep a quiet stream open; one silent for longer is ended); their upstream
connection is closed at their end rather than pooled (a stream's connection is not one a
short request should inherit); a client's end of its connection ends them (``client.py``:
no half-close to answer); and a graceful stop ends them at once instead of waiting.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from proxy.backends import Backend, Balancer
from proxy.http import (
    CHUNK_END,
    HOP_BY_HOP,
    IDEMPOTENT,
    NO_BACKEND,
    OUT_OF_FILES,
    PLAIN_CONNECTION,
    VIA,
    chunk,
    named_in_connection,
    problem_response,
    reason_phrase,
)
from proxy.upstream import UpstreamProtocol

if TYPE_CHECKING:  # pragma: no cover
    from proxy.client import ClientProtocol

_DROP_REQUEST = HOP_BY_HOP | {b"content-length", b"x-forwarded-proto", b"x-request-id",
                              b"expect", b"via"}
# traced (proxy/tracing.py): the incoming traceparent is replaced by the proxy span's
_DROP_TRACED = _DROP_REQUEST | {b"traceparent"}
# What becomes of a backend's response field, by its lowercased name: most are forwarded
# as they are (not listed here); these are read, or dropped, or both (_response_fields)
_DROPPED, _LENGTH, _FRAMING, _TYPE, _CONNECTION = range(5)
_RESPONSE_FIELDS = {
    **dict.fromkeys(HOP_BY_HOP | {b"x-request-id", b"via"}, _DROPPED),
    b"content-length": _LENGTH, b"transfer-encoding": _FRAMING, b"content-type": _TYPE,
    b"connection": _CONNECTION,
}
_NO_TOKENS: frozenset[bytes] = frozenset()
_BUFFER_PAUSE = 256 * 1024  # request bytes kept while no backend is attached yet
_WHOLE_REQUEST = 64 * 1024  # a request body up to this, with a Content-Length, is received whole first
_SMALL_BODY = 64 * 1024  # a response body up to this, with a Content-Length, goes out in one write

# How an attempt ended
_DONE, _RETRY, _FAIL = "done", "retry", "fail"
_FULL_DETAIL = "the proxy is at its connection limit"


def _response_fields(headers: list, lines: list, tokens: frozenset) -> tuple:
    """A backend's response fields, in one pass: those forwarded to the client are added to
    ``lines`` (not hop-by-hop ones, nor those named in ``tokens``, nor the framing and ids
    the proxy writes itself). Returns its Content-Length (or None), whether its body comes
    chunked, whether it is an event stream (None: no Content-Type), and whether a
    Connection field names other fields (then the caller passes again with their names)."""
    length = None
    chunked = named = False
    streaming = None
    for name, value in headers:
        lname = name.lower()
        kind = _RESPONSE_FIELDS.get(lname)
        if kind is not None:
            if kind == _TYPE:
                streaming = value.lstrip().lower().startswith(b"text/event-stream")
            else:
                if kind == _LENGTH:
                    length = value
                elif kind == _FRAMING:
                    chunked = value.strip().lower().endswith(b"chunked")
                elif kind == _CONNECTION:
                    named = named or value.strip().lower() not in PLAIN_CONNECTION
                continue
        if tokens and lname in tokens:
            continue
        lines.append(name + b": " + value)
    return length, chunked, streaming, named


def _sooner(deadline: float, other: float) -> float:
    """The sooner of two deadlines, where 0 is none."""
    return other if not deadline or other < deadline else deadline


class Cycle:
    __slots__ = (
        "client", "server", "config", "loop", "method", "target", "version", "headers", "pool",
        "request_id", "keep_alive", "chunked_in", "content_length", "started",
        "named",  # the fields its Connection field names (hop-by-hop too), usually none
        # request body
        "body", "body_size", "body_received", "body_done", "replayable", "body_sent",
        "last_client_activity",
        # the attempts: the one in hand, those made, how the last one ended
        "backend", "upstream", "attempting", "counted", "tried", "sent", "tries", "refusals",
        "last_status", "last_detail", "last_upstream_activity",
        # the response
        "status", "response_started", "response_chunked", "response_done",
        "upstream_keep_alive", "bytes_out", "write_paused_since", "error", "finished", "out",
        "eof_body", "hold_small", "streaming", "awaiting_body",
        "span",  # the proxy's span of this request, when traced (proxy/tracing.py)
    )

    def __init__(self, client: "ClientProtocol", method: str, target: bytes, version: str,
                 headers: list, request_id: bytes, keep_alive: bool, chunked_in: bool,
                 content_length: int | None) -> None:
        self.client = client
        self.server = client.server
        self.config = client.server.config
        self.loop = client.loop
        self.method, self.target, self.version = method, target, version
        self.headers = headers
        self.request_id = request_id
        self.pool: Balancer | None = None  # chosen by the route when the request starts
        self.keep_alive = keep_alive
        self.chunked_in = chunked_in
        self.content_length = content_length
        self.named = _NO_TOKENS
        self.started = time.monotonic()
        self.body: list[bytes] = []
        self.body_size = 0  # bytes in self.body
        self.body_received = 0
        self.body_done = not chunked_in and not content_length
        self.replayable = method in IDEMPOTENT
        self.body_sent = False
        self.last_client_activity = self.loop.time()
        self.backend: Backend | None = None
        self.upstream: UpstreamProtocol | None = None
        self.attempting = False  # a request is at ``backend`` and its outcome not settled yet
        self.counted: Backend | None = None  # the backend whose in_flight counts this request
        self.tried: list[Backend] = []
        self.sent = False
        self.tries = 0
        self.refusals = 0  # attempts that could not even connect
        self.last_status, self.last_detail = 503, "no backend is available"
        self.last_upstream_activity = 0.0
        self.status = 0
        self.response_started = False
        self.response_chunked = False
        self.response_done = False
        self.upstream_keep_alive = False
        self.bytes_out = 0
        self.write_paused_since = 0.0
        self.error = ""
        self.finished = False
        self.out: list[bytes] = []  # response bytes not yet written to the client
        self.eof_body = False
        self.hold_small = False
        self.streaming = False  # the response is an event stream
        self.awaiting_body = False  # started, waiting for its small body to come whole
        self.span = None

    # -- request body from the client (parser callbacks) ------------------------------
    def feed_body(self, data: bytes) -> None:
        self.body_received += len(data)
        self.last_client_activity = self.loop.time()
        limit = self.config.max_body_bytes
        if limit and self.body_received > limit:
            self.client.reject_in_flight(413, f"request body over {limit} bytes")
            return
        upstream = self.upstream
        if upstream is not None and self.sent:
            upstream.write(chunk(data) if self.chunked_in else data)
            if self.replayable:
                self._keep(data)
        else:
            self.body.append(data)
            self.body_size += len(data)
            if self.body_size > _BUFFER_PAUSE:
                self.client.pause_reading("buffer")

    def _keep(self, data: bytes) -> None:
        self.body.append(data)
        self.body_size += len(data)
        if self.body_size > self.config.retry_body_limit:
            self.replayable = False
            self.body.clear()
            self.body_size = 0

    def body_complete(self) -> None:
        self.body_done = True
        if self.awaiting_body:  # its small body is all here: choose a backend once the parser is done
            self.awaiting_body = False
            self.loop.call_soon(self._begin)
            return
        if self.upstream is not None and self.sent:
            if self.chunked_in:
                self.upstream.write(CHUNK_END)
            self.body_sent = True
            self.last_upstream_activity = self.loop.time()  # the wait for an answer starts now

    # -- the proxied exchange --------------------------------------------------------
    # Driven by callbacks, with no task of its own: a request that finds a pooled connection
    # is written to it at once, and only opening a new connection is awaited (a task a
    # request cost about a tenth of the CPU the whole exchange took). An attempt ends in
    # ``_settle``; a failed one continues in ``_attempt_failed`` on the loop's next turn.
    def start(self) -> None:
        """Route the request, then make the first attempt (once a small body is all here)."""
        self.pool = self.server.balancer.route(self.target)
        if not self.body_done and not self.chunked_in and self.content_length <= _WHOLE_REQUEST:
            self.awaiting_body = True  # body_complete() goes on; the client body timeout runs
            self._arm()
            return
        self._begin()

    def _begin(self) -> None:
        if self.finished:
            return
        if not self.server.has_room():  # for its backend connection
            self._answer_full()
            return
        self._next_attempt()

    def _next_attempt(self) -> None:
        """Try a backend not tried yet, or give up with the last attempt's status."""
        try:
            pool = self.pool
            while self.tries < pool.config.max_tries and not self.finished:
                backend = pool.choose(exclude=self.tried)
                if backend is None:
                    break
                self.tried.append(backend)
                self.tries += 1
                self.backend = self.counted = backend
                backend.in_flight += 1
                upstream = backend.take_idle(time.monotonic())
                if upstream is None:
                    # counted now, before the task runs: has_room() counts connections being opened
                    backend.connects += 1
                    backend.connecting += 1
                    self.server.spawn(self._connect_then_send(backend))
                else:
                    self._send_to(upstream)
                return
            self._give_up()
        except Exception as exc:  # a bug of ours: answer 502 and keep serving others
            self.server.log.exception("proxy error", extra={"request_id": self.request_id.decode()})
            self._failed(exc)

    async def _connect_then_send(self, backend: Backend) -> None:
        try:
            try:
                upstream = await self._connect(backend)
            except (TimeoutError, OSError) as exc:
                self._release()
                if getattr(exc, "errno", None) in OUT_OF_FILES:
                    self._answer_full()
                    return
                timed_out = isinstance(exc, asyncio.TimeoutError)
                self.refusals += 1
                if backend.request_failed():
                    self.server.ejected(backend, "connect timeout" if timed_out else "connect error")
                # nothing reached the backend: any request may go elsewhere
                self._after_attempt(_RETRY, 504 if timed_out else 502, (
                    f"backend {backend.name} {'timed out' if timed_out else 'refused'} the connection"))
                return
            if self.finished:  # the client left while we connected
                self._release()
                upstream.close()
                return
            self._send_to(upstream)
        except Exception as exc:  # a bug of ours: answer 502 and keep serving others
            self.server.log.exception("proxy error", extra={"request_id": self.request_id.decode()})
            self._failed(exc)

    def _send_to(self, upstream: UpstreamProtocol) -> None:
        self.upstream = upstream
        self.attempting = True
        upstream.attach(self)
        self._send_request()
        self.last_upstream_activity = self.loop.time()
        self._arm()

    def _release(self) -> None:
        """This request is no longer in flight at its backend (once an attempt)."""
        backend, self.counted = self.counted, None
        if backend is not None:
            backend.in_flight -= 1

    def _attempt_failed(self, backend: Backend, outcome: str, status: int, detail: str) -> None:
        try:
            self._release()
            if backend is self.backend:
                self._drop_upstream()
            self._after_attempt(outcome, status, detail)
        except Exception as exc:  # a bug of ours: answer 502 and keep serving others
            self.server.log.exception("proxy error", extra={"request_id": self.request_id.decode()})
            self._failed(exc)

    def _after_attempt(self, outcome: str, status: int, detail: str) -> None:
        self.last_status, self.last_detail = status, detail
        if outcome == _RETRY:
            self.server.metrics.retry(self.pool.name, self.backend.name)
            self._next_attempt()
        else:
            self._give_up()

    def _give_up(self) -> None:
        status, detail = self.last_status, self.last_detail
        if self.refusals and self.refusals == self.tries and self.pool.panicking:
            status, detail = 503, "no backend is available"  # every one refused: all down
        if not self.finished:
            self.error = detail
            # a 503 here always means that no backend could take it
            self._answer(status, detail, NO_BACKEND if status == 503 else None)

    def _failed(self, exc: Exception) -> None:
        self._release()
        if not self.finished:
            if self.response_started:
                self._cut(f"proxy error: {exc!r}")
            else:
                self.error = f"proxy error: {exc!r}"
                self._answer(502, "the proxy failed while handling this request")

    async def _connect(self, backend: Backend) -> UpstreamProtocol:
        """A new connection to ``backend`` (counted in ``backend.connecting`` by the caller)."""
        try:
            transport, protocol = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamProtocol(backend), backend.host, backend.port),
                backend.config.connect_timeout,
            )
        finally:
            backend.connecting -= 1
        return protocol

    def _send_request(self) -> None:
        client = self.client
        lines = [self.method.encode() + b" " + self.target + b" HTTP/1.1"]
        forwarded_for = None
        via = None
        tokens = self.named
        drop = _DROP_REQUEST if self.span is None else _DROP_TRACED
        for name, value in self.headers:
            lname = name.lower()
            if lname in drop or (tokens and lname in tokens):
                if lname == b"via":
                    via = value
                continue
            if lname == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
                continue
            lines.append(name + b": " + value)
        peer = client.peer_ip
        lines.append(b"X-Forwarded-For: " + (forwarded_for + b", " + peer if forwarded_for else peer))
        lines.append(b"X-Forwarded-Proto: http\r\nX-Request-ID: " + self.request_id)
        lines.append(b"Via: " + (via + b", " + VIA if via else VIA))
        if self.span is not None:
            lines.append(self.server.tracer.traceparent(self.span))
        if self.chunked_in:
            lines.append(b"Transfer-Encoding: chunked")
        elif self.content_length is not None:
            lines.append(b"Content-Length: %d" % self.content_length)
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        parts = [head] if self.body or (self.body_done and self.chunked_in) else None
        for piece in self.body:
            parts.append(chunk(piece) if self.chunked_in else piece)
        if not self.replayable:
            self.body.clear()
            self.body_size = 0
        if self.body_done:
            if self.chunked_in:
                parts.append(CHUNK_END)
            self.body_sent = True
        self.sent = True
        client.resume_reading("buffer")
        self.upstream.write(head if parts is None else b"".join(parts))

    # -- events from the upstream connection -------------------------------------------
    def response_head(self, status: int, reason: bytes, headers: list, keep_alive: bool) -> None:
        if self.finished or self.client.closed:
            return
        self.status = status
        self.upstream_keep_alive = keep_alive
        self.last_upstream_activity = self.loop.time()
        status_line = b"HTTP/1.1 %d %s" % (status, reason or reason_phrase(status))
        lines = [status_line]
        length, chunked_upstream, streaming, named = _response_fields(headers, lines, _NO_TOKENS)
        if named:  # a Connection field names more hop-by-hop fields: drop those too
            lines = [status_line]
            _response_fields(headers, lines, named_in_connection(headers))
        if streaming is not None:
            self.streaming = streaming
        lines.append(b"X-Request-ID: " + self.request_id)
        lines.append(b"Via: " + VIA)
        bodyless = self.method == "HEAD" or status in (204, 304)
        self.streaming = self.streaming and not bodyless
        # neither length nor chunks: the body ends when the backend closes (HTTP/1.0 style)
        self.eof_body = length is None and not chunked_upstream and not bodyless
        if length is not None:
            lines.append(b"Content-Length: " + length)
            # a small sized body is sent with its head in one write once it is all here
            # (backends often write head and body apart); anything else streams
            self.hold_small = not bodyless and not self.streaming and len(length) <= 5 and int(length) <= _SMALL_BODY
        elif not bodyless:
            if self.version == "1.1":
                self.response_chunked = True
                lines.append(b"Transfer-Encoding: chunked")
            else:
                self.keep_alive = False  # an HTTP/1.0 client reads to the end
        if not self.body_done:
            self.keep_alive = False  # answered before the whole request came: close after
        if self.server.stopping:
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"Connection: close")
        elif self.version == "1.0":
            lines.append(b"Connection: keep-alive")
        self.response_started = True
        self.out.append(b"\r\n".join(lines) + b"\r\n\r\n")
        if self.streaming:
            self._arm()  # its idle limit, not the read timeout, from now on (it may be the sooner)
        if self.method == "HEAD":
            self.upstream.head_response_done()
            self.response_complete()

    def response_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.last_upstream_activity = self.loop.time()
        self.bytes_out += len(data)
        self.out.append(chunk(data) if self.response_chunked else data)

    def response_complete(self) -> None:
        if self.finished:
            return
        if self.response_chunked:
            self.out.append(CHUNK_END)
        self.response_done = True
        self._settle(_DONE, 0, "")
        self.finish()

    def flush(self) -> None:
        """Write what the backend's last bytes produced in one go (head and body of a
        small response become one send)."""
        if self.out and not (self.hold_small and not self.response_done):
            out, self.out = self.out, []
            self.client.write(out[0] if len(out) == 1 else b"".join(out))

    def upstream_lost(self, exc) -> None:
        if self.response_started and self.eof_body and exc is None and not self.finished:
            self.upstream_keep_alive = False
            self.response_complete()  # the backend's close was the end of the body
            return
        self._upstream_broke(f"backend closed the connection{': ' + str(exc) if exc else ''}")

    def upstream_failed(self, detail: str) -> None:
        self._upstream_broke(detail)

    def _upstream_broke(self, detail: str, timed_out: bool = False) -> None:
        if self.finished:
            return
        backend = self.backend
        if self.response_started and self.hold_small:
            # the head was held back with its small body: the client has seen nothing yet
            self.out.clear()
            self.response_started = self.hold_small = False
            self.status = self.bytes_out = 0
        if self.response_started:
            self._cut(detail)
            return
        if timed_out and backend is not None and backend.request_failed():
            self.server.ejected(backend, "read timeout")
        if self.replayable:  # idempotent, with its body (if any) still here
            self._settle(_RETRY, 504 if timed_out else 502, detail)
        else:
            # a request whose bytes reached a backend is never sent again (POST, PATCH, ...)
            self._settle(_FAIL, 504 if timed_out else 502, detail)

    def upstream_write_paused(self) -> None:
        self.client.pause_reading("upstream")

    def upstream_write_resumed(self) -> None:
        self.client.resume_reading("upstream")

    # -- events from the client connection ----------------------------------------------
    def client_write_paused(self) -> None:
        self.write_paused_since = self.loop.time()
        if self.upstream is not None:
            self.upstream.pause_reading()

    def client_write_resumed(self) -> None:
        self.write_paused_since = 0.0
        if self.upstream is not None:
            self.upstream.resume_reading()

    def client_gone(self) -> None:
        if self.finished:
            return
        self.error = self.error or "client closed the connection"
        if self.status == 0:
            self.status = 499
        self._settle(_FAIL, 0, self.error)
        self.finish()

    # -- timeouts ---------------------------------------------------------------------
    def _arm(self) -> None:
        """Set this request's next deadline on its connection (only the request being
        answered has deadlines; ``deadline_passed`` sorts out which one passed)."""
        deadline = self._next_deadline()
        if deadline:
            self.client.cycle_deadline.set(deadline)
        else:
            self.client.cycle_deadline.clear()

    def _quiet_limit(self) -> float:
        """How long the backend may send nothing: a stream's idle limit (0: none), else the read timeout."""
        pool = self.backend.config
        return pool.stream_idle_timeout if self.streaming else pool.read_timeout

    def _next_deadline(self) -> float:
        """The soonest of this request's deadlines (0: none), with no list built."""
        if self.finished:
            return 0.0
        quiet = self._quiet_limit() if self.body_sent else 0.0
        deadline = self.last_upstream_activity + quiet if quiet else 0.0
        if self.write_paused_since:
            deadline = _sooner(deadline, self.write_paused_since + self.config.send_timeout)
        if not self.body_done:
            deadline = _sooner(deadline, self.last_client_activity + self.config.client_body_timeout)
        return deadline

    def deadline_passed(self) -> None:
        if self.finished:
            return
        now = self.loop.time()
        config = self.config
        if self.write_paused_since and now - self.write_paused_since >= config.send_timeout:
            self._cut("client did not read its response in time")
        elif not self.body_done and now - self.last_client_activity >= config.client_body_timeout:
            self.client.reject_in_flight(408, "request body not received in time")
        elif self.body_sent and not self.write_paused_since and self._quiet_limit() and (
                now - self.last_upstream_activity >= self._quiet_limit()):
            if self.streaming:
                self.end_stream(f"stream idle for {self._quiet_limit():g}s")
            else:
                self._upstream_broke(f"backend {self.backend.name} sent nothing for "
                                     f"{self._quiet_limit():g}s", timed_out=True)
        else:
            self._arm()

    # -- endings -------------------------------------------------------------------------
    def _settle(self, outcome: str, status: int, detail: str) -> None:
        """The attempt in hand ended (only its first ending counts). A failed one is followed
        up on the loop's next turn, once the caller has done what it does after this
        (``finish``, answering the client): a retry, or the proxy's own answer."""
        if not self.attempting:
            return
        self.attempting = False
        if outcome == _DONE:
            self._release()
        else:
            self.loop.call_soon(self._attempt_failed, self.backend, outcome, status, detail)

    def _cut(self, detail: str) -> None:
        """End an exchange whose response has started: the client, which already has part
        of it, sees the connection cut rather than a truncated body taken for whole."""
        self.error = detail
        self.client.abort()
        self._settle(_FAIL, 0, detail)
        self.finish()

    def end_stream(self, detail: str) -> None:
        """End a stream cleanly (its last chunk, then the connection closes); the client
        reconnects as event streams do. Its upstream connection is closed."""
        if self.finished:
            return
        self.error = detail
        self.keep_alive = False
        if self.response_chunked:
            self.out.append(CHUNK_END)
        self._settle(_FAIL, 0, detail)
        self.finish()

    def _drop_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        self.sent = False
        self.body_sent = False
        if upstream is not None:
            upstream.cycle = None
            upstream.abort()

    def _answer(self, status: int, detail: str, code: str | None = None) -> None:
        """The proxy's own response (nothing of a backend's has been sent)."""
        if self.finished:
            return
        close = not (self.keep_alive and self.body_done) or self.server.stopping
        self.keep_alive = not close
        self.status = status
        self.client.write(problem_response(status, detail, self.request_id, close=close, code=code))
        self.response_done = True
        self.finish()

    def _answer_full(self) -> None:
        """503 ``service_unavailable``: the proxy's own shortage of file descriptors, which
        is no backend's fault; the client connection closes, which frees one."""
        self.error, self.keep_alive = "no file descriptor for a backend connection", False
        self._answer(503, _FULL_DETAIL)

    def fail_before_response(self, status: int, detail: str, code: str | None = None) -> None:
        """Stop here with the proxy's own answer: the rest of the request is refused."""
        self.error = detail
        self._drop_upstream()
        self._settle(_FAIL, status, detail)
        self.keep_alive = False
        if self.response_started:
            self._cut(detail)
        else:
            self._answer(status, detail, code)

    def finish(self) -> None:
        if self.finished:
            return
        self._settle(_FAIL, 0, self.error)  # were an attempt still open, it ends here
        self.finished = True
        if self.client.active is self:
            self.client.cycle_deadline.clear()
        upstream, self.upstream = self.upstream, None
        backend = self.backend
        now = time.monotonic()
        duration = now - self.started
        if upstream is not None:
            reuse = self.response_done and self.upstream_keep_alive and self.body_sent and not self.streaming
            upstream.detach(reuse)
            if reuse and backend is not None:
                backend.put_idle(upstream, now)
        if backend is not None and self.response_done and self.status:
            backend.requests += 1
            if not self.streaming:  # a stream's life is no latency
                backend.latencies.append(duration)
            backend.request_succeeded()
        self.server.request_done(self, duration)
        # the client's bytes go last, once the books are done: the write wakes the client's
        # reader, which may take this CPU at once (and its caches with it)
        self.flush()
        self.client.cycle_done(self, self.keep_alive and self.response_done and self.body_done)
