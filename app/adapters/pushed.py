"""Small Redis state mirrored in each process, kept current by Redis pub/sub.

Two things are read on nearly every request and change rarely: the revoked tokens
(every signed-in request) and the cache's generations (every cached read). Asking
Redis each time costs a round trip each; a ``PushedState`` keeps them in memory.

Why it is exact (a logout takes effect at once on every instance; a read after a
write never sees what the write replaced):

- every change is stored and published on the state's channel in one atomic step
  (a MULTI or a script: ``publish``), so nothing changes unannounced;
- a process subscribes first and loads the state after, so no change falls between;
- the writer then waits for one more answer from Redis (``delivered``): Redis runs a
  command only after it has written out everything the previous turn of its event
  loop produced, the announcement to every subscriber included (writes in one turn
  are not ordered among clients, and Redis can be preempted between them, so the
  writer's own reply is no proof). Only then is the change confirmed to anyone;
- before each read, the reader takes what the subscription brought since the last
  read, without waiting (``lookup``): a client that saw a change confirmed and then
  asks any instance finds it there. Whether anything came is one ``poll`` of the
  subscription's socket (and a look at redis-py's buffer); redis-py itself is asked
  only then, and at least once a second (its health check of the connection).
- While the subscription is down, or before it is loaded, there is no mirror:
  ``lookup`` answers None and the caller asks Redis, as it did before. A lost
  subscription is tried again at most every ``retry_seconds``; loading again
  replaces everything, so nothing missed meanwhile survives.
- Keys deleted by hand behind the writers' backs (``RedisStore.delete_prefixed``: the
  tests, maintenance) are announced on every channel: mirrors drop what they have and
  load again. A FLUSHALL by hand is not announced: restart the app instances after one.
"""
from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Iterable

import redis

from app.adapters.redis_store import RedisStore

log = logging.getLogger(__name__)

SEPARATOR = "\n"
RESET = RedisStore.PUSHED_RESET


def _buffered(parser) -> bool:
    """Whether redis-py's parser may hold bytes already read from the socket and not
    parsed yet: hiredis's reader (``has_data``), or the pure-Python parser's buffer
    (``unread_bytes``). True for any other parser: unsure, so look."""
    reader = getattr(parser, "_reader", None)
    if reader is not None:
        return reader.has_data()
    buffer = getattr(parser, "_buffer", None)
    unread = getattr(buffer, "unread_bytes", None)
    return unread is None or bool(unread())


