"""The waitlist of sold-out showtimes: the caller's own entries (404 for anyone else's)."""
from __future__ import annotations

from flask.views import MethodView

from app.api import Blueprint, page_args, paged
from app.api import schemas as s
from app.api.idempotency import idempotent
from app.api.security import current_user_id, login_required
from app.models import WaitlistStatus
from app.services import waitlist as waitlist_service

waitlist = Blueprint("waitlist", __name__, url_prefix="/api/v1", description="Waitlist of sold-out showtimes")
blueprints = [waitlist]


def _entries_out(entries) -> list[dict]:
    positions = waitlist_service.positions(entries)
    return [{"id": entry.id, "showtime_id": entry.showtime_id, "seats": entry.seats, "status": entry.status,
             "position": positions.get(entry.id) if entry.status == WaitlistStatus.WAITING else None,
             "offer_hold_id": entry.offer_hold_id if entry.status == WaitlistStatus.OFFERED else None,
             "offer_expires_at": entry.offer_expires_at if entry.status == WaitlistStatus.OFFERED else None,
             "created_at": entry.created_at}
            for entry in entries]


def _entry_out(entry) -> dict:
    return _entries_out([entry])[0]


@waitlist.route("/showtimes/<int:showtime_id>/waitlist")
class ShowtimeWaitlist(MethodView):
    @login_required
    @idempotent
    @waitlist.arguments(s.WaitlistRequestSchema, example=s.WAITLIST_IN)
    @waitlist.response(201, s.WaitlistEntrySchema, example=s.WAITLIST_ENTRY)
    @waitlist.alt_response(404, response="NOT_FOUND")
    @waitlist.alt_response(409, response="CONFLICT",
                           description="seats_available (hold them instead), already_waiting, showtime_started")
    def post(self, data, showtime_id):
        """Wait for seats of a sold-out showtime; freed seats are offered first come, first served"""
        return _entry_out(waitlist_service.join(current_user_id(), showtime_id, data["seats"]))


@waitlist.route("/waitlist")
class Waitlist(MethodView):
    @login_required
    @waitlist.etag
    @waitlist.response(200, s.WaitlistEntrySchema(many=True), example=[s.WAITLIST_ENTRY])
    @waitlist.paginate()
    def get(self, pagination_parameters):
        """The caller's live waitlist entries (waiting or offered), newest first"""
        return _entries_out(paged(pagination_parameters,
                                  waitlist_service.list_live(current_user_id(), **page_args(pagination_parameters))))


@waitlist.route("/waitlist/<int:entry_id>")
class WaitlistEntryById(MethodView):
    @login_required
    @waitlist.etag
    @waitlist.response(200, s.WaitlistEntrySchema, example=s.WAITLIST_ENTRY)
    @waitlist.alt_response(404, response="NOT_FOUND")
    def get(self, entry_id):
        """Your place on the waitlist, or your offer"""
        return _entry_out(waitlist_service.get(current_user_id(), entry_id))

    @login_required
    @waitlist.response(204)
    @waitlist.alt_response(404, response="NOT_FOUND")
    def delete(self, entry_id):
        """Leave the waitlist (an offer in hand is given up)"""
        waitlist_service.leave(current_user_id(), entry_id)
