"""Refund policies (API.md "Selling": Refund policy): when a reservation may still be
cancelled, and how much of what was charged comes back.

A theater's ``refund_policy`` is ``{cutoff_minutes, fee_percent?, fee_cents?}``, or
None for the site-wide rule (``CANCELLATION_CUTOFF_MINUTES``, a full refund).

- A confirmed (paid) reservation can be cancelled until ``cutoff_minutes`` before the
  show; within them, 409 ``cancellation_closed``. One awaiting payment can be cancelled
  until the show starts (nothing was charged, whatever the policy).
- The refund is what was charged (``total_cents``, after any voucher) less the fee:
  ``fee_percent`` of it, rounded down to the cent (the customer's favour), plus
  ``fee_cents``; both may be given and add up; the fee never exceeds the charge, so
  a refund is never negative. It is fixed at cancellation (``refund_cents`` on the
  reservation) and is exactly what the refund request asks the gateway for: a later
  change of the policy does not change it.
- A reservation cancelled before its charge succeeded refunds 0; if the charge
  succeeds after all, the money is never kept: it is refunded in full (no fee), and
  ``refund_cents`` says so.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.services import errors

MAX_CUTOFF_MINUTES = 30 * 24 * 60  # a policy closes cancellation at most 30 days before the show
MAX_FEE_CENTS = 10_000_000
FIELDS = ("cutoff_minutes", "fee_percent", "fee_cents")


@dataclass(frozen=True)
class RefundPolicy:
    cutoff_minutes: int
    fee_percent: int = 0
    fee_cents: int = 0

    @classmethod
    def of(cls, stored: dict | None, default_cutoff_minutes: int) -> RefundPolicy:
        """A theater's stored policy, or the site-wide rule when it has none."""
        if not stored:
            return cls(cutoff_minutes=default_cutoff_minutes)
        return cls(cutoff_minutes=int(stored["cutoff_minutes"]), fee_percent=int(stored.get("fee_percent") or 0),
                   fee_cents=int(stored.get("fee_cents") or 0))

    def fee(self, charged_cents: int) -> int:
        """The fee kept of ``charged_cents``: never more than was charged."""
        return min(charged_cents, charged_cents * self.fee_percent // 100 + self.fee_cents)

    def refund(self, charged_cents: int) -> int:
        return charged_cents - self.fee(charged_cents)


def _bad(path: str, message: str, found: dict) -> None:
    found.setdefault(f"refund_policy.{path}", []).append(message)


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def validated(policy: dict | None) -> dict | None:
    """The policy as stored: only its fields, absent fees left out. 422
    (``refund_policy.<field>``) for a missing cut-off, a negative value, a percent
    over 100, a non-integer or an unknown field. None clears the policy."""
    if policy is None:
        return None
    found: dict[str, list[str]] = {}
    if not isinstance(policy, dict):
        raise errors.Invalid("refund_policy must be an object or null", errors={"refund_policy": ["Not a valid object."]})
    for name in set(policy) - set(FIELDS):
        _bad(name, "Unknown field.", found)
    if "cutoff_minutes" not in policy or policy["cutoff_minutes"] is None:
        _bad("cutoff_minutes", "Missing data for required field.", found)
    elif not _whole(policy["cutoff_minutes"], 0, MAX_CUTOFF_MINUTES):
        _bad("cutoff_minutes", f"Must be a whole number of minutes from 0 to {MAX_CUTOFF_MINUTES}.", found)
    if policy.get("fee_percent") is not None and not _whole(policy["fee_percent"], 0, 100):
        _bad("fee_percent", "Must be a whole percent from 0 to 100.", found)
    if policy.get("fee_cents") is not None and not _whole(policy["fee_cents"], 0, MAX_FEE_CENTS):
        _bad("fee_cents", f"Must be a whole number of cents from 0 to {MAX_FEE_CENTS}.", found)
    if found:
        raise errors.Invalid("The refund policy is not valid", errors=found)
    return {name: policy[name] for name in FIELDS if policy.get(name) is not None}
