"""Reservation streams: ``GET /api/v1/reservations/{id}/events`` pushes one of the caller's
reservations as it changes, until it no longer awaits its payment.

A client that has just reserved waits for its payment's outcome. Asking the app again and
again (``GET /api/v1/reservations/{id}`` every few milliseconds) costs a whole signed-in
request each time; this stream costs one read when it starts and one per change.

- The caller is checked as the app checks it (``auth.verify_access_token``: the pinned
  algorithm, signature, expiry, type, revocation); the reservation is read by the app's own
  service (``booking.reservation_view``: the owner's, or anyone's for an admin; 404
  otherwise), and each message is that view (``event: reservation``, ``data`` the JSON of
  ``GET /api/v1/reservations/{id}`` without its links). No id: it is a state, not a change;
  a client that reconnects gets the current one.
- Changes are announced, never carried: the services publish a reservation's id on one
  pub/sub channel after every commit that changes its status (``RedisStore.announce_reservations``),
  and this process, subscribed once, reads the streams of that id again. So nothing is
  missed: a stream is registered before its first read, so a change committed after that
  read is announced to it; a change committed before is in the read. When the subscription
  is (re)confirmed, every stream reads again (what was announced while it was down is lost);
  a reset of the keys (``delete_prefixed``) does the same; and every ``heartbeat_seconds``
  each stream gets a heartbeat comment and reads again anyway, so an announcement lost to a
  Redis error after a commit delays a stream, never strands it.
- Reads of one stream never overlap: a change announced during a read gets one more read
  after it, so messages go out in the order of the states.
- The stream ends after the message whose status is no longer ``pending_payment``
  (``confirmed``, ``payment_failed``, ``expired``, ``cancelled``); one opened on such a
  reservation sends it and ends.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

import redis
import redis.asyncio as aioredis

from app.adapters.redis_store import RedisStore
from app.bootstrap import Marquee
from app.models import ReservationStatus
from app.services import booking
from live import sse
from live.config import LiveSettings

if TYPE_CHECKING:  # pragma: no cover
    from live.metrics import LiveMetrics

log = logging.getLogger("live.reservations")
_RETRY_SECONDS = 1.0  # after the subscription failed, it is tried again this much later


class Stream(Protocol):
    closed: bool

    def send(self, frame: sse.Frame) -> bool: ...

    def end(self, frame: sse.Frame | None = None, reason: str = "") -> None: ...


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def reservation_event(view: dict) -> tuple[bytes, sse.Frame]:
    """The reservation's state as a message, and the JSON it carries (to tell states apart):
    ``GET /api/v1/reservations/{id}``'s document (without its links)."""
    seats = [{"id": seat["seat_id"], "label": seat["label"], "category": seat["category"],
              "price_cents": seat["price_cents"]} for seat in view["seats"]]
    data = json.dumps({**view, "seats": seats}, default=_json_default, separators=(",", ":"))
    return data.encode(), sse.Frame(f"event: reservation\ndata: {data}\n\n".encode())


class Watch:
    """One stream of one reservation."""

    __slots__ = ("stream", "reservation_id", "user_id", "is_admin", "sent", "reading", "again")

    def __init__(self, stream: Stream, reservation_id: int, user_id: int, is_admin: bool) -> None:
        self.stream, self.reservation_id, self.user_id, self.is_admin = stream, reservation_id, user_id, is_admin
        self.sent: bytes | None = None  # the state last sent
        self.reading = False  # a read is under way
        self.again = False  # a change was announced during it: read once more


