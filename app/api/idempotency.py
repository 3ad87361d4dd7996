"""``Idempotency-Key`` for POSTs that create something (API.md, Conventions).

The same key from the same user with the same body returns the first response
again instead of acting twice; the same key with a different body is a 422.
While the first request is still running, a duplicate gets 409 (retry soon).
Responses of 5xx are not remembered, so the client may retry them.

The records live in Redis behind ``app.adapters.idempotency`` for
``IDEMPOTENCY_TTL_SECONDS`` (default 24 h), keyed by user, method, path and key.
"""
from __future__ import annotations

import re
from functools import wraps

from flask import Response, current_app, request
from flask_jwt_extended import get_jwt

from app.adapters.idempotency import IdempotencyRecord, fingerprint
from app.api.problems import domain_error_response
from app.bootstrap import marquee
from app.services import errors

HEADER = "Idempotency-Key"
REPLAYED_HEADERS = ("Location", "ETag")  # what a replay repeats of the first answer's headers
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII


class IdempotencyKeyReused(errors.Invalid):
    code, title = "idempotency_key_reused", "Idempotency key reused with another request"


class IdempotencyInProgress(errors.Conflict):
    code, title = "idempotency_in_progress", "A request with this idempotency key is in progress"


def idempotent(func):
    """Honour ``Idempotency-Key`` on this (authenticated) POST. Apply inside the
    auth decorator, outside flask-smorest's."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return func(*args, **kwargs)
        records = marquee().idempotency
        record_key, fp, earlier = claim(key, get_jwt()["sub"], request.method, request.path,
                                        request.get_data(cache=True))
        if earlier is not None:
            return _replay(finished(earlier, fp))
        try:
            response = current_app.make_response(func(*args, **kwargs))
        except errors.DomainError as exc:
            response = domain_error_response(exc)
        except BaseException:
            records.forget(record_key)
            raise
        if response.status_code >= 500:
            records.forget(record_key)
            return response
        records.complete(record_key, fp, response.status_code, response.get_data(as_text=True),
                         response.content_type,
                         {name: response.headers[name] for name in REPLAYED_HEADERS if name in response.headers})
        return response

    doc = wrapper.__dict__.setdefault("_apidoc", {})
    params = doc.setdefault("manual_doc", {}).setdefault("parameters", [])
    params.append({
        "in": "header", "name": HEADER, "required": False, "schema": {"type": "string", "maxLength": 255},
        "description": "Send the same key again to get the first response instead of acting twice.",
    })
    return wrapper


def check_key(key: str) -> None:
    """An ``Idempotency-Key`` is 1-255 visible ASCII characters (422 otherwise)."""
    if not _VALID.match(key):
        raise errors.Invalid(f"{HEADER} must be 1-255 visible ASCII characters",
                             errors={HEADER: ["1-255 visible ASCII characters"]})


def claim(key: str, user_id: str, method: str, path: str, body: bytes) -> tuple[str, str, IdempotencyRecord | None]:
    """Check ``key`` and claim it for this request (REST's method and path, or GraphQL's
    "GRAPHQL" and operation): its record key, the request's fingerprint, and the earlier
    request's record when the key was claimed before (None: this request goes ahead)."""
    check_key(key)
    records = marquee().idempotency
    record_key = records.record_key(user_id, method, path, key)
    fp = fingerprint(method, path, body)
    return record_key, fp, records.claim(record_key, fp)


def finished(record: IdempotencyRecord, fp: str) -> IdempotencyRecord:
    """The earlier request's record, to answer again: refused (422) when it was another
    request, or (409, retry soon) while it is still running."""
    if record.fingerprint != fp:
        raise IdempotencyKeyReused(f"This {HEADER} was used with a different request")
    if not record.done:
        raise IdempotencyInProgress("The first request with this key is still running; retry shortly",
                                    retry_after=1)
    return record


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.body, status=record.status, content_type=record.content_type)
    for name, value in (record.headers or {}).items():
        response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response
