"""The payment gateway interface, and the deterministic gateway built in.

``TEST_GATEWAY_DELAY_MS`` adds latency to every call, like a real provider's (the
tests use it to stop a worker in the middle of a charge); each call is counted
per idempotency key.

A real provider fits behind ``PaymentGateway``: ``charge`` and ``refund`` take an
idempotency key (the reservation's), so asking twice never charges twice.

``TestGateway`` answers by token: ``tok_visa`` succeeds, ``tok_declined`` is
declined, ``tok_error`` fails transiently twice (per idempotency key) and then
succeeds. It remembers its answers in Redis, like a provider would on its side.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from app.adapters.redis_store import RedisStore


class TransientPaymentError(Exception):
    """The gateway could not answer now; try again later."""


@dataclass(frozen=True)
class GatewayResult:
    succeeded: bool
    reference: str
    reason: str | None = None


class PaymentGateway(Protocol):
    def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> GatewayResult: ...

    def refund(self, *, amount_cents: int, currency: str, charge_reference: str | None,
               idempotency_key: str) -> GatewayResult: ...


class TestGateway:
    TRANSIENT_FAILURES = 2
    MEMORY_SECONDS = 7 * 86400

    def __init__(self, store: RedisStore, delay_ms: int | None = None) -> None:
        self.store = store
        self.delay = (int(os.environ.get("TEST_GATEWAY_DELAY_MS") or 0) if delay_ms is None else delay_ms) / 1000

    def calls(self, idempotency_key: str) -> int:
        return int(self.store.client.get(self.store.key("gateway", "calls", idempotency_key)) or 0)

    def _called(self, idempotency_key: str) -> GatewayResult | None:
        """Count the call and return the answer already given under this key, if any:
        one round trip to Redis (the gateway's latency is part of every checkout's)."""
        calls = self.store.key("gateway", "calls", idempotency_key)
        pipe = self.store.client.pipeline(transaction=False)
        pipe.incr(calls)
        pipe.expire(calls, self.MEMORY_SECONDS)
        pipe.get(self.store.key("gateway", "result", idempotency_key))
        raw = pipe.execute()[2]
        if self.delay:
            time.sleep(self.delay)
        return GatewayResult(**json.loads(raw)) if raw else None

    def _remember(self, idempotency_key: str, result: GatewayResult) -> GatewayResult:
        key = self.store.key("gateway", "result", idempotency_key)
        # First answer wins: a concurrent duplicate gets the one already there back
        # (SET NX GET answers with it in the same step).
        earlier = self.store.client.set(key, json.dumps(result.__dict__), nx=True, ex=self.MEMORY_SECONDS, get=True)
        return GatewayResult(**json.loads(earlier)) if earlier else result

    def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> GatewayResult:
        known = self._called(idempotency_key)
        if known:
            return known
        if token == "tok_error":
            attempts_key = self.store.key("gateway", "attempts", idempotency_key)
            attempts = self.store.client.incr(attempts_key)
            self.store.client.expire(attempts_key, self.MEMORY_SECONDS)
            if attempts <= self.TRANSIENT_FAILURES:
                raise TransientPaymentError(f"gateway unavailable (attempt {attempts})")
        if token == "tok_declined":
            return self._remember(idempotency_key, GatewayResult(False, f"ch_{uuid.uuid4().hex[:20]}", "card_declined"))
        if token in ("tok_visa", "tok_error"):
            return self._remember(idempotency_key, GatewayResult(True, f"ch_{uuid.uuid4().hex[:20]}"))
        return self._remember(idempotency_key, GatewayResult(False, f"ch_{uuid.uuid4().hex[:20]}", "unknown_token"))

    def refund(self, *, amount_cents: int, currency: str, charge_reference: str | None,
               idempotency_key: str) -> GatewayResult:
        return self._remember(idempotency_key, GatewayResult(True, f"re_{uuid.uuid4().hex[:20]}"))  # or the earlier one
