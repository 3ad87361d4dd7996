"""Records of ``Idempotency-Key`` requests in Redis (API.md, Conventions).

A record is claimed while its first request runs (``IN_PROGRESS_SECONDS``), then
holds that request's answer for ``IDEMPOTENCY_TTL_SECONDS``. Keys are scoped by
user, method, path and key; the fingerprint of the request (method, path and
canonical body) tells a replay from a reuse with another request.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from app.adapters.redis_store import RedisStore

IN_PROGRESS_SECONDS = 60


@dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: str
    done: bool
    status: int | None = None
    body: str | None = None
    content_type: str | None = None
    headers: dict[str, str] | None = None


def fingerprint(method: str, path: str, body: bytes) -> str:
    """The request as far as a replay is concerned: JSON bodies compared by content."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


class IdempotencyStore:
    def __init__(self, store: RedisStore, ttl_seconds: int) -> None:
        self.store = store
        self.ttl = ttl_seconds

    def record_key(self, user_id: str, method: str, path: str, key: str) -> str:
        scope = hashlib.sha256(f"{method} {path} {key}".encode()).hexdigest()[:40]
        return self.store.key("idem", user_id, scope)

    def claim(self, record_key: str, fp: str) -> IdempotencyRecord | None:
        """Claim the key for a first request (None), or return the record already there."""
        client = self.store.client
        if client.set(record_key, json.dumps({"state": "running", "fp": fp}), nx=True, ex=IN_PROGRESS_SECONDS):
            return None
        raw = client.get(record_key)
        if raw is None:  # expired between our SET and GET: still someone else's moment
            return IdempotencyRecord(fingerprint=fp, done=False)
        data = json.loads(raw)
        return IdempotencyRecord(fingerprint=data["fp"], done=data["state"] == "done", status=data.get("status"),
                                 body=data.get("body"), content_type=data.get("content_type"),
                                 headers=data.get("headers") or {})

    def complete(self, record_key: str, fp: str, status: int, body: str, content_type: str,
                 headers: dict[str, str] | None = None) -> None:
        """Keep the first answer: status, body, content type and the headers a replay
        must repeat (``Location``, ``ETag``)."""
        self.store.client.set(record_key, json.dumps({
            "state": "done", "fp": fp, "status": status, "body": body, "content_type": content_type,
            "headers": headers or {},
        }), ex=self.ttl)

    def forget(self, record_key: str) -> None:
        """The first request failed in a way worth retrying: the key is free again."""
        self.store.client.delete(record_key)
