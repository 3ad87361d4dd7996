"""The worker's consumer threads: several per queue, each on a connection of its own;
copies of one reservation's messages handled at the same time double nothing; a
retry never waits on a connection the broker has dropped."""
import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from app import db
from app.adapters.broker import Publisher
from app.models import Email, OutboxEvent, Payment, Ticket
from tests.helpers import wait_until
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import cut_broker_connections, relay, running_consumer, status_of
from worker.consumer import DEFAULT_THREADS, Consumer, threads_from


def _book(api, user, show, token="tok_visa", seats=1, first=0):
    chosen = seat_ids(api, show["showtime"])[first:first + seats]
    return reserve(api, user, hold(api, user, show["showtime"], chosen).json["id"], token).json


def _outbox_message(app, topic, reservation_id) -> dict:
    """The message the relay would publish for the reservation's outbox row of ``topic``."""
    with app.app_context():
        (row,) = [r for r in db.session.scalars(select(OutboxEvent).where(OutboxEvent.topic == topic))
                  if r.payload.get("reservation_id") == reservation_id]
        db.session.rollback()
        return {"event_id": row.id, "topic": row.topic, "published_at": time.time(), **row.payload}


def _publish_copies(app, broker, message, copies):
    publisher = Publisher(app.extensions["marquee"].settings.amqp_url, broker)
    try:
        for _ in range(copies):
            publisher.publish(message["topic"], message)
    finally:
        publisher.close()


def _count(app, model, *where) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(model).where(*where))
        db.session.rollback()
        return count


class _InFlight:
    """Wraps a callable: at most how many calls were inside it at once, each made slower
    so that copies handled by different threads overlap."""

    def __init__(self, fn, delay):
        self.fn, self.delay, self.now, self.most, self.lock = fn, delay, 0, 0, threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.delay)
            return self.fn(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


def test_a_stop_request_ends_every_thread_at_once_not_at_its_next_look(app, broker, monkeypatch):
    """SIGTERM (and the tests' consumers) stop a worker at once, its messages in hand
    finished: no thread runs out its wait first. The waits are made 60 s long here, so
    that a thread that only looked at its stop event between waits would hold up the
    stop far past the 10 s allowed (it did: 0.5 s a consumer, 1 s a dispatcher)."""
    ext = app.extensions["marquee"]
    monkeypatch.setattr(ext, "settings", replace(ext.settings, webhook_poll_seconds=60.0))
    consumer = Consumer(ext)
    consumer.event_wait_seconds = 60.0
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        wait_until(lambda: len(consumer._connections) == sum(consumer.threads.values()),
                   what="every queue's threads consuming")
        time.sleep(0.5)  # the dispatchers into their wait too (were they not, the stop would be no test)
    finally:
        started = time.monotonic()
        consumer.request_stop()
        thread.join(10)
    assert not thread.is_alive(), "the consumer was still running 10 s after the stop request"
    assert time.monotonic() - started < 10 and not consumer.failed


def test_worker_threads_come_from_the_environment_over_the_defaults():
    assert threads_from("") == DEFAULT_THREADS
    assert threads_from(" payments.charge=6, notifications.email=0 ") == {
        **DEFAULT_THREADS, "payments.charge": 6, "notifications.email": 0}
    for bad in ("payments.charge", "payments.charge=x", "nope=2", "payments.charge=-1"):
        with pytest.raises(ValueError):
            threads_from(bad)


def test_concurrent_copies_of_a_reservations_messages_charge_issue_and_mail_once(
        api, app, user, show, broker, smtp, monkeypatch):
    """Eight copies of the charge and six of the confirmation email, taken by several
    threads at once (the gateway and the SMTP server made slow so that they overlap):
    one payment, one ticket a seat, one email."""
    deps = app.extensions["marquee"]
    charge = _InFlight(deps.gateway.charge, 0.3)
    send = _InFlight(deps.mailer.send, 0.3)
    monkeypatch.setattr(deps.gateway, "charge", charge)
    monkeypatch.setattr(deps.mailer, "send", send)
    res = _book(api, user, show, seats=2)
    _publish_copies(app, broker, _outbox_message(app, "payments.charge", res["id"]), 8)
    with running_consumer(app) as consumer:
        wait_until(lambda: consumer.handled >= 8 and status_of(app, res["id"]) == "confirmed", 15)
        _publish_copies(app, broker, _outbox_message(app, "notifications.email", res["id"]), 6)
        wait_until(lambda: consumer.handled >= 14 and smtp.messages, 15)
        time.sleep(0.5)  # copies retried because another thread was sending: let them end
        wait_until(lambda: _count(app, Email, Email.status == "sent") == 1, 15)
    assert charge.most >= 2 and send.most == 1  # the charges overlapped; the sends never did
    assert _count(app, Payment, Payment.reservation_id == res["id"]) == 1
    assert _count(app, Ticket, Ticket.reservation_id == res["id"]) == 2
    assert smtp.subjects() == ["Your tickets for Heat"]


def test_a_retry_is_prompt_after_the_broker_dropped_the_workers_connections(api, app, user, show, broker):
    """The connections a worker holds die under it (an idle one missing its heartbeats,
    a broker restart): a message that must be retried afterwards is retried within
    seconds, not after the broker's heartbeat timeout (it once waited 86 s)."""
    with running_consumer(app):
        first = _book(api, user, show, "tok_error")  # two transient failures: retried twice
        relay(app, broker)
        wait_until(lambda: status_of(app, first["id"]) == "confirmed", 15)
        assert cut_broker_connections(app) >= 1
        second = _book(api, user, show, "tok_error", first=1)
        relay(app, broker)
        started = time.monotonic()
        wait_until(lambda: status_of(app, second["id"]) == "confirmed", timeout=30)
        assert time.monotonic() - started < 10


def test_an_idle_publisher_whose_connection_died_publishes_at_the_first_try(app, broker):
    """The relay calls keep_alive between publishes: a connection the broker dropped
    meanwhile is noticed there, so the next publish does not fail (and back off) on it."""
    publisher = Publisher(app.extensions["marquee"].settings.amqp_url, broker)
    try:
        publisher.publish(broker.queue("reviews.submit"), {"n": 1}, exchange="")
        assert cut_broker_connections(app) == 1
        publisher.keep_alive()
        publisher.publish(broker.queue("reviews.submit"), {"n": 2}, exchange="")
        assert publisher.failures == 0
    finally:
        publisher.close()


class _Peers:
    """An SMTP server's handler that notes which client connection each message came on."""

    def __init__(self):
        self.peers = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.peers.append(session.peer)
        return "250 OK"


def test_a_thread_keeps_its_smtp_session_and_replaces_one_that_ended():
    """Three emails from one thread go over one SMTP session; after the server
    restarts, the next email opens a new session instead of failing on the old one."""
    import socket

    from aiosmtpd.controller import Controller

    from app.adapters.mailer import Mailer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mailer = Mailer("127.0.0.1", port, starttls=False, username=None, password=None, sender="M <m@marquee.test>")
    first, second = _Peers(), _Peers()
    controller = Controller(first, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        for n in range(3):
            mailer.send("a@test.example", f"n{n}", "text", "<p>html</p>")
    finally:
        controller.stop()
    assert len(first.peers) == 3 and len(set(first.peers)) == 1
    controller = Controller(second, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer.send("a@test.example", "after the restart", "text", "<p>html</p>")
    finally:
        mailer.close()
        controller.stop()
    assert len(second.peers) == 1
