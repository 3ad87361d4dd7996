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
from app.models.reports import SalesDaily, SalesTheaterDaily
from app.models.selling import PriceRule, Voucher, VoucherRedemption
from app.models.ticket_keys import TicketKey
from app.models.user import ROLES, MfaRecoveryCode, PasswordResetToken, User, UserMfa
from app.models.webhooks import Webhook, WebhookAttempt, WebhookDelivery  # noqa: F401

__all__ = [
    "LIVE_STATUSES", "LIVE_WAITLIST_STATUSES", "ROLES",
    "AuditEntry", "BlockedSeat", "Channel", "City", "Email", "EmailStatus", "MfaRecoveryCode", "Movie",
    "NotificationDefaults", "NotificationPreference",
    "OutboxEvent", "PasswordResetToken", "Payment", "PaymentKind", "PaymentStatus", "PriceRule",
    "Reminder", "Reservation", "ReservationSeat", "ReservationStatus", "Review", "SalesDaily", "SalesTheaterDaily",
    "Screen", "Seat", "Showtime", "StaffRole", "Theater",
    "Ticket", "TicketKey", "TicketStatus", "User", "UserMfa", "UserRole", "Voucher", "VoucherRedemption",
    "WaitingRoom", "WaitlistEntry", "WaitlistStatus", "WebhookEvent",
]
