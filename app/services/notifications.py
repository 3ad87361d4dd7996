"""Emails to customers, sent by the worker after the change they report committed.

Each state change writes a ``notifications.email`` outbox row in its own
transaction (so an email says "confirmed" only for a charge that succeeded and
was recorded). The worker renders the text and HTML templates and sends over
SMTP. An email is recorded before it is sent and marked sent after, under its
idempotency key: a redelivered notice sends nothing twice (a crash between the
send and the mark may send once more: delivery is at least once). The worker
sends from several threads (and may run as several processes), so two copies of
one notice can arrive at once: a short lease in Redis lets one of them send, and
the other is retried later, when it finds the email sent.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from types import SimpleNamespace
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import db
from app.bootstrap import marquee
from app.models import (
    Email,
    EmailStatus,
    Reservation,
    ReservationStatus,
    Showtime,
    WaitlistEntry,
)
from app.services import auth, errors

SEND_LEASE_SECONDS = 30  # longer than a send takes (smtplib waits 10 s at most a step)


class EmailInProgress(Exception):
    """Another thread or worker is sending this email now: try again later."""


SUBJECTS = {
    "confirmation": "Your tickets for {movie}",
    "payment_failed": "Payment declined for {movie}",
    "cancellation": "Reservation cancelled: {movie}",
    "waitlist_offer": "Seats are waiting for you: {movie}",
    "reminder": "Reminder: {movie} starts soon",
    "password_reset": "Reset your Marquee password",
}


def reminder_due(reservation: Reservation | None, showtime: Showtime) -> bool:
    """A reminder goes only for a reservation still confirmed, of a showtime not yet
    started (checked again when sending: it may have been cancelled since)."""
    return (reservation is not None and reservation.status == ReservationStatus.CONFIRMED
            and showtime.starts_at > datetime.now(timezone.utc))


def email_event(kind: str, user_id: int, *, reservation_id: int | None = None,
                entry_id: int | None = None, **extra) -> dict:
    """The outbox row that asks for an email; ``outbox.add`` it in the transaction of the change."""
    subject_id = reservation_id if reservation_id is not None else entry_id
    return {"topic": "notifications.email", "aggregate_id": f"user:{user_id}", "payload": {
        "kind": kind, "user_id": user_id, "reservation_id": reservation_id, "entry_id": entry_id,
        "idempotency_key": f"{kind}-{subject_id}", **extra}}


def qr_url(code: str, kind: str) -> str:
    """The absolute address of a ticket's QR image (``PUBLIC_BASE_URL``): a mail
    reader has no base to resolve a relative one against."""
    return f"{marquee().settings.public_base_url}/api/v1/tickets/{quote(code, safe='')}/qr.{kind}"


def notice_context(payload: dict) -> dict:
    """What a message about a reservation (or waitlist entry) says: the user, the
    showtime, its screen, theater and movie, and the tickets (SMS and push use it too)."""
    return _context(payload)


# What a notice says, in one statement: the user, the reservation (or the waitlist entry's
# showtime), the showtime with its screen, theater, movie and zone, and the reservation's
# tickets. Read as rows, not ORM objects (the email's context was four ORM queries, a sixth
# of the worker's CPU in a checkout); the templates read the same attribute names.
_NOTICE = text("""
    SELECT u.id AS user_id, u.name AS user_name, u.email, u.erased_at,
           r.id AS reservation_id, r.status, r.currency, r.total_cents, r.showtime_id,
           s.id AS showtime_id, s.starts_at, sc.name AS screen_name, t.name AS theater_name,
           m.title, c.timezone,
           ARRAY(SELECT json_build_array(tk.seat_label, tk.code) FROM tickets tk
                  WHERE tk.reservation_id = r.id ORDER BY tk.id) AS tickets
      FROM users u
      LEFT JOIN reservations r ON r.id = :reservation_id
      LEFT JOIN waitlist_entries w ON w.id = :entry_id
      JOIN showtimes s ON s.id = COALESCE(r.showtime_id, w.showtime_id)
      JOIN screens sc ON sc.id = s.screen_id
      JOIN theaters t ON t.id = sc.theater_id
      JOIN cities c ON c.id = t.city_id
      JOIN movies m ON m.id = s.movie_id
     WHERE u.id = :user_id
