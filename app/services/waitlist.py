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
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from app import db
from app.adapters.seat_store import HoldState
from app.bootstrap import marquee
from app.models import LIVE_WAITLIST_STATUSES, Reservation, Seat, Showtime, WaitlistEntry, WaitlistStatus
from app.services import errors, notifications, seats
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


def _pick(free: list[int], n: int) -> list[int]:
    """``n`` free seats side by side in one row when there are, else the first ``n``."""
    rows: dict[int, list[tuple[int, int]]] = {}
    for seat_id, row, col in db.session.execute(
            select(Seat.id, Seat.row_index, Seat.col_index).where(Seat.id.in_(free))):
        rows.setdefault(row, []).append((col, seat_id))
    for row in sorted(rows):
        in_row = sorted(rows[row])
        for i in range(len(in_row) - n + 1):
            window = in_row[i:i + n]
            if window[-1][0] - window[0][0] == n - 1:  # consecutive positions: no aisle between
                return [seat_id for _, seat_id in window]
    return free[:n]


def make_offers(showtime_id: int) -> int:
    """Settle lapsed and accepted offers, then offer free seats to the first
    waiting entries that fit: each offer is a hold taken like any customer's
    (``seats.take_hold``). Returns how many offers were made."""
    now = seats.now()
    with db.unit_of_work():
        _settle_offers(showtime_id, now)
    ttl = marquee().settings.waitlist_offer_seconds
    offers = 0
    with db.unit_of_work():
        starts_at = db.session.scalar(select(Showtime.starts_at).where(Showtime.id == showtime_id))
        if starts_at is None or starts_at <= now:
            return 0
        free = seats.free_seat_ids(showtime_id)
        for entry in db.session.scalars(select(WaitlistEntry).where(
                WaitlistEntry.showtime_id == showtime_id, WaitlistEntry.status == WaitlistStatus.WAITING)
                .order_by(WaitlistEntry.id).with_for_update(skip_locked=True)):
            if entry.seats > len(free):
                continue  # the first entry that fits gets the seats
            picked = _pick(free, entry.seats)
            try:
                hold = seats.take_hold(entry.user_id, showtime_id, picked, ttl)
            except (errors.SeatsUnavailable, errors.HoldExists):
                continue  # taken meanwhile, or the customer holds seats already: next time
            seats.index_hold(hold)
            entry.status, entry.offer_hold_id = WaitlistStatus.OFFERED, hold.id
            entry.offer_expires_at = datetime.fromisoformat(hold.expires_at)
            db.session.add(notifications.email_event("waitlist_offer", entry.user_id, entry_id=entry.id))
            free = [s for s in free if s not in picked]
            offers += 1
    if offers:
        log.info("waitlist offers made", extra={"showtime_id": showtime_id, "count": offers})
    return offers


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


def after_seats_freed(showtime_id: int) -> None:
    """Called after a commit that freed seats: the waitlist gets them first."""
    with db.unit_of_work():
        waiting = db.session.scalar(select(exists().where(WaitlistEntry.showtime_id == showtime_id,
                                                          WaitlistEntry.status == WaitlistStatus.WAITING)))
    if waiting:
        make_offers(showtime_id)
