"""Payments end to end on real PostgreSQL, Redis and RabbitMQ: the outbox relay
publishes with confirms, the worker charges through the test gateway and
confirms or fails reservations; refunds happen exactly once; nothing is lost
when the broker is away; messages that cannot succeed are parked."""
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, text, update

from app import db
from app.adapters.broker import Publisher, connect
from app.models import OutboxEvent, Reservation
from app.services import booking
from tests.helpers import stop_process
from tests.integration.booking_helpers import hold, reserve, seat_ids, statuses
from tests.integration.broker_helpers import payments_of, relay, status_of, work_until


def _book(api, user, show, token="tok_visa", seat_index=0):
    seat = seat_ids(api, show["showtime"])[seat_index]
    return reserve(api, user, hold(api, user, show["showtime"], [seat]).json["id"], token).json, seat


def test_tok_visa_is_charged_once_and_the_reservation_confirmed(api, app, user, show, broker):
    res, seat = _book(api, user, show, "tok_visa")
    assert relay(app, broker) == 1
    work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")
    assert payments_of(app, res["id"]) == [("charge", "succeeded")]
    assert statuses(api, show["showtime"])[seat] == "booked"
    assert api.get(f"/api/v1/reservations/{res['id']}", user).json["confirmed_at"]


def test_tok_declined_fails_the_reservation_and_frees_the_seat(api, app, user, show, broker):
    res, seat = _book(api, user, show, "tok_declined")
    relay(app, broker)
    work_until(app, lambda c: status_of(app, res["id"]) == "payment_failed")
    assert payments_of(app, res["id"]) == [("charge", "declined")]
    assert statuses(api, show["showtime"])[seat] == "available"


def test_tok_error_is_retried_with_delays_and_then_succeeds(api, app, user, show, broker):
    res, _ = _book(api, user, show, "tok_error")
    relay(app, broker)
    consumer = work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")
    assert consumer.handled >= 3  # two transient failures, then the charge
    assert payments_of(app, res["id"]) == [("charge", "succeeded")]


def test_a_redelivered_charge_charges_once_with_one_set_of_tickets_and_one_email(api, app, user, show, broker, smtp):
    from app.models import Ticket

    res, _ = _book(api, user, show, "tok_visa")
    relay(app, broker)
    with app.app_context():  # the relay crashed after the confirm, before its commit
        db.session.execute(update(OutboxEvent).values(published_at=None))
        db.session.commit()
    assert relay(app, broker) == 1
    # Both deliveries are handled by this consumer; the second changes nothing.
    work_until(app, lambda c: c.handled >= 2 and status_of(app, res["id"]) == "confirmed")
    relay(app, broker)  # the email the confirmation asked for (once)
    work_until(app, lambda c: smtp.messages)
    assert payments_of(app, res["id"]) == [("charge", "succeeded")]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Ticket)) == 1
    assert smtp.subjects() == ["Your tickets for Heat"]


def test_with_the_broker_away_nothing_is_lost_only_delayed(api, app, user, show, broker):
    res, _ = _book(api, user, show, "tok_visa")
    assert relay(app, broker, url="amqp://guest:guest@127.0.0.1:1/%2F") == 0  # nothing listens on port 1
    with app.app_context():
        row = db.session.scalar(select(OutboxEvent))
        assert row.published_at is None and row.attempts == 1
        db.session.rollback()
    assert relay(app, broker) == 1  # the broker is back
    work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")


def test_cancelling_a_confirmed_reservation_refunds_exactly_once(api, app, user, show, broker):
    res, seat = _book(api, user, show, "tok_visa")
    relay(app, broker)
    work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user).status_code == 202
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user).status_code == 202
    relay(app, broker)
    with app.app_context():  # and the refund event is delivered twice
        db.session.execute(update(OutboxEvent).where(OutboxEvent.topic == "payments.refund").values(published_at=None))
        db.session.commit()
    relay(app, broker)
    work_until(app, lambda c: c.handled >= 2)  # both deliveries of the refund
    assert payments_of(app, res["id"]) == [("charge", "succeeded"), ("refund", "succeeded")]
    assert statuses(api, show["showtime"])[seat] == "available"


