"""The seats of a showtime: its seating, who holds what, and keeping Redis true.

Redis holds make contention cheap and atomic (all seats of a request or none);
PostgreSQL decides. A seat of a showtime is live in at most one reservation
(``uq_reservation_seats_live``), so with Redis emptied or restarted no seat is
sold twice. Redis also keeps every live reservation's seats (``r:<id>`` owners),
so it refuses booked seats itself; after it loses them, the hold script asks for
a rebuild from PostgreSQL (``sync_showtime``) before it decides anything.

A customer's hold by seat goes through ``take_hold``; best available and
waitlist offers go through ``take_best`` (one seat-choosing rule, ``seat_choice``);
both share ``_take``. Every reservation change that frees or keeps seats tells
Redis through the functions below, after its commit.
"""
from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone

import redis
from sqlalchemy import select

from app import db
from app.adapters.seat_store import (
    GATE_NOT_ASKED,
    Hold,
    HoldPricing,
    HoldState,
    ReleaseOutcome,
    Room,
    SeatOwner,
    SeatStore,
    reservation_owner,
    showtime_of,
)
from app.bootstrap import marquee
from app.metrics import HOLDS
from app.models import LIVE_STATUSES, BlockedSeat, Reservation, ReservationSeat, ReservationStatus, Screen, Seat, Showtime
from app.services import catalog, errors, pricing
from app.services.layout import SeatSpec, focal_point
from app.services.seat_choice import COMPANION, WHEELCHAIR, sixths

log = logging.getLogger(__name__)

# Redis keeps a reservation's seats a little past its payment deadline, so the
# expiry job (not the TTL) is what normally frees them.
GRACE_SECONDS = 120
# How long a showtime counts as rebuilt from PostgreSQL before the next rebuild.
SYNC_MARKER_SECONDS = 3600
# pg_advisory_xact_lock key: one scheduler acts at a time.
SCHEDULER_LOCK = 0x6D71_0001  # "mq" 1


def _store() -> SeatStore:
    return marquee().seats


def now() -> datetime:
    return datetime.now(timezone.utc)


def after_commit(what: str, fn: Callable, *args) -> None:
    """Redis follows PostgreSQL after the commit; if Redis fails now, TTLs and the
    sweep converge it, so the request does not fail for it."""
    try:
        fn(*args)
    except redis.RedisError:
        log.error("after-commit redis step failed: %s", what, exc_info=True)


# --- the showtime's seating, cached -------------------------------------------

def showtime_seating(showtime_id: int) -> dict:
    """What holds and reservations need of a showtime: start, prices, its seats in
    row then position order (``{seat id: [label, category, x, y]}``) and its focal
    point in sixths of a seat (``focal6``). ``NotFound`` for an unknown showtime."""
    def compute():
        showtime = db.session.get(Showtime, showtime_id)
        if showtime is None:
            return None
        rows = db.session.execute(
            select(Seat.id, Seat.label, Seat.category, Seat.row_label, Seat.number, Seat.row_index, Seat.col_index)
            .where(Seat.screen_id == showtime.screen_id).order_by(Seat.row_index, Seat.col_index)
        ).all()
        specs = [SeatSpec(r.row_label, r.number, r.label, r.category, r.row_index, r.col_index) for r in rows]
        focal = focal_point(db.session.get(Screen, showtime.screen_id).layout, specs)
        places = [[r.id, r.col_index + 1, r.row_index + 1, r.category] for r in rows]
        return {
            "starts_at": showtime.starts_at.isoformat(),
            "currency": showtime.currency,
            "prices": showtime.prices,
            "seats": {str(r.id): [r.label, r.category, r.col_index + 1, r.row_index + 1] for r in rows},
            "focal6": list(sixths((focal["x"], focal["y"]))),
            "orphan_seats": showtime.orphan_seats,
            "layout": _fingerprint(places),
        }

    seating = marquee().cache.get_or_compute(["showtimes", "screens"], "seating-v3", showtime_id, compute,
                                             local=True)
    if seating is None:
        raise errors.NotFound(f"Showtime {showtime_id} does not exist")
    return seating


