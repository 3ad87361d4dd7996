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
import time

from sqlalchemy import bindparam, func, insert, select, text, update

from app import db
from app.adapters import tracing
from app.adapters.broker import BrokerError, Publisher
from app.bootstrap import Marquee, marquee, using
from app.models import OutboxEvent
from app.models.booking import OUTBOX_NOTIFY_CHANNEL

log = logging.getLogger(__name__)

RELAY_LOCK = 0x6D71_0002  # one relay at a time, across processes
PURGE_LOCK = 0x6D71_0024  # one purge at a time, across schedulers
_OUTBOX = OutboxEvent.__table__
_INSERT = insert(_OUTBOX)


def add(*events: dict) -> None:
    """Write outbox rows (each ``topic``, ``aggregate_id`` and ``payload``) in the caller's
    unit of work, with the request id and the trace (``OutboxEvent.row``): one Core
    statement, no ORM objects for the unit of work to flush. The table's trigger wakes
    the relay when the transaction commits (migration 0026)."""
    if events:
        db.session.execute(_INSERT, [OutboxEvent.row(**event) for event in events])


# the relay's statements, built once (their cache keys memoized)
_UNPUBLISHED = (select(_OUTBOX.c.id, _OUTBOX.c.topic, _OUTBOX.c.payload, _OUTBOX.c.trace_context)
                .where(_OUTBOX.c.published_at.is_(None)).order_by(_OUTBOX.c.id).limit(bindparam("batch")))
_COUNT_ATTEMPT = update(_OUTBOX).where(_OUTBOX.c.id == bindparam("event_id")).values(attempts=_OUTBOX.c.attempts + 1)
_MARK_PUBLISHED = (update(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
                   .values(published_at=func.now()))


def relay_outbox(publisher: Publisher, *, batch: int = 200) -> int | None:
    """Publish up to ``batch`` unpublished rows. Returns how many, or None when
    another relay holds the lock.

    Core statements, not ORM objects: the rows are read as tuples and the ones the
    broker confirmed are marked in one UPDATE at the end of the batch (the ORM's
    flush wrote one UPDATE a row: two thirds of the relay's CPU under a rush)."""
    with db.unit_of_work():
        if not db.try_xact_lock(RELAY_LOCK):
            return None
        db.index_scans_only()  # the published rows' entries in the partial index: passed once
        rows = db.session.execute(_UNPUBLISHED, {"batch": batch}).all()
        published: list[int] = []
        for row in rows:
            try:
                # a child of the writing request's span; its traceparent rides in the headers
                with tracing.child_span(row.trace_context, f"publish {row.topic}", kind="PRODUCER",
                                        attributes={"messaging.system": "rabbitmq",
                                                    "messaging.destination.name": row.topic,
                                                    "messaging.message.id": f"outbox-{row.id}"}) as headers:
                    publisher.publish(row.topic, {"event_id": row.id, "topic": row.topic,
                                                  "published_at": time.time(), **row.payload},
                                      headers=headers, message_id=f"outbox-{row.id}")
            except BrokerError:
                log.warning("outbox relay: broker unavailable, will retry", exc_info=True,
                            extra={"event_id": row.id})
                db.session.execute(_COUNT_ATTEMPT, {"event_id": row.id})
                break
            published.append(row.id)
        if published:
            db.session.execute(_MARK_PUBLISHED, {"ids": published})
    return len(published)


def relay_forever(deps: Marquee, publisher: Publisher, stop, *, poll_seconds: float) -> None:
    """Relay as soon as a transaction with outbox rows commits (LISTEN/NOTIFY), and
    every ``poll_seconds`` anyway (rows left by a broker outage, missed notices).
    One thread owns the relay and its broker connection."""
    with using(deps):
        _relay_until(publisher, stop, poll_seconds)


def _relay_until(publisher: Publisher, stop, poll_seconds: float) -> None:
    import select as _select

    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(marquee().settings.database_url)
    listener = None
    while not stop.is_set():
        try:
            if listener is None:
                listener = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username,
                                            password=url.password, dbname=url.database)
                listener.autocommit = True
                listener.cursor().execute(f"LISTEN {OUTBOX_NOTIFY_CHANNEL}")
            with db.scoped():
                while relay_outbox(publisher) == 200:  # a full batch: more are waiting
                    pass
            if publisher.failures:  # the broker is away: back off, 0.5 s doubling to 30 s
                stop.wait(min(0.5 * 2 ** (publisher.failures - 1), 30.0))
                continue
            # Between publishes the connection is idle: heartbeats are sent and
            # checked only while pika is called, so call it at every turn.
            publisher.keep_alive()
            if _select.select([listener], [], [], poll_seconds) != ([], [], []):
                listener.poll()
                listener.notifies.clear()
        except psycopg2.Error:
            log.warning("outbox listener lost its connection; reconnecting", exc_info=True)
            listener = None
            stop.wait(1)
        except Exception:  # noqa: BLE001 - the relay must outlive any one failure
            log.exception("outbox relay run failed")
            stop.wait(1)
    if listener is not None:
        listener.close()
    publisher.close()


# Published rows past the retention, oldest first, a batch at a time. Two kinds are kept:
# refund requests, which booking reads to keep a late charge's refund single
# (``booking._refund_requested``), and webhook events not yet fanned out, which hold
# back their reservation's later deliveries until they are (``outbound_webhooks._CLAIM``).
_PURGE = text("""
    DELETE FROM outbox WHERE id IN (
        SELECT o.id FROM outbox o
        WHERE o.published_at < now() - make_interval(secs => :seconds)
          AND o.topic <> 'payments.refund'
          AND (o.topic <> 'webhooks.event'
               OR EXISTS (SELECT 1 FROM webhook_fanouts f WHERE f.outbox_id = o.id))
        ORDER BY o.id
        LIMIT :batch)
""")


def purge_published(*, batch: int = 1000, max_batches: int = 100) -> int | None:
    """Delete published rows older than ``OUTBOX_RETENTION_DAYS`` (never one not yet
    published, nor the two kinds ``_PURGE`` keeps), ``batch`` rows a transaction, at most
    ``max_batches`` a run (the next run goes on). Returns how many, 0 when the retention is
    0 (rows kept for ever), or None when another scheduler holds the lock.

    Without it the table grew by three rows a checkout for ever, and with it the
    erasure's scan of the outbox (``accounts._scrub_outbox``)."""
    days = marquee().settings.outbox_retention_days
    if not days:
        return 0
    deleted = 0
    for _ in range(max_batches):
        with db.unit_of_work():
            if not db.try_xact_lock(PURGE_LOCK):
                if not deleted:
                    return None
                break  # another scheduler took over between batches
            count = db.session.execute(_PURGE, {"seconds": days * 86400, "batch": batch}).rowcount
        deleted += count
        if count < batch:
            break
    if deleted:
        log.info("outbox purged", extra={"rows": deleted, "retention_days": days})
    return deleted
