"""The booking engine: holds, reservations, payment outcomes, expiry, cancellation.

Redis holds make contention cheap and atomic (all seats of a request or none);
PostgreSQL decides. A seat of a showtime is live in at most one reservation
(``uq_reservation_seats_live``), so with Redis emptied or restarted no seat is
sold twice. Redis also keeps every live reservation's seats (``r:<id>`` keys),
so it refuses booked seats itself; after it loses them, the hold script asks for
a rebuild from PostgreSQL (``sync_showtime``) before it decides anything.

Order of effects: Redis claim -> one PostgreSQL transaction (reservation, seats,
outbox) -> after the commit, Redis follows. Nothing leaves the process from
inside an open transaction.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Iterable

import redis
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from app import errors
from app.adapters.seat_store import Hold, SeatStore, reservation_owner, showtime_of
from app.extensions import db, marquee
from app.metrics import HOLDS
from app.models import (
    OutboxEvent,
    Payment,
    Reservation,
    ReservationSeat,
    Seat,
    Showtime,
)
from app.services import notifications, tickets
from app.services.pagination import page_of

log = logging.getLogger(__name__)

# Redis keeps a reservation's seats a little past its payment deadline, so the
# expiry job (not the TTL) is what normally frees them.
GRACE_SECONDS = 120
# pg_advisory_xact_lock key: one scheduler acts at a time.
SCHEDULER_LOCK = 0x6D71_0001  # "mq" 1



def _seats() -> SeatStore:
    return marquee().seats


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _after_commit(what: str, fn, *args) -> None:
    """Redis follows PostgreSQL after the commit; if Redis fails now, TTLs and the
    sweep converge it, so the request does not fail for it."""
    try:
        fn(*args)
    except redis.RedisError:
        log.error("after-commit redis step failed: %s", what, exc_info=True)


def _seat_map_changed(showtime_id: int) -> None:
    _after_commit("seat map invalidation", marquee().cache.invalidate, f"res:{showtime_id}")


def _seats_freed(showtime_id: int) -> None:
    """After a commit that freed seats: the seat map changes and the waitlist goes first."""
    from app.services import waitlist

    _seat_map_changed(showtime_id)
    try:
        waitlist.after_seats_freed(showtime_id)
    except Exception:  # noqa: BLE001 - the scheduler retries offers; the freeing stands
        db.session.rollback()
        log.error("waitlist offer failed after seats were freed", exc_info=True)


# --- the showtime's seating, cached -------------------------------------------

def showtime_seating(showtime_id: int) -> dict:
    """What holds and reservations need of a showtime: start, prices, its seats."""
    def compute():
        showtime = db.session.get(Showtime, showtime_id)
        if showtime is None:
            return None
        seats = db.session.execute(
            select(Seat.id, Seat.label, Seat.category).where(Seat.screen_id == showtime.screen_id)
        ).all()
        return {
            "starts_at": showtime.starts_at.isoformat(),
            "currency": showtime.currency,
            "prices": showtime.prices,
            "seats": {str(s.id): [s.label, s.category] for s in seats},
        }

    seating = marquee().cache.get_or_compute(["showtimes", "screens"], "seating", showtime_id, compute, local=True)
    if seating is None:
        raise errors.NotFound(f"Showtime {showtime_id} does not exist")
    return seating


def _ensure_not_started(seating: dict, now: datetime) -> None:
    if datetime.fromisoformat(seating["starts_at"]) <= now:
        raise errors.ShowtimeStarted("Seats cannot be held or reserved once the showtime has started")


def _live_seats(showtime_id: int, seat_ids: Iterable[int]) -> list[int]:
    """Seats among ``seat_ids`` that are in a live reservation (PostgreSQL's view)."""
    return list(db.session.scalars(
        select(ReservationSeat.seat_id).where(
            ReservationSeat.showtime_id == showtime_id,
            ReservationSeat.seat_id.in_(list(seat_ids)),
            ReservationSeat.released_at.is_(None),
        )
    ))


# --- holds ----------------------------------------------------------------------

def hold_seats(user_id: int, showtime_id: int, seat_ids: list[int]) -> Hold:
    """Hold all of ``seat_ids`` for ``HOLD_TTL_SECONDS``, or none (409 with the taken ones)."""
    settings = marquee().settings
    if len(set(seat_ids)) != len(seat_ids):
        raise errors.Invalid("A seat is listed twice", errors={"seat_ids": ["Each seat only once"]})
    if len(seat_ids) > settings.max_seats_per_hold:
        raise errors.Invalid(
            f"At most {settings.max_seats_per_hold} seats per hold",
            errors={"seat_ids": [f"At most {settings.max_seats_per_hold} seats"]},
        )
    seating = showtime_seating(showtime_id)
    unknown = [s for s in seat_ids if str(s) not in seating["seats"]]
    if unknown:
        raise errors.Invalid("Some seats are not seats of this showtime's screen",
                             errors={"seat_ids": [f"Not a seat of this showtime: {unknown}"]}, seat_ids=unknown)
    now = _now()
    _ensure_not_started(seating, now)
    ttl = settings.hold_ttl_seconds
    expires_at = (now + timedelta(seconds=ttl)).replace(microsecond=0)
    store = _seats()
    checked_by_postgresql = False
    for attempt in range(3):
        # Redis keeps booked seats itself; when it has lost them it asks for a
        # rebuild. If it keeps losing them (a flapping server), decide with
        # PostgreSQL instead: slower, and right whatever Redis holds.
        checked_by_postgresql = attempt == 2
        hold_id, result = store.hold(showtime_id, user_id, seat_ids, ttl * 1000, expires_at,
                                     unsynced_ok=checked_by_postgresql)
        if not result.needs_sync:
            break
        sync_showtime(showtime_id)
    if result.held and checked_by_postgresql:
        booked = _live_seats(showtime_id, seat_ids)
        db.session.rollback()
        if booked:
            store.release(Hold(hold_id, showtime_id, user_id, seat_ids, expires_at.isoformat(), "held"))
            HOLDS.labels("conflict").inc()
            raise errors.SeatsUnavailable("Some of these seats are taken; none were held", seat_ids=booked)
    if result.live_hold_id:
        HOLDS.labels("already_holding").inc()
        raise errors.HoldExists(
            "You already hold seats for this showtime: reserve or release that hold first",
            hold_id=result.live_hold_id,
        )
    if not result.held:
        HOLDS.labels("conflict").inc()
        raise errors.SeatsUnavailable("Some of these seats are taken; none were held", seat_ids=result.taken)
    HOLDS.labels("held").inc()
    # The seat map reads holds live from Redis: nothing to invalidate.
    return Hold(hold_id, showtime_id, user_id, seat_ids, expires_at.isoformat(), "held")


SYNC_MARKER_SECONDS = 3600


def sync_showtime(showtime_id: int) -> int:
    """Rebuild Redis's knowledge of a showtime's live reservation seats from
    PostgreSQL (after a restart or flush, and hourly), then mark it synced.

    Seats are set only where no key exists. The reservations re-added are read
    again afterwards: one that ended meanwhile (its own Redis step may have run
    before ours) is freed now, so the rebuild never leaves a seat stuck.
    """
    now = _now()
    rows = db.session.execute(
        select(ReservationSeat.seat_id, Reservation.id, Reservation.status, Reservation.expires_at,
               Showtime.starts_at)
        .join(Reservation, Reservation.id == ReservationSeat.reservation_id)
        .join(Showtime, Showtime.id == ReservationSeat.showtime_id)
        .where(ReservationSeat.showtime_id == showtime_id, ReservationSeat.released_at.is_(None))
    ).all()
    db.session.rollback()
    owners = []
    for seat_id, reservation_id, status, expires_at, starts_at in rows:
        until = expires_at if status == "pending_payment" else max(starts_at, expires_at)
        ttl_ms = ((until - now).total_seconds() + GRACE_SECONDS) * 1000
        owners.append((seat_id, reservation_owner(reservation_id), ttl_ms))
    store = _seats()
    added = store.sync(showtime_id, owners, SYNC_MARKER_SECONDS)
    if rows:
        still_live = set(db.session.scalars(select(Reservation.id).where(
            Reservation.id.in_({r[1] for r in rows}),
            Reservation.status.in_(("pending_payment", "confirmed")))))
        db.session.rollback()
        for seat_id, reservation_id, *_ in rows:
            if reservation_id not in still_live:
                store.free_reservation(showtime_id, [seat_id], reservation_id)
    if added:
        log.warning("rebuilt seat keys from postgresql", extra={"showtime_id": showtime_id, "count": added})
    return added


def get_hold(user_id: int, hold_id: str) -> Hold:
    """The caller's own live hold (404 for anyone else's, or one that has ended)."""
    hold = _seats().get_hold(hold_id)
    if hold is None or hold.user_id != user_id:
        raise errors.NotFound("No such hold")
    return hold


def release_hold(user_id: int, hold_id: str) -> None:
    hold = get_hold(user_id, hold_id)
    if hold.state != "held":
        raise errors.HoldInUse("This hold is being turned into a reservation")
    _seats().release(hold)


# --- reservations -----------------------------------------------------------

def create_reservation(user_id: int, hold_id: str, payment_token: str) -> Reservation:
    """Turn the caller's live hold into a reservation awaiting payment.

    One transaction writes the reservation, one row per seat (the unique index is
    the final guard) and the payment request in the outbox.
    """
    settings = marquee().settings
    store = _seats()
    if showtime_of(hold_id) is None:
        raise errors.HoldExpired("No live hold with this id")
    hold = store.get_hold(hold_id)
    if hold is None:
        raise errors.HoldExpired("The hold has expired; hold the seats again")
    if hold.user_id != user_id:
        raise errors.NotFound("No such hold")
    seating = showtime_seating(hold.showtime_id)
    now = _now()
    _ensure_not_started(seating, now)
    window = settings.payment_window_seconds
    claimed = store.claim(hold, user_id, (window + GRACE_SECONDS) * 1000)
    if claimed == -2:
        raise errors.HoldInUse("This hold is already being turned into a reservation")
    if claimed != 1:
        raise errors.HoldExpired("The hold has expired; hold the seats again")

    prices, seats = seating["prices"], seating["seats"]
    try:
        reservation = Reservation(
            user_id=user_id,
            showtime_id=hold.showtime_id,
            status="pending_payment",
            total_cents=sum(prices[seats[str(s)][1]] for s in hold.seat_ids),
            currency=seating["currency"],
            hold_id=hold.id,
            expires_at=now + timedelta(seconds=window),
        )
        db.session.add(reservation)
        db.session.flush()
        db.session.add_all([
            ReservationSeat(reservation_id=reservation.id, showtime_id=hold.showtime_id, seat_id=s,
                            label=seats[str(s)][0], category=seats[str(s)][1],
                            price_cents=prices[seats[str(s)][1]])
            for s in hold.seat_ids
        ])
        db.session.add(_payment_request(reservation, payment_token))
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        store.release(hold)
        taken = _live_seats(hold.showtime_id, hold.seat_ids)
        db.session.rollback()
        raise errors.SeatsUnavailable("Some of these seats were sold meanwhile; none were reserved",
                                      seat_ids=taken) from exc
    except BaseException:
        db.session.rollback()
        _after_commit("release hold after failure", store.release, hold)
        raise
    _after_commit("bind seats to reservation", store.bind_reservation, hold, reservation.id,
                  (window + GRACE_SECONDS) * 1000)
    _seat_map_changed(hold.showtime_id)
    return reservation


def _outbox_event(reservation: Reservation, topic: str, idempotency_key: str, **extra) -> OutboxEvent:
    """Work about a reservation for another process; events of one reservation keep their order."""
    return OutboxEvent(
        topic=topic,
        aggregate_id=f"reservation:{reservation.id}",
        payload={"reservation_id": reservation.id, "user_id": reservation.user_id,
                 "amount_cents": reservation.total_cents, "currency": reservation.currency,
                 "idempotency_key": idempotency_key, **extra},
    )


def _payment_request(reservation: Reservation, payment_token: str) -> OutboxEvent:
    return _outbox_event(reservation, "payments.charge", f"reservation-{reservation.id}",
                         payment_token=payment_token)


def _refund_request(reservation: Reservation, reason: str) -> OutboxEvent:
    return _outbox_event(reservation, "payments.refund", f"refund-reservation-{reservation.id}", reason=reason)


def get_reservation(user_id: int, reservation_id: int, *, is_admin: bool = False) -> Reservation:
    reservation = db.session.get(Reservation, reservation_id)
    if reservation is None or (reservation.user_id != user_id and not is_admin):
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    return reservation


def list_reservations(user_id: int, page: int, page_size: int, *, status: str | None = None,
                      everyone: bool = False, of_user: int | None = None) -> tuple[list, int]:
    """The caller's reservations, newest first; an admin may ask for everyone's."""
    query = select(Reservation)
    if not everyone:
        query = query.where(Reservation.user_id == user_id)
    elif of_user is not None:
        query = query.where(Reservation.user_id == of_user)
    if status:
        query = query.where(Reservation.status == status)
    return page_of(query, [Reservation.created_at.desc(), Reservation.id.desc()], page, page_size)


def _lock_reservation(reservation_id: int) -> Reservation | None:
    return db.session.scalar(
        select(Reservation).where(Reservation.id == reservation_id).with_for_update()
    )


def _release_seats(reservation: Reservation, now: datetime) -> list[int]:
    db.session.execute(
        update(ReservationSeat)
        .where(ReservationSeat.reservation_id == reservation.id, ReservationSeat.released_at.is_(None))
        .values(released_at=now)
    )
    return [s.seat_id for s in reservation.seats]


def cancel_reservation(user_id: int, reservation_id: int, *, is_admin: bool = False) -> Reservation:
    """Cancel: seats free at once; a confirmed one is refunded through the outbox.

    A confirmed reservation can be cancelled until ``CANCELLATION_CUTOFF_MINUTES``
    before the show; one awaiting payment at any time before it starts. Cancelling
    again is harmless (the same answer).
    """
    now = _now()
    reservation = _lock_reservation(reservation_id)
    if reservation is None or (reservation.user_id != user_id and not is_admin):
        db.session.rollback()
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    if reservation.status == "cancelled":
        db.session.rollback()
        return reservation
    if reservation.status not in ("pending_payment", "confirmed"):
        status = reservation.status
        db.session.rollback()
        raise errors.NotCancellable(f"A reservation that is {status} cannot be cancelled")
    starts_at = db.session.scalar(select(Showtime.starts_at).where(Showtime.id == reservation.showtime_id))
    cutoff = starts_at - timedelta(minutes=marquee().settings.cancellation_cutoff_minutes)
    if reservation.status == "confirmed" and now >= cutoff:
        db.session.rollback()
        raise errors.CancellationClosed(
            f"Cancellation closed at {cutoff.isoformat()}, "
            f"{marquee().settings.cancellation_cutoff_minutes} minutes before the show")
    if now >= starts_at:
        db.session.rollback()
        raise errors.ShowtimeStarted("The showtime has started")
    was_confirmed = reservation.status == "confirmed"
    reservation.status, reservation.cancelled_at = "cancelled", now
    freed = _release_seats(reservation, now)
    if was_confirmed:
        tickets.cancel(reservation)
        db.session.add(_refund_request(reservation, "cancelled"))
    db.session.add(notifications.email_event("cancellation", reservation.user_id, reservation_id=reservation.id,
                                             refunded=was_confirmed))
    db.session.commit()
    _after_commit("free cancelled seats", _seats().free_reservation, reservation.showtime_id, freed, reservation.id)
    _seats_freed(reservation.showtime_id)
    return reservation


def record_payment(reservation: Reservation, payment: dict | None) -> None:
    """The gateway's answer, in the transaction of the state change it causes.
    Its idempotency key is unique: a redelivered message records nothing twice."""
    if payment is None:
        return
    db.session.execute(
        pg_insert(Payment).values(reservation_id=reservation.id, **payment)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


def confirm_payment(reservation_id: int, *, now: datetime | None = None, payment: dict | None = None) -> str:
    """A charge succeeded. Returns what became of it:

    - ``confirmed``: the reservation was waiting and in time; it is confirmed.
    - ``already_confirmed``: a repeated notice; nothing changes.
    - ``refund``: the reservation had expired, been cancelled or failed (its seats
      may be sold to someone else): the money is never kept, a refund is requested.
    The row is re-read under lock, so this never races the expiry job.
    """
    now = now or _now()
    reservation = _lock_reservation(reservation_id)
    if reservation is None:
        db.session.rollback()
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    if reservation.status == "confirmed":
        db.session.rollback()
        return "already_confirmed"
    record_payment(reservation, payment)
    if reservation.status == "pending_payment" and reservation.expires_at > now:
        reservation.status, reservation.confirmed_at = "confirmed", now
        tickets.issue(reservation)
        db.session.add(notifications.email_event("confirmation", reservation.user_id,
                                                 reservation_id=reservation.id))
        seat_ids = [s.seat_id for s in reservation.seats]
        starts_at = db.session.scalar(select(Showtime.starts_at).where(Showtime.id == reservation.showtime_id))
        db.session.commit()
        # Booked seats stay refused by Redis until the show starts (PostgreSQL still decides).
        ttl_ms = max(int((starts_at - now).total_seconds() * 1000), 1000) + GRACE_SECONDS * 1000
        _after_commit("keep confirmed seats", _seats().keep_for_reservation,
                      reservation.showtime_id, seat_ids, reservation.id, ttl_ms)
        _seat_map_changed(reservation.showtime_id)
        return "confirmed"
    if db.session.scalar(select(OutboxEvent.id).where(
            OutboxEvent.topic == "payments.refund",
            OutboxEvent.aggregate_id == f"reservation:{reservation.id}")) is not None:
        db.session.commit()  # a repeated late notice: its refund is already requested
        return "refund"
    freed: list[int] = []
    if reservation.status == "pending_payment":  # past its window; the job has not run yet
        reservation.status = "expired"
        freed = _release_seats(reservation, now)
    db.session.add(_refund_request(reservation, "payment_after_" + reservation.status))
    db.session.commit()
    if freed:
        _after_commit("free expired seats", _seats().free_reservation, reservation.showtime_id, freed,
                      reservation.id)
        _seats_freed(reservation.showtime_id)
    return "refund"


def fail_payment(reservation_id: int, *, payment: dict | None = None) -> str:
    """The charge was declined: the reservation fails and its seats are free.
    Returns ``payment_failed``, or the status it already had (a repeated notice)."""
    now = _now()
    reservation = _lock_reservation(reservation_id)
    if reservation is None:
        db.session.rollback()
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    record_payment(reservation, payment)
    if reservation.status != "pending_payment":
        status = reservation.status
        db.session.commit()
        return status
    reservation.status = "payment_failed"
    freed = _release_seats(reservation, now)
    db.session.add(notifications.email_event("payment_failed", reservation.user_id, reservation_id=reservation.id))
    db.session.commit()
    _after_commit("free seats of a failed payment", _seats().free_reservation, reservation.showtime_id, freed,
                  reservation.id)
    _seats_freed(reservation.showtime_id)
    return "payment_failed"


# --- the scheduler's jobs ---------------------------------------------------

def _scheduler_lock() -> bool:
    """Transaction-scoped advisory lock: one scheduler acts at a time, and a
    crashed one lets go with its connection."""
    return bool(db.session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SCHEDULER_LOCK}).scalar())


