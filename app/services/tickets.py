"""Tickets: one a seat of a confirmed reservation, with a code a scanner can
verify offline, a QR image of that code, and check-in at the door (one scan online,
or a batch of scans made offline and uploaded later).

A code is ``v2.<kid>.<payload>.<signature>`` (127 characters with small ids, a version 8 QR
code at level M):

- ``payload`` is base64url (unpadded) of ASCII ``ticket:reservation:showtime:seat:starts``,
  decimal ids and the showtime's start in Unix seconds;
- ``signature`` is the Ed25519 signature (RFC 8032), base64url, of the ASCII bytes
  ``v2.<kid>.<payload>``: the version and the kid are signed too;
- ``kid`` names the key in ``GET /api/v1/tickets/keys`` (a JWKS) that verifies it.

So a scanner holding only the public key set verifies a code with no secret; only
the server (or the check-in list the scanner downloaded) knows whether it was
cancelled or already used.

Codes of tickets issued before Ed25519 (``<payload>.<hmac>``, HMAC-SHA256 under
TICKET_SIGNING_KEY) are not re-signed, since customers hold them in mails and printed
QR codes: the server keeps verifying and checking them in, and they are in the
check-in list, which is how a scanner offline recognises them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import segno
from cryptography.exceptions import InvalidSignature
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import db
from app.bootstrap import marquee
from app.models import City, Movie, Reservation, ReservationStatus, Screen, Showtime, Theater, Ticket, TicketStatus
from app.services import audit, errors, staff, ticket_keys
from app.services.catalog import local_time
from app.services.pagination import page_of

CODE_VERSION = "v2"
MAX_CODE_LENGTH = 255  # tickets.code
CODE_SHAPE = re.compile(r"^v2\.([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{8,160})\.([A-Za-z0-9_-]{86})$")
LEGACY_CODE_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,120}\.[A-Za-z0-9_-]{1,40}$")
MAX_BATCH = 500  # scans in one upload
CLOCK_SKEW = timedelta(minutes=5)  # a scan dated later than now plus this is refused


@dataclass(frozen=True)
class Claims:
    """What a genuine code says. ``ticket_id``, ``starts_at`` and ``kid`` are None for
    a code from before Ed25519."""

    reservation_id: int
    showtime_id: int
    seat_id: int
    ticket_id: int | None = None
    starts_at: datetime | None = None
    kid: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text_: str) -> bytes:
    return base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4))


def make_code(key: ticket_keys.SigningKey, *, ticket_id: int, reservation_id: int, showtime_id: int, seat_id: int,
              starts_at: datetime) -> str:
    """A ticket's code, signed with ``key``."""
    payload = _b64(f"{ticket_id}:{reservation_id}:{showtime_id}:{seat_id}:{int(starts_at.timestamp())}".encode())
    signed = f"{CODE_VERSION}.{key.kid}.{payload}"
    return f"{signed}.{_b64(key.private.sign(signed.encode()))}"


def _read_v2(code: str) -> Claims | None:
    match = CODE_SHAPE.match(code)
    if match is None:
        return None
    kid, payload, signature = match.groups()
    public = ticket_keys.public_key(kid)
    if public is None:
        return None
    try:
        raw_signature, raw_payload = _unb64(signature), _unb64(payload)
        if _b64(raw_signature) != signature or _b64(raw_payload) != payload:
            return None  # not canonical base64url: one ticket has exactly one code
        public.verify(raw_signature, f"{CODE_VERSION}.{kid}.{payload}".encode())
        ticket_id, reservation_id, showtime_id, seat_id, starts = raw_payload.decode().split(":")
        return Claims(int(reservation_id), int(showtime_id), int(seat_id), int(ticket_id),
                      datetime.fromtimestamp(int(starts), timezone.utc), kid)
    except (InvalidSignature, ValueError, UnicodeDecodeError, OverflowError, OSError):
        return None


# --- the codes issued before Ed25519 (HMAC under TICKET_SIGNING_KEY) ---------------

def _legacy_sign(payload: str) -> str:
    key = marquee().settings.ticket_signing_key
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:20])


