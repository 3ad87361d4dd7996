"""Waiting rooms for on-sales: the admins' settings, the customers' queue entries (their
own: 404 for anyone else's), and the public status everyone shares."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from app.api import Blueprint
from app.api import schemas as s
from app.api.idempotency import idempotent
from app.api.security import current_user_id, login_required, staff_required
from app.services import waiting_room

rooms = Blueprint("waiting_rooms", __name__, url_prefix="/api/v1",
                  description="Waiting rooms for on-sales: a fair queue, admission at a rate the system can serve")
blueprints = [rooms]

# The public status changes about once a second: every client (and any cache between)
# may reuse it that long.
STATUS_CACHE_CONTROL = "public, max-age=1"


def queue_url(showtime_id: int) -> str:
    return url_for("waiting_rooms.ShowtimeQueue", showtime_id=showtime_id)


@rooms.route("/showtimes/<int:showtime_id>/waiting-room")
class ShowtimeWaitingRoom(MethodView):
    @staff_required
    @rooms.response(200, s.WaitingRoomSchema, example=s.WAITING_ROOM)
    @rooms.alt_response(404, response="NOT_FOUND", description="no such showtime, or it has no waiting room")
    def get(self, showtime_id, actor):
        """The waiting room's settings and live figures (admin, or a manager of the showtime's theater)"""
        return waiting_room.get(showtime_id, actor=actor)

    @staff_required
    @rooms.arguments(s.WaitingRoomRequestSchema, example=s.WAITING_ROOM_IN)
    @rooms.response(200, s.WaitingRoomSchema, example={k: v for k, v in s.WAITING_ROOM.items() if k != "stats"})
    @rooms.alt_response(404, response="NOT_FOUND")
    @rooms.alt_response(409, response="CONFLICT", description="showtime_started")
    def put(self, data, showtime_id, actor):
        """Turn the waiting room on, or change it during the sale (admin, or a manager of the theater)

        The next second follows."""
        return waiting_room.configure(showtime_id, data["opens_at"], data["admit_per_minute"], data["max_active"],
                                      data["session_seconds"], actor=actor)

    @staff_required
    @rooms.response(204)
    @rooms.alt_response(404, response="NOT_FOUND")
    def delete(self, showtime_id, actor):
        """Turn the waiting room off (admin, or a manager of the theater)

        Holds need no admission; every entry and session ends."""
        waiting_room.disable(showtime_id, actor=actor)


@rooms.route("/showtimes/<int:showtime_id>/queue")
class ShowtimeQueue(MethodView):
    @login_required
    @idempotent
    @rooms.response(201, s.QueueEntrySchema, example=s.QUEUE_ENTRY,
                    description="A new entry (201), or the caller's live entry again (200)")
    @rooms.alt_response(200, schema=s.QueueEntrySchema, example=s.QUEUE_ENTRY,
                        description="The caller's live entry, as it is now")
    @rooms.alt_response(404, response="NOT_FOUND")
    @rooms.alt_response(409, response="CONFLICT", description="no_waiting_room: hold seats directly")
    def post(self, showtime_id):
        """Join the showtime's queue (once per customer: joining again answers the same entry)"""
        entry, created = waiting_room.join(current_user_id(), showtime_id)
        return entry, 201 if created else 200, {"Location": url_for("waiting_rooms.QueueEntry", entry_id=entry["id"])}


@rooms.route("/showtimes/<int:showtime_id>/queue/status")
class ShowtimeQueueStatus(MethodView):
    @rooms.response(200, s.QueueStatusSchema, example=s.QUEUE_STATUS, headers={
        "Cache-Control": {"description": STATUS_CACHE_CONTROL, "schema": {"type": "string"}}})
    @rooms.alt_response(404, response="NOT_FOUND", description="no such showtime, or it has no waiting room")
    def get(self, showtime_id):
        """The queue's public status: the same for everyone, cacheable for a second (also pushed as
        `event: queue` on /showtimes/{id}/seats/events)"""
        return waiting_room.public_status(showtime_id), 200, {"Cache-Control": STATUS_CACHE_CONTROL}


@rooms.route("/queue/<string:entry_id>")
class QueueEntry(MethodView):
    @login_required
    @rooms.response(200, s.QueueEntrySchema, example={**s.QUEUE_ENTRY, "status": "admitted", "position": 0,
                                                      "estimated_wait_seconds": 0,
                                                      "admitted_until": "2026-12-01T10:09:12+00:00",
                                                      "admission_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdCI6NDJ9.c2ln"})
    @rooms.alt_response(404, response="NOT_FOUND")
    def get(self, entry_id):
        """The caller's queue entry, with the admission token once admitted"""
        return waiting_room.get_entry(current_user_id(), entry_id)

    @login_required
    @rooms.response(204)
    @rooms.alt_response(404, response="NOT_FOUND")
    def delete(self, entry_id):
        """Leave the queue (or end an admitted session): the slot goes to the next number"""
        waiting_room.leave(current_user_id(), entry_id)