def test_a_payment_that_arrives_after_expiry_is_refunded_and_the_seat_not_sold_twice(api, app, user, show, broker):
    res, seat = _book(api, user, show, "tok_visa")
    with app.app_context():
        db.session.execute(update(Reservation).where(Reservation.id == res["id"])
                           .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        db.session.commit()
        booking.expire_unpaid_reservations()
    # Meanwhile someone else buys the freed seat.
    rival = api.make_user("rival@example.com")
    theirs = reserve(api, rival, hold(api, rival, show["showtime"], [seat]).json["id"], "tok_visa").json
    assert theirs["status"] == "pending_payment"
    relay(app, broker)  # both charges; the late one must not take the seat back
    work_until(app, lambda c: status_of(app, theirs["id"]) == "confirmed"
               and payments_of(app, res["id"]) == [("charge", "succeeded")])
    relay(app, broker)  # the refund the late payment caused
    work_until(app, lambda c: ("refund", "succeeded") in payments_of(app, res["id"]))
    assert status_of(app, res["id"]) == "expired"
    assert statuses(api, show["showtime"])[seat] == "booked"
    with app.app_context():
        from app.models import ReservationSeat
        live = db.session.scalars(select(ReservationSeat.reservation_id).where(
            ReservationSeat.seat_id == seat, ReservationSeat.released_at.is_(None))).all()
        assert live == [theirs["id"]]


def test_a_message_that_cannot_succeed_is_parked_for_a_person(app, broker):
    publisher = Publisher(app.extensions["marquee"].settings.amqp_url, broker)
    publisher.publish("payments.charge", {"topic": "payments.charge", "event_id": 0, "reservation_id": 987654,
                                          "amount_cents": 1, "currency": "EUR", "payment_token": "tok_visa",
                                          "idempotency_key": "reservation-987654"})
    publisher.close()
    connection = connect(app.extensions["marquee"].settings.amqp_url)
    channel = connection.channel()

    def parked():
        method, properties, body = channel.basic_get(broker.dead_queue("payments.charge"), auto_ack=False)
        if method is None:
            return False
        assert json.loads(body)["reservation_id"] == 987654
        assert "NotFound" in properties.headers["x-death-reason"]
        channel.basic_ack(method.delivery_tag)
        return True

    try:
        work_until(app, lambda c: parked())
    finally:
        connection.close()


def test_the_relay_and_the_worker_as_processes(api, app, user, show, broker, tmp_path):
    """The real processes (python -m worker.scheduler, python -m worker.consumer)
    carry a reservation to confirmed, and stop cleanly on SIGTERM."""
    from tests.conftest import ROOT, TEST_ENV

    res, _ = _book(api, user, show, "tok_visa")
    env = {**os.environ, **TEST_ENV, "AMQP_PREFIX": broker.prefix, "RETRY_DELAYS_MS": "50,100,200",
           "RELAY_INTERVAL_SECONDS": "0.2", "EXPIRY_INTERVAL_SECONDS": "60"}
    procs = []
    try:
        for module in ("worker.scheduler", "worker.consumer"):
            log = open(tmp_path / f"{module}.log", "wb")
            procs.append((subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env,
                                           stdout=log, stderr=subprocess.STDOUT), log))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and status_of(app, res["id"]) != "confirmed":
            time.sleep(0.2)
        assert status_of(app, res["id"]) == "confirmed", \
            "".join((tmp_path / f"{m}.log").read_text()[-1500:] for m in ("worker.scheduler", "worker.consumer"))
    finally:
        for proc, log in procs:
            stop_process(proc, timeout=20)
            log.close()
    assert [proc.returncode for proc, _ in procs] == [0, 0]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.published_at.is_(None))) == 0


def test_an_admin_lists_and_replays_parked_messages(app, broker):
    """After the cause is fixed, a parked message goes back to its queue and succeeds."""
    from app.adapters.broker import peek_dead

    def peek(topic, limit):
        return peek_dead(app.extensions["marquee"].settings.amqp_url, broker, topic, limit)

    publisher = Publisher(app.extensions["marquee"].settings.amqp_url, broker)
    publisher.publish(broker.dead_queue("payments.refund"), {"topic": "payments.refund", "reservation_id": 1},
                      exchange="", headers={"x-attempt": 4, "x-death-reason": "gave up: gateway down"})
    publisher.close()
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["dead-letters", "list", "--topic", "payments.refund"])
    assert listed.exit_code == 0 and "gave up: gateway down" in listed.output
    with app.app_context():
        assert len(peek("payments.refund", 10)) == 1  # listing left it in place
    replayed = runner.invoke(args=["dead-letters", "replay", "--topic", "payments.refund"])
    assert "1 replayed" in replayed.output
    with app.app_context():
        assert peek("payments.refund", 10) == []
    connection = connect(app.extensions["marquee"].settings.amqp_url)
    try:
        method, properties, body = connection.channel().basic_get(broker.queue("payments.refund"), auto_ack=True)
        assert json.loads(body)["reservation_id"] == 1 and "x-attempt" not in (properties.headers or {})
    finally:
        connection.close()


