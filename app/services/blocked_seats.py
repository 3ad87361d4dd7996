"""Seats an admin takes out of sale for one showtime (API.md: a seat's status ``blocked``).

A blocked seat is never held nor sold, whatever Redis knows:
- Redis: a block marks the seats blocked, all or none, like a hold, so holds and best
  available pass them over at once; ``seats.sync_showtime`` rebuilds the marks from the
  ``blocked_seats`` rows after Redis loses them.
- PostgreSQL: a block and a reservation of the same seat are serialized by the
  showtime's advisory lock, which a block takes exclusively and a reservation shared
  (reservations never wait on each other). Under it the block refuses seats in a live
  reservation and the reservation refuses blocked seats (``refuse_blocked``), so the one
  that commits second sees the first even if Redis lost both meanwhile. This relies on
  READ COMMITTED (the default): every statement after the lock reads what committed
  before it was granted.

Order of a block: lock -> authorization -> PostgreSQL check -> Redis mark (all or none)
-> rows and audit entry -> commit; a failed commit undoes the mark. An unblock deletes the
row and records its entry, commits, then frees the mark.

Who: an admin, or a manager of the showtime's theater (``staff.require``), decided under
a share lock of the showtime's row, so it cannot move to another theater's screen
meanwhile.
"""
from __future__ import annotations

from sqlalchemy import bindparam, delete, select

from app import db
from app.models import BlockedSeat, Seat
from app.services import audit, catalog, errors, seats, staff, waitlist

# db.xact_lock(SEAT_LOCK_SPACE, showtime): blocks and reservations of one showtime.
# The two-key form never meets the one-key locks (seats.SCHEDULER_LOCK).
SEAT_LOCK_SPACE = 0x6D71_0002  # "mq" 2


def _lock_showtime_seats(showtime_id: int, *, shared: bool) -> None:
    """Until the end of the caller's transaction: shared for a reservation, exclusive for a block."""
    db.xact_lock(SEAT_LOCK_SPACE, showtime_id, shared=shared)


_BLOCKED_AMONG = select(BlockedSeat.seat_id).where(  # built once, as every checkout asks it
    BlockedSeat.showtime_id == bindparam("showtime_id"), BlockedSeat.seat_id.in_(bindparam("seat_ids", expanding=True)))


def refuse_blocked(showtime_id: int, seat_ids: list[int]) -> None:
    """In the unit of work that writes a reservation of ``seat_ids``, before its rows:
    wait for a block of the showtime in flight to end, then refuse seats an admin
    blocked (409 ``seats_unavailable`` naming them). Redis refuses them first as a rule;
    this is the guard for when Redis lost the block."""
    _lock_showtime_seats(showtime_id, shared=True)
    blocked = sorted(db.session.scalars(_BLOCKED_AMONG, {"showtime_id": showtime_id, "seat_ids": list(seat_ids)}))
    if blocked:
        raise errors.SeatsUnavailable("Some of these seats were taken out of sale; none were reserved",
                                      seat_ids=blocked)


def _refuse_taken(taken: list[int]) -> None:
    if taken:
        raise errors.SeatsUnavailable("Some of these seats are held, booked or blocked already; none were blocked",
                                      seat_ids=sorted(taken))


def _authorize(actor: staff.Actor, showtime_id: int) -> None:
    """In the caller's transaction: ``NotFound`` for an unknown showtime, ``Forbidden``
    unless an admin or a manager of its theater (the showtime's row share-locked)."""
    staff.require(actor, catalog.showtime_theater_id(showtime_id, lock=True), "manager")


def block(showtime_id: int, seat_ids: list[int], reason: str | None, *, actor: staff.Actor) -> dict:
    """Take ``seat_ids`` out of sale for the showtime, all or none: every one must be
    free (neither held, booked nor blocked: 409 ``seats_unavailable`` naming the others)
    and the showtime must not have started. Answers the seats blocked (``list_blocked``)."""
    seating = seats.showtime_seating(showtime_id)
    seats.check_seat_ids(seating, seat_ids)
    seats.ensure_not_started(seating, seats.now())
    marked = False
    try:
        with db.unit_of_work():
            _lock_showtime_seats(showtime_id, shared=False)
            _authorize(actor, showtime_id)
            _refuse_taken(seats.live_seats(showtime_id, seat_ids))
            _refuse_taken(seats.block_in_store(showtime_id, seat_ids))
            marked = True
            db.session.add_all([BlockedSeat(showtime_id=showtime_id, seat_id=seat_id, reason=reason,
                                            blocked_by=actor.user_id) for seat_id in seat_ids])
            audit.record("blocked_seats.create", actor_id=actor.user_id, object_type="showtime",
                         object_id=showtime_id, after={"seat_ids": sorted(seat_ids), "reason": reason})
    except BaseException:
        if marked:  # the rows are not there: no seat may stay blocked in Redis alone
            seats.unblock_in_store(showtime_id, seat_ids)
        raise
    return list_blocked(showtime_id, seat_ids)


def unblock(showtime_id: int, seat_id: int, *, actor: staff.Actor) -> None:
    """Put a blocked seat back on sale (404 when the seat is not blocked for the showtime).
    It needs no seat lock: nothing it races can sell a seat twice, and Redis frees the
    seat only after the commit."""
    with db.unit_of_work():
        _authorize(actor, showtime_id)
        removed = db.session.scalars(delete(BlockedSeat).where(
            BlockedSeat.showtime_id == showtime_id, BlockedSeat.seat_id == seat_id)
            .returning(BlockedSeat.reason)).all()
        if not removed:
            raise errors.NotFound(f"Seat {seat_id} is not blocked for showtime {showtime_id}")
        audit.record("blocked_seats.delete", actor_id=actor.user_id, object_type="showtime",
                     object_id=showtime_id, before={"seat_ids": [seat_id], "reason": removed[0]})
    seats.unblock_in_store(showtime_id, [seat_id])
    waitlist.seats_freed(showtime_id)


def list_blocked(showtime_id: int, seat_ids: list[int] | None = None, *, actor: staff.Actor | None = None) -> dict:
    """The showtime's blocked seats (only those of ``seat_ids`` when given), in layout
    order, with who blocked them, when and why. With ``actor``: an admin's or a
    manager's of the showtime's theater (``Forbidden`` otherwise)."""
    if actor is not None:
        staff.require(actor, catalog.showtime_theater_id(showtime_id), "manager")
    seats.showtime_seating(showtime_id)  # 404 for an unknown showtime
    query = (select(BlockedSeat, Seat.label).join(Seat, Seat.id == BlockedSeat.seat_id)
             .where(BlockedSeat.showtime_id == showtime_id).order_by(Seat.row_index, Seat.col_index))
    if seat_ids is not None:
        query = query.where(BlockedSeat.seat_id.in_(seat_ids))
    return {"showtime_id": showtime_id, "seats": [
        {"seat_id": row.seat_id, "label": label, "reason": row.reason, "blocked_by": row.blocked_by,
         "blocked_at": row.created_at}
        for row, label in db.session.execute(query)]}