class PushedState:
    """``field -> value`` strings, mirrored from Redis (see the module's docstring).

    ``load(client)`` reads the whole state from Redis (after the subscription is in
    place); ``fetch(client, field)``, if given, reads one field the load did not
    know (None: absent), for states whose fields are discovered as they are used.
    """

    FULL_LOOK_SECONDS = 1.0

    def __init__(self, store: RedisStore, name: str, load: Callable[[redis.Redis], dict[str, str]],
                 fetch: Callable[[redis.Redis, str], str | None] | None = None, *,
                 retry_seconds: float = 1.0) -> None:
        self.store = store
        self.channel = store.pushed_channel(name)
        self._load, self._fetch = load, fetch
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._pubsub = None
        self._state: dict[str, str] = {}
        self._next_try = 0.0
        self._subscribing = False
        self._reconnected = False
        self._poller: select.poll | None = None  # the subscription's socket, polled (``_news``)
        self._polled = None
        self._full_look_at = 0.0
        self.reloads = 0  # how many times the state was (re)loaded: for tests and metrics

    # --- writers -------------------------------------------------------------
    def publish(self, pipe, field: str, value: str) -> None:
        """Announce a change, in the writer's MULTI (``pipe``) after the change itself."""
        pipe.publish(self.channel, field + SEPARATOR + value)

    def delivered(self) -> None:
        """After the writer's MULTI or script: return once Redis has written the
        announcement to every subscriber's socket (see the module's docstring)."""
        self.store.client.ping()

    def learn(self, field: str, value: str) -> None:
        """This process's own change, known at once (its message will say the same)."""
        with self._lock:
            if self._pubsub is not None:
                self._state[field] = value

    # --- readers -------------------------------------------------------------
    def lookup(self, fields: Iterable[str]) -> list[str | None] | None:
        """The fields' current values (None: absent), or None when there is no
        mirror now (the caller then asks Redis)."""
        fields = list(fields)
        with self._lock:
            if self._current():
                values = [self._state.get(field) for field in fields]
                if self._fetch is None or None not in values:
                    return values
                try:
                    return [value if value is not None else self._discover(field)
                            for field, value in zip(fields, values, strict=True)]
                except redis.RedisError:
                    return None
        self._subscribe()  # outside the lock: other readers go on meanwhile (to Redis)
        return None

    def _discover(self, field: str) -> str | None:
        value = self._fetch(self.store.client, field)
        if value is not None:
            # Under the lock: no message for this field can be applied meanwhile, and
            # any published after our read is still in the socket, to be applied next.
            self._state[field] = value
        return value

    def _news(self) -> bool:
        """Whether the subscription may hold something not applied yet: bytes left in
        redis-py's buffer or waiting in the socket (one ``poll``, no redis-py call), or a
        full look is due (at least every ``FULL_LOOK_SECONDS``: redis-py's own health check
        of the connection runs inside ``get_message``). True whenever unsure."""
        now = time.monotonic()
        if now >= self._full_look_at:
            self._full_look_at = now + self.FULL_LOOK_SECONDS
            return True
        connection = self._pubsub.connection
        sock = getattr(connection, "_sock", None)
        if sock is None or _buffered(getattr(connection, "_parser", None)):
            return True
        if self._poller is None or self._polled is not sock:
            self._poller, self._polled = select.poll(), sock
            self._poller.register(sock, select.POLLIN | select.POLLPRI)
        return bool(self._poller.poll(0))  # readable, closed or failed: look

    def _current(self) -> bool:
        """Apply what the subscription brought; False when there is no mirror."""
        if self._pubsub is None:
            return False
        try:
            if not self._news():
                return True
            while (message := self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)) is not None:
                if message["data"] == RESET:  # keys were deleted behind our back: load again
                    self._drop()
                    self._next_try = 0.0
                    return False
                field, _, value = message["data"].decode().partition(SEPARATOR)
                self._state[field] = value
            if self._reconnected:
                # redis-py reconnects and subscribes again by itself: what was published
                # meanwhile is lost to us, so the mirror is not to be trusted any more.
                raise redis.ConnectionError(f"the subscription to {self.channel} was re-established")
            return True
        except (redis.RedisError, OSError):
            log.warning("pushed state %s: subscription lost; asking Redis until it is back", self.channel,
                        exc_info=True)
            self._drop()
            return False

    def _subscribe(self) -> None:
        """Subscribe, then load: by one reader at a time, at most every ``retry_seconds``."""
        with self._lock:
            now = time.monotonic()
            if self._pubsub is not None or self._subscribing or now < self._next_try:
                return
            self._subscribing, self._next_try = True, now + self.retry_seconds
        pubsub = self.store.client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            confirmed = pubsub.get_message(timeout=2.0)  # in place once Redis says so: only then load
            if confirmed is None or confirmed["type"] != "subscribe":
                raise redis.ConnectionError(f"no confirmation of the subscription to {self.channel}")
            state = self._load(self.store.client)
        except (redis.RedisError, OSError):
            log.warning("pushed state %s: cannot subscribe; asking Redis meanwhile", self.channel, exc_info=True)
            pubsub.close()
            with self._lock:
                self._subscribing = False
            return
        with self._lock:  # changes since the load wait in the socket: the next read applies them
            self._pubsub, self._state, self._subscribing = pubsub, dict(state), False
            self._reconnected = False
            pubsub.connection.register_connect_callback(self._on_connect)
            self.reloads += 1

    def _on_connect(self, _connection) -> None:
        """redis-py (re)connected the subscription's connection (after our own subscribe)."""
        self._reconnected = True

    def _drop(self) -> None:
        pubsub, self._pubsub, self._state = self._pubsub, None, {}
        self._poller = self._polled = None
        try:
            pubsub.close()
        except (redis.RedisError, OSError):
            pass

    def close(self) -> None:
        with self._lock:
            if self._pubsub is not None:
                self._drop()