def legacy_code(reservation_id: int, showtime_id: int, seat_id: int) -> str:
    """A code as tickets were issued before Ed25519 (kept to check those in; tests
    make one to stand for a ticket issued then)."""
    payload = _b64(f"{reservation_id}:{showtime_id}:{seat_id}:{secrets.token_hex(12)}".encode())
    return f"{payload}.{_legacy_sign(payload)}"


def _read_legacy(code: str) -> Claims | None:
    if not LEGACY_CODE_SHAPE.match(code):
        return None
    try:
        payload, signature = code.split(".")
        if not hmac.compare_digest(signature.encode(), _legacy_sign(payload).encode()):
            return None
        reservation_id, showtime_id, seat_id, _nonce = _unb64(payload).decode().split(":")
        return Claims(int(reservation_id), int(showtime_id), int(seat_id))
    except (ValueError, UnicodeDecodeError):
        return None


def read_code(code: str) -> Claims | None:
    """The claims of a genuine code (Ed25519, or HMAC from before); None for a forged,
    garbled or unknown-key one."""
    if not isinstance(code, str) or len(code) > MAX_CODE_LENGTH:
        return None
    return _read_v2(code) if code.startswith(f"{CODE_VERSION}.") else _read_legacy(code)


def verify_code(code: str) -> tuple[int, int, int] | None:
    """(reservation, showtime, seat) of a genuine code; None for a forged or garbled one."""
    claims = read_code(code)
    return None if claims is None else (claims.reservation_id, claims.showtime_id, claims.seat_id)


# The reservation's seats, each with its ticket's id drawn (each code signs its ticket's id),
# and the current signing key, whose signed_until is raised to cover this showtime by the
# same statement when it signs one (ticket_keys.note_signed's rule: the key's row is locked
# only when raised): one round trip where there were three. No current key yet: kid NULL.
_SEATS_TO_SIGN = text("""
    WITH current_key AS (SELECT kid, private_key_encrypted FROM ticket_keys WHERE retired_at IS NULL),
         noted AS (UPDATE ticket_keys k SET signed_until = :ends_at FROM current_key c
                    WHERE k.kid = c.kid AND (k.signed_until IS NULL OR k.signed_until < :ends_at)
                      AND EXISTS (SELECT 1 FROM reservation_seats WHERE reservation_id = :id))
    SELECT rs.seat_id, rs.label, nextval(pg_get_serial_sequence('tickets', 'id')) AS ticket_id,
           c.kid, c.private_key_encrypted
      FROM reservation_seats rs LEFT JOIN current_key c ON true
     WHERE rs.reservation_id = :id
     ORDER BY rs.id
""")
# one statement built once (its cache key memoized), an executemany of the tickets
_INSERT_TICKETS = pg_insert(Ticket.__table__).on_conflict_do_nothing(index_elements=["reservation_id", "seat_id"])


def issue(reservation) -> list[int]:
    """In the confirming transaction: one ticket a seat of ``reservation`` (anything with its
    ``id`` and ``showtime_id``, and its showtime's ``starts_at`` and ``ends_at``), idempotent,
    each code signed with the current key, whose ``signed_until`` then covers this showtime.
    Returns the seats' ids."""
    seats = db.session.execute(_SEATS_TO_SIGN, {"id": reservation.id, "ends_at": reservation.ends_at}).all()
    if not seats:
        return []
    if seats[0].kid is not None:  # the usual case: the key read and noted by that statement
        key = ticket_keys.signing_key(seats[0].kid, seats[0].private_key_encrypted)
    else:  # the first ticket this server signs: its first key is made now
        key = ticket_keys.current()
        ticket_keys.note_signed(key.kid, reservation.ends_at)
    db.session.execute(_INSERT_TICKETS, [
        {"id": seat.ticket_id, "reservation_id": reservation.id, "showtime_id": reservation.showtime_id,
         "seat_id": seat.seat_id, "seat_label": seat.label,
         "code": make_code(key, ticket_id=seat.ticket_id, reservation_id=reservation.id,
                           showtime_id=reservation.showtime_id, seat_id=seat.seat_id, starts_at=reservation.starts_at)}
        for seat in seats])
    return [seat.seat_id for seat in seats]


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
    if read_code(code) is None:
        raise errors.NotFound("No such ticket")
    qr = segno.make(code, error="m")
    out = io.BytesIO()
    qr.save(out, kind=kind, scale=8, border=2)
    return out.getvalue()


