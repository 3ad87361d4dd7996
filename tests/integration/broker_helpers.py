"""Helpers for tests that go through RabbitMQ: relay the outbox, run a real consumer."""
from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit

import psutil
from sqlalchemy import select

from app import db
from app.adapters.broker import Publisher
from app.models import Payment, Reservation
from app.services.outbox import relay_outbox
from tests.helpers import wait_until
from worker.consumer import Consumer


def relay(app, topology, url=None) -> int:
    publisher = Publisher(url or app.extensions["marquee"].settings.amqp_url, topology)
    try:
        with app.app_context():
            return relay_outbox(publisher)
    finally:
        publisher.close()


@contextmanager
def running_consumer(app):
    """A real consumer (all its threads) running in this process for the block."""
    consumer = Consumer(app.extensions["marquee"])
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        yield consumer
    finally:
        consumer.request_stop()
        thread.join(10)


def work_until(app, condition, timeout=15.0):
    """Run a real consumer in a thread until ``condition(consumer)`` holds (or time runs out)."""
    with running_consumer(app) as consumer:
        wait_until(lambda: condition(consumer), timeout, what="the consumer's work")
        return consumer


def cut_broker_connections(app) -> int:
    """Cut every connection this process holds to RabbitMQ, as a broker that drops
    them would (both directions shut; pika learns of it at its next read or write).
    Returns how many."""
    port = urlsplit(app.extensions["marquee"].settings.amqp_url).port or 5672
    cut = 0
    for conn in psutil.Process().net_connections(kind="tcp"):
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED and conn.fd >= 0:
            sock = socket.socket(fileno=conn.fd)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.detach()  # the fd stays pika's
            cut += 1
    return cut


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
