"""Helpers for booking tests: holds, reservations and state read straight from the stores."""
from __future__ import annotations

from sqlalchemy import select

from app import db
from app.models import Reservation, ReservationSeat
from app.services import seats as seats_service


def seat_ids(api, showtime_id) -> list[int]:
    return [s["id"] for s in api.get(f"/api/v1/showtimes/{showtime_id}/seats").json["seats"]]


def statuses(api, showtime_id) -> dict[int, str]:
    return {s["id"]: s["status"] for s in api.get(f"/api/v1/showtimes/{showtime_id}/seats").json["seats"]}


def hold(api, token, showtime_id, seats, **kw):
    return api.post(f"/api/v1/showtimes/{showtime_id}/holds", {"seat_ids": list(seats)}, token, **kw)


def reserve(api, token, hold_id, payment_token="tok_visa", **kw):
    return api.post("/api/v1/reservations", {"hold_id": hold_id, "payment_token": payment_token}, token, **kw)


def live_seats(app, showtime_id) -> list[int]:
    with app.app_context():
        return list(db.session.scalars(select(ReservationSeat.seat_id).where(
            ReservationSeat.showtime_id == showtime_id, ReservationSeat.released_at.is_(None))))


def reservation_status(app, reservation_id) -> str:
    with app.app_context():
        return db.session.get(Reservation, reservation_id).status


def forget_showtime_in_redis(app, showtime_id) -> int:
    """What a Redis restart or flush does to one showtime: every key gone."""
    return app.extensions["marquee"].redis.delete_prefixed("{st:%d}:*" % showtime_id)


def showtime_room(app, showtime_id):
    """The showtime's seats as the seat store sees them (for tests that read the store)."""
    with app.app_context():
        return seats_service.showtime_room(showtime_id)
