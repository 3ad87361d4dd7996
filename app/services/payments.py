"""Payments as the worker processes them: charge a reservation, refund one.

The gateway is called with no database transaction open (a side effect never
happens inside one); its answer is then recorded together with the state change
it causes (``booking.confirm_payment`` / ``fail_payment``). Both steps are
idempotent, because a message may be delivered more than once.
"""
from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from app import errors
from app.extensions import db
from app.models import Payment, Reservation
from app.services import booking


def _gateway():
    return current_app.extensions["marquee"].gateway


def process_charge(payload: dict) -> str:
    """Charge for a reservation; confirm it, or fail it. Returns the outcome.

    Raises ``TransientPaymentError`` when the gateway cannot answer now (retry).
    """
    reservation_id = int(payload["reservation_id"])
    reservation = db.session.get(Reservation, reservation_id)
    if reservation is None:
        db.session.rollback()
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    if reservation.status in ("confirmed", "payment_failed"):
        db.session.rollback()
        return "already_" + reservation.status  # a redelivery: settled already
    db.session.rollback()  # no transaction stays open across the gateway call
    result = _gateway().charge(amount_cents=int(payload["amount_cents"]), currency=payload["currency"],
                               token=payload["payment_token"], idempotency_key=payload["idempotency_key"])
    payment = {"kind": "charge", "status": "succeeded" if result.succeeded else "declined",
               "amount_cents": int(payload["amount_cents"]), "currency": payload["currency"],
               "gateway_ref": result.reference, "idempotency_key": payload["idempotency_key"]}
    if result.succeeded:
        return booking.confirm_payment(reservation_id, payment=payment)
    return booking.fail_payment(reservation_id, payment=payment)


def process_refund(payload: dict) -> str:
    """Refund a reservation's charge, exactly once (the refund's idempotency key)."""
    reservation_id = int(payload["reservation_id"])
    key = payload["idempotency_key"]
    if db.session.scalar(select(Payment.id).where(Payment.idempotency_key == key)) is not None:
        db.session.rollback()
        return "already_refunded"
    charge = db.session.scalar(select(Payment).where(
        Payment.reservation_id == reservation_id, Payment.kind == "charge", Payment.status == "succeeded"))
    db.session.rollback()
    result = _gateway().refund(amount_cents=int(payload["amount_cents"]), currency=payload["currency"],
                               charge_reference=charge.gateway_ref if charge else None, idempotency_key=key)
    reservation = db.session.get(Reservation, reservation_id)
    if reservation is None:
        db.session.rollback()
        raise errors.NotFound(f"Reservation {reservation_id} does not exist")
    booking._record_payment(reservation, {
        "kind": "refund", "status": "succeeded" if result.succeeded else "declined",
        "amount_cents": int(payload["amount_cents"]), "currency": payload["currency"],
        "gateway_ref": result.reference, "idempotency_key": key})
    db.session.commit()
    return "refunded"
