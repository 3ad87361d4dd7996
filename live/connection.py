"""A client connection: httptools parses its requests; it answers ``/health``, ``/metrics``,
a showtime's queue status and problems itself (keep-alive), or becomes one event stream
until either side ends it.

Laid out as the proxy's client protocol is: state per connection, per request, per stream,
then the parser callbacks. A stream is a watcher of its showtime's ``Follower``: there is no
task per client, only a short one while the stream starts (snapshot, catch-up); after that
the follower writes each change's bytes straight to the transport. ``send`` checks how much
the client has left unread after each write, and cuts the client off past
``LIVE_CLIENT_BUFFER_BYTES``, so a client that does not read costs bounded memory.

A queue status not read in the last second is awaited (one Redis read, shared): the
connection stops reading meanwhile, and requests it had already read (HTTP/1.1
pipelining) wait their turn, so answers always go in the order of the requests.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import httptools
import redis

from app.logging_setup import accept_or_create_request_id, request_id_var
from app.services import auth, errors
from live import http, sse
from live.followers import Follower, Reset
from live.queue_status import CACHE_CONTROL, Status
from live.reservations import Watch

if TYPE_CHECKING:  # pragma: no cover
    from live.server import LiveServer

log = logging.getLogger("live.stream")


class Request:
    """What the parser read of one request, kept while earlier answers are awaited."""

    __slots__ = ("method", "url", "headers", "keep_alive", "http10")

    def __init__(self, method: bytes, url: bytes, headers: dict[bytes, bytes], keep_alive: bool,
                 http10: bool) -> None:
        self.method, self.url, self.headers, self.keep_alive, self.http10 = method, url, headers, keep_alive, http10


class Connection(asyncio.Protocol):
    def __init__(self, server: "LiveServer") -> None:
        self.server = server
        self.settings = server.settings
        # per connection
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.closed = False  # nothing more is written
        self.timer: asyncio.TimerHandle | None = None
        self.answering = False  # an answer is awaited: the answers after it wait
        self.waiting: deque[Callable[[], None]] = deque()  # those answers, in the order of their requests
        # per request, while its head is read
        self.url = b""
        self.head_bytes = 0
        self.headers: dict[bytes, bytes] = {}
        # per stream
        self.request_id = ""
        self.chunked = True
        self.streaming = False  # the stream's head is written
        self.follower: Follower | None = None
        self.watch: Watch | None = None  # a reservation's stream
        self.showtime_id = 0
        self.started = 0.0
        self.end_reason = ""

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        if not self.server.admit(self):
            self.closed = True
            detail = "the live process is stopping" if self.server.stopping else "too many connections"
            transport.write(http.problem(http.Refusal(503, "service_unavailable", detail, (b"Retry-After: 1",)),
                                         accept_or_create_request_id(None), keep_alive=False))
            transport.close()
            return
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # a stream (or a refusal) is under way: what the client sends is ignored
            return
        try:
            self.parser.feed_data(data)
        except http.Refusal as refusal:
            self._give_up(refusal)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, http.Refusal):
                self._give_up(exc.__context__)
            else:
                log.error("request handling failed", exc_info=exc.__context__)
                self._give_up(http.Refusal(500, "internal_error", "the request could not be handled"))
        except httptools.HttpParserError as exc:
            self._give_up(http.Refusal(400, "bad_request", f"malformed request: {exc}"))

    def _give_up(self, refusal: http.Refusal) -> None:
        """A request that cannot be read: nothing more is, and it is refused in its turn."""
        self.parser = None
        self._in_turn(functools.partial(self.refuse, refusal, keep_alive=False))

    def eof_received(self) -> bool:
        """The client is gone (or will send nothing more): the stream ends."""
        self.closed = True
        self.end_reason = self.end_reason or "client_gone"
        return False

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._cancel_timer()
        self.server.release(self)
        if self.follower is not None:
            self.follower.leave(self)
        if self.watch is not None:
            self.server.reservations.leave(self.watch)
        if self.streaming:
            self._log(logging.INFO, "stream ended", reason=self.end_reason or "client_gone",
                      seconds=round(time.monotonic() - self.started, 3))

    # -- httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.head_bytes = 0
        self.headers = {}

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.settings.max_head_bytes:
            raise http.Refusal(414, "uri_too_long", f"request target over {self.settings.max_head_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.settings.max_head_bytes:
            raise http.Refusal(431, "headers_too_large", f"request headers over {self.settings.max_head_bytes} bytes")
        self.headers[name.lower()] = value

    def on_message_complete(self) -> None:
        self._cancel_timer()
        request = Request(self.parser.get_method(), self.url, self.headers, self.parser.should_keep_alive(),
                          self.parser.get_http_version() == "1.0")
        self._in_turn(functools.partial(self._handle, request))

    # -- requests ---------------------------------------------------------------------------
    def _in_turn(self, answer: Callable[[], None]) -> None:
        """Answer now, or after the answer awaited (then in the order of the requests)."""
        if self.answering:
            self.waiting.append(answer)
        else:
            answer()

    def _handle(self, request: Request) -> None:
        request_id = accept_or_create_request_id(request.headers.get(b"x-request-id", b"").decode("latin-1") or None)
        try:
            self._route(request, request_id)
        except http.Refusal as refusal:
            self.refuse(refusal, request_id, keep_alive=request.keep_alive)

    def _route(self, request: Request, request_id: str) -> None:
        try:
            url = httptools.parse_url(request.url)
        except httptools.HttpParserInvalidURLError:
            raise http.Refusal(400, "bad_request", "the request target is not a URL") from None
        path = (url.path or b"").decode("latin-1")
        query = (url.query or b"").decode("latin-1")
        target = http.showtime_path(path)
        reservation_id = http.reservation_path(path) if target is None else None
        if target is None and reservation_id is None and path not in ("/health", "/metrics"):
            raise http.Refusal(404, "not_found", f"no such path: {path}")
        if request.method != b"GET":
            raise http.Refusal(405, "method_not_allowed", "only GET is served here", (b"Allow: GET",))
        if path == "/health":
            self.answer(b'{"status": "ok"}', "application/json", request_id, request.keep_alive)
        elif path == "/metrics":
            self.answer(self.server.metrics.render(), "text/plain; version=0.0.4; charset=utf-8", request_id,
                        request.keep_alive)
        elif reservation_id is not None:
            http.query_params(query)
            authorization = request.headers.get(b"authorization", b"").decode("latin-1") or None
            self._begin_stream(request_id, request.http10, self._join_reservation(reservation_id, authorization))
        elif target[0] == "queue_status":
            http.query_params(query)
            self._queue_status(target[1], request_id, request.keep_alive)
        else:
            last_event_id = request.headers.get(b"last-event-id")
            since = http.since_of(query, None if last_event_id is None else last_event_id.decode("latin-1"))
            if since is not None and sse.parse_version(since) is None:
                raise http.Refusal(400, "invalid_version",
                                   "since (or Last-Event-ID) must be a version such as 1763800000000-0")
            self._start_stream(target[1], since, request_id, request.http10)

    def answer(self, body: bytes, content_type: str, request_id: str, keep_alive: bool) -> None:
        self.transport.write(http.response(200, content_type, body, request_id, keep_alive=keep_alive))
        self._after_answer(keep_alive)

    def refuse(self, refusal: http.Refusal, request_id: str | None = None, *, keep_alive: bool) -> None:
        if self.closed:
            return
        self.transport.write(http.problem(refusal, request_id or accept_or_create_request_id(None),
                                          keep_alive=keep_alive))
        self._after_answer(keep_alive)

    def _after_answer(self, keep_alive: bool) -> None:
        if keep_alive:
            self._arm_timer()
        else:
            self.parser = None
            self.closed = True
            self.transport.close()

    # -- the queue status ---------------------------------------------------------------------
    def _queue_status(self, showtime_id: int, request_id: str, keep_alive: bool) -> None:
        """The answer of the last second, or (reading paused) the one Redis read for it."""
        status = self.server.queue_statuses.fresh(showtime_id)
        if status is not None:
            self._answer_status(status, request_id, keep_alive)
            return
        self.answering = True
        self.transport.pause_reading()
        self.server.spawn(self._read_status(showtime_id, request_id, keep_alive))

    async def _read_status(self, showtime_id: int, request_id: str, keep_alive: bool) -> None:
        try:
            status = await self.server.queue_statuses.get(showtime_id)
            answer = functools.partial(self._answer_status, status, request_id, keep_alive)
        except Exception as exc:  # noqa: BLE001 - Redis unreachable: the client retries later
            self.request_id, self.showtime_id = request_id, showtime_id
            self._log(logging.WARNING, "queue status could not be read", exc_info=not isinstance(exc, redis.RedisError),
                      error=str(exc))
            answer = functools.partial(self.refuse, http.Refusal(
                503, "service_unavailable", "the queue status cannot be read now", (b"Retry-After: 1",)),
                request_id, keep_alive=keep_alive)
        self.answering = False
        if self.closed:
            return
        answer()
        while self.waiting and not self.answering and not self.closed:
            self.waiting.popleft()()
        if not self.answering and not self.closed:
            self.transport.resume_reading()

    def _answer_status(self, status: Status, request_id: str, keep_alive: bool) -> None:
        self.server.metrics.queue_status_served.inc()
        if status.body is None:
            self.refuse(http.Refusal(404, "not_found", "This showtime has no waiting room"), request_id,
                        keep_alive=keep_alive)
            return
        self.transport.write(http.response(200, "application/json", status.body, request_id, keep_alive=keep_alive,
                                           cache_control=CACHE_CONTROL))
        self._after_answer(keep_alive)

    # -- the stream ---------------------------------------------------------------------------
    def _begin_stream(self, request_id: str, http10: bool, joining) -> None:
        """This connection becomes one stream: ``joining`` (a coroutine) starts it."""
        self.chunked = not http10  # HTTP/1.0: the body ends with the connection
        self.parser = None  # one stream per connection: nothing after its request is read
        self.waiting.clear()
        self.request_id = request_id
        self.started = time.monotonic()
        self.server.spawn(joining)

    def _start_stream(self, showtime_id: int, since: str | None, request_id: str, http10: bool) -> None:
        self.showtime_id = showtime_id
        self._begin_stream(request_id, http10, self._join(showtime_id, since))

    async def _join(self, showtime_id: int, since: str | None) -> None:
        """Snapshot (without a version), head, catch-up, then the live changes."""
        try:
            async with self.server.followers.joining(showtime_id) as follower:
                snapshot = None
                if since is None:
                    since, snapshot = await follower.snapshot()
                if self.closed:
                    return
                self.transport.write(http.stream_head(self.request_id, chunked=self.chunked))
                self.streaming = True
                if snapshot is not None and not self.send(snapshot):
                    return
                self.follower = follower
                await follower.join(self, since)
        except errors.NotFound as exc:
            self.refuse(http.Refusal(404, "not_found", exc.detail), self.request_id, keep_alive=False)
        except Reset as exc:
            self.server.metrics.resets.inc()
            self.end(sse.reset_event(showtime_id, str(exc)), reason="reset")
        except Exception as exc:  # noqa: BLE001 - Redis or PostgreSQL unreachable: the client retries later
            self._log(logging.WARNING, "stream could not start", exc_info=not isinstance(exc, redis.RedisError),
                      error=str(exc))
            if self.streaming:
                self.end(reason="error")
            else:
                self.refuse(http.Refusal(503, "service_unavailable", "the seat changes cannot be read now",
                                         (b"Retry-After: 1",)), self.request_id, keep_alive=False)

    async def _join_reservation(self, reservation_id: int, authorization: str | None) -> None:
        """The caller checked, the reservation read (the first message), then its changes."""
        reservations = self.server.reservations
        try:
            claims = await self.server.followers.in_thread(auth.verify_access_token, authorization)
            watch, view = await reservations.start(self, reservation_id, int(claims["sub"]),
                                                   claims.get("role") == "admin")
        except errors.Unauthorized as exc:
            self.refuse(http.Refusal(401, exc.code, exc.detail, (b"WWW-Authenticate: Bearer",)), self.request_id,
                        keep_alive=False)
            return
        except errors.NotFound as exc:
            self.refuse(http.Refusal(404, "not_found", exc.detail), self.request_id, keep_alive=False)
            return
        except Exception as exc:  # noqa: BLE001 - Redis or PostgreSQL unreachable: the client retries later
            self._log(logging.WARNING, "reservation stream could not start",
                      exc_info=not isinstance(exc, redis.RedisError), error=str(exc))
            self.refuse(http.Refusal(503, "service_unavailable", "the reservation cannot be read now",
                                     (b"Retry-After: 1",)), self.request_id, keep_alive=False)
            return
        if self.closed:
            reservations.leave(watch)
            return
        self.watch = watch
        self.transport.write(http.stream_head(self.request_id, chunked=self.chunked))
        self.streaming = True
        reservations.deliver(watch, view)

    def send(self, frame: sse.Frame) -> bool:
        """Write one message; past the buffer limit the client is cut off (False)."""
        if self.closed:
            return False
        transport = self.transport
        transport.write(frame.chunked if self.chunked else frame.raw)
        if transport.get_write_buffer_size() > self.settings.client_buffer_bytes:
            self.server.metrics.clients_cut.inc()
            self._log(logging.WARNING, "slow client cut off", unsent_bytes=transport.get_write_buffer_size())
            self.closed = True
            self.end_reason = "cut"
            transport.abort()
            return False
        return True

    def end(self, frame: sse.Frame | None = None, reason: str = "") -> None:
        """Write ``frame`` (if any), end the body and close; the client may resume."""
        if self.closed:
            return
        if self.streaming and frame is not None:
            self.transport.write(frame.chunked if self.chunked else frame.raw)
        if self.streaming and self.chunked:
            self.transport.write(sse.CHUNK_END)
        self.closed = True
        self.end_reason = reason
        self.transport.close()

    # -- helpers ----------------------------------------------------------------------------
    def _arm_timer(self) -> None:
        """A connection must send a whole request in time (an idle keep-alive one too)."""
        self._cancel_timer()
        self.timer = self.server.loop.call_later(self.settings.head_timeout_seconds, self._timed_out)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if not self.closed:
            self.closed = True
            self.transport.close()

    def _log(self, level: int, message: str, exc_info: bool = False, **extra) -> None:
        token = request_id_var.set(self.request_id or None)
        try:
            log.log(level, message, exc_info=exc_info, extra={"showtime_id": self.showtime_id, **extra})
        finally:
            request_id_var.reset(token)

