"""One family of domain errors with stable codes, and their RFC 9457 rendering.

Services raise :class:`DomainError` subclasses; the API layer never builds an
error body by hand. Every HTTP error (404, 405, 413, validation, unexpected
failures) leaves the app as ``application/problem+json`` with at least
``status``, ``title``, ``detail`` and ``code``.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Response, g, json

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.retry_after = None if retry_after is None else max(1, int(retry_after))
        self.extra = extra


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


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


class InvalidTicket(DomainError):
    status, code, title = 422, "invalid_ticket", "Not a valid ticket"


class AlreadyCheckedIn(Conflict):
    code, title = "already_checked_in", "Ticket already checked in"


class TicketCancelled(Conflict):
    code, title = "ticket_cancelled", "Ticket cancelled"


class Invalid(DomainError):
    """Well-formed input that breaks a rule (422)."""

    status, code, title = 422, "validation_error", "Invalid input"


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Authentication required"


class InvalidCredentials(Unauthorized):
    code, title = "invalid_credentials", "Invalid email or password"


class TokenRevoked(Unauthorized):
    code, title = "token_revoked", "Token has been revoked"


class RefreshTokenReused(TokenRevoked):
    code, title = "refresh_token_reused", "Refresh token reused"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Not allowed"


class RateLimited(DomainError):
    """Always carries ``retry_after`` (seconds), sent as ``Retry-After``."""

    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(DomainError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


# Codes for errors raised by Flask/werkzeug rather than by our services.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    428: "precondition_required",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    503: "service_unavailable",
}


def problem(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Build an RFC 9457 problem response."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": "about:blank",
        "status": status,
        "title": title or phrase,
        "detail": detail or title or phrase,
        "code": code or HTTP_CODES.get(status, "error"),
    }
    request_id = getattr(g, "request_id", None) if g else None
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def domain_error_response(err: DomainError) -> Response:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    return problem(
        err.status, code=err.code, title=err.title, detail=err.detail, headers=headers, **err.extra
    )


def flatten_validation_messages(messages: Any) -> dict[str, Any]:
    """webargs nests messages under their location (json, query, ...): merge them."""
    if not isinstance(messages, dict):
        return {"_schema": messages}
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat
