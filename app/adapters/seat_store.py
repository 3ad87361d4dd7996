"""Seat holds in Redis: cheap, atomic contention in front of PostgreSQL.

A showtime's seats are three keys read in one call each, whatever the size of the room
(a 5,000-seat room is one 5 KB string, not 5,000 keys); seat *i* is the i-th seat of the
screen in row then position order (a ``Room``). Keys of one showtime share the hash tag
``{st:S}`` (Redis Cluster-ready), and carry the room's layout version ``V`` (a layout
edit gives new keys; the old ones end with their TTL):

- ``{st:S}:v:V:state``   one byte per seat: ``h`` a hold's, ``r`` a reservation's awaiting
                          payment, ``c`` a confirmed one's, ``b`` blocked; anything else is free
- ``{st:S}:v:V:owner``   hash: seat index -> owner token (``SeatOwner``)
- ``{st:S}:v:V:expiry``  sorted set: ``index:seat id`` by the epoch ms its owner's time is up
- ``{st:S}:v:V:synced``  Redis knows every live reservation and blocked seat of S (``sync``)
- ``{st:S}:events``       the change stream (a Redis Stream, about 10,000 entries kept): every
                          script that changes a seat's status appends the change in the same
                          call, ``seats`` = JSON ``[{"id", "status"}]``; its entry ids are the
                          seat map's versions (DESIGN.md, invariant 9)
- ``{st:S}:hold:<id>``    the hold: user, seats (JSON), their indices, the layout version,
                          expires_at, state (``HoldState``), and its prices fixed when it took its
                          seats: each seat's (``prices``), the currency (``cur``), and the
                          occupancy they followed (``occ`` of ``cap`` sellable seats taken)
- ``{st:S}:user:<id>``    the user's live hold on this showtime

Expiry is lazy (Redis 7.0 has no per-field TTL): every script first frees the seats whose
time is up (``seat_state.lua``), so a hold ends on its own at its expiry with no
scheduler, and each key lives as long as its longest-lived seat. Outside any showtime's
hash tag (never touched by a script):

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
import zlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from app.adapters.redis_store import RedisStore
from app.adapters.waiting_room_store import active_key, room_key

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
    NOT_ADMITTED = -4  # the waiting room is on and the user has no live admission


class ReleaseOutcome(IntEnum):
    """What ``release_hold.lua`` answers when asked by the hold's owner (``release_own``)."""

    RELEASED = 1
    NOT_FOUND = 0  # no such live hold of this user
    IN_USE = -1  # being turned into a reservation
    OTHER_LAYOUT = -2  # held on seat keys of another layout version: release it by its record


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


