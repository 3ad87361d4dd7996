"""One family of domain errors with stable codes. They know no HTTP.

Services raise :class:`DomainError` subclasses. Each belongs to one *kind*
(``NotFound``, ``Conflict``, ``Invalid``, ``Unauthorized``, ``Forbidden``,
``RateLimited``, ``ServiceUnavailable``, or plain ``BadRequest``); the web layer
(``app.api.problems``) maps a kind to its HTTP status and renders the problem
document, and the worker treats them as failures that no retry will mend.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a service raises on purpose: ``code`` is stable and
    machine-readable, ``title`` a short summary, ``detail`` says what happened,
    ``extra`` carries fields a client can act on (``seat_ids``, ``hold_id``...)."""

    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.retry_after = None if retry_after is None else max(1, int(retry_after))
        self.extra = extra


class BadRequest(DomainError):
    """A request that cannot be understood as sent (a bad signature, say)."""

    code, title = "bad_request", "Bad request"


class NotFound(DomainError):
    code, title = "not_found", "Not found"


class Conflict(DomainError):
    code, title = "conflict", "Conflict"


class InUse(Conflict):
    code, title = "in_use", "Still referenced"


class EmailTaken(Conflict):
    code, title = "email_taken", "Email already registered"


class ShowtimeOverlap(Conflict):
    code, title = "showtime_overlap", "Showtime overlaps another on this screen"


class LayoutInUse(Conflict):
    code, title = "layout_in_use", "Layout is referenced by bookings"


class SeatsUnavailable(Conflict):
    code, title = "seats_unavailable", "Some seats are not available"


class HoldExpired(Conflict):
    code, title = "hold_expired", "The hold has expired"


class HoldExists(Conflict):
    code, title = "hold_exists", "You already hold seats for this showtime"


class HoldInUse(Conflict):
    code, title = "hold_in_use", "The hold is already being turned into a reservation"


class ShowtimeStarted(Conflict):
    code, title = "showtime_started", "The showtime has started"


class CancellationClosed(Conflict):
    code, title = "cancellation_closed", "Cancellation has closed for this showtime"


class NotCancellable(Conflict):
    code, title = "not_cancellable", "This reservation cannot be cancelled"


class NotConfirmed(Conflict):
    code, title = "not_confirmed", "The reservation is not confirmed"


class AlreadyCheckedIn(Conflict):
    code, title = "already_checked_in", "Ticket already checked in"


class TicketCancelled(Conflict):
    code, title = "ticket_cancelled", "Ticket cancelled"


class Invalid(DomainError):
    """Well-formed input that breaks a rule. ``errors`` maps field paths to
    lists of messages, as schema validation does."""

    code, title = "validation_error", "Invalid input"


class InvalidTicket(Invalid):
    code, title = "invalid_ticket", "Not a valid ticket"


class Unauthorized(DomainError):
    code, title = "unauthorized", "Authentication required"


class InvalidCredentials(Unauthorized):
    code, title = "invalid_credentials", "Invalid email or password"


class MfaInvalid(Unauthorized):
    code, title = "mfa_invalid", "The code or the sign-in challenge is not right"


class TokenMissing(Unauthorized):
    code, title = "token_missing", "A Bearer token is required"


class TokenInvalid(Unauthorized):
    code, title = "token_invalid", "Invalid token"


class TokenExpired(Unauthorized):
    code, title = "token_expired", "The token has expired"


class TokenRevoked(Unauthorized):
    code, title = "token_revoked", "Token has been revoked"


class RefreshTokenReused(TokenRevoked):
    code, title = "refresh_token_reused", "Refresh token reused"


class Forbidden(DomainError):
    code, title = "forbidden", "Not allowed"


class MfaRequired(Forbidden):
    code, title = "mfa_required", "This action needs a session signed in with a second factor"


class AdmissionRequired(Forbidden):
    """A hold while the showtime's waiting room is on, without a live admission."""

    code, title = "admission_required", "Admission through the waiting room required"


class RateLimited(DomainError):
    """Always carries ``retry_after`` (seconds)."""

    code, title = "rate_limited", "Too many requests"


class ServiceUnavailable(DomainError):
    code, title = "service_unavailable", "Service unavailable"