def _fingerprint(places: list[list]) -> str:
    """Names a layout: [id, x, y, category] of each seat in row then position order."""
    return f"{zlib.crc32(json.dumps(places).encode()):08x}"


def room_of(seating: dict) -> Room:
    """The showtime's seats as the seat store's scripts see them (built once per layout)."""
    return _store().room(("seating", seating["layout"]), lambda: [
        (int(seat_id), x, y, category) for seat_id, (_label, category, x, y) in seating["seats"].items()])


def showtime_room(showtime_id: int) -> Room:
    """``room_of`` the showtime's seating (``NotFound`` for an unknown showtime)."""
    return room_of(showtime_seating(showtime_id))


def check_seat_ids(seating: dict, seat_ids: list[int]) -> None:
    """``seat_ids`` are seats of the showtime's screen (its ``seating``), each named once:
    422 otherwise (for holds and blocks alike)."""
    if len(set(seat_ids)) != len(seat_ids):
        raise errors.Invalid("A seat is listed twice", errors={"seat_ids": ["Each seat only once"]})
    unknown = [s for s in seat_ids if str(s) not in seating["seats"]]
    if unknown:
        raise errors.Invalid("Some seats are not seats of this showtime's screen",
                             errors={"seat_ids": [f"Not a seat of this showtime: {unknown}"]}, seat_ids=unknown)


def ensure_not_started(seating: dict, at: datetime) -> None:
    if datetime.fromisoformat(seating["starts_at"]) <= at:
        raise errors.ShowtimeStarted("Seats cannot be held or reserved once the showtime has started")


def live_seats(showtime_id: int, seat_ids: Iterable[int]) -> list[int]:
    """Seats among ``seat_ids`` that are in a live reservation or blocked (PostgreSQL's view)."""
    wanted = list(seat_ids)
    booked = select(ReservationSeat.seat_id).where(
        ReservationSeat.showtime_id == showtime_id,
        ReservationSeat.seat_id.in_(wanted),
        ReservationSeat.released_at.is_(None),
    )
    blocked = select(BlockedSeat.seat_id).where(BlockedSeat.showtime_id == showtime_id,
                                                BlockedSeat.seat_id.in_(wanted))
    return sorted(db.session.scalars(booked.union(blocked)))


# --- holds ----------------------------------------------------------------------

def check_seat_count(field: str, count: int) -> None:
    """The one limit of seats a hold may take (``MAX_SEATS_PER_HOLD``), for holds
    by seat, waitlist entries (an offer is a hold) and the request schema."""
    limit = marquee().settings.max_seats_per_hold
    if count > limit:
        raise errors.Invalid(f"At most {limit} seats per hold", errors={field: [f"At most {limit} seats"]})


class NotEnoughSeats(errors.Conflict):
    code, title = "not_enough_seats", "Not enough seats together for this party"


class OrphanSeat(errors.Conflict):
    code, title = "orphan_seat", "This hold would leave a seat alone"


class AccessibleSeat(errors.Conflict):
    code, title = "accessible_seat", "Wheelchair spaces and companion seats are kept for those who need them"


def accessible_seats_reserved(seating: dict, at: datetime) -> bool:
    """Whether wheelchair spaces and companion seats are still kept for accessible
    parties (until ``ACCESSIBLE_RELEASE_MINUTES`` before the show)."""
    release = datetime.fromisoformat(seating["starts_at"]) - timedelta(
        minutes=marquee().settings.accessible_release_minutes)
    return at < release