class Room:
    """A screen's seats as the scripts see them: seat ``i`` (1-based) is the i-th in row
    then position order. Built once per layout (``SeatStore.room`` keeps the latest ones)
    with what every script call needs already packed."""

    __slots__ = ("ids", "index", "places", "version", "segments", "_row_segments", "packed_ids", "width",
                 "categories", "_classes", "kinds", "codes")

    def __init__(self, seats: Iterable[tuple[int, int, int, str]]) -> None:
        """``seats``: (id, x, y, category) in row then position order."""
        seats = list(seats)
        self.ids = [s[0] for s in seats]
        self.index = {seat_id: i for i, seat_id in enumerate(self.ids, 1)}
        self.places = {seat_id: (x, y) for seat_id, x, y, _ in seats}
        self.categories = [s[3] for s in seats]
        self.version = f"{zlib.crc32(','.join(map(str, self.ids)).encode()):08x}"
        self._row_segments: dict[int, list[str]] = {}
        first = 1
        for i in range(1, len(seats) + 1):  # a segment: consecutive positions of one row
            if i == len(seats) or seats[i][2] != seats[i - 1][2] or seats[i][1] != seats[i - 1][1] + 1:
                _, x0, y, _ = seats[first - 1]
                self._row_segments.setdefault(y, []).append(f"{first},{i - first + 1},{x0},{y};")
                first = i + 1
        self.segments = "".join("".join(parts) for parts in self._row_segments.values())
        self.width = max((len(str(i)) for i in self.ids), default=1)
        self.packed_ids = "".join(str(i).rjust(self.width, "0") for i in self.ids)
        self._classes: dict[tuple, str] = {}
        # the categories in a fixed order, and each seat's as one byte ('A' the first) for the
        # hold scripts' prices (``HoldPricing.tiers_arg``)
        self.kinds = sorted(set(self.categories))
        self.codes = "".join(chr(65 + self.kinds.index(c)) for c in self.categories)

    def indices(self, seat_ids: Iterable[int]) -> list[int]:
        return [self.index[s] for s in seat_ids]

    def rows_of(self, seat_ids: Iterable[int]) -> str:
        """The segments of the rows ``seat_ids`` are in (for the orphan rule)."""
        return "".join("".join(self._row_segments[y]) for y in sorted({self.places[s][1] for s in seat_ids}))

    def classes(self, key: Hashable, eligible: Callable[[str], str]) -> str:
        """One byte per seat for ``hold_best.lua``: ``eligible(category)`` answers ``s``
        (the party may sit there), ``w`` (a wheelchair space), ``c`` (a companion seat)
        or ``x`` (not). Kept by ``key``, which names ``eligible``'s rule."""
        if key not in self._classes:
            by_category = {c: eligible(c) for c in set(self.categories)}
            self._classes[key] = "".join(by_category[c] for c in self.categories)
        return self._classes[key]


@dataclass(frozen=True)
class HoldPricing:
    """What a hold script needs to fix a hold's prices in the step that takes its seats:
    ``tiers`` is ``[(occupancy percent, {category: price})]``, ascending, the first at 0;
    the tier a hold pays is the last whose percent the occupancy it sees reaches."""

    tiers: list[tuple[int, dict[str, int]]]
    currency: str

    def tiers_arg(self, room: Room) -> str:
        return "".join(f"{pct}={','.join(str(prices.get(k, 0)) for k in room.kinds)};" for pct, prices in self.tiers)


NO_PRICING = HoldPricing([], "")


@dataclass(frozen=True)
class Hold:
    id: str
    showtime_id: int
    user_id: int
    seat_ids: list[int]
    expires_at: str
    state: str
    indices: tuple[int, ...] = ()  # the seats' indices in the room of ``version``
    version: str = ""
    prices: tuple[int, ...] = ()  # each seat's price, fixed when the hold took it (empty: an older hold)
    currency: str = ""
    occupied: int | None = None  # seats taken (of ``capacity`` sellable ones) when the hold took its own
    capacity: int | None = None

    @property
    def total_cents(self) -> int | None:
        return sum(self.prices) if self.prices else None


@dataclass(frozen=True)
class HoldResult:
    held: bool
    taken: list[int]  # seats someone else has (when not held)
    live_hold_id: str | None = None  # the user's existing hold (when not held)
    needs_sync: bool = False  # Redis lost this showtime's booked seats: rebuild first
    stranded: list[int] | None = None  # seats the hold would leave alone (orphan rule; when not held)
    not_admitted: bool = False  # the waiting room's gate refused it
    occupied: int | None = None  # when held: seats taken before it, of ``capacity`` sellable ones
    capacity: int | None = None
    prices: tuple[int, ...] = ()  # when held: each seat's price, as the script fixed it


# The waiting room's gate, as a hold script takes it (``refused_before_taking`` in seat_state.lua)
GATE_NOT_ASKED = "-"  # the system's own holds (waitlist offers): no admission asked
GATE_TOKEN = "1"  # the caller showed a valid admission token: the session must be live
GATE_NO_TOKEN = "0"  # no (valid) token: refused while the room is on


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
    return Hold(hold_id, showtime_id, int(data["user"]), json.loads(data["seats"]), data["expires_at"],
                data["state"], tuple(int(i) for i in data.get("idx", "").split(",") if i), data.get("ver", ""),
                _prices(data.get("prices", "")), data.get("cur", ""),
                int(data["occ"]) if "occ" in data else None, int(data["cap"]) if "cap" in data else None)


