"""``Idempotency-Key`` for POSTs that create something (API.md, Conventions).

The same key from the same user with the same body returns the first response
again instead of acting twice; the same key with a different body is a 422.
While the first request is still running, a duplicate gets 409 (retry soon).
Responses of 5xx are not remembered, so the client may retry them.

Records live in Redis for ``IDEMPOTENCY_TTL_SECONDS`` (default 24 h), keyed by
user, method, path and key.
"""
from __future__ import annotations

import hashlib
import json
import re
from functools import wraps

from flask import Response, current_app, request
from flask_jwt_extended import get_jwt

from app.extensions import marquee
from app import errors

HEADER = "Idempotency-Key"
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII
IN_PROGRESS_SECONDS = 60


class IdempotencyKeyReused(errors.Invalid):
    code, title = "idempotency_key_reused", "Idempotency key reused with another request"


class IdempotencyInProgress(errors.Conflict):
    code, title = "idempotency_in_progress", "A request with this idempotency key is in progress"


def _fingerprint() -> str:
    raw = request.get_data(cache=True)
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = raw
    return hashlib.sha256(request.method.encode() + b" " + request.path.encode() + b"\n" + canonical).hexdigest()


def idempotent(func):
    """Honour ``Idempotency-Key`` on this (authenticated) POST. Apply inside the
    auth decorator, outside flask-smorest's."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return func(*args, **kwargs)
        if not _VALID.match(key):
            raise errors.Invalid(
                f"{HEADER} must be 1-255 visible ASCII characters",
                errors={HEADER: ["1-255 visible ASCII characters"]},
            )
        ext = marquee()
        scope = hashlib.sha256(f"{request.method} {request.path} {key}".encode()).hexdigest()[:40]
        record_key = ext.redis.key("idem", get_jwt()["sub"], scope)
        fingerprint = _fingerprint()
        client = ext.redis.client

        claimed = client.set(record_key, json.dumps({"state": "running", "fp": fingerprint}),
                             nx=True, ex=IN_PROGRESS_SECONDS)
        if not claimed:
            return _replay(client.get(record_key), fingerprint)
        try:
            response = current_app.make_response(func(*args, **kwargs))
        except errors.DomainError as exc:
            response = errors.domain_error_response(exc)
        except BaseException:
            client.delete(record_key)
            raise
        if response.status_code >= 500:
            client.delete(record_key)
            return response
        client.set(record_key, json.dumps({
            "state": "done",
            "fp": fingerprint,
            "status": response.status_code,
            "body": response.get_data(as_text=True),
            "content_type": response.content_type,
        }), ex=ext.settings.idempotency_ttl_seconds)
        return response

    doc = wrapper.__dict__.setdefault("_apidoc", {})
    params = doc.setdefault("manual_doc", {}).setdefault("parameters", [])
    params.append({
        "in": "header", "name": HEADER, "required": False, "schema": {"type": "string", "maxLength": 255},
        "description": "Send the same key again to get the first response instead of acting twice.",
    })
    return wrapper


def _replay(raw: bytes | None, fingerprint: str) -> Response:
    if raw is None:  # expired between our SET and GET: treat as in progress
        raise IdempotencyInProgress("Retry in a moment", retry_after=1)
    record = json.loads(raw)
    if record["fp"] != fingerprint:
        raise IdempotencyKeyReused(f"This {HEADER} was used with a different request")
    if record["state"] != "done":
        raise IdempotencyInProgress("The first request with this key is still running; retry shortly",
                                    retry_after=1)
    response = Response(record["body"], status=record["status"], content_type=record["content_type"])
    response.headers["Idempotent-Replayed"] = "true"
    return response
