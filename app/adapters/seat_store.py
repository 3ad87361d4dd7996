"""Seat holds in Redis: cheap, atomic contention in front of PostgreSQL.

Keys of one showtime share the hash tag ``{st:<id>}`` (Redis Cluster-ready):

- ``{st:S}:seat:<seat id>``  owner of a taken seat (a ``SeatOwner`` token: ``h:<hold id>`` or
                              ``r:<reservation id>``), with a TTL
- ``{st:S}:hold:<hold id>``  the hold: user, seats (JSON), expires_at, state (``HoldState``)
- ``{st:S}:user:<user id>``  the user's live hold on this showtime
- ``{st:S}:synced``          Redis knows every live reservation seat of S (see ``sync``)

and, outside any showtime's hash tag (never touched by a script):

- ``user:<user id>:holds``   the user's holds (sorted set: hold id by expiry, epoch ms), written
                              after the hold script; an index only: a listing checks each hold
                              still exists and is the user's (``holds_of``)

Every key has a TTL, so nothing here can stay stuck; and nothing here is the
final word: PostgreSQL's unique index on live reservation seats is.

Owner tokens are made and read only here (``SeatOwner``); the Lua scripts take
them as arguments. What a script answers is named here too (``HoldOutcome``,
``ClaimOutcome``), beside the script's adapter.
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from app.adapters.redis_store import RedisStore

HOLD_ID = re.compile(r"^(\d{1,18})\.([0-9a-f]{32})$")


class HoldState(StrEnum):
    HELD = "held"  # the customer's, for HOLD_TTL_SECONDS
    CLAIMED = "claimed"  # being turned into a reservation


class HoldOutcome(IntEnum):
    """First element of ``hold_seats.lua``'s answer."""

    HELD = 1
    TAKEN = 0  # hold_seats: the positions of the taken seats follow; hold_best: no placement exists
    ALREADY_HOLDING = -1  # the user's live hold id follows
    NEEDS_SYNC = -2  # Redis lost this showtime's booked seats: rebuild, then retry
    ORPHAN = -3  # hold_seats with the orphan rule: the positions of the seats it would strand follow


class ClaimOutcome(IntEnum):
    """What ``claim_hold.lua`` answers."""

    CLAIMED = 1
    LOST = 0  # expired, or a seat no longer belongs to it
    NOT_OWNER = -1  # another user's hold
    ALREADY_CLAIMED = -2


@dataclass(frozen=True)
class SeatOwner:
    """Who holds a seat key: a hold (``h:<hold id>``), a reservation (``r:<id>``) or an
    admin's block (``b:``)."""

    kind: str  # "hold" | "reservation" | "blocked"
    ref: str

    HOLD_PREFIX = "h:"
    RESERVATION_PREFIX = "r:"
    BLOCKED = "b:"

    @classmethod
    def hold(cls, hold_id: str) -> "SeatOwner":
        return cls("hold", hold_id)

    @classmethod
    def reservation(cls, reservation_id: int) -> "SeatOwner":
        return cls("reservation", str(reservation_id))

    @classmethod
    def blocked(cls) -> "SeatOwner":
        return cls("blocked", "")

    @classmethod
    def parse(cls, token: str) -> "SeatOwner | None":
        """The owner named by a seat key's value; None for a value no one writes."""
        if token == cls.BLOCKED:
            return cls.blocked()
        if token.startswith(cls.HOLD_PREFIX):
            return cls("hold", token[len(cls.HOLD_PREFIX):])
        if token.startswith(cls.RESERVATION_PREFIX) and token[len(cls.RESERVATION_PREFIX):].isdigit():
            return cls("reservation", token[len(cls.RESERVATION_PREFIX):])
        return None

    @property
    def token(self) -> str:
        if self.kind == "blocked":
            return self.BLOCKED
        return (self.HOLD_PREFIX if self.kind == "hold" else self.RESERVATION_PREFIX) + self.ref

    @property
    def reservation_id(self) -> int | None:
        return int(self.ref) if self.kind == "reservation" else None

    @property
    def hold_id(self) -> str | None:
        return self.ref if self.kind == "hold" else None


@dataclass(frozen=True)
class Hold:
    id: str
    showtime_id: int
    user_id: int
    seat_ids: list[int]
    expires_at: str
    state: str


@dataclass(frozen=True)
class HoldResult:
    held: bool
    taken: list[int]  # seats someone else has (when not held)
    live_hold_id: str | None = None  # the user's existing hold (when not held)
    needs_sync: bool = False  # Redis lost this showtime's booked seats: rebuild first
    stranded: list[int] | None = None  # seats the hold would leave alone (orphan rule; when not held)