def check_accessible(seating: dict, seat_ids: list[int], accessible: bool, at: datetime) -> None:
    """API.md: a wheelchair space needs ``accessible``; a companion seat goes only in
    the same hold as a wheelchair space beside it; both open to all near the show.
    (A rule of the request alone: it needs no other hold's state.)"""
    if not accessible_seats_reserved(seating, at):
        return
    placed = seating["seats"]
    chosen = {s: placed[str(s)] for s in seat_ids}
    wheelchairs = [s for s, seat in chosen.items() if seat[1] == WHEELCHAIR]
    if wheelchairs and not accessible:
        raise AccessibleSeat('Wheelchair spaces are held with "accessible": true', seat_ids=sorted(wheelchairs))
    spaces = {(seat[2], seat[3]) for seat in chosen.values() if seat[1] == WHEELCHAIR}
    lonely = sorted(s for s, seat in chosen.items() if seat[1] == COMPANION
                    and (seat[2] - 1, seat[3]) not in spaces and (seat[2] + 1, seat[3]) not in spaces)
    if lonely:
        raise AccessibleSeat("A companion seat is held together with the wheelchair space beside it",
                             seat_ids=lonely)


def take_hold(user_id: int, showtime_id: int, seat_ids: list[int], ttl_seconds: int, *,
              seating: dict | None = None, gate: str = GATE_NOT_ASKED) -> Hold:
    """Take all of ``seat_ids`` for a new hold of ``user_id`` lasting
    ``ttl_seconds``, or none: ``SeatsUnavailable`` (with the taken ``seat_ids``)
    or ``HoldExists`` (with the user's live ``hold_id``). When the showtime's
    ``seating`` (given as its caller read it, or read here) has ``orphan_seats``
    ``prevent``, the same atomic step refuses a hold that would leave a free seat alone in its
    run (``OrphanSeat`` with the ``seat_ids`` it would strand), unless every
    placement in a run it takes from would (``seat_choice.orphans_refused``).

    Redis decides while it knows the showtime's booked seats; when it has lost
    them it asks for a rebuild first, and if it keeps losing them (a flapping
    server) PostgreSQL decides instead: slower, and right whatever Redis holds.
    ``gate``: the waiting room's (``waiting_room.gate``), checked by the same script
    (``AdmissionRequired``); the system's own holds (waitlist offers) do not ask.
    The hold's prices are fixed by the same script (``pricing.hold_pricing``: the
    occupancy they follow is the one the script sees as it takes the seats).
    Reads only: it neither opens nor ends a unit of work of its caller.
    """
    seating = seating or showtime_seating(showtime_id)
    room, orphan_rule = room_of(seating), seating["orphan_seats"] == "prevent"
    store, prices = _store(), pricing.hold_pricing(showtime_id, now())

    def attempt(expires_at: datetime, unsynced_ok: bool):
        hold_id, result = store.hold(showtime_id, room, user_id, seat_ids, ttl_seconds * 1000, expires_at,
                                     unsynced_ok=unsynced_ok, orphan_rule=orphan_rule, gate=gate, pricing=prices)
        return hold_id, result, seat_ids

    return _take(user_id, showtime_id, room, ttl_seconds, attempt, prices)


def seat_class(category: str, wanted: str | None, kept: bool, accessible: bool) -> str:
    """Where a best-available party may sit (``Room.classes``): ``s`` a seat it may
    take, ``w`` a wheelchair space and ``c`` a companion seat (for an accessible party,
    placed by ``seat_choice``'s accessible rule), ``x`` not. While ``kept``, wheelchair
    spaces and companion seats go to accessible parties only; ``wanted`` limits the
    other seats to one category."""
    if accessible and category in (WHEELCHAIR, COMPANION):
        return "w" if category == WHEELCHAIR else "c"
    if kept and category in (WHEELCHAIR, COMPANION):
        return "x"
    return "s" if wanted is None or category == wanted else "x"


