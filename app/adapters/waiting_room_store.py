"""A showtime's waiting room in Redis: the queue, the admissions, the sessions.

Every key carries the showtime's hash tag (``{st:<id>}:wr...``), so each script touches one
slot and the room runs unchanged on Redis Cluster (one showtime's room on one node; many
showtimes' rooms spread over the nodes). The scripts (``lua/wr_*.lua`` after
``lua/waiting_room.lua``) are the only writers; see the prelude for what each key holds.

Numbers come from one counter (``last``) that only grows, so none is given twice, even to a
room turned off and on again. Those who join before the opening are kept with a random
score (drawn here from ``secrets``) and get their numbers at the opening in score order: a
uniformly random permutation, whatever the order they arrived in. A client's position is
its number less the serving number: nothing per client is stored to answer it.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from app.adapters.redis_store import RedisStore

PARTS = ("pre", "ids", "entry", "num", "who", "ended", "active", "events", "recent")
ROOMS_INDEX = "waiting-rooms"  # the set of showtimes whose room is on (for the scheduler's reconciling)
LIVE_STATUSES = ("pre_queue", "waiting", "admitted")
ENDED_STATUSES = ("done", "left", "expired")
_RANDOM = secrets.SystemRandom()


def room_key(store: RedisStore, showtime_id: int) -> str:
    return store.showtime_key(showtime_id, "wr")


def active_key(store: RedisStore, showtime_id: int) -> str:
    return store.showtime_key(showtime_id, "wr", "active")


def events_key(store: RedisStore, showtime_id: int) -> str:
    return store.showtime_key(showtime_id, "wr", "events")


def new_entry_id(showtime_id: int) -> str:
    """Unguessable (64 random bits), and it names its showtime for the keys' hash tag."""
    return f"{showtime_id}.{secrets.token_hex(8)}"


def showtime_of_entry(entry_id: str) -> int | None:
    head, dot, tail = (entry_id or "").partition(".")
    if not dot or not head.isdigit() or len(head) > 18 or len(tail) != 16:
        return None
    try:
        int(tail, 16)
    except ValueError:
        return None
    return int(head) or None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Entry:
    id: str
    user_id: int
    status: str
    number: int | None
    admitted_until_ms: int | None
    serving: int
    admit_per_minute: int
    opens_at: str

    @classmethod
    def described(cls, entry_id: str, values) -> "Entry":
        """From what ``describe`` (waiting_room.lua) answers."""
        user, status, number, until, serving, rate, opens_at = (_text(v) for v in values)
        return cls(entry_id, int(user), status, int(number) if number else None, int(until) if until else None,
                   int(serving), int(rate), opens_at)


@dataclass(frozen=True)
class Tick:
    admitted: int
    expired: int
    active: int
    serving: int
    last: int
    published: bool


@dataclass(frozen=True)
class RoomStats:
    pre_queue: int
    waiting: int
    admitted: int  # sessions ever admitted
    active: int
    serving_number: int
    last_number: int
    admissions_last_minute: int
    expired: int
    done: int
    left: int
    joined: int
    status: dict  # the public status (as pushed on the stream)


class WaitingRoomStore:
    def __init__(self, store: RedisStore) -> None:
        self.store = store
        prelude = "waiting_room"
        self._configure = store.script("wr_configure", prelude=prelude)
        self._disable = store.script("wr_disable", prelude=prelude)
        self._join = store.script("wr_join", prelude=prelude)
        self._read = store.script("wr_read", prelude=prelude)
        self._end = store.script("wr_end", prelude=prelude)
        self._tick = store.script("wr_tick", prelude=prelude)
        self._stats = store.script("wr_stats", prelude=prelude)

    def keys(self, showtime_id: int) -> list[str]:
        return [room_key(self.store, showtime_id), *(self.store.showtime_key(showtime_id, "wr", p) for p in PARTS)]

    @property
    def index_key(self) -> str:
        return self.store.key(ROOMS_INDEX)

    # --- the admins' ---------------------------------------------------------------
    def configure(self, showtime_id: int, opens_at_ms: int, opens_at_iso: str, admit_per_minute: int,
                  max_active: int, session_ms: int, horizon_ms: int, *, publish: bool = True) -> bool:
        """Turn the room on (or change it); True if it was on already."""
        self.store.client.sadd(self.index_key, showtime_id)  # first: a room on is never missing from it
        return bool(int(self._configure(keys=self.keys(showtime_id), args=[
            showtime_id, opens_at_ms, opens_at_iso, admit_per_minute, max_active, session_ms, horizon_ms,
            "1" if publish else "0"])[0]))

    def disable(self, showtime_id: int) -> bool:
        was_on = bool(int(self._disable(keys=self.keys(showtime_id))))
        self.store.client.srem(self.index_key, showtime_id)
        return was_on

    def rooms_on(self) -> set[int]:
        """The showtimes whose room Redis has on."""
        return {int(m) for m in self.store.client.smembers(self.index_key)}

    # --- the customers' ------------------------------------------------------------
    def join(self, showtime_id: int, user_id: int) -> tuple[Entry, bool] | None:
        """``user_id``'s live entry, and whether it is new; None when the room is off."""
        result = self._join(keys=self.keys(showtime_id), args=[user_id, new_entry_id(showtime_id), _RANDOM.random()])
        if int(result[0]) < 0:
            return None
        return Entry.described(_text(result[1]), result[2:]), int(result[0]) == 1

    def entry(self, entry_id: str) -> Entry | None:
        showtime_id = showtime_of_entry(entry_id)
        if showtime_id is None:
            return None
        result = self._read(keys=self.keys(showtime_id), args=[entry_id])
        return Entry.described(entry_id, result) if result else None

    def end(self, showtime_id: int, user_id: int, how: str, entry_id: str = "") -> tuple[int, str | None]:
        """``how`` is ``done`` or ``left``: (1 ended now | 0 nothing to end | -1 no such
        entry, the status it had)."""
        result = self._end(keys=self.keys(showtime_id), args=[user_id, how, entry_id])
        return int(result[0]), (_text(result[1]) if len(result) > 1 else None)

    # --- the scheduler's and the operators' -----------------------------------------
    def tick(self, showtime_id: int) -> Tick:
        a, e, active, serving, last, published = (int(v) for v in self._tick(keys=self.keys(showtime_id)))
        return Tick(a, e, active, serving, last, bool(published))

    def stats(self, showtime_id: int) -> RoomStats:
        values = self._stats(keys=self.keys(showtime_id))
        return RoomStats(*(int(v) for v in values[:11]), status=json.loads(_text(values[11])))

    def public_status(self, showtime_id: int) -> dict | None:
        """The status last pushed (what ``event: queue`` carries); None if never set."""
        raw = self.store.client.hget(room_key(self.store, showtime_id), "published")
        return None if raw is None else json.loads(raw)

    def gate_keys(self, showtime_id: int) -> list[str]:
        return [room_key(self.store, showtime_id), active_key(self.store, showtime_id)]
