"""Tickets of a confirmed reservation, their QR codes, and check-in at the door."""
from __future__ import annotations

from flask import Response, url_for
from flask.views import MethodView

from app.api import Blueprint
from app.api import schemas as s
from app.api.security import admin_required, current_user_id, is_admin, login_required
from app.services import booking, tickets

blp = Blueprint("tickets", __name__, url_prefix="/api/v1", description="Tickets and check-in")
blueprints = [blp]

QR_CODE = "<string(maxlength=160):code>"


def _out(ticket, show: dict) -> dict:
    return {
        "id": ticket.id, "reservation_id": ticket.reservation_id, **show,
        "code": ticket.code, "seat_label": ticket.seat_label, "status": ticket.status,
        "checked_in_at": ticket.checked_in_at,
        "qr_url": url_for("tickets.qr_png", code=ticket.code),
        "qr_svg_url": url_for("tickets.qr_svg", code=ticket.code),
    }


@blp.route("/reservations/<int:reservation_id>/tickets")
class ReservationTickets(MethodView):
    @login_required
    @blp.etag
    @blp.response(200, s.TicketSchema(many=True), example=[s.TICKET])
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT", description="not_confirmed")
    def get(self, reservation_id):
        """One ticket a seat, once the reservation is confirmed"""
        reservation = booking.get_reservation(current_user_id(), reservation_id, is_admin=is_admin())
        show = tickets.showtime_of_reservation(reservation)
        return [_out(t, show) for t in tickets.for_reservation(reservation)]


@blp.route(f"/tickets/{QR_CODE}/qr.png", endpoint="qr_png")
@blp.response(200, content_type="image/png")
@blp.alt_response(404, response="NOT_FOUND")
def qr_png(code):
    """The ticket's QR code as PNG (the unguessable code is the key to it)"""
    return Response(tickets.qr_image(code, "png"), mimetype="image/png",
                    headers={"Cache-Control": "private, max-age=86400"})


@blp.route(f"/tickets/{QR_CODE}/qr.svg", endpoint="qr_svg")
@blp.response(200, content_type="image/svg+xml")
@blp.alt_response(404, response="NOT_FOUND")
def qr_svg(code):
    """The ticket's QR code as SVG"""
    return Response(tickets.qr_image(code, "svg"), mimetype="image/svg+xml",
                    headers={"Cache-Control": "private, max-age=86400"})


@blp.route("/checkin")
class CheckIn(MethodView):
    @admin_required
    @blp.arguments(s.CheckInRequestSchema, example=s.CHECKIN_IN)
    @blp.response(200, s.CheckInSchema, example=s.CHECKIN)
    @blp.alt_response(409, response="CONFLICT", description="already_checked_in (with checked_in_at), "
                                                            "ticket_cancelled")
    def post(self, data):
        """Scan a ticket at the door: the first scan admits, a second is refused"""
        ticket = tickets.check_in(data["code"])
        return {"status": "admitted", "code": ticket.code, "seat_label": ticket.seat_label,
                "showtime_id": ticket.showtime_id, "reservation_id": ticket.reservation_id,
                "checked_in_at": ticket.checked_in_at}