def take_best(user_id: int, showtime_id: int, quantity: int, ttl_seconds: int, *,
              category: str | None = None, accessible: int = 0, seating: dict | None = None,
              gate: str = GATE_NOT_ASKED) -> Hold:
    """Choose ``quantity`` seats by the best-available rules (``seat_choice``) and
    hold them, in one atomic step (``hold_best.lua``): ``NotEnoughSeats`` when no
    placement exists, ``HoldExists`` as for ``take_hold``. ``accessible``: the
    wheelchair spaces the party needs (the rest beside them). ``seating``: the
    showtime's, if the caller has read it already."""
    seating = seating or showtime_seating(showtime_id)
    kept = accessible_seats_reserved(seating, now())
    room, focal6, store = room_of(seating), tuple(seating["focal6"]), _store()
    classes = room.classes((category, kept, accessible > 0), lambda c: seat_class(c, category, kept, accessible > 0))
    prices = pricing.hold_pricing(showtime_id, now())

    def attempt(expires_at: datetime, unsynced_ok: bool):
        return store.hold_best(showtime_id, room, user_id, classes, quantity, focal6, ttl_seconds * 1000, expires_at,
                               accessible=accessible, unsynced_ok=unsynced_ok, gate=gate, pricing=prices)

    return _take(user_id, showtime_id, room, ttl_seconds, attempt, prices)


def _take(user_id: int, showtime_id: int, room: Room, ttl_seconds: int, attempt: Callable,
          prices: HoldPricing) -> Hold:
    """The one way seats are taken: ``attempt(expires_at, unsynced_ok)`` runs a hold
    script and answers ``(hold id, HoldResult, seat ids)``; see ``take_hold``."""
    at = now()
    expires_at = (at + timedelta(seconds=ttl_seconds)).replace(microsecond=0)
    store = _store()
    checked_by_postgresql = False
    for attempt_number in range(3):
        checked_by_postgresql = attempt_number == 2
        hold_id, result, seat_ids = attempt(expires_at, checked_by_postgresql)
        if not result.needs_sync:
            break
        sync_showtime(showtime_id)
    hold = Hold(hold_id, showtime_id, user_id, seat_ids, expires_at.isoformat(), HoldState.HELD,
                tuple(room.indices(seat_ids)), room.version, result.prices, prices.currency, result.occupied,
                result.capacity)
    if result.held and checked_by_postgresql:
        booked = live_seats(showtime_id, seat_ids)
        if booked:
            store.release(hold)
            HOLDS.labels("conflict").inc()
            raise errors.SeatsUnavailable("Some of these seats are taken; none were held", seat_ids=booked)
    if result.not_admitted:
        HOLDS.labels("not_admitted").inc()
        raise errors.AdmissionRequired("This showtime's on-sale has a waiting room: join its queue, and hold with "
                                       "the admission token you get when admitted (header Admission-Token)",
                                       showtime_id=showtime_id)
    if result.live_hold_id:
        HOLDS.labels("already_holding").inc()
        raise errors.HoldExists(
            "You already hold seats for this showtime: reserve or release that hold first",
            hold_id=result.live_hold_id,
        )
    if result.stranded:
        HOLDS.labels("orphan_seat").inc()
        raise OrphanSeat("This hold would leave a seat alone between taken ones; take it too, or other seats "
                         "(nothing was held)", seat_ids=result.stranded)
    if not result.held and not seat_ids:
        HOLDS.labels("not_enough_seats").inc()
        raise NotEnoughSeats("No placement for this party now (side by side in a row, or in parts of two or more "
                             "in neighbouring rows); nothing was held")
    if not result.held:
        HOLDS.labels("conflict").inc()
        raise errors.SeatsUnavailable("Some of these seats are taken; none were held", seat_ids=result.taken)
    HOLDS.labels("held").inc()
    # The seat map reads holds live from Redis: nothing to invalidate.
    return hold


def find_hold(hold_id: str) -> Hold | None:
    """A live hold by id, whoever's it is (None when it has ended or never was)."""
    return _store().get_hold(hold_id)


def release(hold: Hold) -> bool:
    """Free a hold's seats at once (only seats it still owns)."""
    return _store().release(hold)


