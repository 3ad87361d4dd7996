"""The booking engine: holds, reservations, payment outcomes, expiry, cancellation.

The seats themselves (who holds what, Redis kept true) are ``app.services.seats``;
this module turns holds into reservations and moves reservations through their
states. A seat of a showtime is live in at most one reservation
(``uq_reservation_seats_live``): PostgreSQL is the final guard.

Order of effects: Redis claim -> one unit of work (reservation, seats, outbox)
-> after the commit, Redis follows. Nothing leaves the process from inside an
open transaction.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from app import db
from app.adapters.seat_store import ClaimOutcome, Hold, showtime_of
from app.bootstrap import marquee
from app.models import (
    LIVE_STATUSES,
    OutboxEvent,
    Payment,
    PaymentKind,
    PaymentStatus,
    Reservation,
    ReservationSeat,
    ReservationStatus,
    Screen,
    Showtime,
    Theater,
)
from app.services import (
    audit,
    blocked_seats,
    errors,
    notifications,
    outbound_webhooks,
    outbox,
    pricing,
    seats,
    tickets,
    vouchers,
    waiting_room,
    waitlist,
)
from app.services.pagination import page_of
from app.services.refunds import RefundPolicy
from app.services.seats import GRACE_SECONDS, SCHEDULER_LOCK

log = logging.getLogger(__name__)


class HoldReserved(errors.Conflict):
    code, title = "hold_reserved", "This hold is already a reservation"


# What the gateway said, as a reservation's ``failure_reason`` tells a client.
FAILURE_REASONS = {"card_declined": "declined", "declined": "declined", "unknown_token": "unknown_token"}


def failure_reason(gateway_reason: str | None) -> str:
    """A declined charge's reason in the API's words (``declined`` when unsaid)."""
    return FAILURE_REASONS.get(gateway_reason or "declined", gateway_reason)[:40]


# --- holds ----------------------------------------------------------------------

def hold_seats(user_id: int, showtime_id: int, seat_ids: list[int], *, accessible: bool = False,
               admission_token: str | None = None) -> Hold:
    """Hold all of ``seat_ids`` for ``HOLD_TTL_SECONDS``, or none (409 with the taken ones).
    While the showtime's waiting room is on, only with a live ``admission_token``."""
    settings = marquee().settings
    seats.check_seat_count("seat_ids", len(seat_ids))
    seating = seats.showtime_seating(showtime_id)
    seats.check_seat_ids(seating, seat_ids)
    at = seats.now()
    seats.ensure_not_started(seating, at)
    seats.check_accessible(seating, seat_ids, accessible, at)
    hold = seats.take_hold(user_id, showtime_id, seat_ids, settings.hold_ttl_seconds, seating=seating,
                           gate=waiting_room.gate(user_id, showtime_id, admission_token))
    seats.index_hold(hold)
    return hold


def hold_best_available(user_id: int, showtime_id: int, quantity: int, *, category: str | None = None,
                        accessible: int = 0, admission_token: str | None = None) -> Hold:
    """Marquee picks the best ``quantity`` seats (of ``category``; with ``accessible``
    wheelchair spaces among them, the rest beside them) and holds them in one atomic
    step: 409 ``not_enough_seats`` when no placement exists, never a partial hold."""
    settings = marquee().settings
    seats.check_seat_count("quantity", quantity)
    seating = seats.showtime_seating(showtime_id)
    if category is not None and not any(seat[1] == category for seat in seating["seats"].values()):
        raise errors.Invalid(f"This showtime's screen has no {category} seats",
                             errors={"category": [f"No seat of this screen is {category}"]})
    seats.ensure_not_started(seating, seats.now())
    hold = seats.take_best(user_id, showtime_id, quantity, settings.hold_ttl_seconds, category=category,
                           accessible=accessible, seating=seating,
                           gate=waiting_room.gate(user_id, showtime_id, admission_token))
    seats.index_hold(hold)
    return hold


def list_holds(user_id: int, page: int, page_size: int) -> tuple[list[Hold], int]:
    """The caller's live holds, latest expiry first (the newest, holds lasting alike)."""
    holds = seats.holds_of(user_id)
    start = (page - 1) * page_size
    return holds[start:start + page_size], len(holds)


def get_hold(user_id: int, hold_id: str) -> Hold:
    """The caller's own live hold (404 for anyone else's, or one that has ended)."""
    hold = seats.find_hold(hold_id)
    if hold is None or hold.user_id != user_id:
        raise errors.NotFound("No such hold")
    return hold


