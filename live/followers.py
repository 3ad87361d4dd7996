"""One Redis reader per followed showtime, fanning each change out to all its watchers.

A ``Follower`` reads its showtime's change stream (``XREAD BLOCK`` from the last id it
delivered, on a Redis connection of its own) and writes each change, encoded once
(``sse.Frame``), to every watcher: however many watch a showtime, Redis has one reader
for it. It stops a while (``linger_seconds``) after its last watcher leaves.

The same XREAD follows the showtime's waiting-room status stream (same hash tag, so one
read of both keys stays legal on Redis Cluster): each status goes to every watcher as
``event: queue``. A status is a state, not a change, and has no version: a watcher gets
the current one when it joins (after its snapshot or catch-up), then every later one,
and the ``ahead`` skipping of seat changes never applies to it.

A watcher joins at a version: its snapshot's, or the one it resumes from. If that is the
follower's last delivered id, it joins at once. Otherwise, under the follower's lock (which
the reader also takes to deliver), one atomic Redis call checks the version is still in
the stream and reads every change after it up to the follower's last id; the watcher gets
those, then joins. So it misses nothing (the follower delivers everything after its last
id) and gets nothing twice (the catch-up stops at that id). A watcher may join *past* the
follower's last id (a snapshot newer than what the reader has read yet): it skips the
changes up to its version (``ahead``).

Watchers are the client connections (``live.connection.Connection``): ``send`` writes a
frame and answers False when the client is too far behind and was cut off.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import redis
import redis.asyncio as aioredis

from app import db
from app.adapters import waiting_room_store
from app.bootstrap import Marquee, using
from app.services import seats
from live import sse
from live.config import LiveSettings

if TYPE_CHECKING:  # pragma: no cover
    from live.metrics import LiveMetrics

log = logging.getLogger("live.followers")
_RETRY_SECONDS = 1.0  # after a failed read, the reader tries again this much later


class Watcher(Protocol):
    closed: bool

    def send(self, frame: sse.Frame) -> bool:
        """Write ``frame``; False if the client was cut off for being too far behind."""

    def end(self, frame: sse.Frame | None = None, reason: str = "") -> None:
        """Write ``frame`` (if any) and end the stream."""


class Reset(Exception):
    """The version a watcher gave can no longer be resumed from: it gets ``event: reset``."""


class Follower:
    """One showtime's reader and the watchers it writes to."""

    def __init__(self, hub: "Followers", showtime_id: int) -> None:
        self.hub = hub
        self.showtime_id = showtime_id
        self.key = hub.events_key(showtime_id)
        self.watchers: set[Watcher] = set()
        self.ahead: dict[Watcher, tuple[int, int]] = {}  # watchers that joined past last_id: their version
        self.last_id = sse.NO_VERSION  # the last change delivered (the stream's last id when it started)
        self.queue_key = hub.queue_key(showtime_id)
        self.queue_last_id = sse.NO_VERSION  # the last waiting-room status read
        self.queue_status: sse.Frame | None = None  # the current one, for the watchers that join
        self.lock = asyncio.Lock()  # held to deliver, and by a watcher catching up
        self.joining = 0  # watchers on their way in: the follower does not stop under them
        self.idle_since = time.monotonic()
        self.opened: asyncio.Task | None = None
        self.reader: asyncio.Task | None = None
        self._snapshot: asyncio.Future | None = None
        self.closing = False  # the process is stopping (a cancelled XREAD may surface as a RedisError)

    # -- starting, stopping ------------------------------------------------------------
    async def open(self) -> None:
        """The showtime exists (``NotFound`` otherwise); start reading after the stream's
        current end."""
        try:
            await self.hub.in_thread(seats.showtime_seating, self.showtime_id)
            info = await self.hub.stream_info(self.key)
            self.queue_last_id, status = await self.hub.current_queue_status(self.showtime_id)
        except BaseException:
            self.hub.forget(self)
            raise
        self.last_id = info["last-generated-id"] if info else sse.NO_VERSION
        self.queue_status = None if status is None else self._queue_frame(self.queue_last_id, status)
        self.reader = asyncio.create_task(self._follow(), name=f"follow-{self.showtime_id}")
        self.reader.add_done_callback(self._reader_done)

    def _reader_done(self, task: asyncio.Task) -> None:
        """A reader that failed leaves no watcher waiting for changes that will not come:
        their streams end, and they resume (from their last id) with a new follower."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("the change stream reader failed", exc_info=task.exception(),
                  extra={"showtime_id": self.showtime_id})
        self.hub.forget(self)
        self.close()

    def _should_stop(self) -> bool:
        """True (and no longer found by new watchers) once it has had no watcher for the
        linger time; checked between reads, with nothing awaited in between."""
        if self.closing:
            return True
        if self.watchers or self.joining or time.monotonic() - self.idle_since < self.hub.settings.linger_seconds:
            return False
        self.hub.forget(self)
        return True

    async def _follow(self) -> None:
        reader = self.hub.reader_connection(self.showtime_id)
        settings = self.hub.settings
        try:
            while not self._should_stop():
                try:
                    reply = await reader.xread({self.key: self.last_id, self.queue_key: self.queue_last_id},
                                               count=settings.read_count, block=settings.read_block_ms)
                except redis.RedisError as exc:
                    self.hub.metrics.redis_errors.inc()
                    log.warning("reading the change stream failed; retrying",
                                extra={"showtime_id": self.showtime_id, "error": str(exc)})
                    await asyncio.sleep(_RETRY_SECONDS)
                    continue
                if reply:
                    read = dict(reply)
                    await self.deliver(read.get(self.key, []), read.get(self.queue_key, []))
        finally:
            await reader.aclose()

    def close(self) -> None:
        """The process is stopping: end every stream (clients resume from their last id)."""
        self.closing = True
        if self.reader is not None:
            self.reader.cancel()
        for watcher in list(self.watchers):
            watcher.end(reason="shutdown")
        self.watchers.clear()
        self.ahead.clear()

    # -- watchers --------------------------------------------------------------------------
    async def snapshot(self) -> tuple[str, sse.Frame]:
        """The seat map and its version, computed once (in a thread) for all the watchers
        that ask while it is being computed."""
        pending = self._snapshot
        if pending is None:
            pending = self._snapshot = asyncio.ensure_future(self.hub.in_thread(self.hub.snapshot_of, self.showtime_id))

            def done(_future) -> None:
                if self._snapshot is pending:
                    self._snapshot = None
            pending.add_done_callback(done)
            self.hub.metrics.snapshots.inc()
        return await asyncio.shield(pending)

    async def join(self, watcher: Watcher, version: str) -> None:
        """Send ``watcher`` every change after ``version``, then make it a watcher.
        ``Reset`` when the stream no longer holds what came after ``version``."""
        if version != self.last_id:
            async with self.lock:
                changes = await self._changes_after(version)
                if watcher.closed:
                    return
                for entry_id, fields in changes:
                    frame = self._frame(entry_id, fields)
                    if frame is not None and not watcher.send(frame):
                        return
                    version = entry_id
                self.hub.metrics.events_sent.inc(len(changes))
                self._add(watcher, version)
                return
        self._add(watcher, version)

    def _add(self, watcher: Watcher, version: str) -> None:
        """Make ``watcher`` (at ``version``) a watcher, after the current waiting-room status."""
        if watcher.closed or (self.queue_status is not None and not watcher.send(self.queue_status)):
            return
        if version != self.last_id and sse.version_key(version) > sse.version_key(self.last_id):
            self.ahead[watcher] = sse.version_key(version)
        self.watchers.add(watcher)

    def leave(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        self.ahead.pop(watcher, None)
        if not self.watchers:
            self.idle_since = time.monotonic()

    async def _changes_after(self, version: str) -> list:
        """Every entry after ``version`` up to ``last_id``, read with the checks that
        ``version`` can be resumed from in one atomic call (``Reset`` if not): it is
        ``0-0`` and nothing was ever removed from the stream (or there is no stream), or
        its entry is still there, or it is the stream's last id."""
        pipe = self.hub.redis.pipeline(transaction=True)
        pipe.xinfo_stream(self.key)
        pipe.xrange(self.key, version, version)
        pipe.xrange(self.key, "(" + version, self.last_id)
        info, found, changes = await pipe.execute(raise_on_error=False)
        for answer in (found, changes):
            if isinstance(answer, Exception):
                raise answer
        if isinstance(info, redis.ResponseError):  # no such key: nothing happened, or Redis lost it
            if version == sse.NO_VERSION:
                return []
            raise Reset("the showtime's change stream is gone")
        if isinstance(info, Exception):
            raise info
        if found or version == info["last-generated-id"]:
            return changes
        # XTRIM/MAXLEN trimming does not move max-deleted-entry-id: entries-added counts it
        never_trimmed = info["entries-added"] == info["length"] and info["max-deleted-entry-id"] == sse.NO_VERSION
        if version == sse.NO_VERSION and never_trimmed:
            return changes
        raise Reset("the version is older than the changes kept")

    # -- fan-out ---------------------------------------------------------------------------
    def _frame(self, entry_id: str, fields: dict) -> sse.Frame | None:
        try:
            return sse.seats_event(self.showtime_id, entry_id, fields["seats"])
        except (KeyError, TypeError, ValueError):
            log.error("unreadable change stream entry skipped",
                      extra={"showtime_id": self.showtime_id, "entry_id": entry_id})
            return None

    def _queue_frame(self, entry_id: str, status_json: str | None) -> sse.Frame | None:
        try:
            return sse.queue_event(status_json)
        except (TypeError, ValueError):
            log.error("unreadable waiting-room status skipped",
                      extra={"showtime_id": self.showtime_id, "entry_id": entry_id})
            return None

    async def deliver(self, entries: list, statuses: list = ()) -> None:
        """Fan out what the reader read, in order: the seat changes ``entries``, then the
        waiting-room ``statuses``; waits for a watcher catching up. The changes of one
        read go to each watcher in one write (one chunk of several messages) unless a
        watcher must skip some of them: under load reads grow, and the writes per watcher
        stay one per read instead of one per change. The statuses of one read go in one
        write, to every watcher."""
        async with self.lock:
            frames = [(entry_id, self._frame(entry_id, fields)) for entry_id, fields in entries]
            ready = [(entry_id, frame) for entry_id, frame in frames if frame is not None]
            if len(ready) > 1 and not self.ahead:
                batch = sse.Frame(b"".join(frame.raw for _, frame in ready))
                self.broadcast(batch, sse.version_key(ready[-1][0]), changes=len(ready))
            else:
                for entry_id, frame in ready:
                    self.broadcast(frame, sse.version_key(entry_id))
            if entries:
                self.last_id = entries[-1][0]
            if statuses:
                self._deliver_statuses(statuses)

    def _deliver_statuses(self, statuses: list) -> None:
        frames = [frame for frame in (self._queue_frame(entry_id, fields.get("queue")) for entry_id, fields in statuses)
                  if frame is not None]
        self.queue_last_id = statuses[-1][0]
        if frames:
            self.queue_status = frames[-1]
            self.broadcast(frames[0] if len(frames) == 1 else sse.Frame(b"".join(frame.raw for frame in frames)))
            self.hub.metrics.queue_events_sent.inc(len(frames) * len(self.watchers))

    def broadcast(self, frame: sse.Frame, version: tuple[int, int] | None = None, changes: int = 1) -> None:
        """Write ``frame`` (``changes`` messages) to every watcher (but those that joined at
        ``version`` or later)."""
        started = time.perf_counter()
        skip = self._skipping(version) if self.ahead and version is not None else ()
        cut = []
        for watcher in self.watchers:
            if watcher not in skip and not watcher.send(frame):
                cut.append(watcher)
        for watcher in cut:
            self.leave(watcher)
        if version is not None:
            self.hub.metrics.delivered(changes * (len(self.watchers) - len(skip)), time.perf_counter() - started)

    def _skipping(self, version: tuple[int, int]) -> set[Watcher]:
        """The watchers already past ``version``; those it catches up with stop skipping."""
        skip = {watcher for watcher, joined_at in self.ahead.items() if joined_at >= version}
        self.ahead = {watcher: joined_at for watcher, joined_at in self.ahead.items() if joined_at > version}
        return skip


