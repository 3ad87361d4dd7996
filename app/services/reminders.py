"""Notification preferences, and reminders before each confirmed showtime, sent once.

Order of effects:

1. ``queue_due_reminders`` (a scheduler job, every few seconds) finds, in one
   set-based query, every confirmed reservation whose showtime starts within its
   owner's ``reminder_minutes`` and has not started yet, on every channel the
   owner chose. In one transaction it inserts a ``reminders`` row per
   (reservation, channel) with ``ON CONFLICT DO NOTHING ... RETURNING`` and an
   outbox row for each row it really inserted. The scheduler's advisory lock
   keeps a second scheduler out, but the claim alone is enough: a second
   scheduler, a crash or a restart queues nothing twice.
2. The relay publishes the outbox rows: ``notifications.email`` (the email
   pipeline, kind ``reminder``), ``notifications.sms``, ``notifications.push``.
3. The worker sends, once: the reminder is re-read first and nothing goes if the
   reservation was cancelled (or the showtime started) meanwhile. SMS and push
   follow the email's pattern: a lease while sending, the ``reminders`` row
   marked when done, so a redelivery sends nothing twice.

A showtime that started before its reminder could be queued gets none: a
reminder is never sent late.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select, text, update

from app import db
from app.bootstrap import marquee
from app.models import (
    Channel,
    NotificationDefaults,
    NotificationPreference,
    Reminder,
    ReservationStatus,
)
from app.services import errors, outbox
from app.services.notifications import email_event, notice_context, reminder_due, sending_lease

# pg_try_advisory_xact_lock key: one scheduler queues reminders at a time.
REMINDER_LOCK = 0x6D71_0017  # "mq" 17
SMS_MAX_CHARS = 160
TOPIC_OF_CHANNEL = {Channel.SMS: "notifications.sms", Channel.PUSH: "notifications.push"}


# --- preferences ----------------------------------------------------------------

def _as_dict(row: NotificationPreference | None) -> dict:
    if row is None:
        return {"email": NotificationDefaults.EMAIL, "sms": NotificationDefaults.SMS,
                "push": NotificationDefaults.PUSH, "reminders": NotificationDefaults.REMINDERS,
                "reminder_minutes": NotificationDefaults.REMINDER_MINUTES, "phone": None}
    return {"email": row.email, "sms": row.sms, "push": row.push, "reminders": row.reminders,
            "reminder_minutes": row.reminder_minutes, "phone": row.phone}


def get_preferences(user_id: int) -> dict:
    """The user's preferences, or the defaults when none are stored."""
    with db.unit_of_work():
        return _as_dict(db.session.get(NotificationPreference, user_id))


def set_preferences(user_id: int, *, email: bool, sms: bool, push: bool, reminders: bool,
                    reminder_minutes: int, phone: str | None = None) -> dict:
    """Replace the user's preferences. SMS needs a phone number to go to."""
    if sms and not phone:
        raise errors.Invalid("SMS needs a phone number", errors={"phone": ["Required when sms is true"]})
    values = {"email": email, "sms": sms, "push": push, "reminders": reminders,
              "reminder_minutes": reminder_minutes, "phone": phone}
    with db.unit_of_work():
        row = db.session.get(NotificationPreference, user_id, with_for_update=True)
        if row is None:
            row = NotificationPreference(user_id=user_id)
            db.session.add(row)
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = datetime.now(timezone.utc)
    return values


# --- queuing --------------------------------------------------------------------

# Showtimes starting in (now, now + the longest reminder_minutes anyone uses] (that longest
# from ix_notification_preferences_reminder_minutes; the showtimes from ix_showtimes_starts_at),
# their confirmed reservations (ix_reservations_showtime_id), each owner's preferences (its
# primary key), one row per chosen channel, those not yet claimed (reminders' primary key).
_CLAIM_DUE = text("""
WITH window_end AS (
    SELECT :now + make_interval(mins => GREATEST(:minutes, COALESCE(
        (SELECT max(reminder_minutes) FROM notification_preferences WHERE reminders), 0))) AS at
), due AS (
    SELECT r.id AS reservation_id, c.channel, r.user_id
    FROM showtimes s
    JOIN reservations r ON r.showtime_id = s.id AND r.status = :confirmed
    LEFT JOIN notification_preferences p ON p.user_id = r.user_id
    CROSS JOIN LATERAL (VALUES ('email', COALESCE(p.email, :email)),
                               ('sms', COALESCE(p.sms, :sms)),
                               ('push', COALESCE(p.push, :push))) AS c(channel, wanted)
    WHERE s.starts_at > :now
      AND s.starts_at <= (SELECT at FROM window_end)
      AND s.starts_at <= :now + make_interval(mins => COALESCE(p.reminder_minutes, :minutes))
      AND COALESCE(p.reminders, :reminders)
      AND c.wanted
      AND NOT EXISTS (SELECT 1 FROM reminders m WHERE m.reservation_id = r.id AND m.channel = c.channel)
    ORDER BY s.starts_at, r.id
    LIMIT :batch
)
INSERT INTO reminders (reservation_id, channel, user_id)
SELECT reservation_id, channel, user_id FROM due
ON CONFLICT DO NOTHING
RETURNING reservation_id, channel, user_id
""")