def release_hold(user_id: int, hold_id: str) -> None:
    """The caller's own live hold, freed at once (404 for anyone else's or an ended
    one; 409 ``hold_in_use`` while it is being reserved)."""
    seats.release_own(user_id, hold_id)


# --- reservations -----------------------------------------------------------

def hold_prices(hold: Hold, seating: dict) -> tuple[list[int], str]:
    """Each seat's price and the currency as the hold fixed them when it took its seats
    (a hold made before holds carried prices pays the showtime's category prices)."""
    if hold.prices and len(hold.prices) == len(hold.seat_ids):
        return list(hold.prices), hold.currency or seating["currency"]
    return [seating["prices"][seating["seats"][str(s)][1]] for s in hold.seat_ids], seating["currency"]


# What a new reservation's INSERT returns: its view's columns (``_view``), so the answer
# needs no second statement, nor a second transaction after the commit.
_RESERVATIONS = Reservation.__table__
_NEW_RESERVATION = [_RESERVATIONS.c[name] for name in (
    "id", "user_id", "status", "showtime_id", "total_cents", "discount_cents", "currency", "expires_at",
    "refund_cents", "created_at", "confirmed_at", "cancelled_at")]
# statements built once: their cache keys are memoized, where one built a call makes its own
_INSERT_RESERVATION = insert(_RESERVATIONS).returning(*_NEW_RESERVATION)
_INSERT_RESERVATION_SEATS = insert(ReservationSeat.__table__)


def reserve(user_id: int, hold_id: str, payment_token: str, *, voucher_code: str | None = None) -> dict:
    """Turn the caller's live hold into a reservation awaiting payment, charging exactly
    the prices the hold showed, less the voucher's discount (``voucher_code``). Returns
    the reservation as clients read it (``reservation_view``).

    One unit of work redeems the voucher (under its row's lock), claims the hold in
    Redis, and writes the reservation, one row per seat (the unique index is the final
    guard) and the payment request in the outbox. The voucher is checked before the
    claim: when it is refused (409 ``voucher_invalid``, its use not taken), the hold is
    untouched and can be reserved again without it. A failure after the claim releases
    the hold. Core statements, not ORM objects: the reservation's INSERT returns what the
    answer shows, its seats are one executemany, and nothing is flushed or loaded again.
    """
    settings = marquee().settings
    store = marquee().seats
    if showtime_of(hold_id) is None:
        raise errors.NotFound("No such hold")
    hold = store.get_hold(hold_id)
    if hold is None:
        raise _ended_hold(user_id, hold_id)
    if hold.user_id != user_id:
        raise errors.NotFound("No such hold")
    seating = seats.showtime_seating(hold.showtime_id)
    now = seats.now()
    seats.ensure_not_started(seating, now)
    window = settings.payment_window_seconds
    prices, currency = hold_prices(hold, seating)
    by_id = seating["seats"]
    if voucher_code is not None:
        vouchers.count_attempt(user_id)
    claimed = False
    try:
        with db.unit_of_work():
            discount, voucher = 0, None
            if voucher_code is not None:
                voucher, discount = vouchers.redeem(user_id, voucher_code, pricing.context(hold.showtime_id),
                                                    sum(prices), currency, now)
            _claim(store, hold, user_id, (window + GRACE_SECONDS) * 1000)
            claimed = True
            blocked_seats.refuse_blocked(hold.showtime_id, hold.seat_ids)
            reservation = db.session.execute(_INSERT_RESERVATION, {
                "user_id": user_id,
                "showtime_id": hold.showtime_id,
                "status": ReservationStatus.PENDING_PAYMENT,
                "total_cents": max(sum(prices) - discount, 0),
                "discount_cents": discount,
                "currency": currency,
                "hold_id": hold.id,
                "expires_at": now + timedelta(seconds=window),
            }).one()
            seat_rows = [{"reservation_id": reservation.id, "showtime_id": hold.showtime_id, "seat_id": s,
                          "label": by_id[str(s)][0], "category": by_id[str(s)][1], "price_cents": price}
                         for s, price in zip(hold.seat_ids, prices, strict=True)]
            db.session.execute(_INSERT_RESERVATION_SEATS, seat_rows)
            if voucher is not None:
                vouchers.record_redemption(voucher, reservation.id, user_id, discount)
            outbox.add(_payment_request(reservation, payment_token))
    except IntegrityError as exc:
        _voucher_not_at_fault(user_id, voucher_code)
        if not claimed:
            raise
        store.release(hold)
        taken = seats.live_seats(hold.showtime_id, hold.seat_ids)
        raise errors.SeatsUnavailable("Some of these seats were sold meanwhile; none were reserved",
                                      seat_ids=taken) from exc
    except BaseException as exc:
        if not isinstance(exc, vouchers.VoucherInvalid):
            _voucher_not_at_fault(user_id, voucher_code)
        if claimed:
            seats.after_commit("release hold after failure", store.release, hold)
        raise
    _voucher_not_at_fault(user_id, voucher_code)
    seats.after_commit("bind seats to reservation", store.bind_reservation, hold, reservation.id,
                       (window + GRACE_SECONDS) * 1000)
    seats.after_commit("end the waiting-room session", waiting_room.session_done, hold.showtime_id, user_id)
    # its seats in their rows' order, as reservation_view reads them (one INSERT numbers them in turn)
    return _view(reservation, [{key: row[key] for key in ("seat_id", "label", "category", "price_cents")}
                               for row in seat_rows], _payment_state(reservation, {}))


