"""Tickets of a confirmed reservation, their QR codes, the public keys that verify
their codes, and check-in at the door (online, or offline scans uploaded later)."""
from __future__ import annotations

from flask import Response, url_for
from flask.views import MethodView

from app.api import Blueprint, page_args, paged
from app.api import schemas as s
from app.api.idempotency import idempotent
from app.api.security import (
    admin_required,
    client_address,
    current_actor,
    current_user_id,
    is_admin,
    login_required,
    require_staff_mfa,
)
from app.services import booking, staff, ticket_keys, tickets

blp = Blueprint("tickets", __name__, url_prefix="/api/v1", description="Tickets and check-in")
blueprints = [blp]

QR_CODE = "<string(maxlength=255):code>"
JWKS_MAX_AGE = 300  # seconds a scanner or cache may keep the key set (refetch on an unknown kid)


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


def _actor() -> staff.Actor:
    """The caller; a scan is a staff write, so REQUIRE_STAFF_MFA applies to it."""
    require_staff_mfa()
    return current_actor()


@blp.route("/tickets/keys")
class TicketKeys(MethodView):
    @blp.etag
    @blp.response(200, s.JwksSchema, example=s.JWKS)
    def get(self):
        """The public keys that verify ticket codes (a JWKS, RFC 7517/8037; no auth)

        A code `v2.<kid>.<payload>.<signature>` is genuine when the Ed25519 signature
        verifies, over the ASCII bytes `v2.<kid>.<payload>`, with the key of that kid.
        The current key comes first; a retired key stays listed until the showtimes it
        signed tickets for have ended. Cacheable for five minutes: a scanner that meets
        an unknown kid fetches the set again.
        """
        return ticket_keys.jwks(), 200, {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}

    @admin_required
    @idempotent
    @blp.response(201, s.TicketKeyRotationSchema, example=s.TICKET_KEY_ROTATION)
    def post(self):
        """Rotate the ticket signing key (admin): new tickets are signed with a new key

        The old key's private half is erased; its public half stays in the JWKS until
        the showtimes it signed tickets for have ended, so tickets already issued keep
        verifying offline and checking in.
        """
        new, old = ticket_keys.rotate(actor_id=current_user_id(), ip=client_address())
        return {"key": ticket_keys.jwk(new), "retired_kid": old.kid if old else None}


@blp.route("/checkin")
class CheckIn(MethodView):
    @login_required
    @blp.arguments(s.CheckInRequestSchema, example=s.CHECKIN_IN)
    @blp.response(200, s.CheckInSchema, example=s.CHECKIN)
    @blp.alt_response(403, response="FORBIDDEN", description="forbidden: not an admin, nor a scanner or manager "
                                                             "of the ticket's theater")
    @blp.alt_response(409, response="CONFLICT", description="already_checked_in (with checked_in_at and by), "
                                                            "ticket_cancelled")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description="invalid_ticket")
    def post(self, data):
        """Scan a ticket at the door (admin, or scanner or manager of its theater): the first scan admits"""
        ticket = tickets.check_in(_actor(), data["code"])
        return {"status": "admitted", "code": ticket.code, "seat_label": ticket.seat_label,
                "showtime_id": ticket.showtime_id, "reservation_id": ticket.reservation_id,
                "checked_in_at": ticket.checked_in_at, "checked_in_by": ticket.checked_in_by}


@blp.route("/checkin/batch")
class CheckInBatch(MethodView):
    @login_required
    @blp.arguments(s.CheckInBatchRequestSchema, example=s.CHECKIN_BATCH_IN)
    @blp.response(200, s.CheckInBatchSchema, example=s.CHECKIN_BATCH)
    @blp.alt_response(403, response="FORBIDDEN", description="forbidden: neither admin nor scanner or manager "
                                                             "anywhere")
    def post(self, data):
        """Upload scans made offline (scanner): each is judged, the first scan of a ticket wins

        Each scan comes back, in the order sent, as `admitted`, `conflict` (another scan
        admitted the ticket first: `checked_in_at` and `by` say when and who), `invalid`,
        `cancelled` or `forbidden` (a ticket of a theater where the caller holds no role).
        Parallel uploads of one code admit it once. Up to 500 scans an upload (422 beyond).
        """
        scans = [tickets.Scan(scan["code"], scan["scanned_at"]) for scan in data["scans"]]
        results = tickets.check_in_scans(_actor(), scans)
        counts = {status: 0 for status in s.SCAN_STATUSES}
        for result in results:
            counts[result.status] += 1
        return {"results": results, "counts": counts}


@blp.route("/showtimes/<int:showtime_id>/checkin-list")
class CheckInList(MethodView):
    @login_required
    @blp.etag
    @blp.response(200, s.CheckInListItemSchema(many=True), example=s.CHECKIN_LIST)
    @blp.alt_response(403, response="FORBIDDEN", description="forbidden: not a scanner or manager of its theater")
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate()
    def get(self, showtime_id, pagination_parameters):
        """A showtime's tickets for the door (scanner): codes, seats, status, checked in

        Cancelled tickets are listed too (status `cancelled`), so that a scanner offline
        refuses them; tickets issued before Ed25519 codes are recognised by this list.
        In ticket id order; send `If-None-Match` with the ETag to fetch a page only if it
        changed.
        """
        page = paged(pagination_parameters, tickets.checkin_list(
            _actor(), showtime_id, **page_args(pagination_parameters)))
        return [{"ticket_id": t.id, "code": t.code, "reservation_id": t.reservation_id, "seat_id": t.seat_id,
                 "seat_label": t.seat_label, "status": t.status, "checked_in": t.checked_in_at is not None,
                 "checked_in_at": t.checked_in_at} for t in page]
