"""Outbound webhooks: admins subscribe a URL to events; the worker delivers them.

Events are written through the outbox in the transaction of the change (``event``:
an outbox row on topic ``webhooks.event``). The worker's consumer fans each one out
(``fan_out``): one ``webhook_deliveries`` row per webhook subscribed to it, inserted
idempotently (unique per webhook and event id), so a redelivered message adds nothing.

Delivery (``dispatch_once``, run by the worker's dispatcher threads): a due delivery
is claimed ``FOR UPDATE SKIP LOCKED`` with a lease (``leased_until``) and the claim is
committed before the HTTP call (no transaction stays open across it); the outcome is
recorded in a second transaction. A delivery is due when its time has come, its
webhook is enabled, no earlier delivery of the same reservation to the same webhook is
still pending, and no earlier event of that reservation is still waiting to be fanned
out (``webhook_fanouts``: fan-outs of two workers, or a retried one, may commit out of
order): in order per reservation, per webhook. 2xx is delivered; anything else (a 3xx
too: redirects are not followed) or a timeout is retried after ``WEBHOOK_RETRY_DELAYS``
(the last one repeats) and given up (``failed``) after ``WEBHOOK_MAX_ATTEMPTS``. ``WEBHOOK_DISABLE_AFTER`` consecutive failed attempts
disable the webhook; its deliveries stay pending, and re-enabling resumes them.
A worker that dies mid-attempt leaves a lease that runs out: the delivery is sent
again (at least once; receivers deduplicate on ``Marquee-Delivery`` or the event id).

Signing: ``Marquee-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t." + body>``, the
inbound webhook's scheme, with the webhook's own secret. The secret is shown once, at
creation, and stored AES-256-GCM encrypted with ``WEBHOOK_SECRETS_KEY`` (by default
derived from the JWT secret): it has to be recoverable to sign.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import db
from app.adapters import sealing
from app.adapters.webhook_sender import Outcome, Sender, check_url
from app.bootstrap import Marquee, marquee, using
from app.models import Reservation, ReservationSeat, ReservationStatus, Seat, Showtime
from app.models.booking import BlockedSeat
from app.models.webhooks import EVENTS, DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, WebhookFanout
from app.services import audit, errors, outbox

log = logging.getLogger(__name__)

TOPIC = "webhooks.event"
SOLD_OUT_LOCK = 0x6D71_0022  # with the showtime id: confirmations of one showtime count sold seats one at a time
_EVENT_NAMESPACE = uuid.UUID("5d0c7c1e-8f0b-4f7e-9a51-6a7d1b0e2f22")
# A claim outlives the attempt (at most WEBHOOK_TIMEOUT_SECONDS) by this much before another
# dispatcher may take the delivery again (its claimant died mid-attempt).
LEASE_MARGIN_SECONDS = 10.0
# A fan-out in this process wakes its dispatchers at once: a count of wake-ups under a
# condition, so that none is lost to a dispatcher busy at the time, nor to another that
# woke first (an event cleared by one waiter is missed by the next).
_woken = threading.Condition()
_wakes = 0


def wake_dispatchers() -> None:
    """Have this process's dispatchers look again now (and at their ``stop`` event)."""
    global _wakes
    with _woken:
        _wakes += 1
        _woken.notify_all()


# --- the secret -------------------------------------------------------------------

def _seal(secret: str) -> bytes:
    return sealing.seal(marquee().settings.webhook_secrets_key, secret.encode(), b"marquee webhook")