def new_hold_id(showtime_id: int) -> str:
    """Unguessable (128 random bits), and it names its showtime for the key's hash tag."""
    return f"{showtime_id}.{secrets.token_hex(16)}"


def showtime_of(hold_id: str) -> int | None:
    match = HOLD_ID.match(hold_id or "")
    return int(match.group(1)) if match else None


def reservation_owner(reservation_id: int) -> str:
    return SeatOwner.reservation(reservation_id).token


def _parse_hold(hold_id: str, showtime_id: int, raw: dict) -> Hold | None:
    if not raw:
        return None
    data = {k.decode(): v.decode() for k, v in raw.items()}
    return Hold(hold_id, showtime_id, int(data["user"]), json.loads(data["seats"]),
                data["expires_at"], data["state"])


class SeatStore:
    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._hold = store.script("hold_seats")
        self._release = store.script("release_hold")
        self._claim = store.script("claim_hold")
        self._bind = store.script("bind_reservation")
        self._set_owner = store.script("set_owner")
        self._sync = store.script("sync_seats")
        self._hold_best = store.script("hold_best")
        self._block = store.script("block_seats")

    # --- keys -------------------------------------------------------------------
    def seat_key(self, showtime_id: int, seat_id: int) -> str:
        return self.store.showtime_key(showtime_id, "seat", seat_id)

    def hold_key(self, showtime_id: int, hold_id: str) -> str:
        return self.store.showtime_key(showtime_id, "hold", hold_id)

    def user_key(self, showtime_id: int, user_id: int) -> str:
        return self.store.showtime_key(showtime_id, "user", user_id)

    def synced_key(self, showtime_id: int) -> str:
        return self.store.showtime_key(showtime_id, "synced")

    def _seat_keys(self, showtime_id: int, seat_ids) -> list[str]:
        return [self.seat_key(showtime_id, s) for s in seat_ids]

    # --- holds ------------------------------------------------------------------
    def hold(self, showtime_id: int, user_id: int, seat_ids: list[int], ttl_ms: int,
             expires_at: datetime, *, unsynced_ok: bool = False,
             rows: dict[int, tuple[int, int]] | None = None) -> tuple[str, HoldResult]:
        """Take all of ``seat_ids`` for a new hold of ``user_id``, or none.

        ``unsynced_ok``: decide even if Redis may have lost booked seats; the
        caller must then check them against PostgreSQL itself. ``rows``: with the
        orphan rule, ``{seat id: (x, y)}`` of every seat of the rows the request is
        in (requested ones included); a hold that would strand a seat is refused
        (``HoldResult.stranded``)."""
        hold_id = new_hold_id(showtime_id)
        context = [s for s in rows if s not in set(seat_ids)] if rows else []
        geometry = "".join(f"{rows[s][0]},{rows[s][1]};" for s in [*seat_ids, *context]) if rows else ""
        keys = [self.user_key(showtime_id, user_id), self.hold_key(showtime_id, hold_id),
                self.synced_key(showtime_id), *self._seat_keys(showtime_id, [*seat_ids, *context])]
        result = self._hold(keys=keys, args=[hold_id, ttl_ms, user_id, json.dumps(seat_ids),
                                             expires_at.isoformat(), "1" if unsynced_ok else "0",
                                             SeatOwner.hold(hold_id).token, geometry, len(seat_ids)])
        outcome = HoldOutcome(int(result[0]))
        if outcome is HoldOutcome.ORPHAN:
            everything = [*seat_ids, *context]
            return hold_id, HoldResult(False, [], stranded=[everything[int(i) - 1] for i in result[1:]])
        if outcome is HoldOutcome.HELD:
            return hold_id, HoldResult(True, [])
        if outcome is HoldOutcome.NEEDS_SYNC:
            return hold_id, HoldResult(False, [], needs_sync=True)
        if outcome is HoldOutcome.ALREADY_HOLDING:
            existing = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
            return hold_id, HoldResult(False, [], live_hold_id=existing)
        return hold_id, HoldResult(False, [seat_ids[int(i) - 1] for i in result[1:]])

    def hold_best(self, showtime_id: int, user_id: int, seats: list[tuple[int, int, int, bool]], n: int,
                  focal6: tuple[int, int], ttl_ms: int, expires_at: datetime, *, max_rows: int = 3,
                  unsynced_ok: bool = False) -> tuple[str, HoldResult, list[int]]:
        """Choose ``n`` seats by the best-available rules and hold them, in one script.

        ``seats``: every seat of the screen as (id, x, y, may the party sit there), in row
        then position order; ``focal6``: the focal point in sixths of a seat. Returns the
        hold id, the outcome, and the chosen seats (empty when none could be placed)."""
        hold_id = new_hold_id(showtime_id)
        keys = [self.user_key(showtime_id, user_id), self.hold_key(showtime_id, hold_id),
                self.synced_key(showtime_id), *self._seat_keys(showtime_id, [s[0] for s in seats])]
        packed = "".join(f"{sid},{x},{y},{1 if eligible else 0};" for sid, x, y, eligible in seats)
        result = self._hold_best(keys=keys, args=[hold_id, ttl_ms, user_id, expires_at.isoformat(),
                                                  "1" if unsynced_ok else "0", SeatOwner.hold(hold_id).token,
                                                  n, focal6[0], focal6[1], max_rows, packed])
        outcome = HoldOutcome(int(result[0]))
        if outcome is HoldOutcome.HELD:
            return hold_id, HoldResult(True, []), [int(s) for s in result[1:]]
        if outcome is HoldOutcome.NEEDS_SYNC:
            return hold_id, HoldResult(False, [], needs_sync=True), []
        if outcome is HoldOutcome.ALREADY_HOLDING:
            existing = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
            return hold_id, HoldResult(False, [], live_hold_id=existing), []
        return hold_id, HoldResult(False, []), []  # no placement: nothing was taken

    def get_hold(self, hold_id: str) -> Hold | None:
        showtime_id = showtime_of(hold_id)
        if showtime_id is None:
            return None
        return _parse_hold(hold_id, showtime_id, self.store.client.hgetall(self.hold_key(showtime_id, hold_id)))

    def release(self, hold: Hold) -> bool:
        keys = [self.hold_key(hold.showtime_id, hold.id), self.user_key(hold.showtime_id, hold.user_id),
                *self._seat_keys(hold.showtime_id, hold.seat_ids)]
        return bool(self._release(keys=keys, args=[hold.id, hold.user_id, SeatOwner.hold(hold.id).token]))

    def claim(self, hold: Hold, user_id: int, ttl_ms: int) -> ClaimOutcome:
        keys = [self.hold_key(hold.showtime_id, hold.id), *self._seat_keys(hold.showtime_id, hold.seat_ids)]
        return ClaimOutcome(int(self._claim(keys=keys, args=[hold.id, user_id, ttl_ms,
                                                             SeatOwner.hold(hold.id).token])))

    def bind_reservation(self, hold: Hold, reservation_id: int, ttl_ms: int) -> int:
        keys = [self.hold_key(hold.showtime_id, hold.id), self.user_key(hold.showtime_id, hold.user_id),
                *self._seat_keys(hold.showtime_id, hold.seat_ids)]
        return int(self._bind(keys=keys, args=[hold.id, reservation_owner(reservation_id), ttl_ms,
                                               SeatOwner.hold(hold.id).token]))

    # --- blocked seats -----------------------------------------------------------
    def block(self, showtime_id: int, seat_ids: list[int], ttl_ms: int) -> HoldResult:
        """Mark all of ``seat_ids`` blocked, or none (``HoldResult.taken``: those someone has)."""
        result = self._block(keys=[self.synced_key(showtime_id), *self._seat_keys(showtime_id, seat_ids)],
                             args=[SeatOwner.blocked().token, ttl_ms])
        outcome = HoldOutcome(int(result[0]))
        if outcome is HoldOutcome.NEEDS_SYNC:
            return HoldResult(False, [], needs_sync=True)
        return HoldResult(outcome is HoldOutcome.HELD, [seat_ids[int(i) - 1] for i in result[1:]])

    def unblock(self, showtime_id: int, seat_ids: list[int]) -> int:
        return self.free_owner(showtime_id, seat_ids, SeatOwner.blocked().token)

    # --- reservations ---------------------------------------------------------
    def keep_for_reservation(self, showtime_id: int, seat_ids, reservation_id: int, ttl_ms: int) -> int:
        """Refresh the reservation's seats' TTL (they stay its own)."""
        owner = reservation_owner(reservation_id)
        return int(self._set_owner(keys=self._seat_keys(showtime_id, seat_ids), args=[owner, owner, ttl_ms]))

    def free_reservation(self, showtime_id: int, seat_ids, reservation_id: int) -> int:
        """Free the seats the reservation still owns (others' are left alone)."""
        return self.free_owner(showtime_id, seat_ids, reservation_owner(reservation_id))

    def free_owner(self, showtime_id: int, seat_ids, owner: str) -> int:
        return int(self._set_owner(keys=self._seat_keys(showtime_id, seat_ids), args=[owner, "", 0]))

    def sync(self, showtime_id: int, owners: list[tuple[int, str, int]], marker_ttl_seconds: int) -> int:
        """Set (seat id, owner token, TTL ms) where the seat key is missing; mark synced."""
        keys = [self.synced_key(showtime_id), *self._seat_keys(showtime_id, [o[0] for o in owners])]
        args: list = [marker_ttl_seconds]
        for _, owner, ttl_ms in owners:
            args += [owner, max(int(ttl_ms), 1)]
        return int(self._sync(keys=keys, args=args))

    # --- reads ------------------------------------------------------------------
    def owners(self, showtime_id: int, seat_ids: list[int]) -> dict[int, str]:
        """Current owner token of each taken seat among ``seat_ids`` (one MGET);
        ``SeatOwner.parse`` reads one."""
        if not seat_ids:
            return {}
        values = self.store.client.mget(self._seat_keys(showtime_id, seat_ids))
        return {sid: v.decode() for sid, v in zip(seat_ids, values, strict=True) if v is not None}

    def owners_of_showtimes(self, seat_ids_by_showtime: dict[int, list[int]]) -> dict[int, set[int]]:
        """The taken seats of several showtimes: one MGET per showtime (each within
        its hash tag), all in one pipelined round trip."""
        wanted = [(sid, ids) for sid, ids in seat_ids_by_showtime.items() if ids]
        if not wanted:
            return {}
        pipe = self.store.client.pipeline(transaction=False)
        for showtime_id, ids in wanted:
            pipe.mget(self._seat_keys(showtime_id, ids))
        return {showtime_id: {seat for seat, v in zip(ids, values, strict=True) if v is not None}
                for (showtime_id, ids), values in zip(wanted, pipe.execute(), strict=True)}

    # --- the user's index of holds ---------------------------------------------
    def user_holds_key(self, user_id: int) -> str:
        return self.store.key("user", user_id, "holds")

    def index_hold(self, user_id: int, hold_id: str, expires_at: datetime, memory_seconds: int) -> None:
        """Note a new hold in its user's index (after the hold script: the index
        lives outside the showtime's hash tag). Entries are kept ``memory_seconds``
        past their expiry, so that "this hold existed and ended" can be told from
        "no such hold"; older ones are trimmed here."""
        key = self.user_holds_key(user_id)
        expires_ms = int(expires_at.timestamp() * 1000)
        now_ms = int(datetime.now(expires_at.tzinfo).timestamp() * 1000)
        pipe = self.store.client.pipeline(transaction=False)
        pipe.zadd(key, {hold_id: expires_ms})
        pipe.zremrangebyscore(key, "-inf", now_ms - memory_seconds * 1000)
        pipe.pexpire(key, max(expires_ms - now_ms, 0) + memory_seconds * 1000, gt=True)
        pipe.pexpire(key, max(expires_ms - now_ms, 0) + memory_seconds * 1000, nx=True)
        pipe.execute()

    def holds_of(self, user_id: int, now: datetime, memory_seconds: int) -> list[Hold]:
        """The user's live holds, latest expiry first. Index entries past their
        expiry are left out (and trimmed once past ``memory_seconds``); every
        other entry is checked against the hold itself, which must still exist
        and be this user's."""
        key = self.user_holds_key(user_id)
        now_ms = int(now.timestamp() * 1000)
        pipe = self.store.client.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", now_ms - memory_seconds * 1000)
        pipe.zrevrangebyscore(key, "+inf", now_ms)
        candidates = [(m.decode(), showtime_of(m.decode())) for m in pipe.execute()[1]]
        candidates = [(hold_id, showtime_id) for hold_id, showtime_id in candidates if showtime_id is not None]
        if not candidates:
            return []
        pipe = self.store.client.pipeline(transaction=False)
        for hold_id, showtime_id in candidates:
            pipe.hgetall(self.hold_key(showtime_id, hold_id))
        holds = [_parse_hold(hold_id, showtime_id, raw)
                 for (hold_id, showtime_id), raw in zip(candidates, pipe.execute(), strict=True)]
        return [h for h in holds if h is not None and h.user_id == user_id]

    def hold_was_made_by(self, user_id: int, hold_id: str) -> bool:
        """Whether the user's index knows this hold (made within the memory window)."""
        return self.store.client.zscore(self.user_holds_key(user_id), hold_id) is not None

    def hold_exists(self, showtime_id: int, hold_id: str) -> bool:
        return bool(self.store.client.exists(self.hold_key(showtime_id, hold_id)))

    def scan_seat_keys(self, count: int = 1000):
        """Every seat key of every showtime as (showtime id, seat id). For the sweep."""
        prefix_len = len(self.store.prefix)
        for raw in self.store.client.scan_iter(match=self.store.key("{st:*}:seat:*"), count=count):
            rest = raw.decode()[prefix_len:]  # "{st:42}:seat:17"
            yield int(rest[4:rest.index("}")]), int(rest.rsplit(":", 1)[1])
