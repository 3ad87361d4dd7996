"""The waitlist of a sold-out showtime.

A customer joins for ``n`` seats (only while fewer than ``n`` are free). When seats
free up (a cancellation, an expiry, a failed payment), the first waiting entry
that fits gets an exclusive hold of ``n`` seats for WAITLIST_OFFER_SECONDS; it
reserves with that hold like any other. An offer that lapses lets its seats go
and the next entry gets its turn. Offers are made right after seats are freed,
and by the scheduler for lapses.

An offer's seats are chosen by the one rule of best available (``seats.take_best``,
``seat_choice``), in the same atomic step that holds them: side by side in one
row (stranding no seat, else one), else in parts of two or more over neighbouring
rows, nearest the focal point; wheelchair spaces and companion seats stay out
while they are kept for accessible parties (an entry asks for seats, not for
accessible ones). An entry *fits* when that rule finds a placement for its
party: ``n`` free seats are not enough when they are scattered (two single seats
are no placement for a pair). An entry that does not fit keeps its place (it stays waiting, ahead
of everyone who joined after it) and the next entry that fits gets the offer.

A pass goes down the waitlist once, in order. Once a party size finds no
placement, later entries of that size are passed over without asking again: a
placement that appears meanwhile (seats freed during the pass) goes on a later
pass to the first of them, never to one behind it, and a long waitlist of
parties that do not fit costs one script run per size, not per entry. Each offer
is its own atomic hold, so no seat goes into two offers.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from app import db
from app.adapters.seat_store import Hold, HoldState
from app.bootstrap import marquee
from app.models import LIVE_WAITLIST_STATUSES, Reservation, Showtime, WaitlistEntry, WaitlistStatus
from app.services import errors, notifications, outbox, seats
from app.services.pagination import page_of

log = logging.getLogger(__name__)


class SeatsAvailable(errors.Conflict):
    code, title = "seats_available", "Seats are free now: hold them instead"


class AlreadyWaiting(errors.Conflict):
    code, title = "already_waiting", "You are already on this showtime's waitlist"


def position(entry: WaitlistEntry) -> int:
    return int(db.session.scalar(select(func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.showtime_id == entry.showtime_id, WaitlistEntry.status == WaitlistStatus.WAITING,
        WaitlistEntry.id <= entry.id)) or 0)


def positions(entries: list[WaitlistEntry]) -> dict[int, int]:
    """``position`` of each waiting entry among ``entries``, in one query."""
    waiting = [e.id for e in entries if e.status == WaitlistStatus.WAITING]
    if not waiting:
        return {}
    ahead = aliased(WaitlistEntry)
    return dict(db.session.execute(
        select(WaitlistEntry.id, func.count(ahead.id))
        .join(ahead, (ahead.showtime_id == WaitlistEntry.showtime_id) & (ahead.id <= WaitlistEntry.id)
              & (ahead.status == WaitlistStatus.WAITING))
        .where(WaitlistEntry.id.in_(waiting))
        .group_by(WaitlistEntry.id)
    ).all())


def list_live(user_id: int, page: int, page_size: int) -> tuple[list[WaitlistEntry], int]:
    """The caller's live entries (waiting or offered), newest first."""
    query = select(WaitlistEntry).where(WaitlistEntry.user_id == user_id,
                                        WaitlistEntry.status.in_(LIVE_WAITLIST_STATUSES))
    return page_of(query, [WaitlistEntry.created_at.desc(), WaitlistEntry.id.desc()], page, page_size)


def join(user_id: int, showtime_id: int, count: int) -> WaitlistEntry:
    """Wait for ``count`` seats of a showtime that has fewer free (at most what
    one hold may take: an offer is a hold)."""
    seats.check_seat_count("seats", count)
    seating = seats.showtime_seating(showtime_id)
    seats.ensure_not_started(seating, seats.now())
    if len(seats.free_seat_ids(showtime_id)) >= count:
        raise SeatsAvailable(f"{count} seat(s) are free now: hold them instead of waiting")
    try:
        with db.unit_of_work():
            entry = WaitlistEntry(user_id=user_id, showtime_id=showtime_id, seats=count,
                                  status=WaitlistStatus.WAITING)
            db.session.add(entry)
    except IntegrityError as exc:
        raise AlreadyWaiting("You are already on this showtime's waitlist") from exc
    return entry


def get(user_id: int, entry_id: int) -> WaitlistEntry:
    entry = db.session.get(WaitlistEntry, entry_id)
    if entry is None or entry.user_id != user_id:
        raise errors.NotFound("No such waitlist entry")
    return entry