def _unseal(sealed: bytes) -> bytes:
    return sealing.unseal(marquee().settings.webhook_secrets_key, sealed, b"marquee webhook")


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """What ``v1`` carries: the inbound webhook's scheme (``services.payments.signature``)."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


# --- the admin's side ------------------------------------------------------------------

def _view(webhook: Webhook) -> dict:
    return {"id": webhook.id, "url": webhook.url, "events": list(webhook.events), "enabled": webhook.enabled,
            "consecutive_failures": webhook.consecutive_failures, "disabled_at": webhook.disabled_at,
            "created_at": webhook.created_at}


def _audited(webhook: Webhook) -> dict:
    return audit.snapshot(webhook, exclude=("secret_ciphertext",))


def create_webhook(actor_id: int, url: str, events: list[str]) -> dict:
    """A new webhook, enabled; the answer carries its signing secret, the only time it is shown."""
    problems: dict[str, list[str]] = {}
    unknown = sorted(set(events) - set(EVENTS))
    if not events or unknown:
        problems["events"] = [f"Unknown events: {', '.join(unknown)}; expected some of {', '.join(EVENTS)}."
                              if unknown else "At least one event."]
    refused = check_url(url, marquee().settings.webhook_allow_private_urls)
    if refused:
        problems["url"] = [refused]
    if problems:
        raise errors.Invalid("The webhook cannot be created", errors=problems)
    secret = "whsec_" + secrets.token_urlsafe(32)
    with db.unit_of_work():
        webhook = Webhook(url=url, events=sorted(set(events), key=EVENTS.index), secret_ciphertext=_seal(secret),
                          created_by=actor_id)
        db.session.add(webhook)
        db.session.flush()
        db.session.refresh(webhook)
        audit.record("webhook.create", actor_id=actor_id, object_type="webhook", object_id=webhook.id,
                     after=_audited(webhook))
        view = _view(webhook)
    marquee().cache.invalidate(SUBSCRIPTIONS)
    return {**view, "secret": secret}


def _get(webhook_id: int, *, lock: bool = False) -> Webhook:
    query = select(Webhook).where(Webhook.id == webhook_id)
    webhook = db.session.scalar(query.with_for_update() if lock else query)
    if webhook is None:
        raise errors.NotFound(f"Webhook {webhook_id} does not exist")
    return webhook


def list_webhooks(page: int, page_size: int) -> tuple[list[dict], int]:
    from app.services.pagination import page_of

    with db.unit_of_work():
        items, total = page_of(select(Webhook), [Webhook.id.desc()], page, page_size)
        return [_view(w) for w in items], total


def get_webhook(webhook_id: int) -> dict:
    with db.unit_of_work():
        return _view(_get(webhook_id))


def delete_webhook(actor_id: int, webhook_id: int) -> None:
    """Gone with its deliveries (the audit log keeps what it was)."""
    with db.unit_of_work():
        webhook = _get(webhook_id, lock=True)
        audit.record("webhook.delete", actor_id=actor_id, object_type="webhook", object_id=webhook.id,
                     before=_audited(webhook))
        db.session.delete(webhook)
    marquee().cache.invalidate(SUBSCRIPTIONS)


def enable_webhook(actor_id: int, webhook_id: int) -> dict:
    """Enabled again, its failure count reset; its pending deliveries are due at once."""
    with db.unit_of_work():
        webhook = _get(webhook_id, lock=True)
        before = _audited(webhook)
        if not webhook.enabled:
            webhook.enabled, webhook.disabled_at, webhook.consecutive_failures = True, None, 0
            db.session.execute(update(WebhookDelivery).where(
                WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.status == DeliveryStatus.PENDING)
                .values(next_attempt_at=func.now()))
            db.session.flush()
            audit.record("webhook.enable", actor_id=actor_id, object_type="webhook", object_id=webhook.id,
                         before=before, after=_audited(webhook))
        view = _view(webhook)
    wake_dispatchers()
    return view


def list_deliveries(webhook_id: int, page: int, page_size: int) -> tuple[list[dict], int]:
    """A webhook's deliveries, newest first, each with its attempts (oldest first)."""
    from app.services.pagination import page_of

    with db.unit_of_work():
        _get(webhook_id)
        items, total = page_of(select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id),
                               [WebhookDelivery.id.desc()], page, page_size)
        log_of: dict[int, list[dict]] = {d.id: [] for d in items}
        if items:
            for a in db.session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(log_of))
                                        .order_by(WebhookAttempt.id)):
                log_of[a.delivery_id].append({"attempted_at": a.attempted_at, "status_code": a.status_code,
                                              "error": a.error, "duration_ms": a.duration_ms})
        return [{"id": d.id, "event_id": d.event_id, "event": d.event, "status": d.status, "attempts": d.attempts,
                 "last_status_code": d.last_status_code, "last_error": d.last_error,
                 "next_attempt_at": d.next_attempt_at if d.status == DeliveryStatus.PENDING else None,
                 "delivered_at": d.delivered_at, "created_at": d.created_at, "attempt_log": log_of[d.id]}
                for d in items], total


# --- events, written in the transaction of the change -------------------------------------

# The cache namespace of the webhooks' subscriptions: renewed by every creation and
# deletion after its commit, before it answers (``Cache.invalidate``).
SUBSCRIPTIONS = "webhooks"


def subscribed() -> frozenset[str]:
    """The event types some webhook takes (enabled or not: a disabled one resumes). A change
    writes no event nobody takes: no outbox row, no message, no fan-out (a checkout's
    confirmation was one message in three through the worker, for no webhook at all). Read
    from this process's cache, whose generations every instance learns before a webhook's
    creation is answered: a webhook gets the events of every change begun after that."""
    def compute() -> list[str]:
        return sorted({kind for (kinds,) in db.session.execute(select(Webhook.events)) for kind in kinds})

    return frozenset(marquee().cache.get_or_compute([SUBSCRIPTIONS], "webhook-subscriptions", 0, compute,
                                                    local=True))


