"""Tickets: one a seat of a confirmed reservation, with a code a scanner can
verify offline, a QR image of that code, and check-in at the door.

A code is ``<payload>.<signature>``: the payload (base64url) names the
reservation, showtime and seat with 96 random bits; the signature is
HMAC-SHA256 of it under TICKET_SIGNING_KEY. Whoever holds the key verifies a code
without asking the server; only the server knows whether it was cancelled or
already used.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import secrets
from datetime import datetime, timezone

import segno
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import db
from app.bootstrap import marquee
from app.models import City, Movie, Reservation, ReservationStatus, Screen, Showtime, Theater, Ticket, TicketStatus
from app.services import errors
from app.services.catalog import local_time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: str) -> str:
    key = marquee().settings.ticket_signing_key
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:20])


def make_code(reservation_id: int, showtime_id: int, seat_id: int) -> str:
    payload = _b64(f"{reservation_id}:{showtime_id}:{seat_id}:{secrets.token_hex(12)}".encode())
    return f"{payload}.{_sign(payload)}"


CODE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,120}\.[A-Za-z0-9_-]{1,40}$")


def verify_code(code: str) -> tuple[int, int, int] | None:
    """(reservation, showtime, seat) of a genuine code; None for a forged or garbled one."""
    if not isinstance(code, str) or not CODE_SHAPE.match(code):
        return None
    try:
        payload, signature = code.split(".")
        if not hmac.compare_digest(signature.encode(), _sign(payload).encode()):
            return None
        reservation_id, showtime_id, seat_id, _nonce = _unb64(payload).decode().split(":")
        return int(reservation_id), int(showtime_id), int(seat_id)
    except (ValueError, UnicodeDecodeError):
        return None


def issue(reservation: Reservation) -> None:
    """In the confirming transaction: one ticket a seat (idempotent)."""
    db.session.execute(
        pg_insert(Ticket).values([
            {"reservation_id": reservation.id, "showtime_id": reservation.showtime_id, "seat_id": seat.seat_id,
             "seat_label": seat.label, "code": make_code(reservation.id, reservation.showtime_id, seat.seat_id)}
            for seat in reservation.seats
        ]).on_conflict_do_nothing(index_elements=["reservation_id", "seat_id"])
    )


def cancel(reservation: Reservation) -> None:
    """In the cancelling transaction: the tickets stop admitting anyone."""
    db.session.execute(update(Ticket).where(Ticket.reservation_id == reservation.id)
                       .values(status=TicketStatus.CANCELLED))


def for_reservation(reservation: Reservation) -> list[Ticket]:
    """The tickets of a confirmed reservation (the caller has checked whose it is)."""
    if reservation.status != ReservationStatus.CONFIRMED:
        raise errors.NotConfirmed(f"Tickets exist once the reservation is confirmed; it is {reservation.status}")
    return list(db.session.scalars(
        select(Ticket).where(Ticket.reservation_id == reservation.id).order_by(Ticket.id)))


def of_reservations(reservation_ids: list[int]) -> dict[int, list[Ticket]]:
    """The tickets of several reservations in one query, by reservation id (the caller
    has checked whose each reservation is; one not confirmed has none)."""
    found: dict[int, list[Ticket]] = {reservation_id: [] for reservation_id in reservation_ids}
    for ticket in db.session.scalars(select(Ticket).where(Ticket.reservation_id.in_(reservation_ids))
                                     .order_by(Ticket.reservation_id, Ticket.id)):
        found[ticket.reservation_id].append(ticket)
    return found


def showtime_of_reservation(reservation: Reservation) -> dict:
    """What a ticket says of its show: the movie, the theater, the showtime with
    its local start (one query)."""
    showtime, movie_id, title, theater_id, theater_name, zone = db.session.execute(
        select(Showtime, Movie.id, Movie.title, Theater.id, Theater.name, City.timezone)
        .join(Movie, Movie.id == Showtime.movie_id)
        .join(Screen, Screen.id == Showtime.screen_id)
        .join(Theater, Theater.id == Screen.theater_id)
        .join(City, City.id == Theater.city_id)
        .where(Showtime.id == reservation.showtime_id)
    ).one()
    return {
        "movie": {"id": movie_id, "title": title},
        "theater": {"id": theater_id, "name": theater_name},
        "showtime": {"id": showtime.id, "starts_at": showtime.starts_at,
                     "starts_at_local": local_time(showtime.starts_at, zone),
                     "timezone": zone},
    }


def qr_image(code: str, kind: str) -> bytes:
    """The QR code of a genuine ticket code, as PNG or SVG."""
    if verify_code(code) is None:
        raise errors.NotFound("No such ticket")
    qr = segno.make(code, error="m")
    out = io.BytesIO()
    qr.save(out, kind=kind, scale=8, border=2)
    return out.getvalue()


def check_in(code: str) -> Ticket:
    """Admit a ticket once: the first scan admits, any later one is refused."""
    if verify_code(code) is None:
        raise errors.InvalidTicket("This code is not a genuine Marquee ticket")
    with db.unit_of_work():
        ticket = db.session.scalar(select(Ticket).where(Ticket.code == code).with_for_update())
        if ticket is None:
            raise errors.InvalidTicket("No ticket has this code")
        if ticket.status == TicketStatus.CANCELLED:
            raise errors.TicketCancelled("This ticket was cancelled")
        if ticket.checked_in_at is not None:
            when = ticket.checked_in_at.isoformat()
            raise errors.AlreadyCheckedIn(f"Already checked in at {when}", checked_in_at=when)
        ticket.checked_in_at = datetime.now(timezone.utc)
    return ticket
