"""The outbox relay against a real RabbitMQ: rows published in id order and marked sent
only once the broker confirmed them; a row the broker refuses stops the batch."""
from __future__ import annotations

import json

from sqlalchemy import select

from app import db
from app.adapters.broker import connect
from app.models import OutboxEvent
from tests.helpers import bitmap_index_entries
from tests.integration.broker_helpers import relay


def _outbox(app, topics: list[str]) -> list[int]:
    with app.app_context():
        rows = [OutboxEvent(topic=topic, aggregate_id="test:relay", payload={"n": n})
                for n, topic in enumerate(topics)]
        db.session.add_all(rows)
        db.session.commit()
        ids = [row.id for row in rows]
        db.session.remove()
    return ids


def _states(app, ids: list[int]) -> list[tuple[bool, int]]:
    """(published, attempts) of each row, in id order."""
    with app.app_context():
        found = db.session.execute(select(OutboxEvent.id, OutboxEvent.published_at, OutboxEvent.attempts)
                                   .where(OutboxEvent.id.in_(ids)).order_by(OutboxEvent.id)).all()
        db.session.remove()
    return [(published_at is not None, attempts) for _id, published_at, attempts in found]


def _queued(app, broker, topic: str) -> list[dict]:
    connection = connect(app.extensions["marquee"].settings.amqp_url)
    try:
        channel, bodies = connection.channel(), []
        while True:
            method, _properties, body = channel.basic_get(broker.queue(topic), auto_ack=True)
            if method is None:
                return bodies
            bodies.append(json.loads(body))
    finally:
        connection.close()


def test_a_batch_is_published_in_id_order_and_every_row_marked_once(app, broker):
    ids = _outbox(app, ["reviews.submit"] * 5)
    assert relay(app, broker) == 5
    assert _states(app, ids) == [(True, 0)] * 5
    assert [m["event_id"] for m in _queued(app, broker, "reviews.submit")] == ids
    assert relay(app, broker) == 0  # nothing is published twice
    assert _queued(app, broker, "reviews.submit") == []


def test_a_row_the_broker_refuses_stops_the_batch_and_the_rows_before_it_stay_published(app, broker):
    # no queue is bound to this topic: the broker returns it (mandatory), the publish fails
    ids = _outbox(app, ["reviews.submit", "reviews.submit", "nowhere.bound", "reviews.submit"])
    assert relay(app, broker) == 2
    assert _states(app, ids) == [(True, 0), (True, 0), (False, 1), (False, 0)]
    assert [m["event_id"] for m in _queued(app, broker, "reviews.submit")] == ids[:2]
    # every run stops at the same row (its attempts counted): the one after it keeps waiting
    assert relay(app, broker) == 0
    assert _states(app, ids)[2:] == [(False, 2), (False, 0)]
    assert _queued(app, broker, "reviews.submit") == []


def _unpublished_index_entries(app) -> int:
    return bitmap_index_entries(app.extensions["marquee"].engine, "SELECT id FROM outbox WHERE published_at IS NULL")


def test_published_rows_stop_costing_the_relay_without_vacuum(app, broker):
    """A published row's entry stays in the partial index until VACUUM (this machine runs
    none by itself). The relay's own scan marks such entries dead once they are, so the
    next runs pass over them: a bitmap scan would read them all, every run, for ever."""
    _outbox(app, ["reviews.submit"] * 150)
    assert relay(app, broker) == 150
    assert _unpublished_index_entries(app) >= 150  # the published versions' entries (and any earlier test's)
    assert relay(app, broker) == 0  # its scan finds the 150 dead and marks them so
    assert _unpublished_index_entries(app) == 0