def event(kind: str, reservation: Reservation, key: str, **data) -> dict:
    """An outbox row announcing ``kind`` about ``reservation``; ``outbox.add`` it in the change's
    unit of work. ``key`` names the occurrence: the same key gives the same event id, so an event
    emitted twice (a redelivered message) reaches each webhook once."""
    assert kind in EVENTS, kind
    return {"topic": TOPIC, "aggregate_id": f"reservation:{reservation.id}", "payload": {"webhook_event": {
        "id": "evt_" + uuid.uuid5(_EVENT_NAMESPACE, f"{kind}:{key}").hex,
        "type": kind,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "data": {"reservation_id": reservation.id, "showtime_id": reservation.showtime_id,
                 "total_cents": reservation.total_cents, "currency": reservation.currency,
                 "status": str(reservation.status), **data},
    }}}


def emit(kind: str, reservation: Reservation, key: str, **data) -> None:
    """``event``, added to the change's unit of work, if some webhook takes ``kind``."""
    if kind in subscribed():
        outbox.add(event(kind, reservation, key, **data))


def reservation_confirmed(reservation, *, seat_count: int) -> None:
    """In the confirming transaction (``reservation``: the confirmed row, anything with the
    attributes ``event`` reads): emit ``reservation.confirmed``, and ``showtime.sold_out`` when this confirmation sold
    the last sellable seat (each if some webhook takes it). Sold out means every seat of the
    screen not blocked for the showtime is in a confirmed reservation; confirmations of one
    showtime count under an advisory lock held to their commit, so exactly the one that
    completes the sale sees it (counted only while a webhook takes the event). Seats freed
    and sold out again is a new sell-out (a new event: its key is the reservation that
    completed it)."""
    taken = subscribed()
    if "reservation.confirmed" in taken:
        outbox.add(event("reservation.confirmed", reservation, f"{reservation.id}", seat_count=seat_count))
    if "showtime.sold_out" not in taken:
        return
    db.xact_lock(SOLD_OUT_LOCK, reservation.showtime_id)
    screen_id = select(Showtime.screen_id).where(Showtime.id == reservation.showtime_id).scalar_subquery()
    sellable = db.session.scalar(select(func.count()).select_from(Seat).where(
        Seat.screen_id == screen_id,
        ~select(BlockedSeat.seat_id).where(BlockedSeat.showtime_id == reservation.showtime_id,
                                           BlockedSeat.seat_id == Seat.id).exists()))
    sold = db.session.scalar(select(func.count()).select_from(ReservationSeat).join(
        Reservation, Reservation.id == ReservationSeat.reservation_id).where(
        ReservationSeat.showtime_id == reservation.showtime_id, ReservationSeat.released_at.is_(None),
        Reservation.status == ReservationStatus.CONFIRMED))
    if sellable and sold >= sellable:
        outbox.add(event("showtime.sold_out", reservation, f"{reservation.showtime_id}:{reservation.id}",
                         sold_seats=sold))


# --- the worker: fan-out ------------------------------------------------------------------

def fan_out(message: dict) -> str:
    """One delivery per webhook subscribed to the event (disabled ones too: they resume
    when re-enabled). Idempotent; committed before the consumer acknowledges."""
    evt = message["webhook_event"]
    seq = int(message["event_id"])
    key = f"reservation:{evt['data'].get('reservation_id')}"
    with db.unit_of_work():
        targets = db.session.scalars(select(Webhook.id).where(Webhook.events.contains([evt["type"]]))).all()
        added = 0
        for webhook_id in targets:
            result = db.session.execute(pg_insert(WebhookDelivery).values(
                webhook_id=webhook_id, event_id=evt["id"], event=evt["type"], ordering_key=key, seq=seq,
                payload=evt).on_conflict_do_nothing(index_elements=["webhook_id", "event_id"]))
            added += result.rowcount
        db.session.execute(pg_insert(WebhookFanout).values(outbox_id=seq)
                           .on_conflict_do_nothing(index_elements=["outbox_id"]))
    if added:
        wake_dispatchers()
    return f"fanned_out_{added}"


# --- the worker: delivery -----------------------------------------------------------------

_CLAIM = text("""
    WITH due AS (
        SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
        WHERE d.status = 'pending' AND w.enabled AND d.next_attempt_at <= now()
          AND (d.leased_until IS NULL OR d.leased_until < now())
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                          WHERE e.webhook_id = d.webhook_id AND e.ordering_key = d.ordering_key
                            AND e.status = 'pending' AND e.seq < d.seq)
          AND NOT EXISTS (SELECT 1 FROM outbox o
                          WHERE o.aggregate_id = d.ordering_key AND o.topic = 'webhooks.event' AND o.id < d.seq
                            AND NOT EXISTS (SELECT 1 FROM webhook_fanouts f WHERE f.outbox_id = o.id))
        ORDER BY d.next_attempt_at, d.seq
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE webhook_deliveries d SET leased_until = now() + make_interval(secs => :lease),
                                    attempts = d.attempts + 1
    FROM due, webhooks w
    WHERE d.id = due.id AND w.id = d.webhook_id
    RETURNING d.id, d.event_id, d.event, d.payload, d.attempts, w.url, w.secret_ciphertext
""")