def queue_due_reminders(*, now: datetime | None = None, batch: int = 500) -> int | None:
    """Claim the reminders now due and write their outbox rows, in one transaction.
    Returns how many were queued, or None when another scheduler holds the lock."""
    now = now or datetime.now(timezone.utc)
    with db.unit_of_work():
        if not db.try_xact_lock(REMINDER_LOCK):
            return None
        claimed = db.session.execute(_CLAIM_DUE, {
            "confirmed": str(ReservationStatus.CONFIRMED), "now": now,
            "minutes": NotificationDefaults.REMINDER_MINUTES, "reminders": NotificationDefaults.REMINDERS,
            "email": NotificationDefaults.EMAIL, "sms": NotificationDefaults.SMS, "push": NotificationDefaults.PUSH,
            "batch": batch}).all()
        outbox.add(*(_outbox_row(reservation_id, channel, user_id) for reservation_id, channel, user_id in claimed))
    return len(claimed)


def _outbox_row(reservation_id: int, channel: str, user_id: int) -> dict:
    if channel == Channel.EMAIL:
        return email_event("reminder", user_id, reservation_id=reservation_id)
    return {"topic": TOPIC_OF_CHANNEL[Channel(channel)], "aggregate_id": f"user:{user_id}", "payload": {
        "kind": "reminder", "channel": channel, "user_id": user_id, "reservation_id": reservation_id,
        "idempotency_key": f"reminder-{reservation_id}-{channel}"}}


# --- sending (the worker) -------------------------------------------------------

def send_sms(payload: dict) -> str:
    """Send the SMS reminder a notice asks for, once."""
    return _send_once(payload, Channel.SMS)


def send_push(payload: dict) -> str:
    """Send the push reminder a notice asks for, once."""
    return _send_once(payload, Channel.PUSH)


def _send_once(payload: dict, channel: Channel) -> str:
    """Recorded before the side effect and marked after it, under a lease, as an
    email is (``notifications.send_email``)."""
    key = payload["idempotency_key"]
    reservation_id = int(payload["reservation_id"])
    with sending_lease(channel, key):
        with db.unit_of_work():  # nothing open during the send
            reminder = db.session.get(Reminder, (reservation_id, str(channel)))
            if reminder is None or reminder.outcome is not None:
                return "already_done"
            context = notice_context(payload)
            skipped = _why_not(context, channel)
            if skipped is None:
                message = _render(context, channel)
        if skipped is not None:
            _mark(reservation_id, channel, skipped)
            return skipped
        _deliver(channel, context, message, key)
        _mark(reservation_id, channel, "sent")
        return "sent"


def _why_not(context: dict, channel: Channel) -> str | None:
    """Why nothing goes now (the reservation was cancelled, the showtime started,
    the channel was turned off), or None."""
    if not reminder_due(context["reservation"], context["showtime"]):
        return "not_due"
    wanted = db.session.get(NotificationPreference, context["user"].id)
    if wanted is None or not wanted.reminders or not getattr(wanted, str(channel)):
        return "unwanted"
    context["phone"] = wanted.phone
    return None


def _render(context: dict, channel: Channel) -> dict:
    templates = marquee().templates
    starts = context["showtime"].starts_at.astimezone(context["zone"])
    context = {**context, "starts_short": starts.strftime("%a %d %b %H:%M"),
               "seats": ", ".join(t["seat_label"] for t in context.get("tickets", []))}
    if channel == Channel.SMS:
        return {"text": sms_text(templates.render("sms/reminder.txt", **context))}
    return {"title": templates.render("push/reminder_title.txt", **context).strip(),
            "body": templates.render("push/reminder_body.txt", **context).strip()}


def sms_text(rendered: str) -> str:
    """One SMS: a single line of at most SMS_MAX_CHARS characters."""
    line = " ".join(rendered.split())
    return line if len(line) <= SMS_MAX_CHARS else line[:SMS_MAX_CHARS - 3].rstrip() + "..."


def _deliver(channel: Channel, context: dict, message: dict, key: str) -> None:
    deps = marquee()
    if channel == Channel.SMS:
        deps.sms.send_sms(to=context["phone"], text=message["text"], idempotency_key=key)
    else:
        deps.push.send_push(user_id=context["user"].id, title=message["title"], body=message["body"],
                            idempotency_key=key)


def _mark(reservation_id: int, channel: Channel, outcome: str) -> None:
    with db.unit_of_work():
        db.session.execute(update(Reminder).where(Reminder.reservation_id == reservation_id,
                                                  Reminder.channel == str(channel), Reminder.outcome.is_(None))
                           .values(outcome=outcome, done_at=datetime.now(timezone.utc)))


def reminders_of(reservation_id: int) -> list[tuple[str, str | None]]:
    """(channel, outcome) of a reservation's reminders (for operators and tests)."""
    with db.unit_of_work():
        return [tuple(row) for row in db.session.execute(
            select(Reminder.channel, Reminder.outcome).where(Reminder.reservation_id == reservation_id)
            .order_by(Reminder.channel))]
