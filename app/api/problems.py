"""RFC 9457 problem documents: the one place where domain errors meet HTTP.

Every error leaves the app as ``application/problem+json`` with at least
``status``, ``title``, ``detail`` and ``code``: domain errors (their kind gives
the status), Flask/werkzeug's own (404, 405, 413, validation...) and
unexpected failures alike.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response, g, json

from app.services import errors

PROBLEM_MIMETYPE = "application/problem+json"

# The HTTP status of each kind of domain error; a subclass takes its kind's.
STATUS_OF_KIND: dict[type[errors.DomainError], int] = {
    errors.BadRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Invalid: 422,
    errors.RateLimited: 429,
    errors.ServiceUnavailable: 503,
    errors.DomainError: 400,
}

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


def status_of(err: errors.DomainError) -> int:
    """The HTTP status of a domain error: that of the nearest kind in its class's MRO."""
    for cls in type(err).__mro__:
        if cls in STATUS_OF_KIND:
            return STATUS_OF_KIND[cls]
    return 400


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


def domain_error_response(err: errors.DomainError) -> Response:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    return problem(
        status_of(err), code=err.code, title=err.title, detail=err.detail, headers=headers, **err.extra
    )


def flatten_validation_messages(messages: Any) -> dict[str, list[str]]:
    """One shape for every 422 (API.md): a field path (``seat_ids.0``, ``layout.rows.2.label``)
    to a list of messages. webargs nests messages under their location (json, query,
    ...) and marshmallow nests them by field and index: both are flattened."""
    if not isinstance(messages, dict):
        return {"_schema": _as_list(messages)}
    flat: dict[str, list[str]] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            _flatten_into(flat, "", fields)
        else:
            flat.setdefault(location, []).extend(_as_list(fields))
    return flat


def _flatten_into(flat: dict[str, list[str]], prefix: str, messages: dict) -> None:
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            _flatten_into(flat, path, value)
        else:
            flat.setdefault(path, []).extend(_as_list(value))


def _as_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            out.extend(_as_list(item) if isinstance(item, (list, tuple)) else [str(item)])
        return out
    if isinstance(value, dict):
        flat: dict[str, list[str]] = {}
        _flatten_into(flat, "", value)
        return [f"{k}: {m}" for k, msgs in flat.items() for m in msgs]
    return [str(value)]


def validation_detail(errors_by_path: dict[str, list[str]]) -> str:
    """A sentence naming what failed, for clients that only show ``detail``."""
    shown = [f"{path}: {msgs[0]}" for path, msgs in list(errors_by_path.items())[:3] if msgs]
    more = len(errors_by_path) - len(shown)
    return "Invalid input: " + "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