def expire_unpaid_reservations(*, now: datetime | None = None, batch: int = 200) -> int | None:
    """Expire reservations past their payment window and free their seats.

    Rows are taken ``FOR UPDATE SKIP LOCKED`` and re-checked under that lock, so a
    payment confirming at the same moment wins or loses cleanly, never both.
    Returns how many expired, or None when another scheduler holds the lock.
    """
    now = now or _now()
    if not _scheduler_lock():
        db.session.rollback()
        return None
    rows = db.session.scalars(
        select(Reservation)
        .where(Reservation.status == "pending_payment", Reservation.expires_at <= now)
        .order_by(Reservation.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    freed: list[tuple[int, int, list[int]]] = []
    for reservation in rows:
        if reservation.status != "pending_payment" or reservation.expires_at > now:
            continue
        reservation.status = "expired"
        freed.append((reservation.showtime_id, reservation.id, _release_seats(reservation, now)))
    db.session.commit()
    for showtime_id, reservation_id, seat_ids in freed:
        _after_commit("free expired seats", _seats().free_reservation, showtime_id, seat_ids, reservation_id)
        _seats_freed(showtime_id)
    if freed:
        log.info("expired unpaid reservations", extra={"count": len(freed)})
    return len(freed)


def sweep_stray_seat_keys() -> int | None:
    """Reconcile Redis with PostgreSQL: free seat keys that no live hold or
    reservation owns (a crash between a commit and its Redis step; TTLs would
    free them too, this is sooner), and restore missing keys of live reservations
    of showtimes to come. Returns how many stray keys were freed."""
    if not _scheduler_lock():
        db.session.rollback()
        return None
    store = _seats()
    by_showtime: dict[int, list[int]] = {}
    for showtime_id, seat_id in store.scan_seat_keys():
        by_showtime.setdefault(showtime_id, []).append(seat_id)
    removed = 0
    for showtime_id, seat_ids in by_showtime.items():
        owners = store.owners(showtime_id, seat_ids)
        res_ids = {int(o[2:]) for o in owners.values() if o.startswith("r:")}
        live = set(db.session.scalars(
            select(Reservation.id).where(Reservation.id.in_(res_ids),
                                         Reservation.status.in_(("pending_payment", "confirmed")))
        )) if res_ids else set()
        for seat_id, owner in owners.items():
            stray = (owner.startswith("r:") and int(owner[2:]) not in live) or (
                owner.startswith("h:") and not store.store.client.exists(store.hold_key(showtime_id, owner[2:])))
            if stray:
                removed += store.free_owner(showtime_id, [seat_id], owner)
    upcoming = list(db.session.scalars(
        select(Reservation.showtime_id).distinct()
        .join(Showtime, Showtime.id == Reservation.showtime_id)
        .where(Reservation.status.in_(("pending_payment", "confirmed")), Showtime.starts_at > _now())
    ))
    db.session.commit()
    if removed:
        log.warning("freed stray seat keys", extra={"count": removed})
    # The other direction: live reservations whose seat keys went missing.
    for showtime_id in upcoming:
        sync_showtime(showtime_id)
    return removed


# --- the live seat map --------------------------------------------------------

def seat_statuses(showtime_id: int, seat_ids: list[int]) -> dict[int, str]:
    """``held`` or ``booked`` for each seat that is not available.

    PostgreSQL's live reservation seats (cached per showtime, invalidated on every
    reservation change) say booked (confirmed) or held (awaiting payment); Redis
    adds the seats under a hold.
    """
    def compute():
        rows = db.session.execute(
            select(ReservationSeat.seat_id, Reservation.status)
            .join(Reservation, Reservation.id == ReservationSeat.reservation_id)
            .where(ReservationSeat.showtime_id == showtime_id, ReservationSeat.released_at.is_(None))
        ).all()
        return [[r.seat_id, r.status] for r in rows]

    live = marquee().cache.get_or_compute([f"res:{showtime_id}"], "live", showtime_id, compute, local=True)
    statuses = {sid: "booked" if status == "confirmed" else "held" for sid, status in live}
    for seat_id in _seats().owners(showtime_id, seat_ids):
        statuses.setdefault(seat_id, "held")
    return statuses

