"""The outbox relay: publish what committed transactions asked for.

Rows are published in id order with publisher confirms and marked sent only
after the broker confirmed them, in the same transaction that locked them. A row
that cannot be published stops the batch (so one reservation's events keep their
order) and stays for the next run: a broker that is down makes the relay slower,
never lossy. A crash between a confirm and the commit publishes a row twice;
consumers are idempotent.
"""
from __future__ import annotations

import logging

from sqlalchemy import select, text, update

from app.adapters.broker import BrokerError, Publisher
from app.extensions import db
from app.models import OutboxEvent

log = logging.getLogger(__name__)

RELAY_LOCK = 0x6D71_0002  # one relay at a time, across processes


def relay_outbox(publisher: Publisher, *, batch: int = 200) -> int | None:
    """Publish up to ``batch`` unpublished rows. Returns how many, or None when
    another relay holds the lock."""
    if not db.session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RELAY_LOCK}).scalar():
        db.session.rollback()
        return None
    rows = db.session.scalars(
        select(OutboxEvent).where(OutboxEvent.published_at.is_(None)).order_by(OutboxEvent.id).limit(batch)
    ).all()
    published = 0
    for row in rows:
        try:
            publisher.publish(row.topic, {"event_id": row.id, "topic": row.topic, **row.payload},
                              message_id=f"outbox-{row.id}")
        except BrokerError:
            log.warning("outbox relay: broker unavailable, will retry", exc_info=True,
                        extra={"event_id": row.id})
            db.session.execute(update(OutboxEvent).where(OutboxEvent.id == row.id)
                               .values(attempts=OutboxEvent.attempts + 1))
            break
        row.published_at = db.func.now()
        published += 1
    db.session.commit()
    return published