# --- check-in ------------------------------------------------------------------------

SCANNING_ROLES = ("scanner", "manager")


class ScanStatus:
    ADMITTED = "admitted"
    CONFLICT = "conflict"  # another scan of this ticket was admitted first
    INVALID = "invalid"  # not a genuine code, no such ticket, or dated in the future or before the ticket
    CANCELLED = "cancelled"
    FORBIDDEN = "forbidden"  # a ticket of a theater where the scanner has no role


@dataclass(frozen=True)
class Scan:
    code: str
    scanned_at: datetime


@dataclass
class ScanResult:
    code: str
    status: str
    scanned_at: datetime
    detail: str | None = None
    ticket_id: int | None = None
    showtime_id: int | None = None
    reservation_id: int | None = None
    seat_label: str | None = None
    checked_in_at: datetime | None = None
    by: int | None = None  # the staff member whose scan admitted the ticket


def check_in_scans(actor: staff.Actor, scans: list[Scan], *, now: datetime | None = None) -> list[ScanResult]:
    """Judge scans (made at the door, maybe offline) and admit each ticket once.

    Each code is verified (signature, key), its ticket looked up, the scanner's role at
    the ticket's theater checked. The first scan of a ticket to commit admits it
    (``checked_in_at`` is when it was scanned, by the scanner's clock, which may be up to
    ``CLOCK_SKEW`` ahead; ``checked_in_by`` who scanned it): the
    tickets' rows are locked in id order, so parallel uploads of the same code
    serialise and the later one finds it taken (``conflict``, with who and when), and
    two uploads never deadlock. Within one upload the earliest ``scanned_at`` wins.
    A scan sent again (same scanner, same ``scanned_at``: an upload retried after its
    answer was lost) gets ``admitted`` again, not a conflict with itself.
    Results come back in the order of ``scans``. One transaction, one audit entry.
    """
    if not staff.is_staff(actor):
        raise errors.Forbidden("Checking tickets in needs the admin role or a scanner or manager role")
    if len(scans) > MAX_BATCH:
        raise errors.Invalid(f"At most {MAX_BATCH} scans an upload", errors={"scans": [
            f"Longer than maximum length {MAX_BATCH}."]})
    now = now or datetime.now(timezone.utc)
    results = [ScanResult(scan.code, ScanStatus.INVALID, scan.scanned_at) for scan in scans]
    genuine: dict[str, list[int]] = defaultdict(list)  # code -> indexes of its scans
    for index, scan in enumerate(scans):
        if scan.scanned_at > now + CLOCK_SKEW:
            results[index].detail = "scanned_at is in the future (check the scanner's clock)"
        elif read_code(scan.code) is None:
            results[index].detail = "This code is not a genuine Marquee ticket"
        else:
            genuine[scan.code].append(index)
    with db.unit_of_work():
        found = _lock_tickets(list(genuine))
        scope = staff.scope(actor, *SCANNING_ROLES)
        admitted: list[int] = []
        for code, indexes in genuine.items():
            if code not in found:
                for index in indexes:
                    results[index].detail = "No ticket has this code"
                continue
            ticket, theater_id = found[code]
            indexes.sort(key=lambda i: (scans[i].scanned_at, i))
            if _judge(actor, ticket, theater_id, scope, [(results[i], scans[i]) for i in indexes]):
                admitted.append(ticket.id)
        audit.record("ticket.check_in", actor_id=actor.user_id, object_type="ticket",
                     object_id=admitted[0] if len(admitted) == 1 else None,
                     after={"admitted": admitted, "scans": len(scans),
                            **{status: sum(r.status == status for r in results) for status in
                               (ScanStatus.CONFLICT, ScanStatus.INVALID, ScanStatus.CANCELLED, ScanStatus.FORBIDDEN)}})
    return results