""")


def _context(payload: dict) -> dict:
    reservation_id, entry_id = payload.get("reservation_id"), payload.get("entry_id")
    row = db.session.execute(_NOTICE, {
        "user_id": int(payload["user_id"]), "reservation_id": None if reservation_id is None else int(reservation_id),
        "entry_id": None if entry_id is None else int(entry_id)}).one_or_none()
    if row is None:
        raise errors.NotFound("No such user, or nothing to tell of")
    reservation = None if reservation_id is None else SimpleNamespace(
        id=row.reservation_id, status=row.status, currency=row.currency, total_cents=row.total_cents,
        showtime_id=row.showtime_id)
    zone = ZoneInfo(row.timezone)
    context = {
        "user": SimpleNamespace(id=row.user_id, name=row.user_name, email=row.email, erased_at=row.erased_at),
        "reservation": reservation,
        "showtime": SimpleNamespace(id=row.showtime_id, starts_at=row.starts_at),
        "screen": SimpleNamespace(name=row.screen_name), "theater": SimpleNamespace(name=row.theater_name),
        "movie": SimpleNamespace(title=row.title), "zone": zone,
        # The zone is said: a customer may be elsewhere when reading it.
        "starts_at": row.starts_at.astimezone(zone).strftime("%A %d %B %Y, %H:%M") + f" ({zone.key})",
        "refunded": bool(payload.get("refunded")),
        # the amounts fixed at cancellation (a notice from before they were sent: all of the total)
        "refund_cents": int(payload.get("refund_cents", reservation.total_cents if reservation else 0)),
        "fee_cents": int(payload.get("fee_cents", 0)),
    }
    if reservation is not None:
        context["tickets"] = [{"seat_label": label, "code": code, "qr_url": qr_url(code, "png")}
                              for label, code in row.tickets]
    if entry_id is not None:
        context["entry"] = db.session.get(WaitlistEntry, int(entry_id))
    return context


def send_email(payload: dict) -> str:
    """Send the email a notice asks for, once. Raises ``EmailInProgress`` while
    another copy of the notice is being sent (the worker retries it)."""
    key = payload["idempotency_key"]
    with sending_lease("email", key):
        return _send_once(payload["kind"], key, payload)


@contextmanager
def sending_lease(channel: str, key: str) -> Iterator[None]:
    """Only one thread or worker sends the message ``key`` at a time: raises
    ``EmailInProgress`` (the worker retries it) while another holds the lease."""
    store = marquee().redis
    lease = store.key(channel, "sending", key)
    if not store.client.set(lease, "1", nx=True, ex=SEND_LEASE_SECONDS):
        raise EmailInProgress(f"{channel} {key} is being sent by another worker")
    try:
        yield
    finally:
        store.client.delete(lease)


_MARK_SENT = Email.__table__.update().where(Email.idempotency_key == bindparam("key")).values(
    status=EmailStatus.SENT, sent_at=bindparam("sent_at"))


def _send_once(kind: str, key: str, payload: dict) -> str:
    templates = marquee().templates
    with db.unit_of_work():  # recorded before the side effect; nothing open during it
        existing = db.session.scalar(select(Email.status).where(Email.idempotency_key == key))
        if existing == EmailStatus.SENT:
            return "already_sent"
        context = auth.reset_email_context(payload) if kind == "password_reset" else _context(payload)
        if context is None or context["user"].erased_at is not None:
            return "not_due"  # a reset used or expired meanwhile; an erased account
        if kind == "reminder" and not reminder_due(context["reservation"], context["showtime"]):
            return "not_due"  # cancelled (or started) since the reminder was queued
        subject = SUBJECTS[kind].format(movie=context["movie"].title if "movie" in context else "")
        text = templates.render(f"email/{kind}.txt", **context)
        html = templates.render(f"email/{kind}.html", **context)
        to = context["user"].email
        db.session.execute(pg_insert(Email).values(idempotency_key=key, kind=kind, to_address=to, subject=subject,
                                                   user_id=context["user"].id,
                                                   status=EmailStatus.SENDING).on_conflict_do_nothing(
            index_elements=["idempotency_key"]))
    marquee().mailer.send(to, subject, text, html)
    db.alone(_MARK_SENT, {"key": key, "sent_at": datetime.now(timezone.utc)})
    if kind == "password_reset":
        auth.forget_mailed_token(payload)
    return "sent"