def release_own(user_id: int, hold_id: str) -> None:
    """The user releases their live hold: one step in Redis (``SeatStore.release_own``).
    ``NotFound`` for anyone else's or an ended one; ``HoldInUse`` while it is being
    reserved. A hold on seat keys of an older layout is released by its record."""
    showtime_id = showtime_of(hold_id)
    try:
        room = showtime_room(showtime_id) if showtime_id is not None else None
    except errors.NotFound:
        room = None
    outcome = _store().release_own(showtime_id, room, user_id, hold_id) if room else ReleaseOutcome.NOT_FOUND
    if outcome is ReleaseOutcome.OTHER_LAYOUT:
        hold = find_hold(hold_id)
        if hold is not None and hold.user_id == user_id and hold.state != HoldState.HELD:
            outcome = ReleaseOutcome.IN_USE
        elif hold is not None and hold.user_id == user_id:
            outcome = ReleaseOutcome.RELEASED if release(hold) else ReleaseOutcome.NOT_FOUND
        else:
            outcome = ReleaseOutcome.NOT_FOUND
    if outcome is ReleaseOutcome.NOT_FOUND:
        raise errors.NotFound("No such hold")
    if outcome is ReleaseOutcome.IN_USE:
        raise errors.HoldInUse("This hold is being turned into a reservation")


# --- blocked seats in Redis -----------------------------------------------------

def blocked_until(seating: dict) -> datetime:
    """How long Redis keeps a block: PostgreSQL's row is the truth, and a showtime's
    seats matter no more once it has started."""
    return datetime.fromisoformat(seating["starts_at"]) + timedelta(seconds=GRACE_SECONDS)


def block_in_store(showtime_id: int, seat_ids: list[int]) -> list[int]:
    """Mark seats blocked in Redis, all or none: [] when done, else the seats someone
    holds or has booked (nothing was blocked). The caller has checked PostgreSQL (no
    live reservation of them) and commits its ``BlockedSeat`` rows after this."""
    seating = showtime_seating(showtime_id)
    ttl_ms = max(int((blocked_until(seating) - now()).total_seconds() * 1000), 1000)
    store, room = _store(), room_of(seating)
    for _ in range(2):
        result = store.block(showtime_id, room, seat_ids, ttl_ms)
        if not result.needs_sync:
            return result.taken
        sync_showtime(showtime_id)
    raise errors.ServiceUnavailable("The seat store keeps losing this showtime's seats; try again")


def unblock_in_store(showtime_id: int, seat_ids: list[int]) -> None:
    """After the commit that deleted their ``BlockedSeat`` rows: the seats are free again."""
    after_commit("unblock seats", _store().unblock, showtime_id, showtime_room(showtime_id), seat_ids)


# --- reservations' seats in Redis ------------------------------------------------

def keep_for_reservation(showtime_id: int, seat_ids: list[int], reservation_id: int, until: datetime) -> None:
    """After a confirmation: booked seats stay refused by Redis until the show
    starts (PostgreSQL still decides)."""
    ttl_ms = max(int((until - now()).total_seconds() * 1000), 1000) + GRACE_SECONDS * 1000
    after_commit("keep confirmed seats", _store().keep_for_reservation, showtime_id, showtime_room(showtime_id), seat_ids,
                 reservation_id, ttl_ms)


def free_for_reservation(showtime_id: int, seat_ids: list[int], reservation_id: int) -> None:
    """After a commit that ended a reservation: Redis lets its seats go."""
    after_commit("free the seats of an ended reservation", _store().free_reservation, showtime_id,
                 showtime_room(showtime_id), seat_ids, reservation_id)


