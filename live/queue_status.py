"""The waiting room's public status (``GET /api/v1/showtimes/{id}/queue/status``), served
by the live process from Redis alone, so that customers polling it while they wait cost
the app instances nothing.

The answer is the app's (``app.services.waiting_room.public_status``: the status the room
last published, without ``on``; 404 without a waiting room or with one turned off), and
the same for everyone, so it is read from Redis at most once a second per showtime
however many ask: an answer is reused for ``MAX_AGE_SECONDS`` from the moment its read
began, and the requests that come while a read is under way wait for that one read.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

if TYPE_CHECKING:  # pragma: no cover
    from live.metrics import LiveMetrics

MAX_AGE_SECONDS = 1.0
CACHE_CONTROL = b"public, max-age=1"  # as the app's (app/api/waiting_room.py)


def status_body(published: str | None) -> bytes | None:
    """The app's answer to the status the room last published; None for its 404."""
    status = None if published is None else json.loads(published)
    if not status or not status.pop("on", False):
        return None
    return json.dumps(status, sort_keys=True, separators=(",", ":")).encode() + b"\n"


class Status:
    """One read's answer: the body (None: no waiting room) and when the read began."""

    __slots__ = ("body", "read_at")

    def __init__(self, body: bytes | None, read_at: float) -> None:
        self.body, self.read_at = body, read_at


class QueueStatuses:
    """Each showtime's last answer, and the read under way for it, if any."""

    def __init__(self, client: aioredis.Redis, room_key: Callable[[int], str], metrics: "LiveMetrics",
                 max_age: float = MAX_AGE_SECONDS) -> None:
        self.client = client
        self.room_key = room_key
        self.metrics = metrics
        self.max_age = max_age
        self.by_showtime: dict[int, Status] = {}
        self.reading: dict[int, asyncio.Future] = {}
        self.pruned_at = time.monotonic()

    def fresh(self, showtime_id: int) -> Status | None:
        """The showtime's answer if it is young enough to be given again, else None."""
        status = self.by_showtime.get(showtime_id)
        if status is not None and time.monotonic() - status.read_at < self.max_age:
            return status
        return None

    async def get(self, showtime_id: int) -> Status:
        """The fresh answer, or the one read under way (started if need be)."""
        status = self.fresh(showtime_id)
        if status is not None:
            return status
        pending = self.reading.get(showtime_id)
        if pending is None:
            pending = self.reading[showtime_id] = asyncio.ensure_future(self._read(showtime_id))

            def done(_future) -> None:
                if self.reading.get(showtime_id) is pending:
                    del self.reading[showtime_id]
            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    async def _read(self, showtime_id: int) -> Status:
        read_at = time.monotonic()
        self.metrics.queue_status_reads.inc()
        published = await self.client.hget(self.room_key(showtime_id), "published")
        status = Status(status_body(published), read_at)
        self._prune(read_at)
        self.by_showtime[showtime_id] = status
        return status

    def _prune(self, now: float) -> None:
        """About once per ``max_age``, forget the answers too old to be given again: only
        the showtimes asked about lately are kept, whatever ids clients try."""
        if now - self.pruned_at < self.max_age:
            return
        self.pruned_at = now
        self.by_showtime = {showtime_id: status for showtime_id, status in self.by_showtime.items()
                            if now - status.read_at < self.max_age}
