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
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import lazyload

from app import db
from app.bootstrap import marquee
from app.models import (
    City,
    Email,
    EmailStatus,
    Movie,
    Reservation,
    ReservationStatus,
    Screen,
    Showtime,
    Theater,
    Ticket,
    User,
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


def _context(payload: dict) -> dict:
    user = db.session.get(User, int(payload["user_id"]))
    if user is None:
        raise errors.NotFound("No such user")
    if payload.get("reservation_id") is not None:
        # its seats only if a template asks (the tickets below say which): no second query
        reservation = db.session.get(Reservation, int(payload["reservation_id"]),
                                     options=[lazyload(Reservation.seats)])
        showtime_id = reservation.showtime_id
    else:
        entry = db.session.get(WaitlistEntry, int(payload["entry_id"]))
        reservation, showtime_id = None, entry.showtime_id
    # the showtime and what the email says of it, in one query
    showtime, screen, theater, movie, timezone_name = db.session.execute(
        select(Showtime, Screen, Theater, Movie, City.timezone)
        .join(Screen, Screen.id == Showtime.screen_id).join(Theater, Theater.id == Screen.theater_id)
        .join(City, City.id == Theater.city_id).join(Movie, Movie.id == Showtime.movie_id)
        .where(Showtime.id == showtime_id)).one()
    zone = ZoneInfo(timezone_name)
    context = {
        "user": user, "reservation": reservation, "showtime": showtime, "screen": screen, "theater": theater,
        "movie": movie, "zone": zone,
        # The zone is said: a customer may be elsewhere when reading it.
        "starts_at": showtime.starts_at.astimezone(zone).strftime("%A %d %B %Y, %H:%M") + f" ({zone.key})",
        "refunded": bool(payload.get("refunded")),
        # the amounts fixed at cancellation (a notice from before they were sent: all of the total)
        "refund_cents": int(payload.get("refund_cents", reservation.total_cents if reservation else 0)),
        "fee_cents": int(payload.get("fee_cents", 0)),
    }
    if reservation is not None:
        context["tickets"] = [
            {"seat_label": t.seat_label, "code": t.code, "qr_url": qr_url(t.code, "png")}
            for t in db.session.scalars(
                select(Ticket).where(Ticket.reservation_id == reservation.id).order_by(Ticket.id))]
    if payload.get("entry_id") is not None:
        context["entry"] = db.session.get(WaitlistEntry, int(payload["entry_id"]))
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
    with db.unit_of_work():
        db.session.execute(Email.__table__.update().where(Email.idempotency_key == key)
                           .values(status=EmailStatus.SENT, sent_at=datetime.now(timezone.utc)))
    if kind == "password_reset":
        auth.forget_mailed_token(payload)
    return "sent"