def sync_showtime(showtime_id: int) -> int:
    """Rebuild Redis's knowledge of a showtime's live reservation seats from
    PostgreSQL (after a restart or flush, and hourly), then mark it synced.

    Seats are set only where they are free. The reservations and blocks re-added
    are read again afterwards: one that ended meanwhile (its own Redis step may
    have run before ours) is freed now, so the rebuild never leaves a seat stuck.
    Reads only, in the caller's transaction if there is one.
    """
    at = now()
    rows = db.session.execute(
        select(ReservationSeat.seat_id, Reservation.id, Reservation.status, Reservation.expires_at,
               Showtime.starts_at)
        .join(Reservation, Reservation.id == ReservationSeat.reservation_id)
        .join(Showtime, Showtime.id == ReservationSeat.showtime_id)
        .where(ReservationSeat.showtime_id == showtime_id, ReservationSeat.released_at.is_(None))
    ).all()
    owners = []
    for seat_id, reservation_id, status, expires_at, starts_at in rows:
        until = expires_at if status == ReservationStatus.PENDING_PAYMENT else max(starts_at, expires_at)
        ttl_ms = ((until - at).total_seconds() + GRACE_SECONDS) * 1000
        owners.append((seat_id, reservation_owner(reservation_id), ttl_ms,
                       "c" if status == ReservationStatus.CONFIRMED else "r"))
    blocked = list(db.session.execute(
        select(BlockedSeat.seat_id, Showtime.starts_at).join(Showtime, Showtime.id == BlockedSeat.showtime_id)
        .where(BlockedSeat.showtime_id == showtime_id)
    ))
    for seat_id, starts_at in blocked:
        owners.append((seat_id, SeatOwner.blocked().token, ((starts_at - at).total_seconds() + GRACE_SECONDS) * 1000))
    store, room = _store(), showtime_room(showtime_id)
    added = store.sync(showtime_id, room, owners, SYNC_MARKER_SECONDS)
    if rows:
        still_live = set(db.session.scalars(select(Reservation.id).where(
            Reservation.id.in_({r[1] for r in rows}), Reservation.status.in_(LIVE_STATUSES))))
        for seat_id, reservation_id, *_ in rows:
            if reservation_id not in still_live:
                store.free_reservation(showtime_id, room, [seat_id], reservation_id)
    if blocked:
        unblocked = {seat_id for seat_id, _ in blocked} - set(db.session.scalars(
            select(BlockedSeat.seat_id).where(BlockedSeat.showtime_id == showtime_id)))
        if unblocked:
            store.unblock(showtime_id, room, sorted(unblocked))
    if added:
        log.warning("rebuilt seat keys from postgresql", extra={"showtime_id": showtime_id, "count": added})
    return added


def sweep_stray_seat_keys() -> int | None:
    """Reconcile Redis with PostgreSQL: free seat keys that no live hold or
    reservation owns (a crash between a commit and its Redis step; TTLs would
    free them too, this is sooner), and restore missing keys of live reservations
    of showtimes to come. Returns how many stray keys were freed, or None when
    another scheduler holds the lock."""
    store = _store()
    with db.unit_of_work():
        if not db.try_xact_lock(SCHEDULER_LOCK):
            return None
        removed = sum(_free_stray_seats(store, showtime_id, version) for showtime_id, version in store.scan_rooms())
        upcoming = list(db.session.scalars(
            select(Reservation.showtime_id).distinct()
            .join(Showtime, Showtime.id == Reservation.showtime_id)
            .where(Reservation.status.in_(LIVE_STATUSES), Showtime.starts_at > now())
        ))
    if removed:
        log.warning("freed stray seat keys", extra={"count": removed})
    # The other direction: live reservations whose seat keys went missing.
    for showtime_id in upcoming:
        with db.unit_of_work():
            sync_showtime(showtime_id)
    return removed


def _free_stray_seats(store: SeatStore, showtime_id: int, version: str) -> int:
    """Free the seats of a showtime that Redis gives to no live hold, reservation or
    block. Keys of an older layout (or of a deleted showtime) are read by no one and
    end with their TTL."""
    try:
        room = showtime_room(showtime_id)
    except errors.NotFound:
        return 0
    if room.version != version:
        return 0
    owners = {seat_id: SeatOwner.parse(token) for seat_id, token in store.owners(showtime_id, room).items()}
    reservation_ids = {o.reservation_id for o in owners.values() if o and o.reservation_id is not None}
    live = set(db.session.scalars(
        select(Reservation.id).where(Reservation.id.in_(reservation_ids), Reservation.status.in_(LIVE_STATUSES))
    )) if reservation_ids else set()
    blocked = set(db.session.scalars(select(BlockedSeat.seat_id).where(BlockedSeat.showtime_id == showtime_id))) \
        if any(o and o.kind == "blocked" for o in owners.values()) else set()
    removed = 0
    for seat_id, owner in owners.items():
        if owner is None:
            continue
        if owner.kind == "blocked":
            stray = seat_id not in blocked
        elif owner.kind == "reservation":
            stray = owner.reservation_id not in live
        else:
            stray = not store.hold_exists(showtime_id, owner.hold_id)
        if stray:
            removed += store.free_owner(showtime_id, room, [seat_id], owner.token)
    return removed


