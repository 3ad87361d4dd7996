"""SQLAlchemy models: the shape of the truth kept in PostgreSQL, and the names of its states."""
from app.models.booking import (
    LIVE_STATUSES,
    LIVE_WAITLIST_STATUSES,
    BlockedSeat,
    Email,
    EmailStatus,
    OutboxEvent,
    Payment,
    PaymentKind,
    PaymentStatus,
    Reservation,
    ReservationSeat,
    ReservationStatus,
    Review,
    Ticket,
    TicketStatus,
    WaitingRoom,
    WaitlistEntry,
    WaitlistStatus,
    WebhookEvent,
)
from app.models.catalog import City, Movie, Screen, Seat, Showtime, Theater
from app.models.notifications import Channel, NotificationDefaults, NotificationPreference, Reminder
from app.models.operating import AuditEntry, StaffRole, UserRole
from app.models.user import ROLES, PasswordResetToken, User
from app.models.webhooks import Webhook, WebhookAttempt, WebhookDelivery  # noqa: F401

__all__ = [
    "LIVE_STATUSES", "LIVE_WAITLIST_STATUSES", "ROLES",
    "AuditEntry", "BlockedSeat", "Channel", "City", "Email", "EmailStatus", "Movie", "NotificationDefaults", "NotificationPreference",
    "OutboxEvent", "PasswordResetToken", "Payment", "PaymentKind", "PaymentStatus",
    "Reminder", "Reservation", "ReservationSeat", "ReservationStatus", "Review", "Screen", "Seat", "Showtime", "StaffRole", "Theater",
    "Ticket", "TicketStatus", "User", "UserRole", "WaitingRoom", "WaitlistEntry", "WaitlistStatus", "WebhookEvent",
]