def _voucher_not_at_fault(user_id: int, voucher_code: str | None) -> None:
    """Only refused codes count against the user's voucher attempts: the attempt counted
    before the check is taken back when the checkout succeeded or failed for another reason."""
    if voucher_code is not None:
        seats.after_commit("un-count a voucher attempt", vouchers.attempt_succeeded, user_id)


def _claim(store, hold: Hold, user_id: int, ttl_ms: int) -> None:
    """Claim the hold for checkout in Redis (``claim_hold.lua``): ``HoldInUse`` or
    ``HoldExpired`` when it cannot be."""
    claimed = store.claim(hold, user_id, ttl_ms)
    if claimed is ClaimOutcome.ALREADY_CLAIMED:
        raise errors.HoldInUse("This hold is already being turned into a reservation")
    if claimed is not ClaimOutcome.CLAIMED:
        raise errors.HoldExpired("The hold has expired; hold the seats again")


def _ended_hold(user_id: int, hold_id: str) -> errors.DomainError:
    """Why a hold id names no live hold: it became a reservation (409
    ``hold_reserved`` with its id, for its owner only), it ended (409
    ``hold_expired``), or it never was the caller's (404)."""
    reservation = db.session.execute(
        select(Reservation.id, Reservation.user_id).where(Reservation.hold_id == hold_id)
    ).first()
    if reservation is not None:
        if reservation.user_id != user_id:
            return errors.NotFound("No such hold")
        return HoldReserved(f"This hold is already reservation {reservation.id}", reservation_id=reservation.id)
    if seats.hold_was_made_by(user_id, hold_id):
        return errors.HoldExpired("The hold has expired; hold the seats again")
    return errors.NotFound("No such hold")


def _outbox_event(reservation: Reservation, topic: str, idempotency_key: str, **extra) -> dict:
    """Work about a reservation for another process (an ``outbox.add`` row); events of one
    reservation keep their order."""
    return {
        "topic": topic,
        "aggregate_id": f"reservation:{reservation.id}",
        "payload": {"reservation_id": reservation.id, "user_id": reservation.user_id,
                    "amount_cents": reservation.total_cents, "currency": reservation.currency,
                    "idempotency_key": idempotency_key, **extra},
    }


def _payment_request(reservation: Reservation, payment_token: str) -> dict:
    return _outbox_event(reservation, "payments.charge", f"reservation-{reservation.id}",
                         payment_token=payment_token)


def _refund_request(reservation: Reservation, reason: str, amount_cents: int) -> dict:
    """Ask the worker to refund ``amount_cents`` (what the refund policy leaves, or all of a late charge)."""
    return _outbox_event(reservation, "payments.refund", f"refund-reservation-{reservation.id}", reason=reason,
                         amount_cents=amount_cents)


def get_reservation(user_id: int, reservation_id: int, *, is_admin: bool = False) -> Reservation:
    reservation = db.session.get(Reservation, reservation_id)
    if reservation is None or (reservation.user_id != user_id and not is_admin):
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    return reservation