# --- the live seat map --------------------------------------------------------

def seat_statuses(showtime_id: int) -> dict[int, str]:
    """``held``, ``booked`` or ``blocked`` for each seat that is not available."""
    return seats_now(showtime_id)[1]


def seats_now(showtime_id: int) -> tuple[str, dict[int, str]]:
    """The seat map's version and the status of each seat that is not available, read
    from Redis in one atomic call, so that the map at this version plus the change
    stream after it is exact (DESIGN.md, invariant 9). When Redis has lost the
    showtime's booked seats they are rebuilt from PostgreSQL first."""
    store, room = _store(), showtime_room(showtime_id)
    now_ = store.read(showtime_id, room)
    if not now_.synced:
        with db.unit_of_work():
            sync_showtime(showtime_id)
        now_ = store.read(showtime_id, room)
    return now_.version, now_.statuses


def expire_due(showtime_id: int) -> None:
    """Free the showtime's seats whose time is up, now (their changes go on the stream).
    Redis frees them lazily, when a script next runs on the showtime; the live process
    calls this about once a second for each showtime it follows, so an expiry shows on
    the stream within about a second."""
    _store().read(showtime_id, showtime_room(showtime_id))


def priced_seats_now(showtime_id: int) -> tuple[str, dict[int, str], dict[str, int]]:
    """``seats_now`` and the category prices a hold taken now would pay (price rules
    applied at the occupancy those statuses show): the seat map's live part. The rules
    are loaded once per showtime through the cache, never per seat."""
    version, statuses = seats_now(showtime_id)
    seat_count = len(showtime_seating(showtime_id)["seats"])
    return version, statuses, pricing.prices_now(pricing.context(showtime_id), statuses, seat_count, now())


def _priced(seat: dict, statuses: dict[int, str], prices: dict[str, int]) -> dict:
    return {**seat, "status": statuses.get(seat["id"], "available"),
            "price_cents": prices.get(seat["category"], seat["price_cents"])}


def seat_map_snapshot(showtime_id: int) -> dict:
    """The whole seat map as ``GET /showtimes/{id}/seats`` answers it, with its version
    (for the live process's ``snapshot`` event). ``NotFound`` for an unknown showtime."""
    seat_map = catalog.cached("seat-map", showtime_id, lambda: catalog.seat_map(showtime_id), local=True)
    version, statuses, prices = priced_seats_now(showtime_id)
    return {**seat_map, "version": version, "seats": [_priced(seat, statuses, prices) for seat in seat_map["seats"]]}


def seat_maps_now(showtime_ids: Iterable[int]) -> dict[int, dict]:
    """``seat_map_snapshot`` of several showtimes (without focal points): the seats from
    one PostgreSQL query whatever their number (``catalog.seat_maps``), each showtime's
    statuses and version from one atomic Redis call. A showtime whose booked seats Redis
    has lost is rebuilt from PostgreSQL first, as ``seats_now`` does. Unknown ids are
    left out."""
    out = {}
    store, at = _store(), now()
    maps = catalog.seat_maps(showtime_ids)
    contexts = pricing.contexts(maps)
    for showtime_id, seat_map in maps.items():
        places = [[seat["id"], seat["x"], seat["y"], seat["category"]] for seat in seat_map["seats"]]
        room = store.room(("seating", _fingerprint(places)), lambda places=places: [tuple(p) for p in places])
        now_ = store.read(showtime_id, room)
        version, statuses = (now_.version, now_.statuses) if now_.synced else seats_now(showtime_id)
        prices = pricing.prices_now(contexts.get(showtime_id), statuses, len(places), at)
        out[showtime_id] = {**seat_map, "version": version,
                            "seats": [_priced(seat, statuses, prices) for seat in seat_map["seats"]]}
    return out


