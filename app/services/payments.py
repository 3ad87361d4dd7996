"""Payments as the worker processes them: charge a reservation, refund one.

The gateway is called with no database transaction open (a side effect never
happens inside one); its answer is then recorded together with the state change
it causes (``booking.confirm_payment`` / ``fail_payment``). Both steps are
idempotent, because a message may be delivered more than once.
"""
from __future__ import annotations

import hashlib
import hmac
import time

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import db
from app.bootstrap import marquee
from app.models import Payment, PaymentKind, PaymentStatus, Reservation, ReservationStatus, WebhookEvent
from app.services import booking, errors, outbound_webhooks


def _gateway():
    return marquee().gateway


def process_charge(payload: dict) -> str:
    """Charge for a reservation; confirm it, or fail it. Returns the outcome.

    Raises ``TransientPaymentError`` when the gateway cannot answer now (retry).
    """
    reservation_id = int(payload["reservation_id"])
    status = _reservation_status(reservation_id)  # a read of its own: nothing stays open across the gateway call
    if status in (ReservationStatus.CONFIRMED, ReservationStatus.PAYMENT_FAILED):
        return "already_" + status  # a redelivery: settled already
    result = _gateway().charge(amount_cents=int(payload["amount_cents"]), currency=payload["currency"],
                               token=payload["payment_token"], idempotency_key=payload["idempotency_key"])
    payment = {"kind": PaymentKind.CHARGE, "status": _status(result.succeeded),
               "amount_cents": int(payload["amount_cents"]), "currency": payload["currency"],
               "gateway_ref": result.reference, "idempotency_key": payload["idempotency_key"]}
    if result.succeeded:
        return booking.confirm_payment(reservation_id, payment=payment)
    return booking.fail_payment(reservation_id, payment={**payment, "failure_reason": result.reason})


def _status(succeeded: bool) -> PaymentStatus:
    return PaymentStatus.SUCCEEDED if succeeded else PaymentStatus.DECLINED


_STATUS = select(Reservation.status).where(Reservation.id == bindparam("reservation_id"))


def _reservation_status(reservation_id: int) -> str:
    rows = db.alone(_STATUS, {"reservation_id": reservation_id})
    if not rows:
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    return rows[0].status


def process_refund(payload: dict) -> str:
    """Refund a reservation's charge, exactly once (the refund's idempotency key).

    The amount is the reservation's ``refund_cents``, fixed when the refund was
    requested (what the refund policy leaves of the charge, or all of a charge that
    came too late); a request from before that column was kept carries its amount.
    """
    reservation_id = int(payload["reservation_id"])
    key = payload["idempotency_key"]
    with db.unit_of_work():  # read, and ended before the gateway call
        if db.session.scalar(select(Payment.id).where(Payment.idempotency_key == key)) is not None:
            return "already_refunded"
        charge_reference = db.session.scalar(select(Payment.gateway_ref).where(
            Payment.reservation_id == reservation_id, Payment.kind == PaymentKind.CHARGE,
            Payment.status == PaymentStatus.SUCCEEDED))
        refund_cents = db.session.scalar(select(Reservation.refund_cents).where(Reservation.id == reservation_id))
    amount = int(payload["amount_cents"]) if refund_cents is None else refund_cents
    if amount <= 0:
        return "nothing_to_refund"
    result = _gateway().refund(amount_cents=amount, currency=payload["currency"],
                               charge_reference=charge_reference, idempotency_key=key)
    with db.unit_of_work():
        reservation = db.session.get(Reservation, reservation_id)
        if reservation is None:
            raise errors.NotFound(f"Reservation {reservation_id} does not exist")
        booking.record_payment(reservation.id, {
            "kind": PaymentKind.REFUND, "status": _status(result.succeeded),
            "amount_cents": amount, "currency": payload["currency"],
            "gateway_ref": result.reference, "idempotency_key": key})
        if result.succeeded:
            outbound_webhooks.emit("payment.refunded", reservation, key, refund_cents=amount)
    return "refunded"


# --- the gateway's webhook ------------------------------------------------------

class InvalidSignature(errors.DomainError):
    status, code, title = 400, "invalid_signature", "Webhook signature is not valid"


class StaleWebhook(errors.DomainError):
    status, code, title = 400, "stale_timestamp", "Webhook timestamp is too old or in the future"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over ``"<timestamp>." + body``, hex: what the gateway sends as v1."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_webhook(header: str | None, body: bytes, *, now: float | None = None) -> None:
    """``Marquee-Signature: t=<unix seconds>,v1=<hex>``: right key, recent enough."""
    settings = marquee().settings
    try:
        parts = dict(item.split("=", 1) for item in (header or "").split(","))
        timestamp, given = int(parts["t"]), parts["v1"]
    except (KeyError, ValueError) as exc:
        raise InvalidSignature("Missing or malformed Marquee-Signature header") from exc
    # Bytes, not str: compare_digest refuses non-ASCII strings (a 500 for a garbled header).
    if not hmac.compare_digest(given.encode("utf-8", "replace"),
                               signature(settings.webhook_secret, timestamp, body).encode()):
        raise InvalidSignature("The signature does not match")
    if abs((now or time.time()) - timestamp) > settings.webhook_tolerance_seconds:
        raise StaleWebhook(f"Timestamps older than {settings.webhook_tolerance_seconds}s are refused")


def handle_webhook(event: dict) -> str:
    """Apply a verified gateway event once; a replay of a seen event is ignored.

    The event is applied first and recorded after: applying is idempotent, so a
    crash in between only means the replay applies it again, harmlessly.
    """
    event_id, kind = str(event["id"]), event["type"]
    with db.unit_of_work():
        if db.session.get(WebhookEvent, event_id) is not None:
            return "ignored_replay"
    data = event["data"]
    reservation_id = int(data["reservation_id"])
    payment = {"amount_cents": int(data["amount_cents"]), "currency": data["currency"],
               "gateway_ref": data.get("reference")}
    if kind == "charge.succeeded":
        outcome = booking.confirm_payment(reservation_id, payment={
            **payment, "kind": PaymentKind.CHARGE, "status": PaymentStatus.SUCCEEDED,
            "idempotency_key": f"reservation-{reservation_id}"})
    elif kind == "charge.failed":
        outcome = booking.fail_payment(reservation_id, payment={
            **payment, "kind": PaymentKind.CHARGE, "status": PaymentStatus.DECLINED,
            "idempotency_key": f"reservation-{reservation_id}"})
    else:
        outcome = "ignored_type"
    with db.unit_of_work():
        db.session.execute(pg_insert(WebhookEvent).values(id=event_id, type=kind)
                           .on_conflict_do_nothing(index_elements=["id"]))
    return outcome