def payment_states(reservations: list[Reservation]) -> dict[int, tuple[str, str | None]]:
    """``(payment_status, failure_reason)`` of each reservation, in one query:
    ``pending`` (awaiting the charge), ``succeeded``, ``declined`` (with a
    reason), ``refund_pending`` (charged, then cancelled or too late),
    ``refunded``, ``not_refunded`` (cancelled with a fee of the whole charge) or
    ``not_charged`` (ended before any charge)."""
    ids = [r.id for r in reservations]
    found: dict[int, dict[str, tuple[str, str | None]]] = {}
    if ids:
        for reservation_id, kind, status, reason in db.session.execute(
            select(Payment.reservation_id, Payment.kind, Payment.status, Payment.failure_reason)
            .where(Payment.reservation_id.in_(ids)).order_by(Payment.id)
        ):
            found.setdefault(reservation_id, {})[kind] = (status, reason)
    return {r.id: _payment_state(r, found.get(r.id, {})) for r in reservations}


def _payment_state(reservation, payments: dict) -> tuple[str, str | None]:
    """``reservation``: anything with its ``status`` and ``refund_cents``; ``payments``:
    ``{kind: (status, failure reason)}`` of its last payment of each kind."""
    charge, refund = payments.get(PaymentKind.CHARGE), payments.get(PaymentKind.REFUND)
    if refund is not None and refund[0] == PaymentStatus.SUCCEEDED:
        return "refunded", None
    if charge is None:
        pending = reservation.status == ReservationStatus.PENDING_PAYMENT
        return ("pending" if pending else "not_charged"), None
    if charge[0] == PaymentStatus.DECLINED:
        return "declined", failure_reason(charge[1])
    if reservation.status in (ReservationStatus.CONFIRMED, ReservationStatus.PENDING_PAYMENT):
        return "succeeded", None
    if reservation.refund_cents == 0:
        return "not_refunded", None
    return "refund_pending", None


def reservation_views(reservations: list[Reservation]) -> list[dict]:
    """Reservations as clients read them: the payment deadline only while the
    payment is awaited, the payment's state and why it failed."""
    states = payment_states(reservations)
    return [_view(r, r.seats, states[r.id]) for r in reservations]


def _view(r, seats, payment_state: tuple[str, str | None]) -> dict:
    """``r``: a reservation or a row with its columns."""
    return {
        "id": r.id, "user_id": r.user_id, "status": r.status, "showtime_id": r.showtime_id,
        "seats": seats, "total_cents": r.total_cents, "discount_cents": r.discount_cents, "currency": r.currency,
        "expires_at": r.expires_at if r.status == ReservationStatus.PENDING_PAYMENT else None,
        "payment_status": payment_state[0], "failure_reason": payment_state[1],
        "refund_cents": r.refund_cents,
        "created_at": r.created_at, "confirmed_at": r.confirmed_at, "cancelled_at": r.cancelled_at,
    }


# One reservation, its seats and its payments in one statement, without the ORM: what a
# client waiting for its payment asks again and again (the ORM's get, its selectin load
# of the seats and the payments' query were three statements and most of the request).
_ONE_VIEW = text("""
    SELECT r.id, r.user_id, r.status, r.showtime_id, r.total_cents, r.discount_cents, r.currency,
           r.expires_at, r.refund_cents, r.created_at, r.confirmed_at, r.cancelled_at,
           ARRAY(SELECT json_build_array(rs.seat_id, rs.label, rs.category, rs.price_cents)
                   FROM reservation_seats rs WHERE rs.reservation_id = r.id ORDER BY rs.id) AS seats,
           ARRAY(SELECT json_build_array(p.kind, p.status, p.failure_reason)
                   FROM payments p WHERE p.reservation_id = r.id ORDER BY p.id) AS payments
      FROM reservations r
     WHERE r.id = :id
""")


def reservation_view(user_id: int, reservation_id: int, *, is_admin: bool = False) -> dict:
    """``reservation_views`` of one of the caller's reservations (any, for an admin):
    ``NotFound`` for anyone else's. One statement, one snapshot, run alone (``db.alone``):
    the reservation stream's read (the live process, several a checkout) and a client's
    GET paid a BEGIN and a ROLLBACK round trip besides it."""
    rows = db.alone(_ONE_VIEW, {"id": reservation_id})
    row = rows[0] if rows else None
    if row is None or (row.user_id != user_id and not is_admin):
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    seats = [{"seat_id": seat_id, "label": label, "category": category, "price_cents": price}
             for seat_id, label, category, price in row.seats]
    payments = {kind: (status, reason) for kind, status, reason in row.payments}  # the last of each kind
    return _view(row, seats, _payment_state(row, payments))


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


