"""The waitlist of a sold-out showtime.

A customer joins for ``n`` seats (only while fewer than ``n`` are free). When seats
free up (a cancellation, an expiry, a failed payment), the first waiting entry
whose ``n`` fits gets an exclusive hold of ``n`` seats, side by side in a row when
possible, for WAITLIST_OFFER_SECONDS; it reserves with that hold like any other.
An offer that lapses lets its seats go and the next entry gets its turn. Offers
are made right after seats are freed, and by the scheduler for lapses.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from app import errors
from app.extensions import db, marquee
from app.models import Reservation, Seat, Showtime, WaitlistEntry
from app.services import notifications

log = logging.getLogger(__name__)


class SeatsAvailable(errors.Conflict):
    code, title = "seats_available", "Seats are free now: hold them instead"


class AlreadyWaiting(errors.Conflict):
    code, title = "already_waiting", "You are already on this showtime's waitlist"



def free_seat_ids(showtime_id: int) -> list[int]:
    """Seats neither held nor booked, in layout order."""
    from app.services.booking import seat_statuses, showtime_seating

    ids = [int(s) for s in showtime_seating(showtime_id)["seats"]]
    taken = seat_statuses(showtime_id, ids)
    return [s for s in ids if s not in taken]


def position(entry: WaitlistEntry) -> int:
    return int(db.session.scalar(select(func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.showtime_id == entry.showtime_id, WaitlistEntry.status == "waiting",
        WaitlistEntry.id <= entry.id)) or 0)


def join(user_id: int, showtime_id: int, seats: int) -> WaitlistEntry:
    from app.services.booking import _ensure_not_started, showtime_seating

    settings = marquee().settings
    if seats > settings.max_seats_per_hold:
        raise errors.Invalid(f"At most {settings.max_seats_per_hold} seats",
                             errors={"seats": [f"At most {settings.max_seats_per_hold}"]})
    seating = showtime_seating(showtime_id)
    _ensure_not_started(seating, datetime.now(timezone.utc))
    if len(free_seat_ids(showtime_id)) >= seats:
        raise SeatsAvailable(f"{seats} seat(s) are free now: hold them instead of waiting")
    entry = WaitlistEntry(user_id=user_id, showtime_id=showtime_id, seats=seats, status="waiting")
    db.session.add(entry)
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise AlreadyWaiting("You are already on this showtime's waitlist") from exc
    return entry


def get(user_id: int, entry_id: int) -> WaitlistEntry:
    entry = db.session.get(WaitlistEntry, entry_id)
    if entry is None or entry.user_id != user_id:
        raise errors.NotFound("No such waitlist entry")
    return entry


def leave(user_id: int, entry_id: int) -> None:
    entry = db.session.scalar(select(WaitlistEntry).where(WaitlistEntry.id == entry_id).with_for_update())
    if entry is None or entry.user_id != user_id:
        db.session.rollback()
        raise errors.NotFound("No such waitlist entry")
    offered_hold = entry.offer_hold_id if entry.status == "offered" else None
    if entry.status in ("waiting", "offered"):
        entry.status = "left"
    db.session.commit()
    if offered_hold:
        hold = marquee().seats.get_hold(offered_hold)
        if hold is not None and hold.state == "held":
            marquee().seats.release(hold)
            make_offers(entry.showtime_id)


def _pick(showtime_id: int, free: list[int], n: int) -> list[int]:
    """``n`` free seats side by side in one row when there are, else the first ``n``."""
    rows: dict[int, list[tuple[int, int]]] = {}
    for seat_id, row, col in db.session.execute(
            select(Seat.id, Seat.row_index, Seat.col_index).where(Seat.id.in_(free))):
        rows.setdefault(row, []).append((col, seat_id))
    for row in sorted(rows):
        seats = sorted(rows[row])
        for i in range(len(seats) - n + 1):
            window = seats[i:i + n]
            if window[-1][0] - window[0][0] == n - 1:  # consecutive positions: no aisle between
                return [seat_id for _, seat_id in window]
    return free[:n]


def make_offers(showtime_id: int) -> int:
    """Settle lapsed and accepted offers, then offer free seats to the first
    waiting entries that fit. Returns how many offers were made."""
    now = datetime.now(timezone.utc)
    store = marquee().seats
    for entry in db.session.scalars(select(WaitlistEntry).where(
            WaitlistEntry.showtime_id == showtime_id, WaitlistEntry.status == "offered")
            .with_for_update(skip_locked=True)):
        if db.session.scalar(select(exists().where(Reservation.hold_id == entry.offer_hold_id))):
            entry.status = "accepted"
        elif entry.offer_expires_at <= now or store.get_hold(entry.offer_hold_id) is None:
            entry.status = "lapsed"
    db.session.commit()
    starts_at = db.session.scalar(select(Showtime.starts_at).where(Showtime.id == showtime_id))
    if starts_at is None or starts_at <= now:
        db.session.rollback()
        return 0
    free = free_seat_ids(showtime_id)
    offers = 0
    ttl = marquee().settings.waitlist_offer_seconds
    for entry in db.session.scalars(select(WaitlistEntry).where(
            WaitlistEntry.showtime_id == showtime_id, WaitlistEntry.status == "waiting")
            .order_by(WaitlistEntry.id).with_for_update(skip_locked=True)):
        if entry.seats > len(free):
            continue  # the first entry that fits gets the seats
        seats = _pick(showtime_id, free, entry.seats)
        expires = (now + timedelta(seconds=ttl)).replace(microsecond=0)
        hold_id, result = store.hold(showtime_id, entry.user_id, seats, ttl * 1000, expires, unsynced_ok=True)
        if not result.held:
            continue  # taken meanwhile, or the customer holds seats already: next time
        entry.status, entry.offer_hold_id, entry.offer_expires_at = "offered", hold_id, expires
        db.session.add(notifications.email_event("waitlist_offer", entry.user_id, entry_id=entry.id))
        free = [s for s in free if s not in seats]
        offers += 1
    db.session.commit()
    if offers:
        log.info("waitlist offers made", extra={"showtime_id": showtime_id, "count": offers})
    return offers


def offer_everywhere() -> int:
    """The scheduler's job: every showtime to come with a live waitlist."""
    showtimes = list(db.session.scalars(
        select(WaitlistEntry.showtime_id).distinct()
        .join(Showtime, Showtime.id == WaitlistEntry.showtime_id)
        .where(WaitlistEntry.status.in_(("waiting", "offered")), Showtime.starts_at > func.now())))
    db.session.rollback()
    return sum(make_offers(showtime_id) for showtime_id in showtimes)


def after_seats_freed(showtime_id: int) -> None:
    """Called after a commit that freed seats: the waitlist gets them first."""
    if db.session.scalar(select(exists().where(WaitlistEntry.showtime_id == showtime_id,
                                               WaitlistEntry.status == "waiting"))):
        make_offers(showtime_id)
    else:
        db.session.rollback()
