"""Reservations, their seats, and the outbox of work for other processes."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.adapters.tracing import current_carrier
from app.db import Base
from app.logging_setup import request_id_var


class ReservationStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    CONFIRMED = "confirmed"
    PAYMENT_FAILED = "payment_failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# A reservation in one of these holds its seats (``uq_reservation_seats_live``).
LIVE_STATUSES = (ReservationStatus.PENDING_PAYMENT, ReservationStatus.CONFIRMED)


class TicketStatus(StrEnum):
    VALID = "valid"
    CANCELLED = "cancelled"


class WaitlistStatus(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    LAPSED = "lapsed"
    LEFT = "left"


# A waitlist entry in one of these is live (one per user and showtime).
LIVE_WAITLIST_STATUSES = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED)


class PaymentKind(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


class PaymentStatus(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"


class EmailStatus(StrEnum):
    SENDING = "sending"
    SENT = "sent"


def one_of(column: str, values) -> str:
    """A CHECK constraint's text: ``column`` takes one of ``values``."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(one_of("status", ReservationStatus), name="status_known"),
        CheckConstraint("total_cents >= 0", name="total_not_negative"),
        # The expiry job's scan: only pending rows, by deadline.
        Index("ix_reservations_pending_expires_at", "expires_at",
              postgresql_where=text("status = 'pending_payment'")),
        Index("ix_reservations_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    showtime_id: Mapped[int] = mapped_column(ForeignKey("showtimes.id", ondelete="RESTRICT"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    total_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    hold_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What a voucher took off the seats' prices (total_cents is what is charged).
    discount_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What a cancellation refunded under the theater's refund policy (None: not refunded).
    refund_cents: Mapped[int | None] = mapped_column(Integer)

    seats: Mapped[list["ReservationSeat"]] = relationship(
        back_populates="reservation", order_by="ReservationSeat.id", lazy="selectin"
    )


class ReservationSeat(Base):
    """A seat of a reservation. While ``released_at`` is null the seat is live, and
    the partial unique index ``uq_reservation_seats_live`` lets a seat of a
    showtime be live in one reservation only: the final guard against selling it
    twice, whatever Redis says."""

    __tablename__ = "reservation_seats"
    __table_args__ = (
        Index("uq_reservation_seats_live", "showtime_id", "seat_id", unique=True,
              postgresql_where=text("released_at IS NULL")),
        CheckConstraint("price_cents >= 0", name="price_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reservation_id: Mapped[int] = mapped_column(ForeignKey("reservations.id", ondelete="RESTRICT"), index=True)
    showtime_id: Mapped[int] = mapped_column(ForeignKey("showtimes.id", ondelete="RESTRICT"))
    seat_id: Mapped[int] = mapped_column(ForeignKey("seats.id", ondelete="RESTRICT"), index=True)
    label: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    price_cents: Mapped[int] = mapped_column(Integer)
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    reservation: Mapped[Reservation] = relationship(back_populates="seats")


class BlockedSeat(Base):
    """A seat an admin took out of sale for one showtime (``POST .../blocked-seats``).

    Never held or booked while it is here: the block and a reservation of the same
    seat are serialized by the showtime's advisory lock (``blocked_seats`` service),
    and Redis refuses holds of it (it is rebuilt from this table with the live
    reservation seats)."""

    __tablename__ = "blocked_seats"

    showtime_id: Mapped[int] = mapped_column(ForeignKey("showtimes.id", ondelete="CASCADE"), primary_key=True)
    seat_id: Mapped[int] = mapped_column(ForeignKey("seats.id", ondelete="CASCADE"), primary_key=True, index=True)
    reason: Mapped[str | None] = mapped_column(String(200))
    blocked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OutboxEvent(Base):
    """Work for another process, written in the same transaction as the change
    that causes it; a relay publishes it to RabbitMQ and marks it sent."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    # Events of one aggregate (a reservation) are published in id order.
    aggregate_id: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # The W3C context (traceparent, tracestate) of the span that wrote the row, so the
    # relay's publish and the worker's handling join the request's trace; None untraced.
    trace_context: Mapped[dict | None] = mapped_column(JSONB)

    def __init__(self, **kw) -> None:
        super().__init__(**OutboxEvent.row(**kw))

    @staticmethod
    def row(**kw) -> dict:
        """The columns of a new row (``topic``, ``aggregate_id``, ``payload``), for a Core
        insert (``app.services.outbox.add``) or the constructor. The request (or message)
        that caused the event travels with it, so the worker's logs carry the same request
        id as the proxy's and the app's; so does the span's context, for the trace."""
        request_id = request_id_var.get()
        payload = kw.get("payload")
        if request_id and isinstance(payload, dict) and "request_id" not in payload:
            kw["payload"] = {**payload, "request_id": request_id}
        if "trace_context" not in kw:
            kw["trace_context"] = current_carrier()
        return kw


# The channel on which the outbox relay listens (``app.services.outbox``). A trigger on
# ``outbox`` notifies it (migration 0026): every transaction that writes outbox rows, by
# the ORM or a Core statement, wakes the relay once, and only if it commits.
OUTBOX_NOTIFY_CHANNEL = "marquee_outbox"


class Payment(Base):
    """A charge or refund as the gateway answered it. The unique idempotency key
    makes "exactly one charge and at most one refund per reservation" a fact of
    the database, however often a message is delivered."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(one_of("kind", PaymentKind), name="kind_known"),
        CheckConstraint(one_of("status", PaymentStatus), name="status_known"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reservation_id: Mapped[int] = mapped_column(ForeignKey("reservations.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    gateway_ref: Mapped[str | None] = mapped_column(String(64))
    # A declined charge's reason (``declined``, ``unknown_token``...); null otherwise.
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Ticket(Base):
    """One ticket a seat of a confirmed reservation. ``code`` is signed (see
    ``app.services.tickets``) so that a scanner can check it offline;
    ``checked_in_by`` is the staff member whose scan admitted it."""

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(one_of("status", TicketStatus), name="status_known"),
        Index("uq_tickets_reservation_seat", "reservation_id", "seat_id", unique=True),
        Index("ix_tickets_showtime_id_id", "showtime_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reservation_id: Mapped[int] = mapped_column(ForeignKey("reservations.id", ondelete="RESTRICT"))
    showtime_id: Mapped[int] = mapped_column(ForeignKey("showtimes.id", ondelete="RESTRICT"))
    seat_id: Mapped[int] = mapped_column(ForeignKey("seats.id", ondelete="RESTRICT"))
    seat_label: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(10), server_default=TicketStatus.VALID.value)
    checked_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    checked_in_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Review(Base):
    """One review per user and movie; a second one replaces the first."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        Index("uq_reviews_user_movie", "user_id", "movie_id", unique=True),
        Index("ix_reviews_movie_id_updated_at", "movie_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.id", ondelete="RESTRICT"))
    rating: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(5000))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WaitlistEntry(Base):
    """A customer waiting for ``seats`` seats of a sold-out showtime. Offers go
    to the first waiting entry that fits, as an exclusive hold."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        CheckConstraint(one_of("status", WaitlistStatus), name="status_known"),
        CheckConstraint("seats BETWEEN 1 AND 50", name="seats_range"),
        # One live entry per user and showtime.
        Index("uq_waitlist_live", "user_id", "showtime_id", unique=True,
              postgresql_where=text("status IN ('waiting', 'offered')")),
        Index("ix_waitlist_showtime_status_id", "showtime_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    showtime_id: Mapped[int] = mapped_column(ForeignKey("showtimes.id", ondelete="RESTRICT"))
    seats: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), server_default=WaitlistStatus.WAITING.value)
    offer_hold_id: Mapped[str | None] = mapped_column(String(64))
    offer_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Email(Base):
    """An email due to a customer, once: the idempotency key makes a redelivered
    notice send nothing twice."""

    __tablename__ = "emails"
    __table_args__ = (CheckConstraint(one_of("status", EmailStatus), name="status_known"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    to_address: Mapped[str] = mapped_column(String(254))
    # whose email it was (migration 0014): found for an export or an erasure even
    # after the address changed
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    subject: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookEvent(Base):
    """Gateway events already handled: a replay of one is ignored."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WaitingRoom(Base):
    """A showtime's waiting room for its on-sale (``PUT .../waiting-room``): its settings.
    The queue itself lives in Redis (``waiting_room_store``); the scheduler pushes these
    settings there every second, so a change takes effect within one."""

    __tablename__ = "waiting_rooms"
    __table_args__ = (
        CheckConstraint("admit_per_minute > 0", name="admit_per_minute_positive"),
        CheckConstraint("max_active > 0", name="max_active_positive"),
        CheckConstraint("session_seconds > 0", name="session_seconds_positive"),
    )

    showtime_id: Mapped[int] = mapped_column(ForeignKey("showtimes.id", ondelete="CASCADE"), primary_key=True)
    opens_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    admit_per_minute: Mapped[int] = mapped_column(Integer)
    max_active: Mapped[int] = mapped_column(Integer)
    session_seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())