def dispatch_once(sender: Sender, *, limit: int = 10) -> int:
    """Claim up to ``limit`` due deliveries, send each, record each outcome. Returns how many."""
    settings = marquee().settings
    with db.unit_of_work():  # the claim is committed before any request goes out
        claimed = db.session.execute(_CLAIM, {"limit": limit,
                                              "lease": settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS}).mappings().all()
    for row in claimed:
        body = json.dumps(row["payload"], separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(time.time())
        outcome = sender.post(row["url"], body, {
            "Marquee-Signature": f"t={timestamp},v1={signature(_unseal(row['secret_ciphertext']), timestamp, body)}",
            "Marquee-Event": row["event"], "Marquee-Delivery": str(row["id"])})
        _record(row["id"], row["attempts"], outcome)
    return len(claimed)


def _record(delivery_id: int, attempt: int, outcome: Outcome) -> None:
    settings = marquee().settings
    log.info("webhook attempt", extra={"delivery_id": delivery_id, "attempt": attempt,
                                       "status_code": outcome.status_code, "error": outcome.error,
                                       "ms": outcome.duration_ms})
    with db.unit_of_work():
        delivery = db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                     .with_for_update())
        if delivery is None:  # its webhook was deleted meanwhile
            return
        webhook = _get(delivery.webhook_id, lock=True)
        db.session.add(WebhookAttempt(delivery_id=delivery.id, status_code=outcome.status_code,
                                      error=outcome.error, duration_ms=outcome.duration_ms))
        delivery.leased_until = None
        delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
        if outcome.delivered:
            delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, func.now()
            webhook.consecutive_failures = 0
            return
        if delivery.attempts >= settings.webhook_max_attempts:
            delivery.status = DeliveryStatus.FAILED
        else:
            delays = settings.webhook_retry_delays
            delivery.next_attempt_at = func.now() + timedelta(seconds=delays[min(attempt - 1, len(delays) - 1)])
        webhook.consecutive_failures += 1
        if webhook.enabled and webhook.consecutive_failures >= settings.webhook_disable_after:
            before = _audited(webhook)
            webhook.enabled, webhook.disabled_at = False, func.now()
            db.session.flush()
            db.session.refresh(webhook)
            audit.record("webhook.disable", actor_id=None, object_type="webhook", object_id=webhook.id,
                         before=before, after=_audited(webhook))
            log.warning("webhook disabled after consecutive failures",
                        extra={"webhook_id": webhook.id, "failures": webhook.consecutive_failures})


_NEXT_DUE = text("""
    SELECT extract(epoch FROM min(greatest(d.next_attempt_at, coalesce(d.leased_until, d.next_attempt_at))) - now())
    FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.status = 'pending' AND w.enabled
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                      WHERE e.webhook_id = d.webhook_id AND e.ordering_key = d.ordering_key
                        AND e.status = 'pending' AND e.seq < d.seq)
""")


def _seconds_until_due() -> float | None:
    """When the next delivery that heads its reservation's line comes due (or its lease
    runs out); those behind it wait for it, not for their own time."""
    due = db.session.execute(_NEXT_DUE).scalar()
    db.session.rollback()
    return None if due is None else max(0.0, float(due))


def dispatch_forever(deps: Marquee, stop: threading.Event) -> None:
    """A worker's dispatcher thread: deliver what is due, then sleep until the next one
    is (at most ``WEBHOOK_POLL_SECONDS``) or a fan-out in this process wakes it
    (``wake_dispatchers``, which a stopping worker calls too). Several threads and
    workers share the work: claims skip each other's rows."""
    with using(deps):
        settings = deps.settings
        sender = Sender(timeout_seconds=settings.webhook_timeout_seconds,
                        allow_private=settings.webhook_allow_private_urls)
        try:
            while not stop.is_set():
                pause, seen = settings.webhook_poll_seconds, _wakes
                try:
                    with db.scoped():
                        if dispatch_once(sender):
                            continue
                        due = _seconds_until_due()
                        if due is not None:
                            pause = max(0.02, min(pause, due + 0.01))
                except Exception:  # noqa: BLE001 - the dispatcher must outlive any one failure
                    log.exception("webhook dispatch failed")
                    pause = 1.0
                with _woken:
                    _woken.wait_for(lambda seen=seen: _wakes != seen or stop.is_set(), pause)
        finally:
            sender.close()
