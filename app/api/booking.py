"""Holds and reservations: the caller's own (404 for anyone else's)."""
from __future__ import annotations

from flask import request, url_for
from flask.views import MethodView

from app.api import Blueprint, page_args, paged
from app.api import schemas as s
from app.api.idempotency import idempotent
from app.api.security import current_user_id, is_admin, login_required
from app.api.waiting_room import queue_url
from app.services import booking, errors

holds = Blueprint("holds", __name__, url_prefix="/api/v1", description="Seat holds")
reservations = Blueprint("reservations", __name__, url_prefix="/api/v1/reservations",
                         description="Reservations")
blueprints = [holds, reservations]


def _reservations_out(items) -> list[dict]:
    """Reservations as clients read them, with links to themselves and their tickets."""
    return [_linked(view) for view in booking.reservation_views(list(items))]


def _linked(view: dict) -> dict:
    return {**view, "links": {"self": url_for("reservations.ReservationById", reservation_id=view["id"]),
                              "tickets": url_for("tickets.ReservationTickets", reservation_id=view["id"])}}


def _reservation_out(reservation) -> dict:
    return _reservations_out([reservation])[0]


@holds.route("/showtimes/<int:showtime_id>/holds")
class ShowtimeHolds(MethodView):
    @login_required
    @idempotent
    @holds.arguments(s.HoldRequestSchema, example=s.HOLD_IN)
    @holds.response(201, s.HoldSchema, example=s.HOLD)
    @holds.doc(parameters=[{"in": "header", "name": "Admission-Token", "required": False, "schema": {"type": "string"},
                            "description": "While the showtime's waiting room is on: the admission token of the "
                                           "caller's queue entry (GET /queue/{id} once admitted)"}])
    @holds.alt_response(403, response="FORBIDDEN", description="admission_required (with queue_url): the waiting "
                                                               "room is on and the caller has no live admission")
    @holds.alt_response(404, response="NOT_FOUND")
    @holds.alt_response(409, response="CONFLICT",
                        description="seats_unavailable (with seat_ids), orphan_seat and accessible_seat (with seat_ids), "
                                    "not_enough_seats (best available "
                                    "found no placement), hold_exists (with hold_id: one live hold per user and "
                                    "showtime; release it or reserve it first), showtime_started")
    def post(self, data, showtime_id):
        """Hold seats for a few minutes: the ones named (all or none), or the best available for a party.
        While the showtime's waiting room is on, send your admission token as the `Admission-Token` header"""
        token = request.headers.get("Admission-Token")
        try:
            if "quantity" in data:
                return booking.hold_best_available(current_user_id(), showtime_id, data["quantity"],
                                                   category=data.get("category"),
                                                   accessible=int(data.get("accessible", 0)), admission_token=token)
            return booking.hold_seats(current_user_id(), showtime_id, data["seat_ids"],
                                      accessible=data.get("accessible", False), admission_token=token)
        except errors.AdmissionRequired as refused:
            refused.extra["queue_url"] = queue_url(showtime_id)
            raise


@holds.route("/holds")
class Holds(MethodView):
    @login_required
    @holds.etag
    @holds.response(200, s.HoldSchema(many=True), example=[s.HOLD])
    @holds.paginate()
    def get(self, pagination_parameters):
        """The caller's live holds, newest first (ended ones drop out)"""
        return paged(pagination_parameters, booking.list_holds(current_user_id(), **page_args(pagination_parameters)))


@holds.route("/holds/<string:hold_id>")
class HoldById(MethodView):
    @login_required
    @holds.etag
    @holds.response(200, s.HoldSchema, example=s.HOLD)
    @holds.alt_response(404, response="NOT_FOUND")
    def get(self, hold_id):
        """One of the caller's live holds"""
        return booking.get_hold(current_user_id(), hold_id)

    @login_required
    @holds.response(204)
    @holds.alt_response(404, response="NOT_FOUND")
    @holds.alt_response(409, response="CONFLICT", description="hold_in_use: being reserved")
    def delete(self, hold_id):
        """Release a hold: its seats are free at once"""
        booking.release_hold(current_user_id(), hold_id)


@reservations.route("")
class Reservations(MethodView):
    @login_required
    @reservations.etag
    @reservations.arguments(s.ReservationQuerySchema, location="query")
    @reservations.response(200, s.ReservationSchema(many=True), example=[s.RESERVATION])
    @reservations.paginate()
    def get(self, args, pagination_parameters):
        """The caller's reservations, newest first (admins: `all=true` or `user_id`)"""
        everyone = args["all"] or args.get("user_id") is not None
        if everyone and not is_admin():
            raise errors.Forbidden("Only admins can list other users' reservations")
        items = paged(pagination_parameters, booking.list_reservations(
            current_user_id(), **page_args(pagination_parameters),
            status=args.get("status"), everyone=everyone, of_user=args.get("user_id")))
        return _reservations_out(items)

    @login_required
    @idempotent
    @reservations.arguments(s.ReservationRequestSchema, example=s.RESERVATION_IN)
    @reservations.response(202, s.ReservationSchema, example=s.RESERVATION, headers={
        "Location": {"description": "The reservation", "schema": {"type": "string"}}})
    @reservations.alt_response(404, response="NOT_FOUND", description="not_found: no such hold of the caller's")
    @reservations.alt_response(409, response="CONFLICT",
                               description="hold_expired, hold_reserved (with reservation_id: this hold is "
                                           "already that reservation), hold_in_use, seats_unavailable, "
                                           "showtime_started, voucher_invalid (unknown, not yet valid, expired, "
                                           "not for this showtime or used up; the hold stays usable)")
    @reservations.alt_response(429, response="TOO_MANY_REQUESTS", description="rate_limited: too many wrong voucher "
                                                                              "codes (with Retry-After)")
    def post(self, data):
        """Reserve the seats of a live hold at the prices it showed (less a voucher's discount); payment follows
        in the background"""
        reservation = _linked(booking.reserve(current_user_id(), data["hold_id"], data["payment_token"],
                                              voucher_code=data.get("voucher_code")))
        return reservation, 202, {"Location": reservation["links"]["self"]}


@reservations.route("/<int:reservation_id>")
class ReservationById(MethodView):
    @login_required
    @reservations.etag
    @reservations.response(200, s.ReservationSchema, example=s.RESERVATION)
    @reservations.alt_response(404, response="NOT_FOUND")
    def get(self, reservation_id):
        """One of the caller's reservations"""
        return _linked(booking.reservation_view(current_user_id(), reservation_id, is_admin=is_admin()))


@reservations.route("/<int:reservation_id>/cancel")
class ReservationCancel(MethodView):
    @login_required
    @reservations.response(202, s.ReservationSchema, example=s.RESERVATION_CANCELLED)
    @reservations.alt_response(404, response="NOT_FOUND")
    @reservations.alt_response(409, response="CONFLICT",
                               description="cancellation_closed, not_cancellable, showtime_started")
    def post(self, reservation_id):
        """Cancel: seats free at once; a confirmed reservation is refunded"""
        return _reservation_out(
            booking.cancel_reservation(current_user_id(), reservation_id, is_admin=is_admin()))