def _lock_tickets(codes: list[str]) -> dict[str, tuple[Ticket, int]]:
    """The tickets with these codes and their theaters, rows locked in id order."""
    if not codes:
        return {}
    rows = db.session.execute(
        select(Ticket, Screen.theater_id)
        .join(Showtime, Showtime.id == Ticket.showtime_id)
        .join(Screen, Screen.id == Showtime.screen_id)
        .where(Ticket.code.in_(codes))
        .order_by(Ticket.id)
        .with_for_update(of=Ticket)
        .execution_options(populate_existing=True)  # the locked row's values, whatever the session held
    ).all()
    return {ticket.code: (ticket, theater_id) for ticket, theater_id in rows}


def _judge(actor: staff.Actor, ticket: Ticket, theater_id: int, scope: set[int] | None,
           scans: list[tuple[ScanResult, Scan]]) -> bool:
    """Fill in the results of one ticket's scans (earliest first), its row locked;
    True if one of them admitted it."""
    admits = False
    for result, scan in scans:
        result.ticket_id, result.showtime_id = ticket.id, ticket.showtime_id
        if scope is not None and theater_id not in scope:
            result.status, result.detail = ScanStatus.FORBIDDEN, "A ticket of a theater where you hold no role"
            result.ticket_id = result.showtime_id = None  # nothing more of another theater's ticket
            continue
        result.reservation_id, result.seat_label = ticket.reservation_id, ticket.seat_label
        if scan.scanned_at < ticket.created_at - CLOCK_SKEW:
            result.status, result.detail = ScanStatus.INVALID, "scanned_at is before the ticket was issued"
            continue
        if ticket.status == TicketStatus.CANCELLED:
            result.status, result.detail = ScanStatus.CANCELLED, "This ticket was cancelled"
        elif ticket.checked_in_by == actor.user_id and ticket.checked_in_at == scan.scanned_at:
            # The very scan that admitted it, sent again (an upload retried after a lost answer).
            result.status, result.detail = ScanStatus.ADMITTED, "This scan was recorded before (a repeated upload)"
        elif ticket.checked_in_at is not None:
            result.status, result.detail = ScanStatus.CONFLICT, "Another scan admitted this ticket first"
        else:
            ticket.checked_in_at, ticket.checked_in_by = scan.scanned_at, actor.user_id
            result.status, admits = ScanStatus.ADMITTED, True
        result.checked_in_at, result.by = ticket.checked_in_at, ticket.checked_in_by
    return admits


def check_in(actor: staff.Actor, code: str) -> Ticket:
    """Admit a ticket scanned now, online: the first scan admits, any later one is
    refused (409 ``already_checked_in`` with when and by whom)."""
    result = check_in_scans(actor, [Scan(code, datetime.now(timezone.utc))])[0]
    if result.status == ScanStatus.ADMITTED:
        return db.session.get(Ticket, result.ticket_id)
    if result.status == ScanStatus.CONFLICT:
        when = result.checked_in_at.isoformat()
        raise errors.AlreadyCheckedIn(f"Already checked in at {when}", checked_in_at=when, by=result.by)
    if result.status == ScanStatus.CANCELLED:
        raise errors.TicketCancelled("This ticket was cancelled")
    if result.status == ScanStatus.FORBIDDEN:
        raise errors.Forbidden("This ticket is for a theater where you hold no scanner or manager role")
    raise errors.InvalidTicket(result.detail)


def checkin_list(actor: staff.Actor, showtime_id: int, *, page: int, page_size: int) -> tuple[list[Ticket], int]:
    """A showtime's tickets, cancelled ones included (a scanner offline must tell a
    cancelled ticket from a valid one), in id order: what a scanner downloads before
    the doors open. 404 for no such showtime, 403 outside the caller's theaters."""
    theater_id = db.session.scalar(select(Screen.theater_id).join(Showtime, Showtime.screen_id == Screen.id)
                                   .where(Showtime.id == showtime_id))
    if theater_id is None:
        raise errors.NotFound(f"Showtime {showtime_id} does not exist")
    staff.require(actor, theater_id, *SCANNING_ROLES)
    return page_of(select(Ticket).where(Ticket.showtime_id == showtime_id), [Ticket.id], page, page_size)