def leave(user_id: int, entry_id: int) -> None:
    with db.unit_of_work():
        entry = db.session.scalar(select(WaitlistEntry).where(WaitlistEntry.id == entry_id).with_for_update())
        if entry is None or entry.user_id != user_id:
            raise errors.NotFound("No such waitlist entry")
        offered_hold = entry.offer_hold_id if entry.status == WaitlistStatus.OFFERED else None
        if entry.status in LIVE_WAITLIST_STATUSES:
            entry.status = WaitlistStatus.LEFT
    if offered_hold:
        hold = seats.find_hold(offered_hold)
        if hold is not None and hold.state == HoldState.HELD:
            seats.release(hold)
            make_offers(entry.showtime_id)


def make_offers(showtime_id: int) -> int:
    """Settle lapsed and accepted offers, then offer free seats to the first
    waiting entries that fit: each offer is a best-available hold taken like a
    customer's (``seats.take_best``). Returns how many offers were made."""
    now = seats.now()
    with db.unit_of_work():
        _settle_offers(showtime_id, now)
    offers = 0
    with db.unit_of_work():
        starts_at = db.session.scalar(select(Showtime.starts_at).where(Showtime.id == showtime_id))
        if starts_at is None or starts_at <= now:
            return 0
        free = len(seats.free_seat_ids(showtime_id))
        seating = seats.showtime_seating(showtime_id)
        no_placement: set[int] = set()  # party sizes the chooser refused during this pass
        for entry in db.session.scalars(select(WaitlistEntry).where(
                WaitlistEntry.showtime_id == showtime_id, WaitlistEntry.status == WaitlistStatus.WAITING)
                .order_by(WaitlistEntry.id).with_for_update(skip_locked=True)):
            if entry.seats > free or entry.seats in no_placement:
                continue  # it keeps its place: the first entry that fits gets the seats
            try:
                hold = _offer(entry, seating)
            except seats.NotEnoughSeats:
                no_placement.add(entry.seats)
                continue
            except (errors.SeatsUnavailable, errors.HoldExists):
                continue  # taken meanwhile, or the customer holds seats already: next time
            free -= len(hold.seat_ids)
            offers += 1
    if offers:
        log.info("waitlist offers made", extra={"showtime_id": showtime_id, "count": offers})
    return offers


def _offer(entry: WaitlistEntry, seating: dict) -> Hold:
    """Hold the best available ``entry.seats`` seats for the entry's customer and
    make them its offer (in the caller's unit of work)."""
    hold = seats.take_best(entry.user_id, entry.showtime_id, entry.seats,
                           marquee().settings.waitlist_offer_seconds, seating=seating)
    seats.index_hold(hold)
    entry.status, entry.offer_hold_id = WaitlistStatus.OFFERED, hold.id
    entry.offer_expires_at = datetime.fromisoformat(hold.expires_at)
    outbox.add(notifications.email_event("waitlist_offer", entry.user_id, entry_id=entry.id))
    return hold


def _settle_offers(showtime_id: int, now: datetime) -> None:
    for entry in db.session.scalars(select(WaitlistEntry).where(
            WaitlistEntry.showtime_id == showtime_id, WaitlistEntry.status == WaitlistStatus.OFFERED)
            .with_for_update(skip_locked=True)):
        if db.session.scalar(select(exists().where(Reservation.hold_id == entry.offer_hold_id))):
            entry.status = WaitlistStatus.ACCEPTED
        elif entry.offer_expires_at <= now or seats.find_hold(entry.offer_hold_id) is None:
            entry.status = WaitlistStatus.LAPSED


def offer_everywhere() -> int:
    """The scheduler's job: every showtime to come with a live waitlist."""
    with db.unit_of_work():
        showtimes = list(db.session.scalars(
            select(WaitlistEntry.showtime_id).distinct()
            .join(Showtime, Showtime.id == WaitlistEntry.showtime_id)
            .where(WaitlistEntry.status.in_(LIVE_WAITLIST_STATUSES), Showtime.starts_at > func.now())))
    return sum(make_offers(showtime_id) for showtime_id in showtimes)


def seats_freed(showtime_id: int) -> None:
    """After a commit that freed seats (a reservation ended, a seat unblocked): the
    waitlist goes first."""
    try:
        after_seats_freed(showtime_id)
    except Exception:  # noqa: BLE001 - the scheduler retries offers; the freeing stands
        log.error("waitlist offer failed after seats were freed", exc_info=True)


def after_seats_freed(showtime_id: int) -> None:
    """Called after a commit that freed seats: the waitlist gets them first."""
    with db.unit_of_work():
        waiting = db.session.scalar(select(exists().where(WaitlistEntry.showtime_id == showtime_id,
                                                          WaitlistEntry.status == WaitlistStatus.WAITING)))
    if waiting:
        make_offers(showtime_id)