def test_a_worker_killed_mid_payment_finishes_it_exactly_once_after_restart(api, app, user, show, broker,
                                                                             smtp, tmp_path):
    """SIGKILL while the gateway call is in flight: the message was not acknowledged,
    so RabbitMQ redelivers it to the restarted worker, which finishes it once."""
    import signal

    from tests.conftest import ROOT, TEST_ENV

    res, _ = _book(api, user, show, "tok_visa")
    relay(app, broker)
    gateway = app.extensions["marquee"].gateway
    key = f"reservation-{res['id']}"
    env = {**os.environ, **TEST_ENV, "AMQP_PREFIX": broker.prefix, "RETRY_DELAYS_MS": "50,100,200",
           "SMTP_PORT": str(smtp.port)}
    log = open(tmp_path / "worker.log", "wb")

    def start(delay_ms):
        return subprocess.Popen([sys.executable, "-m", "worker.consumer"], cwd=ROOT,
                                env={**env, "TEST_GATEWAY_DELAY_MS": str(delay_ms)},
                                stdout=log, stderr=subprocess.STDOUT)

    first = start(5000)
    try:
        deadline = time.monotonic() + 20
        while gateway.calls(key) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gateway.calls(key) == 1, (tmp_path / "worker.log").read_text()[-1500:]
        first.send_signal(signal.SIGKILL)  # in the middle of the charge
        first.wait(10)
    finally:
        stop_process(first)
    assert status_of(app, res["id"]) == "pending_payment"
    second = start(0)
    try:
        deadline = time.monotonic() + 30
        while status_of(app, res["id"]) != "confirmed" and time.monotonic() < deadline:
            time.sleep(0.1)
        relay(app, broker)  # the confirmation email
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_process(second)
        log.close()
    assert status_of(app, res["id"]) == "confirmed"
    assert payments_of(app, res["id"]) == [("charge", "succeeded")]
    with app.app_context():
        from app.models import Ticket
        assert db.session.scalar(select(func.count()).select_from(Ticket)
                                 .where(Ticket.reservation_id == res["id"])) == 1
    assert smtp.subjects() == ["Your tickets for Heat"]


def test_a_committed_outbox_row_wakes_the_relay_and_a_rolled_back_one_does_not(api, app, user, show):
    """LISTEN/NOTIFY: the outbox's trigger (migration 0026) notifies for rows written by the
    ORM or by a Core statement (``outbox.add``), and only when their transaction commits."""
    import select as _select

    import psycopg2
    from sqlalchemy.engine import make_url

    from app.models.booking import OUTBOX_NOTIFY_CHANNEL as NOTIFY_CHANNEL
    from app.services import outbox

    url = make_url(app.extensions["marquee"].settings.database_url)
    listener = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    listener.autocommit = True
    listener.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")

    def woken(seconds: float) -> list[str]:
        if _select.select([listener], [], [], seconds) == ([], [], []):
            return []
        listener.poll()
        channels = [n.channel for n in listener.notifies]
        listener.notifies.clear()
        return channels

    try:
        with app.app_context():
            db.session.add(OutboxEvent(topic="payments.charge", aggregate_id="x", payload={}))
            db.session.flush()
            outbox.add({"topic": "payments.charge", "aggregate_id": "x", "payload": {}})
            db.session.rollback()
        assert woken(0.3) == []
        with app.app_context():
            with db.unit_of_work():  # two rows by a Core statement: one notice at the commit
                outbox.add(*[{"topic": "reviews.submit", "aggregate_id": "x", "payload": {}}] * 2)
                assert woken(0.2) == []  # not before it
            db.session.execute(text("DELETE FROM outbox WHERE aggregate_id = 'x'"))
            db.session.commit()
        assert woken(2) == [NOTIFY_CHANNEL]
        _book(api, user, show, "tok_visa")  # POST /reservations commits an outbox row
        assert woken(2) == [NOTIFY_CHANNEL]
    finally:
        listener.close()


def test_the_relay_backs_off_while_the_broker_is_away(api, app, user, show, broker):
    """Reconnection attempts to a broker that is down grow apart (0.5 s, 1 s, 2 s...)
    instead of hammering it at every poll."""
    from app.services.outbox import relay_forever

    _book(api, user, show, "tok_visa")  # one row waiting
    publisher = Publisher("amqp://guest:guest@127.0.0.1:1/%2F", broker)  # nothing listens on port 1
    stop = threading.Event()
    thread = threading.Thread(target=relay_forever, args=(app.extensions["marquee"], publisher, stop), kwargs={"poll_seconds": 0.05})
    thread.start()
    time.sleep(2.2)
    stop.set()
    thread.join(10)
    # With 0.05 s polls and no backoff there would be ~40 attempts; with it: 0, 0.5, 1.5 s.
    assert 2 <= publisher.failures <= 4
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                 .where(OutboxEvent.published_at.is_(None))) == 1