def _announce(*reservation_ids: int) -> None:
    """After the commit that changed their status: the reservations' followers (the live
    process's streams, API.md extension) read them again."""
    if reservation_ids:
        seats.after_commit("announce reservations", marquee().redis.announce_reservations, reservation_ids)


def _lock_reservation(reservation_id: int) -> Reservation:
    reservation = db.session.scalar(
        select(Reservation).where(Reservation.id == reservation_id).with_for_update()
    )
    if reservation is None:
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    return reservation


def _release_seats(reservation: Reservation, now: datetime) -> list[int]:
    db.session.execute(
        update(ReservationSeat)
        .where(ReservationSeat.reservation_id == reservation.id, ReservationSeat.released_at.is_(None))
        .values(released_at=now)
    )
    return [s.seat_id for s in reservation.seats]


def _starts_at_and_policy(showtime_id: int) -> tuple[datetime, RefundPolicy]:
    """When the showtime starts and its theater's refund policy (the site-wide rule if none)."""
    starts_at, stored = db.session.execute(
        select(Showtime.starts_at, Theater.refund_policy)
        .join(Screen, Screen.id == Showtime.screen_id).join(Theater, Theater.id == Screen.theater_id)
        .where(Showtime.id == showtime_id)).one()
    return starts_at, RefundPolicy.of(stored, marquee().settings.cancellation_cutoff_minutes)


def cancel_reservation(user_id: int, reservation_id: int, *, is_admin: bool = False) -> Reservation:
    """Cancel: seats free at once; a confirmed one is refunded through the outbox.

    A confirmed reservation can be cancelled until its theater's refund policy's
    ``cutoff_minutes`` (else ``CANCELLATION_CUTOFF_MINUTES``) before the show, and
    is refunded what was charged less the policy's fee (``services.refunds``), an
    amount fixed now on the reservation (``refund_cents``) and in the refund request.
    One awaiting payment can be cancelled at any time before it starts, and refunds 0.
    Cancelling again is harmless (the same answer).
    """
    now = seats.now()
    with db.unit_of_work():
        reservation = _lock_reservation(reservation_id)
        if reservation.user_id != user_id and not is_admin:
            raise errors.NotFound(f"Reservation {reservation_id} does not exist")
        if reservation.status == ReservationStatus.CANCELLED:
            return reservation
        if reservation.status not in LIVE_STATUSES:
            raise errors.NotCancellable(f"A reservation that is {reservation.status} cannot be cancelled")
        starts_at, policy = _starts_at_and_policy(reservation.showtime_id)
        cutoff = starts_at - timedelta(minutes=policy.cutoff_minutes)
        if reservation.status == ReservationStatus.CONFIRMED and now >= cutoff:
            raise errors.CancellationClosed(
                f"Cancellation closed at {cutoff.isoformat()}, {policy.cutoff_minutes} minutes before the show")
        if now >= starts_at:
            raise errors.ShowtimeStarted("The showtime has started")
        was_confirmed = reservation.status == ReservationStatus.CONFIRMED
        if reservation.user_id != user_id:  # an admin's, for a customer: a staff write
            audit.record("reservation.cancel", actor_id=user_id, object_type="reservation", object_id=reservation.id,
                         before={"status": str(reservation.status)}, after={"status": str(ReservationStatus.CANCELLED)})
        reservation.status, reservation.cancelled_at = ReservationStatus.CANCELLED, now
        reservation.refund_cents = policy.refund(reservation.total_cents) if was_confirmed else 0
        freed = _release_seats(reservation, now)
        vouchers.give_back(reservation.id, now)
        if was_confirmed:
            tickets.cancel(reservation)
            if reservation.refund_cents > 0:  # a fee of everything leaves nothing to send back
                outbox.add(_refund_request(reservation, "cancelled", reservation.refund_cents))
        outbox.add(notifications.email_event(
            "cancellation", reservation.user_id, reservation_id=reservation.id, refunded=was_confirmed,
            refund_cents=reservation.refund_cents,
            fee_cents=(reservation.total_cents - reservation.refund_cents) if was_confirmed else 0))
        outbound_webhooks.emit("reservation.cancelled", reservation, f"{reservation.id}",
                               refund_requested=bool(reservation.refund_cents), refund_cents=reservation.refund_cents)
    _announce(reservation.id)
    seats.free_for_reservation(reservation.showtime_id, freed, reservation.id)
    waitlist.seats_freed(reservation.showtime_id)
    return reservation


