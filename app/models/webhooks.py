"""Outbound webhooks: an admin's subscription to Marquee's events, one delivery per
webhook and event, and every attempt of a delivery (``app.services.outbound_webhooks``)."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Integer, LargeBinary, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

EVENTS = ("reservation.confirmed", "reservation.cancelled", "payment.refunded", "showtime.sold_out")


class DeliveryStatus(StrEnum):
    PENDING = "pending"      # not yet acknowledged: waiting for its turn, its time, or its webhook's re-enabling
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"        # given up after WEBHOOK_MAX_ATTEMPTS


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    # The signing secret, AES-GCM encrypted (WEBHOOK_SECRETS_KEY): it must be recoverable to sign.
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_known"),
        UniqueConstraint("webhook_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    # Deliveries of one webhook with the same key go out in ``seq`` order (the outbox row's id).
    ordering_key: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Taken by a dispatcher until then (an attempt in flight); a crashed one's lease runs out.
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer)


class WebhookFanout(Base):
    """An outbox event (topic ``webhooks.event``) whose deliveries exist: until then, later
    events of its reservation wait (fan-outs may commit out of order across workers)."""

    __tablename__ = "webhook_fanouts"

    outbox_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    fanned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