def test_the_request_id_travels_from_the_request_to_the_worker(api, app, user, show, broker):
    """The id the proxy gave a checkout is on its outbox event, is the worker's while it
    charges, and so is on the email event the worker writes."""
    seat = seat_ids(api, show["showtime"])[0]
    held = hold(api, user, show["showtime"], [seat]).json["id"]
    res = reserve(api, user, held, "tok_visa", headers={"X-Request-ID": "trace-me-42"}).json
    with app.app_context():
        charge = db.session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "payments.charge")).one()
        assert charge.payload["request_id"] == "trace-me-42"
    relay(app, broker)
    work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")
    with app.app_context():
        email = db.session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "notifications.email")).one()
        assert email.payload["request_id"] == "trace-me-42"


def test_the_operators_view_on_metrics(api, app, client, user, show, broker, monkeypatch):
    """Holds by outcome, reservations by status, outbox lag, worker and scheduler activity
    and the broker, all on /metrics."""
    import app.ops_metrics as ops_metrics
    from worker.scheduler import _job

    monkeypatch.setattr(ops_metrics, "CACHE_SECONDS", 0)
    other = api.make_user("other@test.example")
    seat = seat_ids(api, show["showtime"])[0]
    held = hold(api, user, show["showtime"], [seat]).json["id"]
    assert hold(api, other, show["showtime"], [seat]).status_code == 409
    res = reserve(api, user, held, "tok_visa").json

    def scrape() -> dict[str, float]:
        lines = client.get("/metrics").get_data(as_text=True).splitlines()
        return {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if line and line[0] != "#")}

    before = scrape()
    assert before['marquee_reservations{status="pending_payment"}'] == 1
    assert before["marquee_outbox_unpublished"] == 1 and before["marquee_outbox_lag_seconds"] >= 0
    assert before['marquee_holds_total{outcome="held"}'] >= 1
    assert before['marquee_holds_total{outcome="conflict"}'] >= 1
    assert before["marquee_broker_up"] == 1
    relay(app, broker)
    work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")
    relay(app, broker)  # the confirmation email the worker wrote
    with app.app_context():
        _job(app.extensions["marquee"], "expire_unpaid_reservations", booking.expire_unpaid_reservations)()
    after = scrape()
    assert after['marquee_reservations{status="confirmed"}'] == 1
    assert after["marquee_outbox_unpublished"] == 0
    assert after['marquee_worker_messages_total{outcome="handled",topic="payments.charge"}'] == 1
    assert after['marquee_worker_last_message_wait_seconds{topic="payments.charge"}'] >= 0
    assert after['marquee_scheduler_job_runs_total{job="expire_unpaid_reservations",outcome="acted"}'] == 1
    assert after['marquee_scheduler_job_last_run_timestamp_seconds{job="expire_unpaid_reservations"}'] > 0


def test_a_charge_that_confirms_costs_six_statements(api, app, user, show, statements):
    """The worker's usual charge, each statement a round trip to a busy server: the status
    read before the gateway (alone, no BEGIN or COMMIT around it), the row locked with its
    showtime's times, its UPDATE with the payment (one statement), the seats with their
    ticket ids and the signing key (noted in the same statement), the tickets, the email's
    outbox row. Before this pass: nine (the UPDATE and the payment, the seats, the key and its note each
    one), and a BEGIN and a COMMIT around the status read besides."""
    from app.services import payments

    first, _ = _book(api, user, show, "tok_visa", seat_index=0)
    second, _ = _book(api, user, show, "tok_visa", seat_index=3)
    with app.app_context():
        events = {row.aggregate_id: row.payload for row in db.session.execute(
            select(OutboxEvent.aggregate_id, OutboxEvent.payload).where(OutboxEvent.topic == "payments.charge"))}
        db.session.remove()
        assert payments.process_charge(events[f"reservation:{first['id']}"]) == "confirmed"  # the first key is made
        db.session.remove()
        statements.clear()
        assert payments.process_charge(events[f"reservation:{second['id']}"]) == "confirmed"
        sent = [s for s in statements if not s.lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))]
        db.session.remove()
    assert len(sent) == 6, sent
    assert payments_of(app, second["id"]) == [("charge", "succeeded")]
    assert status_of(app, second["id"]) == "confirmed"