def _prices(packed) -> tuple[int, ...]:
    return tuple(int(p) for p in _text(packed).split(",") if p)


def _held(result) -> HoldResult:
    """A hold script's answer when held: {1, occupied, capacity, prices, ...}."""
    return HoldResult(True, [], occupied=int(result[1]), capacity=int(result[2]), prices=_prices(result[3]))


def _csv(numbers: Iterable[int]) -> str:
    return ",".join(map(str, numbers))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# the state bytes as the seat map says them
STATUSES = {ord("h"): "held", ord("r"): "held", ord("c"): "booked", ord("b"): "blocked"}
# the state byte of each kind of owner (a reservation's turns "c" when it is confirmed)
KINDS = {SeatOwner.HOLD_PREFIX: "h", SeatOwner.RESERVATION_PREFIX: "r", SeatOwner.BLOCKED: "b"}


def _kind(token: str) -> str:
    return KINDS[token[:2]]


@dataclass(frozen=True)
class SeatsNow:
    """What ``read_seats.lua`` answers: whether Redis knows the showtime's booked seats,
    the state of each taken seat, the version (change stream position) it reflects, and
    (when asked) the owners."""

    synced: bool
    statuses: dict[int, str]
    version: str
    owners: dict[int, str]


class SeatStore:
    ROOMS_KEPT = 256  # rooms (layouts) kept built in this process

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        prelude = "seat_state"
        self._hold = store.script("hold_seats", prelude=prelude)
        self._release = store.script("release_hold", prelude=prelude)
        self._claim = store.script("claim_hold", prelude=prelude)
        self._bind = store.script("bind_reservation", prelude=prelude)
        self._set_owner = store.script("set_owner", prelude=prelude)
        self._sync = store.script("sync_seats", prelude=prelude)
        self._hold_best = store.script("hold_best", prelude=prelude)
        self._block = store.script("block_seats", prelude=prelude)
        self._read = store.script("read_seats", prelude=prelude)
        self._rooms: dict[tuple, Room] = {}

    def room(self, key: tuple, seats: Callable[[], Iterable[tuple[int, int, int, str]]]) -> Room:
        """The ``Room`` known by ``key`` (anything that changes with the layout), built
        from ``seats()`` the first time."""
        room = self._rooms.get(key)
        if room is None:
            if len(self._rooms) >= self.ROOMS_KEPT:
                self._rooms.pop(next(iter(self._rooms)))
            room = self._rooms[key] = Room(seats())
        return room

    # --- keys -------------------------------------------------------------------
    def seat_keys(self, showtime_id: int, version: str) -> list[str]:
        """state, owner, expiry, synced, events: ``KEYS[1..5]`` of every seat script."""
        return [*(self.store.showtime_key(showtime_id, "v", version, part) for part in ("state", "owner", "expiry", "synced")),
                self.events_key(showtime_id)]

    def events_key(self, showtime_id: int) -> str:
        """The showtime's change stream (whatever its layout version)."""
        return self.store.showtime_key(showtime_id, "events")

    def hold_key(self, showtime_id: int, hold_id: str) -> str:
        return self.store.showtime_key(showtime_id, "hold", hold_id)

    def user_key(self, showtime_id: int, user_id: int) -> str:
        return self.store.showtime_key(showtime_id, "user", user_id)

    # --- holds ------------------------------------------------------------------
    def _hold_keys(self, showtime_id: int, room: Room, user_id: int, hold_id: str) -> list[str]:
        """KEYS of hold_seats.lua and hold_best.lua: the seats', the user's live hold, the
        hold's record, the waiting room's gate."""
        return [*self.seat_keys(showtime_id, room.version), self.user_key(showtime_id, user_id),
                self.hold_key(showtime_id, hold_id), room_key(self.store, showtime_id),
                active_key(self.store, showtime_id)]

    def hold(self, showtime_id: int, room: Room, user_id: int, seat_ids: list[int], ttl_ms: int,
             expires_at: datetime, *, unsynced_ok: bool = False, orphan_rule: bool = False,
             gate: str = GATE_NOT_ASKED, pricing: HoldPricing = NO_PRICING) -> tuple[str, HoldResult]:
        """Take all of ``seat_ids`` for a new hold of ``user_id``, or none.

        ``unsynced_ok``: decide even if Redis may have lost booked seats; the
        caller must then check them against PostgreSQL itself. ``orphan_rule``: a
        hold that would strand a seat is refused (``HoldResult.stranded``).
        ``gate``: the waiting room's (``GATE_*``), checked in the same step. ``pricing``: the
        hold's prices follow the occupancy the script sees as it takes the seats."""
        hold_id = new_hold_id(showtime_id)
        wanted = room.indices(seat_ids)
        keys = self._hold_keys(showtime_id, room, user_id, hold_id)
        result = self._hold(keys=keys, args=[hold_id, ttl_ms, user_id, json.dumps(seat_ids), expires_at.isoformat(),
                                             "1" if unsynced_ok else "0", SeatOwner.hold(hold_id).token,
                                             _csv(wanted), room.rows_of(seat_ids) if orphan_rule else "",
                                             room.version, gate, pricing.tiers_arg(room), room.codes,
                                             len(room.ids), pricing.currency])
        outcome = HoldOutcome(int(result[0]))
        if outcome is HoldOutcome.NOT_ADMITTED:
            return hold_id, HoldResult(False, [], not_admitted=True)
        if outcome is HoldOutcome.ORPHAN:
            return hold_id, HoldResult(False, [], stranded=[room.ids[int(i) - 1] for i in result[1:]])
        if outcome is HoldOutcome.HELD:
            return hold_id, _held(result)
        if outcome is HoldOutcome.NEEDS_SYNC:
            return hold_id, HoldResult(False, [], needs_sync=True)
        if outcome is HoldOutcome.ALREADY_HOLDING:
            return hold_id, HoldResult(False, [], live_hold_id=_text(result[1]))
        return hold_id, HoldResult(False, [seat_ids[int(i) - 1] for i in result[1:]])

    def hold_best(self, showtime_id: int, room: Room, user_id: int, classes: str, n: int, focal6: tuple[int, int],
                  ttl_ms: int, expires_at: datetime, *, accessible: int = 0, max_rows: int = 3,
                  unsynced_ok: bool = False, gate: str = GATE_NOT_ASKED,
                  pricing: HoldPricing = NO_PRICING) -> tuple[str, HoldResult, list[int]]:
        """Choose ``n`` seats by the best-available rules and hold them, in one script.

        ``classes``: ``room.classes(...)``, where the party may sit; ``focal6``: the focal
        point in sixths of a seat; ``accessible``: the wheelchair spaces the party needs.
        Returns the hold id, the outcome, and the chosen seats (empty when none could be placed)."""
        hold_id = new_hold_id(showtime_id)
        keys = self._hold_keys(showtime_id, room, user_id, hold_id)
        result = self._hold_best(keys=keys, args=[
            hold_id, ttl_ms, user_id, expires_at.isoformat(), "1" if unsynced_ok else "0",
            SeatOwner.hold(hold_id).token, n, focal6[0], focal6[1], max_rows, room.segments, classes, accessible,
            room.packed_ids, room.width, room.version, gate, pricing.tiers_arg(room), room.codes, len(room.ids),
            pricing.currency])
        outcome = HoldOutcome(int(result[0]))
        if outcome is HoldOutcome.NOT_ADMITTED:
            return hold_id, HoldResult(False, [], not_admitted=True), []
        if outcome is HoldOutcome.HELD:
            return hold_id, _held(result), [int(s) for s in result[4:]]
        if outcome is HoldOutcome.NEEDS_SYNC:
            return hold_id, HoldResult(False, [], needs_sync=True), []
        if outcome is HoldOutcome.ALREADY_HOLDING:
            return hold_id, HoldResult(False, [], live_hold_id=_text(result[1])), []
        return hold_id, HoldResult(False, []), []  # no placement: nothing was taken

    def get_hold(self, hold_id: str) -> Hold | None:
        showtime_id = showtime_of(hold_id)
        if showtime_id is None:
            return None
        return _parse_hold(hold_id, showtime_id, self.store.client.hgetall(self.hold_key(showtime_id, hold_id)))

    def release(self, hold: Hold) -> bool:
        keys = [*self.seat_keys(hold.showtime_id, hold.version), self.hold_key(hold.showtime_id, hold.id),
                self.user_key(hold.showtime_id, hold.user_id)]
        return bool(self._release(keys=keys, args=[hold.id, hold.user_id, SeatOwner.hold(hold.id).token]))

    def release_own(self, showtime_id: int, room: Room, user_id: int, hold_id: str) -> ReleaseOutcome:
        """The user releases their hold by id, in one step: checked to be theirs, still
        held (not being reserved) and on ``room``'s seat keys, then freed."""
        keys = [*self.seat_keys(showtime_id, room.version), self.hold_key(showtime_id, hold_id),
                self.user_key(showtime_id, user_id)]
        return ReleaseOutcome(int(self._release(
            keys=keys, args=[hold_id, user_id, SeatOwner.hold(hold_id).token, room.version, "1"])))

    def claim(self, hold: Hold, user_id: int, ttl_ms: int) -> ClaimOutcome:
        keys = [*self.seat_keys(hold.showtime_id, hold.version), self.hold_key(hold.showtime_id, hold.id)]
        return ClaimOutcome(int(self._claim(keys=keys, args=[hold.id, user_id, ttl_ms,
                                                             SeatOwner.hold(hold.id).token])))

    def bind_reservation(self, hold: Hold, reservation_id: int, ttl_ms: int) -> int:
        keys = [*self.seat_keys(hold.showtime_id, hold.version), self.hold_key(hold.showtime_id, hold.id),
                self.user_key(hold.showtime_id, hold.user_id)]
        return int(self._bind(keys=keys, args=[hold.id, reservation_owner(reservation_id), ttl_ms,
                                               SeatOwner.hold(hold.id).token, _csv(hold.indices), _csv(hold.seat_ids)]))

    # --- blocked seats -----------------------------------------------------------
    def block(self, showtime_id: int, room: Room, seat_ids: list[int], ttl_ms: int) -> HoldResult:
        """Mark all of ``seat_ids`` blocked, or none (``HoldResult.taken``: those someone has)."""
        result = self._block(keys=self.seat_keys(showtime_id, room.version),
                             args=[SeatOwner.blocked().token, ttl_ms, _csv(room.indices(seat_ids)), _csv(seat_ids)])
        outcome = HoldOutcome(int(result[0]))
        if outcome is HoldOutcome.NEEDS_SYNC:
            return HoldResult(False, [], needs_sync=True)
        return HoldResult(outcome is HoldOutcome.HELD, [seat_ids[int(i) - 1] for i in result[1:]])

    def unblock(self, showtime_id: int, room: Room, seat_ids: list[int]) -> int:
        return self.free_owner(showtime_id, room, seat_ids, SeatOwner.blocked().token)

    # --- reservations ---------------------------------------------------------
    def keep_for_reservation(self, showtime_id: int, room: Room, seat_ids, reservation_id: int, ttl_ms: int) -> int:
        """A confirmed reservation: its seats stay its own, ``booked``, until ``ttl_ms``."""
        owner = reservation_owner(reservation_id)
        return int(self._set_owner(keys=self.seat_keys(showtime_id, room.version),
                                   args=[owner, owner, ttl_ms, _csv(room.indices(seat_ids)), _csv(seat_ids), "c"]))

    def free_reservation(self, showtime_id: int, room: Room, seat_ids, reservation_id: int) -> int:
        """Free the seats the reservation still owns (others' are left alone)."""
        return self.free_owner(showtime_id, room, seat_ids, reservation_owner(reservation_id))

    def free_owner(self, showtime_id: int, room: Room, seat_ids, owner: str) -> int:
        return int(self._set_owner(keys=self.seat_keys(showtime_id, room.version),
                                   args=[owner, "", 0, _csv(room.indices(seat_ids)), _csv(seat_ids), "."]))

    def sync(self, showtime_id: int, room: Room, owners: list[tuple], marker_ttl_seconds: int) -> int:
        """Give each (seat id, owner token, TTL ms[, state byte]) its owner where the seat is
        free; mark synced. The state byte defaults to the owner's kind (``c`` for a confirmed
        reservation must be given)."""
        packed = "".join(f"{room.index[o[0]]},{o[0]},{o[1]},{max(int(o[2]), 1)},{o[3] if len(o) > 3 else _kind(o[1])};"
                         for o in owners)
        return int(self._sync(keys=self.seat_keys(showtime_id, room.version), args=[marker_ttl_seconds, packed]))

    def is_synced(self, showtime_id: int, room: Room) -> bool:
        return bool(self.store.client.exists(self.seat_keys(showtime_id, room.version)[3]))

    # --- reads ------------------------------------------------------------------
    def read(self, showtime_id: int, room: Room, *, owners: bool = False) -> SeatsNow:
        """The showtime's taken seats and the version they reflect, in one atomic call."""
        result = self._read(keys=self.seat_keys(showtime_id, room.version), args=["1" if owners else "0"])
        return self._seats_now(room, result)

    @staticmethod
    def _seats_now(room: Room, result) -> SeatsNow:
        synced, state, version = bool(int(result[0])), result[1], _text(result[2])
        statuses = {room.ids[i]: STATUSES[b] for i, b in enumerate(state[:len(room.ids)]) if b in STATUSES}
        flat = result[3] if len(result) > 3 else []
        return SeatsNow(synced, statuses, version, {room.ids[int(flat[k]) - 1]: _text(flat[k + 1])
                                                    for k in range(0, len(flat), 2) if int(flat[k]) <= len(room.ids)})

    def owners(self, showtime_id: int, room: Room) -> dict[int, str]:
        """The owner token of every taken seat (one call); ``SeatOwner.parse`` reads one."""
        return self.read(showtime_id, room, owners=True).owners

    def states_of_showtimes(self, rooms: dict[int, Room]) -> dict[int, set[int]]:
        """The taken seats of several showtimes: one script call each (each within its
        hash tag), all in one pipelined round trip."""
        if not rooms:
            return {}
        pipe = self.store.client.pipeline(transaction=False)
        for showtime_id, room in rooms.items():
            self._read(keys=self.seat_keys(showtime_id, room.version), args=["0"], client=pipe)
        return {showtime_id: set(self._seats_now(room, result).statuses)
                for (showtime_id, room), result in zip(rooms.items(), pipe.execute(), strict=True)}

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

    def scan_rooms(self, count: int = 1000):
        """Every showtime whose seats Redis keeps, as (showtime id, layout version). For the sweep."""
        prefix_len = len(self.store.prefix)
        for raw in self.store.client.scan_iter(match=self.store.key("{st:*}:v:*:owner"), count=count):
            rest = raw.decode()[prefix_len:]  # "{st:42}:v:0a1b2c3d:owner"
            yield int(rest[4:rest.index("}")]), rest.split(":")[-2]