def free_seat_ids(showtime_id: int) -> list[int]:
    """Seats neither held nor booked, in layout order."""
    ids = [int(s) for s in showtime_seating(showtime_id)["seats"]]
    taken = seat_statuses(showtime_id)
    return [s for s in ids if s not in taken]


def seats_available(showtime_ids: list[int]) -> dict[int, int]:
    """Seats a customer could hold now, per showtime: the screen's seats minus
    those held, booked or blocked (0 once the show has started). Never cached: a
    few fixed costs whatever the number of showtimes (the seats per showtime
    through the cache, one PostgreSQL query for the live reservation seats, one
    pipelined Redis round trip for the rest)."""
    if not showtime_ids:
        return {}
    ids = sorted(set(showtime_ids))

    def compute():
        rows = db.session.execute(
            select(Showtime.id, Showtime.starts_at, Seat.id, Seat.col_index, Seat.row_index, Seat.category)
            .join(Seat, Seat.screen_id == Showtime.screen_id, isouter=True)
            .where(Showtime.id.in_(ids))
            .order_by(Showtime.id, Seat.row_index, Seat.col_index)
        ).all()
        out: dict[str, dict] = {}
        for showtime_id, starts_at, seat_id, col, row, category in rows:
            entry = out.setdefault(str(showtime_id), {"starts_at": starts_at.isoformat(), "seats": []})
            if seat_id is not None:
                entry["seats"].append([seat_id, col + 1, row + 1, category])
        for entry in out.values():
            entry["layout"] = _fingerprint(entry["seats"])
        return out

    seating = marquee().cache.get_or_compute(["showtimes", "screens"], "seat-places", ids, compute, local=True)
    booked: dict[int, set[int]] = {}
    for showtime_id, seat_id in db.session.execute(
        select(ReservationSeat.showtime_id, ReservationSeat.seat_id)
        .where(ReservationSeat.showtime_id.in_(ids), ReservationSeat.released_at.is_(None))
        .union(select(BlockedSeat.showtime_id, BlockedSeat.seat_id).where(BlockedSeat.showtime_id.in_(ids)))
    ):
        booked.setdefault(showtime_id, set()).add(seat_id)
    at, store = now(), _store()
    rooms = {int(k): store.room(("seating", v["layout"]), lambda v=v: [tuple(p) for p in v["seats"]])
             for k, v in seating.items() if datetime.fromisoformat(v["starts_at"]) > at}
    taken = store.states_of_showtimes(rooms)
    return {
        showtime_id: (len(set(rooms[showtime_id].ids) - booked.get(showtime_id, set()) - taken[showtime_id])
                      if showtime_id in rooms else 0)
        for showtime_id in ids
    }


# --- the user's holds ---------------------------------------------------------

# How long an ended hold is remembered in its user's index: reserving it then
# says "expired" (409) rather than "no such hold" (404).
HOLD_MEMORY_SECONDS = 86400


def index_hold(hold: Hold) -> None:
    """After ``take_hold``: the hold joins its user's index (``GET /holds``).
    Best effort: a hold missing from the index still works; it is only unlisted."""
    after_commit("index the user's hold", _store().index_hold, hold.user_id, hold.id,
                 datetime.fromisoformat(hold.expires_at), HOLD_MEMORY_SECONDS)


def holds_of(user_id: int) -> list[Hold]:
    """The user's live holds, latest expiry first."""
    return _store().holds_of(user_id, now(), HOLD_MEMORY_SECONDS)


def hold_was_made_by(user_id: int, hold_id: str) -> bool:
    return _store().hold_was_made_by(user_id, hold_id)
