"""Helpers for tests that go through RabbitMQ: relay the outbox, run a real consumer."""
from __future__ import annotations

import threading
import time

from sqlalchemy import select

from app import db
from app.adapters.broker import Publisher
from app.models import Payment, Reservation
from app.services.outbox import relay_outbox
from worker.consumer import Consumer


def relay(app, topology, url=None) -> int:
    publisher = Publisher(url or app.extensions["marquee"].settings.amqp_url, topology)
    try:
        with app.app_context():
            return relay_outbox(publisher)
    finally:
        publisher.close()


def work_until(app, condition, timeout=15.0):
    """Run a real consumer in a thread until ``condition(consumer)`` holds (or time runs out)."""
    consumer = Consumer(app.extensions["marquee"])
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(consumer):
                return consumer
            time.sleep(0.05)
        raise AssertionError("condition not reached in time")
    finally:
        consumer.stop.set()
        thread.join(10)


def status_of(app, reservation_id):
    with app.app_context():
        status = db.session.get(Reservation, reservation_id).status
        db.session.rollback()
        return status


def payments_of(app, reservation_id):
    with app.app_context():
        rows = db.session.execute(select(Payment.kind, Payment.status).where(
            Payment.reservation_id == reservation_id).order_by(Payment.id)).all()
        db.session.rollback()
        return [tuple(r) for r in rows]