class Reservations:
    """Every reservation stream, by reservation id, and the one subscription that wakes them."""

    def __init__(self, deps: Marquee, settings: LiveSettings, metrics: "LiveMetrics",
                 in_thread: Callable[..., asyncio.Future], spawn: Callable) -> None:
        self.settings = settings
        self.metrics = metrics
        self.in_thread = in_thread
        self.spawn = spawn
        self.channel = deps.redis.pushed_channel(RedisStore.RESERVATIONS_CHANNEL)
        # Its own client, not the followers': theirs has a read timeout, and a subscription
        # waits for announcements as long as none come.
        self.redis = aioredis.Redis.from_url(deps.settings.redis_url, socket_connect_timeout=2,
                                             client_name=f"marquee-live:{deps.settings.redis_prefix}reservations")
        self.by_id: dict[int, set[Watch]] = {}
        self.subscribed = False  # the subscription is confirmed: announcements reach us

    # -- streams ----------------------------------------------------------------------------
    async def start(self, stream: Stream, reservation_id: int, user_id: int, is_admin: bool) -> tuple[Watch, dict]:
        """Register the stream, then read the reservation (``NotFound`` for someone else's or
        an unknown one): the first message's state, returned for the caller to send."""
        watch = Watch(stream, reservation_id, user_id, is_admin)
        self.by_id.setdefault(reservation_id, set()).add(watch)  # before the read: nothing falls between
        watch.reading = True
        try:
            view = await self.in_thread(self._view, watch)
        except BaseException:
            self.leave(watch)
            raise
        finally:
            watch.reading = False
        return watch, view

    def deliver(self, watch: Watch, view: dict) -> None:
        """Send the state if it is new; end the stream once the payment is no longer awaited."""
        body, frame = reservation_event(view)
        if body != watch.sent:
            watch.sent = body
            if not watch.stream.send(frame):
                self.leave(watch)
                return
            self.metrics.reservation_events_sent.inc()
        if view["status"] != ReservationStatus.PENDING_PAYMENT:
            self.leave(watch)
            watch.stream.end(reason="settled")
        elif watch.again:
            self.refresh(watch)

    def leave(self, watch: Watch) -> None:
        watches = self.by_id.get(watch.reservation_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self.by_id[watch.reservation_id]

    def refresh(self, watch: Watch) -> None:
        """Read the stream's reservation again (once more after a read under way)."""
        if watch.reading:
            watch.again = True
            return
        watch.reading, watch.again = True, False
        self.spawn(self._read(watch))

    async def _read(self, watch: Watch) -> None:
        try:
            view = await self.in_thread(self._view, watch)
        except Exception as exc:  # noqa: BLE001 - PostgreSQL unreachable (or the reservation gone): the client retries
            log.warning("reservation could not be read", exc_info=not isinstance(exc, redis.RedisError),
                        extra={"reservation_id": watch.reservation_id, "error": str(exc)[:200]})
            self.leave(watch)
            watch.stream.end(reason="error")
            return
        finally:
            watch.reading = False
        if not watch.stream.closed:
            self.deliver(watch, view)
        else:
            self.leave(watch)

    @staticmethod
    def _view(watch: Watch) -> dict:
        return booking.reservation_view(watch.user_id, watch.reservation_id, is_admin=watch.is_admin)

    def refresh_all(self) -> None:
        for watches in list(self.by_id.values()):
            for watch in list(watches):
                self.refresh(watch)

    @property
    def count(self) -> int:
        return sum(len(watches) for watches in self.by_id.values())

    # -- the subscription -----------------------------------------------------------------
    async def listen_forever(self) -> None:
        """Subscribe; on each confirmation (the first, and after redis-py re-subscribed by
        itself), every stream reads again; then each announced id wakes its streams."""
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self.subscribed = True
                        self.refresh_all()
                    elif message["type"] == "message":
                        self._announced(message["data"])
            except (redis.RedisError, OSError):
                log.warning("reservation announcements: subscription lost; trying again", exc_info=True)
            finally:
                self.subscribed = False
                await pubsub.aclose()
            await asyncio.sleep(_RETRY_SECONDS)

    def _announced(self, data: bytes) -> None:
        if data.isdigit():
            for watch in list(self.by_id.get(int(data), ())):
                self.refresh(watch)
        else:  # RedisStore.PUSHED_RESET: keys were deleted behind our back
            self.refresh_all()

    async def recheck_forever(self) -> None:
        """Every ``heartbeat_seconds``: a heartbeat comment to every stream (which keeps it
        open through the proxy), and it reads again (a new state is sent, an unchanged one not)."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            for watches in list(self.by_id.values()):
                for watch in list(watches):
                    if watch.reading:
                        # A read under way ends in a message anyway; and a stream is
                        # registered before its first read, before its head is written:
                        # a heartbeat then went out ahead of the head (a bad response, a 502).
                        continue
                    if watch.stream.send(sse.HEARTBEAT):
                        self.refresh(watch)
                    else:
                        self.leave(watch)

    async def close(self) -> None:
        await self.redis.aclose()