_INSERT_PAYMENT = pg_insert(Payment.__table__).on_conflict_do_nothing(index_elements=["idempotency_key"])


def record_payment(reservation_id: int, payment: dict | None) -> None:
    """The gateway's answer, in the transaction of the state change it causes.
    Its idempotency key is unique: a redelivered message records nothing twice."""
    if payment is None:
        return
    db.session.execute(_INSERT_PAYMENT, {"failure_reason": None, **payment, "reservation_id": reservation_id})


# A confirmation's reservation, locked, with what the confirmation needs (its showtime's
# times included). By its key alone: the status and deadline are checked in Python, so the
# planner cannot take the pending reservations' partial index for this lookup (it did, on
# tables without statistics: a scan of every reservation waiting for its payment).
_LOCK_FOR_CONFIRMATION = text("""
    SELECT r.id, r.user_id, r.showtime_id, r.status, r.expires_at, r.total_cents, r.currency,
           s.starts_at, s.ends_at
      FROM reservations r JOIN showtimes s ON s.id = r.showtime_id
     WHERE r.id = :id
       FOR UPDATE OF r
""")
_CONFIRM = text("UPDATE reservations SET status = :confirmed, confirmed_at = :now, updated_at = now() WHERE id = :id")
# The same UPDATE with the charge that confirms it recorded (record_payment's rule: a
# redelivered charge records nothing twice), in one statement: one round trip fewer.
_CONFIRM_PAID = text("""
    WITH confirmed AS (UPDATE reservations SET status = :confirmed, confirmed_at = :now, updated_at = now()
                        WHERE id = :id)
    INSERT INTO payments (reservation_id, kind, status, amount_cents, currency, gateway_ref, failure_reason,
                          idempotency_key, created_at)
    VALUES (:id, :kind, :status, :amount_cents, :currency, :gateway_ref, :failure_reason, :idempotency_key,
            coalesce(CAST(:created_at AS timestamptz), now()))
    ON CONFLICT (idempotency_key) DO NOTHING
""")


def confirm_payment(reservation_id: int, *, now: datetime | None = None, payment: dict | None = None) -> str:
    """A charge succeeded. Returns what became of it:

    - ``confirmed``: the reservation was waiting and in time; it is confirmed.
    - ``already_confirmed``: a repeated notice; nothing changes.
    - ``refund``: the reservation had expired, been cancelled or failed (its seats
      may be sold to someone else): the money is never kept, a refund is requested.
    The row is read under its lock, so this never races the expiry job. The usual case
    (waiting, in time) is Core statements, no ORM objects: the row locked and read with
    its showtime's times, its UPDATE with the payment, the tickets and the email's outbox row.
    """
    now = now or seats.now()
    with db.unit_of_work():
        row = db.session.execute(_LOCK_FOR_CONFIRMATION, {"id": reservation_id}).one_or_none()
        if row is None or row.status != ReservationStatus.PENDING_PAYMENT or row.expires_at <= now:
            outcome, showtime_id, freed = _not_in_time(reservation_id, now, payment)
        else:
            confirm = {"id": reservation_id, "now": now, "confirmed": str(ReservationStatus.CONFIRMED)}
            if payment is None:
                db.session.execute(_CONFIRM, confirm)
            else:
                db.session.execute(_CONFIRM_PAID, {"failure_reason": None, "created_at": None, **payment, **confirm,
                                                   "kind": str(payment["kind"]), "status": str(payment["status"])})
            confirmed = SimpleNamespace(**{**row._mapping, "status": ReservationStatus.CONFIRMED})
            outcome, showtime_id, freed = "confirmed", confirmed.showtime_id, []
            kept = tickets.issue(confirmed)
            outbox.add(notifications.email_event("confirmation", confirmed.user_id, reservation_id=reservation_id))
            outbound_webhooks.reservation_confirmed(confirmed, seat_count=len(kept))
    if showtime_id is None:  # a repeated notice: nothing changed, nobody to tell
        return outcome
    _announce(reservation_id)
    if outcome == "confirmed":
        seats.keep_for_reservation(showtime_id, kept, reservation_id, confirmed.starts_at)
    elif freed:
        seats.free_for_reservation(showtime_id, freed, reservation_id)
        waitlist.seats_freed(showtime_id)
    return outcome


