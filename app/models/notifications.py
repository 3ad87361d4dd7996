"""What a customer wants to hear from Marquee, and the reminders already due.

``notification_preferences`` holds one row per user who changed the defaults
(``NotificationDefaults``); the phone number lives there alone, so export and
erasure find it in one place. ``reminders`` is the claim on one reminder per
reservation and channel: the scheduler inserts it with ``ON CONFLICT DO
NOTHING`` in the transaction that writes the outbox row, so however many
schedulers run, and however often one restarts, a reminder is asked for once.
The SMS and push workers mark it sent (an email's record is its ``emails`` row).
"""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.booking import one_of


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class NotificationDefaults:
    """What a user without a stored row gets."""

    EMAIL = True
    SMS = False
    PUSH = False
    REMINDERS = True
    REMINDER_MINUTES = 120


REMINDER_MINUTES_MIN = 5
REMINDER_MINUTES_MAX = 7 * 24 * 60


class NotificationPreference(Base):
    __tablename__ = "notification_preferences"
    __table_args__ = (
        CheckConstraint(f"reminder_minutes BETWEEN {REMINDER_MINUTES_MIN} AND {REMINDER_MINUTES_MAX}",
                        name="reminder_minutes_range"),
        CheckConstraint("NOT sms OR phone IS NOT NULL", name="sms_needs_phone"),
        # the reminder job's window: the longest reminder_minutes in use, in one index step
        Index("ix_notification_preferences_reminder_minutes", "reminder_minutes", postgresql_where=text("reminders")),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[bool] = mapped_column(Boolean)
    sms: Mapped[bool] = mapped_column(Boolean)
    push: Mapped[bool] = mapped_column(Boolean)
    reminders: Mapped[bool] = mapped_column(Boolean)
    reminder_minutes: Mapped[int] = mapped_column(Integer)
    phone: Mapped[str | None] = mapped_column(String(16))  # E.164
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Reminder(Base):
    """One reminder of one reservation on one channel: queued once, sent once."""

    __tablename__ = "reminders"
    __table_args__ = (CheckConstraint(one_of("channel", Channel), name="channel_known"),)

    reservation_id: Mapped[int] = mapped_column(ForeignKey("reservations.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # set by the worker: "sent", or why nothing was sent ("cancelled", "started", "unwanted")
    outcome: Mapped[str | None] = mapped_column(String(12))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