class Followers:
    """Every followed showtime's ``Follower``, and what they share: the settings, a Redis
    client for catch-up reads, the threads where the synchronous services run."""

    def __init__(self, deps: Marquee, settings: LiveSettings, metrics: "LiveMetrics", executor: Executor) -> None:
        self.deps = deps
        self.settings = settings
        self.metrics = metrics
        self.executor = executor
        self.by_showtime: dict[int, Follower] = {}
        self.redis = aioredis.Redis.from_url(deps.settings.redis_url, decode_responses=True,
                                             socket_timeout=5, socket_connect_timeout=2)

    def events_key(self, showtime_id: int) -> str:
        return self.deps.seats.events_key(showtime_id)

    def queue_key(self, showtime_id: int) -> str:
        """The showtime's waiting-room status stream (under the change stream's hash tag)."""
        return waiting_room_store.events_key(self.deps.redis, showtime_id)

    def reader_connection(self, showtime_id: int) -> aioredis.Redis:
        """A connection of the follower's own (a blocking XREAD holds it), named so that
        ``CLIENT LIST`` shows one reader per showtime."""
        return aioredis.Redis.from_url(
            self.deps.settings.redis_url, decode_responses=True, single_connection_client=True,
            client_name=f"marquee-live:{self.deps.settings.redis_prefix}st:{showtime_id}",
            socket_timeout=self.settings.read_block_ms / 1000 + 5, socket_connect_timeout=2)

    async def stream_info(self, key: str) -> dict | None:
        """XINFO STREAM of ``key``; None when there is no such stream."""
        try:
            return await self.redis.xinfo_stream(key)
        except redis.ResponseError:
            return None

    async def current_queue_status(self, showtime_id: int) -> tuple[str, str | None]:
        """Where to follow the waiting-room status stream from, and the current status
        (JSON; None without a waiting room): the stream's last entry, or the status the
        room last published when the stream holds none."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xrevrange(self.queue_key(showtime_id), count=1)
        pipe.hget(waiting_room_store.room_key(self.deps.redis, showtime_id), "published")
        last, published = await pipe.execute()
        if last:
            entry_id, fields = last[0]
            return entry_id, fields.get("queue")
        return sse.NO_VERSION, published

    @asynccontextmanager
    async def joining(self, showtime_id: int) -> AsyncIterator[Follower]:
        """The showtime's follower (started if need be; ``NotFound`` for an unknown
        showtime), kept from stopping while the block runs."""
        follower = self.by_showtime.get(showtime_id)
        if follower is None:
            follower = self.by_showtime[showtime_id] = Follower(self, showtime_id)
            follower.opened = asyncio.create_task(follower.open())
        follower.joining += 1
        try:
            await asyncio.shield(follower.opened)
            yield follower
        finally:
            follower.joining -= 1
            if not follower.watchers:
                follower.idle_since = time.monotonic()

    def forget(self, follower: Follower) -> None:
        if self.by_showtime.get(follower.showtime_id) is follower:
            del self.by_showtime[follower.showtime_id]

    @property
    def watcher_count(self) -> int:
        return sum(len(f.watchers) for f in self.by_showtime.values())

    # -- the synchronous services, in threads -----------------------------------------------
    def in_thread(self, fn: Callable, *args) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(self._call, fn, *args))

    def _call(self, fn: Callable, *args):
        with using(self.deps), db.scoped():
            return fn(*args)

    @staticmethod
    def snapshot_of(showtime_id: int) -> tuple[str, sse.Frame]:
        seat_map = seats.seat_map_snapshot(showtime_id)
        return seat_map["version"], sse.snapshot_event(seat_map)

    @staticmethod
    def expire_all(showtime_ids: list[int]) -> None:
        """Free the holds whose time is up on each showtime (the changes reach the streams)."""
        for showtime_id in showtime_ids:
            try:
                seats.expire_due(showtime_id)
            except Exception:  # noqa: BLE001 - one showtime's failure must not stop the others'
                log.warning("expiring holds failed", exc_info=True, extra={"showtime_id": showtime_id})

    # -- the periodic work ----------------------------------------------------------------
    async def expire_forever(self) -> None:
        """About every ``expire_seconds``: ``expire_all`` on the followed showtimes."""
        while True:
            await asyncio.sleep(self.settings.expire_seconds)
            if self.by_showtime:
                await self.in_thread(self.expire_all, list(self.by_showtime))

    async def heartbeat_forever(self) -> None:
        """Every ``heartbeat_seconds``: a comment to every watcher (and a slow one cut)."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            for follower in list(self.by_showtime.values()):
                follower.broadcast(sse.HEARTBEAT)

    async def close(self) -> None:
        for follower in list(self.by_showtime.values()):
            follower.close()
        readers = [f.reader for f in self.by_showtime.values() if f.reader is not None]
        await asyncio.gather(*readers, return_exceptions=True)
        self.by_showtime.clear()
        await self.redis.aclose()