def _not_in_time(reservation_id: int, now: datetime, payment: dict | None) -> tuple[str, int | None, list[int]]:
    """``confirm_payment`` of a reservation not waiting in time, in its unit of work, the
    row locked: ``already_confirmed`` or ``refund``, with the showtime (None when nothing
    changed: a repeated notice) and the seats this freed."""
    reservation = _lock_reservation(reservation_id)
    if reservation.status == ReservationStatus.CONFIRMED:
        return "already_confirmed", None, []
    record_payment(reservation_id, payment)
    if _refund_requested(reservation):
        return "refund", None, []  # a repeated late notice: its refund is already requested
    freed: list[int] = []
    if reservation.status == ReservationStatus.PENDING_PAYMENT:  # past its window; the job has not run
        reservation.status = ReservationStatus.EXPIRED
        freed = _release_seats(reservation, now)
        vouchers.give_back(reservation.id, now)
    # A charge that came too late is refunded in full: no fee on money never earned.
    reservation.refund_cents = reservation.total_cents
    outbox.add(_refund_request(reservation, "payment_after_" + reservation.status, reservation.total_cents))
    return "refund", reservation.showtime_id, freed


def _refund_requested(reservation: Reservation) -> bool:
    return db.session.scalar(select(OutboxEvent.id).where(
        OutboxEvent.topic == "payments.refund",
        OutboxEvent.aggregate_id == f"reservation:{reservation.id}")) is not None


def fail_payment(reservation_id: int, *, payment: dict | None = None) -> str:
    """The charge was declined: the reservation fails and its seats are free.
    Returns ``payment_failed``, or the status it already had (a repeated notice)."""
    now = seats.now()
    with db.unit_of_work():
        reservation = _lock_reservation(reservation_id)
        if payment is not None:
            payment = {**payment, "failure_reason": failure_reason(payment.get("failure_reason"))}
        record_payment(reservation.id, payment)
        if reservation.status != ReservationStatus.PENDING_PAYMENT:
            return reservation.status
        reservation.status = ReservationStatus.PAYMENT_FAILED
        freed = _release_seats(reservation, now)
        vouchers.give_back(reservation.id, now)
        outbox.add(notifications.email_event("payment_failed", reservation.user_id,
                                                 reservation_id=reservation.id))
    _announce(reservation_id)
    seats.free_for_reservation(reservation.showtime_id, freed, reservation.id)
    waitlist.seats_freed(reservation.showtime_id)
    return ReservationStatus.PAYMENT_FAILED


# --- the scheduler's jobs ---------------------------------------------------

def expire_unpaid_reservations(*, now: datetime | None = None, batch: int = 200) -> int | None:
    """Expire reservations past their payment window and free their seats.

    Rows are taken ``FOR UPDATE SKIP LOCKED`` and re-checked under that lock, so a
    payment confirming at the same moment wins or loses cleanly, never both.
    Returns how many expired, or None when another scheduler holds the lock.
    """
    now = now or seats.now()
    freed: list[tuple[int, int, list[int]]] = []
    with db.unit_of_work():
        if not db.try_xact_lock(SCHEDULER_LOCK):
            return None
        db.index_scans_only()  # every paid reservation leaves an entry in the pending index
        rows = db.session.scalars(
            select(Reservation)
            .where(Reservation.status == ReservationStatus.PENDING_PAYMENT, Reservation.expires_at <= now)
            .order_by(Reservation.expires_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for reservation in rows:
            if reservation.status != ReservationStatus.PENDING_PAYMENT or reservation.expires_at > now:
                continue
            reservation.status = ReservationStatus.EXPIRED
            vouchers.give_back(reservation.id, now)
            freed.append((reservation.showtime_id, reservation.id, _release_seats(reservation, now)))
    _announce(*(reservation_id for _showtime_id, reservation_id, _seats in freed))
    for showtime_id, reservation_id, seat_ids in freed:
        seats.free_for_reservation(showtime_id, seat_ids, reservation_id)
        waitlist.seats_freed(showtime_id)
    if freed:
        log.info("expired unpaid reservations", extra={"count": len(freed)})
    return len(freed)
