"""Outbound webhooks end to end: the change writes the event in its transaction (outbox),
the relay publishes it to real RabbitMQ, the worker (a real Consumer: fan-out handler and
dispatcher threads) POSTs it to a real HTTP receiver on 127.0.0.1, signed; retries,
order per reservation, disabling and re-enabling, SSRF refusals."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select, update

from app import db
from app.models import AuditEntry, OutboxEvent
from app.models.webhooks import Webhook, WebhookDelivery
from app.services import booking
from app.services.payments import signature
from tests.helpers import free_port, wait_until
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import relay, running_consumer, status_of

ALL = ["reservation.confirmed", "reservation.cancelled", "payment.refunded", "showtime.sold_out"]


class Receiver:
    """A real HTTP server on 127.0.0.1; ``answer(request)`` picks each status code."""

    def __init__(self, answer=lambda request: 200, port: int | None = None) -> None:
        self.answer = answer
        self.port = port or free_port()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                request = {"body": body, "payload": payload, "event_id": payload["id"], "type": payload["type"],
                           "reservation_id": payload["data"]["reservation_id"],
                           "signature": self.headers["Marquee-Signature"], "event": self.headers["Marquee-Event"],
                           "delivery": self.headers["Marquee-Delivery"]}
                with receiver.lock:
                    request["status"] = receiver.answer(request)
                    receiver.requests.append(request)
                self.send_response(request["status"])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen(self) -> list[dict]:
        with self.lock:
            return list(self.requests)

    def acknowledged(self) -> list[dict]:
        return [r for r in self.seen() if 200 <= r["status"] < 300]


@pytest.fixture
def hooks(app, broker):
    """Loopback receivers allowed, short retry delays, quick polling; restored afterwards."""
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, webhook_allow_private_urls=True, webhook_retry_delays=(0.2, 0.4, 0.8),
                           webhook_poll_seconds=0.1, webhook_max_attempts=1000, webhook_disable_after=1000)
    yield ext
    ext.settings = original


def _subscribe(api, admin, url, events=ALL):
    created = api.post("/api/v1/webhooks", {"url": url, "events": events}, admin)
    assert created.status_code == 201, created.json
    return created.json


def _book(api, user, show, seats):
    showtime = show["showtime"]
    ids = seat_ids(api, showtime)
    held = hold(api, user, showtime, [ids[i] for i in seats])
    assert held.status_code == 201, held.json
    made = reserve(api, user, held.json["id"])
    assert made.status_code == 202, made.json
    return made.json["id"]


def _pump(app, broker, condition, timeout=20.0, what="the webhooks"):
    """Relay the outbox until ``condition()`` (a consumer must be running)."""
    def step():
        relay(app, broker)
        return condition()
    return wait_until(step, timeout, interval=0.1, what=what)


def _deliveries(api, admin, webhook_id):
    answer = api.get(f"/api/v1/webhooks/{webhook_id}/deliveries?page_size=100", admin)
    assert answer.status_code == 200, answer.json
    return answer.json


def _verify(request, secret):
    parts = dict(item.split("=", 1) for item in request["signature"].split(","))
    assert parts["v1"] == signature(secret.encode(), int(parts["t"]), request["body"])
    assert abs(time.time() - int(parts["t"])) < 60
    assert request["event"] == request["type"]


def _in_order_per_reservation(requests):
    """The acknowledged events of each reservation, in the order they were acknowledged."""
    order: dict[int, list[str]] = {}
    for r in requests:
        if 200 <= r["status"] < 300:
            order.setdefault(r["reservation_id"], []).append(r["type"])
    return order


def test_a_receiver_failing_twice_gets_each_event_once_signed_and_the_log_shows_the_attempts(
        api, app, admin, user, show, broker, hooks):
    attempts: dict[str, int] = {}

    def twice_500(request):
        attempts[request["event_id"]] = attempts.get(request["event_id"], 0) + 1
        return 500 if attempts[request["event_id"]] <= 2 else 200

    receiver = Receiver(twice_500).start()
    try:
        hook = _subscribe(api, admin, receiver.url)
        assert hook["secret"].startswith("whsec_") and hook["enabled"] is True
        with running_consumer(app) as consumer:
            kept, cancelled = _book(api, user, show, [0]), _book(api, user, show, [1, 2])
            _pump(app, broker, lambda: status_of(app, kept) == status_of(app, cancelled) == "confirmed")
            assert api.post(f"/api/v1/reservations/{cancelled}/cancel", token=user).status_code == 202
            _pump(app, broker, lambda: len(receiver.acknowledged()) == 4)
            # the relay publishes the same event again (a crash before its commit): nothing new is sent
            with app.app_context():
                db.session.execute(update(OutboxEvent).where(OutboxEvent.topic == "webhooks.event")
                                   .values(published_at=None))
                db.session.commit()
            handled = consumer.handled
            assert relay(app, broker) == 4
            wait_until(lambda: consumer.handled >= handled + 4, 10)  # fanned out again: no new delivery
            assert len(_delivery_rows(app)) == 4
        acknowledged = receiver.acknowledged()
        assert sorted(r["event_id"] for r in acknowledged) == sorted(set(r["event_id"] for r in receiver.seen()))
        assert len(receiver.seen()) == 12  # 4 events x (500, 500, 200)
        assert _in_order_per_reservation(receiver.seen()) == {
            kept: ["reservation.confirmed"],
            cancelled: ["reservation.confirmed", "reservation.cancelled", "payment.refunded"]}
        for request in receiver.seen():
            _verify(request, hook["secret"])
            assert set(request["payload"]) == {"id", "type", "created_at", "data"}
            assert "user_id" not in request["payload"]["data"] and "email" not in json.dumps(request["payload"])
        deliveries = _deliveries(api, admin, hook["id"])
        assert len(deliveries) == 4
        for delivery in deliveries:
            assert delivery["status"] == "delivered" and delivery["attempts"] == 3
            assert delivery["last_status_code"] == 200 and delivery["delivered_at"]
            assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
            assert delivery["attempt_log"][0]["error"] == "HTTP 500"
            assert {r["delivery"] for r in receiver.seen() if r["event_id"] == delivery["event_id"]} == {
                str(delivery["id"])}
        assert [d["id"] for d in deliveries] == sorted((d["id"] for d in deliveries), reverse=True)  # newest first
    finally:
        receiver.stop()


def _no_unpublished(app):
    with app.app_context():
        left = db.session.scalar(select(OutboxEvent.id).where(OutboxEvent.published_at.is_(None)).limit(1))
        db.session.rollback()
        return left is None


def _delivery_rows(app):
    with app.app_context():
        rows = db.session.execute(select(WebhookDelivery.event, WebhookDelivery.ordering_key,
                                         WebhookDelivery.status, WebhookDelivery.attempts)).all()
        db.session.rollback()
        return [tuple(r) for r in rows]


def test_a_receiver_down_for_a_while_loses_nothing_and_gets_each_reservation_in_order(
        api, app, admin, user, show, broker, hooks):
    receiver = Receiver()  # not started: its port is closed
    hook = _subscribe(api, admin, receiver.url)
    with running_consumer(app):
        booked = [_book(api, user, show, [i]) for i in range(3)]
        _pump(app, broker, lambda: all(status_of(app, r) == "confirmed" for r in booked))
        for r in booked[:2]:
            assert api.post(f"/api/v1/reservations/{r}/cancel", token=user).status_code == 202
        # every event of the outage is fanned out; each reservation's first one was tried (and
        # refused) three times, its later ones wait their turn untried
        _pump(app, broker, lambda: (rows := _delivery_rows(app)) and len(rows) == 7
              and all(a >= 3 for event, _, _, a in rows if event == "reservation.confirmed"),
              what="failed attempts during the outage")
        rows = _delivery_rows(app)
        assert all(status == "pending" for _, _, status, _ in rows)
        assert all(a == 0 for event, _, _, a in rows if event != "reservation.confirmed")
        receiver.start()
        try:
            _pump(app, broker, lambda: len(receiver.acknowledged()) == 7, timeout=30)
        finally:
            receiver.stop()
    assert len(receiver.seen()) == 7  # nothing twice
    assert _in_order_per_reservation(receiver.seen()) == {
        booked[0]: ["reservation.confirmed", "reservation.cancelled", "payment.refunded"],
        booked[1]: ["reservation.confirmed", "reservation.cancelled", "payment.refunded"],
        booked[2]: ["reservation.confirmed"]}
    refused = [a for d in _deliveries(api, admin, hook["id"]) for a in d["attempt_log"] if a["status_code"] is None]
    assert refused and all("refused" in a["error"].lower() for a in refused)


def test_a_later_event_waits_while_an_earlier_one_of_its_reservation_is_retrying(
        api, app, admin, user, show, broker, hooks):
    state = {"fail_confirmation_of": None}

    def answer(request):
        if request["type"] == "reservation.confirmed" and request["reservation_id"] == state["fail_confirmation_of"]:
            return 503
        return 200

    receiver = Receiver(answer).start()
    try:
        hook = _subscribe(api, admin, receiver.url, ["reservation.confirmed", "reservation.cancelled"])
        with running_consumer(app):
            slow = _book(api, user, show, [0])
            state["fail_confirmation_of"] = slow
            _pump(app, broker, lambda: status_of(app, slow) == "confirmed")
            _pump(app, broker, lambda: sum(r["status"] == 503 for r in receiver.seen()) >= 2)
            assert api.post(f"/api/v1/reservations/{slow}/cancel", token=user).status_code == 202
            other = _book(api, user, show, [1])  # another reservation's events are not held up
            _pump(app, broker, lambda: any(r["reservation_id"] == other for r in receiver.acknowledged()))
            _pump(app, broker, lambda: len(_delivery_rows(app)) == 3)  # the cancellation is fanned out...
            failed_before = sum(r["status"] == 503 for r in receiver.seen())
            # ...and the dispatcher went round at least twice more while it waited
            wait_until(lambda: sum(r["status"] == 503 for r in receiver.seen()) >= failed_before + 2, 10)
            assert [r["type"] for r in receiver.seen() if r["reservation_id"] == slow] == [
                "reservation.confirmed"] * len([r for r in receiver.seen() if r["reservation_id"] == slow])
            state["fail_confirmation_of"] = None
            wait_until(lambda: len(receiver.acknowledged()) == 3, 10)
        assert _in_order_per_reservation(receiver.seen()) == {
            slow: ["reservation.confirmed", "reservation.cancelled"], other: ["reservation.confirmed"]}
        assert [d["status"] for d in _deliveries(api, admin, hook["id"])] == ["delivered"] * 3
    finally:
        receiver.stop()


def test_disabled_after_consecutive_failures_and_re_enabling_resumes(api, app, admin, user, show, broker, hooks):
    hooks.settings = replace(hooks.settings, webhook_disable_after=3)
    state = {"status": 500}
    receiver = Receiver(lambda request: state["status"]).start()
    try:
        hook = _subscribe(api, admin, receiver.url)
        with running_consumer(app):
            r = _book(api, user, show, [0])
            _pump(app, broker, lambda: not api.get(f"/api/v1/webhooks/{hook['id']}", admin).json["enabled"])
            seen = len(receiver.seen())
            assert seen == 3
            disabled = api.get(f"/api/v1/webhooks/{hook['id']}", admin).json
            assert disabled["consecutive_failures"] == 3 and disabled["disabled_at"]
            # events keep coming while it is disabled: kept pending, not sent
            assert api.post(f"/api/v1/reservations/{r}/cancel", token=user).status_code == 202
            _pump(app, broker, lambda: len(_delivery_rows(app)) == 3)
            time.sleep(1.0)  # several retry delays (0.2-0.8 s): a dispatcher ignoring `enabled` would have sent
            assert len(receiver.seen()) == seen
            assert {status for _, _, status, _ in _delivery_rows(app)} == {"pending"}
            state["status"] = 204
            enabled = api.post(f"/api/v1/webhooks/{hook['id']}/enable", token=admin)
            assert enabled.status_code == 200 and enabled.json["enabled"] is True
            assert enabled.json["consecutive_failures"] == 0
            wait_until(lambda: len(receiver.acknowledged()) == 3, 10)
        assert _in_order_per_reservation(receiver.seen()) == {
            r: ["reservation.confirmed", "reservation.cancelled", "payment.refunded"]}
        with app.app_context():
            actions = list(db.session.scalars(select(AuditEntry.action).where(
                AuditEntry.object_type == "webhook").order_by(AuditEntry.id)))
            db.session.rollback()
        assert actions == ["webhook.create", "webhook.disable", "webhook.enable"]
    finally:
        receiver.stop()


def test_with_rabbitmq_down_at_the_change_the_event_is_kept_and_delivered_later(
        api, app, admin, user, show, broker, hooks):
    receiver = Receiver().start()
    try:
        _subscribe(api, admin, receiver.url, ["reservation.cancelled"])
        r = _book(api, user, show, [0])
        assert api.post(f"/api/v1/reservations/{r}/cancel", token=user).status_code == 202
        # the broker is away: nothing published, the event stays in the outbox
        assert relay(app, broker, url="amqp://guest:guest@127.0.0.1:1/%2F") == 0
        with app.app_context():
            row = db.session.scalar(select(OutboxEvent).where(OutboxEvent.topic == "webhooks.event"))
            assert row.published_at is None and row.payload["webhook_event"]["type"] == "reservation.cancelled"
            db.session.rollback()
        with running_consumer(app):
            _pump(app, broker, lambda: len(receiver.acknowledged()) == 1)
        assert receiver.seen()[0]["reservation_id"] == r
    finally:
        receiver.stop()


def _webhook_events(app) -> list[str]:
    with app.app_context():
        rows = db.session.scalars(select(OutboxEvent.payload).where(OutboxEvent.topic == "webhooks.event")
                                  .order_by(OutboxEvent.id)).all()
        db.session.remove()
    return [row["webhook_event"]["type"] for row in rows]


def test_a_change_writes_only_the_events_some_webhook_takes(api, app, admin, user, show, hooks):
    """No webhook: a confirmation and a cancellation write no event (no outbox row, no
    message, no fan-out). A webhook taking confirmations: the next confirmation writes one,
    the cancellation still none; deleted: none again. Every app process learns it at once
    (the subscription cache is renewed before the creation is answered)."""
    payment = {"kind": "charge", "status": "succeeded", "amount_cents": 1000, "currency": "EUR",
               "gateway_ref": "ch_1"}

    def confirm(reservation_id):
        with app.app_context():
            assert booking.confirm_payment(reservation_id, payment={**payment,
                                                                    "idempotency_key": f"k{reservation_id}"}) == "confirmed"
            db.session.remove()

    first = _book(api, user, show, [0])
    confirm(first)
    assert api.post(f"/api/v1/reservations/{first}/cancel", token=user).status_code == 202
    assert _webhook_events(app) == []
    webhook = _subscribe(api, admin, "http://127.0.0.1:9/hooks", ["reservation.confirmed"])
    second = _book(api, user, show, [2])
    confirm(second)
    assert api.post(f"/api/v1/reservations/{second}/cancel", token=user).status_code == 202
    assert _webhook_events(app) == ["reservation.confirmed"]
    assert api.delete(f"/api/v1/webhooks/{webhook['id']}", admin).status_code == 204
    confirm(_book(api, user, show, [4]))
    assert _webhook_events(app) == ["reservation.confirmed"]


def test_the_sale_of_the_last_seat_announces_a_sold_out_showtime_once(api, app, admin, user, show, broker, hooks):
    receiver = Receiver().start()
    try:
        _subscribe(api, admin, receiver.url, ["showtime.sold_out"])
        with running_consumer(app):
            first, last = _book(api, user, show, [0, 1, 2]), _book(api, user, show, [3, 4, 5])
            _pump(app, broker, lambda: status_of(app, first) == status_of(app, last) == "confirmed")
            _pump(app, broker, lambda: _no_unpublished(app) and receiver.acknowledged())
            # freed and sold again: a new sell-out
            assert api.post(f"/api/v1/reservations/{first}/cancel", token=user).status_code == 202
            again = _book(api, user, show, [0, 1, 2])
            _pump(app, broker, lambda: len(receiver.acknowledged()) == 2)
        sold_out = [r["payload"]["data"] for r in receiver.acknowledged()]
        assert [d["showtime_id"] for d in sold_out] == [show["showtime"]] * 2
        assert sold_out[0]["reservation_id"] in (first, last)  # whichever confirmation completed the sale
        assert sold_out[1]["reservation_id"] == again
    finally:
        receiver.stop()


def test_concurrent_confirmations_of_the_last_seats_announce_sold_out_exactly_once(api, app, admin, user, show,
                                                                                   hooks):
    """Two confirmations that together sell the last seats, released at the same moment
    in two threads: exactly one of them sees the showtime sold out. Five showtimes, so
    an unguarded count (each confirmation blind to the other's uncommitted one) shows."""
    _subscribe(api, admin, "http://127.0.0.1:9/hooks")  # events are written only for a subscriber
    showtimes = [show] + [{"showtime": api.showtime(admin, show["movie"], show["screen"], starts_at=(
        datetime.now(timezone.utc) + timedelta(days=2, hours=4 * k)).replace(microsecond=0))["id"]}
        for k in range(4)]
    for one in showtimes:
        reservations = [_book(api, user, one, [0, 1, 2]), _book(api, user, one, [3, 4, 5])]
        barrier = threading.Barrier(2)
        failures = []

        def confirm(reservation_id, barrier=barrier, failures=failures):
            try:
                with app.app_context():
                    barrier.wait(5)
                    booking.confirm_payment(reservation_id)
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=confirm, args=(r,)) for r in reservations]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert not failures
        with app.app_context():
            events = [p["webhook_event"]["type"] for p in db.session.scalars(
                select(OutboxEvent.payload).where(OutboxEvent.topic == "webhooks.event",
                                                  OutboxEvent.aggregate_id.in_([f"reservation:{r}"
                                                                                for r in reservations])))]
            db.session.rollback()
        assert sorted(events) == ["reservation.confirmed", "reservation.confirmed", "showtime.sold_out"]


# --- SSRF -------------------------------------------------------------------------

REFUSED = ["http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data",
           "http://[::1]:8080/x", "http://localhost:8080/x", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x",
           "https://192.168.1.10/x", "http://[fe80::1]/x", "http://100.64.0.1/x"]


@pytest.mark.parametrize("url", REFUSED)
def test_private_and_loopback_urls_are_refused_by_default(api, admin, url):
    answer = api.post("/api/v1/webhooks", {"url": url, "events": ["reservation.confirmed"]}, admin)
    assert answer.status_code == 422, answer.json
    assert answer.json["code"] == "validation_error" and "url" in answer.json["errors"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://[::1]:8080/x", "http://localhost:8080/x"])
def test_loopback_urls_are_allowed_with_the_setting(api, admin, hooks, url):
    assert api.post("/api/v1/webhooks", {"url": url, "events": ["reservation.confirmed"]}, admin).status_code == 201


@pytest.mark.parametrize("body", [
    {"url": "ftp://example.com/x", "events": ["reservation.confirmed"]},
    {"url": "https://example.com/x", "events": ["reservation.exploded"]},
    {"url": "https://example.com/x", "events": []},
    {"url": "https://user:pw@example.com/x", "events": ["reservation.confirmed"]},
    {"url": "https://example.com/x"},
])
def test_bad_webhooks_are_refused_with_the_field(api, admin, body):
    answer = api.post("/api/v1/webhooks", body, admin)
    assert answer.status_code == 422, answer.json
    assert answer.json["code"] == "validation_error"
    assert {field.split(".")[0] for field in answer.json["errors"]} & {"url", "events"}


def test_a_receiver_that_became_private_after_creation_is_refused_at_delivery(
        api, app, admin, user, show, broker, hooks):
    """Checked again on the address connected to: a URL accepted when private addresses
    were allowed is not sent to once they are not (what DNS rebinding would exploit)."""
    receiver = Receiver().start()
    try:
        hook = _subscribe(api, admin, receiver.url, ["reservation.cancelled"])
        hooks.settings = replace(hooks.settings, webhook_allow_private_urls=False)
        r = _book(api, user, show, [0])
        assert api.post(f"/api/v1/reservations/{r}/cancel", token=user).status_code == 202
        with running_consumer(app):
            _pump(app, broker, lambda: (d := _deliveries(api, admin, hook["id"])) and d[0]["attempts"] >= 2)
        assert receiver.seen() == []
        delivery = _deliveries(api, admin, hook["id"])[0]
        assert delivery["status"] == "pending" and "not a public address" in delivery["last_error"]
    finally:
        receiver.stop()


# --- the admin's API ---------------------------------------------------------------

def test_only_admins_manage_webhooks_and_every_change_is_audited_without_the_secret(api, app, admin, user, hooks):
    body = {"url": "http://127.0.0.1:9/x", "events": ["payment.refunded", "reservation.confirmed"]}
    assert api.post("/api/v1/webhooks", body, user).status_code == 403
    assert api.get("/api/v1/webhooks", user).status_code == 403
    assert api.post("/api/v1/webhooks", body).status_code == 401
    created = api.post("/api/v1/webhooks", body, admin)
    assert created.status_code == 201 and created.headers["Location"].endswith(f"/webhooks/{created.json['id']}")
    secret = created.json["secret"]
    assert created.json["events"] == ["reservation.confirmed", "payment.refunded"]
    shown = api.get(f"/api/v1/webhooks/{created.json['id']}", admin)
    assert shown.status_code == 200 and "secret" not in shown.json
    listed = api.get("/api/v1/webhooks?page_size=1", admin)
    assert listed.status_code == 200 and [w["id"] for w in listed.json] == [created.json["id"]]
    assert api.get("/api/v1/webhooks?colour=red", admin).status_code == 400
    assert api.post(f"/api/v1/webhooks/{created.json['id']}/enable", token=admin).status_code == 200
    assert api.delete(f"/api/v1/webhooks/{created.json['id']}", admin).status_code == 204
    assert api.get(f"/api/v1/webhooks/{created.json['id']}", admin).status_code == 404
    assert api.get(f"/api/v1/webhooks/{created.json['id']}/deliveries", admin).status_code == 404
    assert api.delete(f"/api/v1/webhooks/{created.json['id']}", admin).status_code == 404
    with app.app_context():
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.object_type == "webhook")
                                     .order_by(AuditEntry.id)).all()
        assert [e.action for e in entries] == ["webhook.create", "webhook.delete"]  # already enabled: no change
        assert secret not in json.dumps([e.after for e in entries] + [e.before for e in entries], default=str)
        assert all("secret_ciphertext" not in (e.after or e.before) for e in entries)
        assert db.session.scalar(select(Webhook)) is None
        db.session.rollback()


def test_the_secret_is_stored_encrypted(api, app, admin, hooks):
    created = _subscribe(api, admin, "http://127.0.0.1:9/x", ["reservation.confirmed"])
    with app.app_context():
        stored = bytes(db.session.scalar(select(Webhook.secret_ciphertext)))
        db.session.rollback()
    assert created["secret"].encode() not in stored and created["secret"][6:].encode() not in stored


def test_a_delivery_whose_dispatcher_died_mid_attempt_is_sent_after_its_lease(
        api, app, admin, user, show, broker, hooks, monkeypatch):
    from app.services import outbound_webhooks

    monkeypatch.setattr(outbound_webhooks, "LEASE_MARGIN_SECONDS", 1.0)
    hooks.settings = replace(hooks.settings, webhook_timeout_seconds=1.0, webhook_dispatch_threads=0)
    receiver = Receiver().start()

    class Dying:
        def post(self, url, body, headers):
            raise SystemExit("the worker died with the request in flight")

    try:
        hook = _subscribe(api, admin, receiver.url, ["reservation.cancelled"])
        r = _book(api, user, show, [0])
        assert api.post(f"/api/v1/reservations/{r}/cancel", token=user).status_code == 202
        with running_consumer(app):  # fan-out only: no dispatcher
            _pump(app, broker, lambda: len(_delivery_rows(app)) == 1)
        with app.app_context(), pytest.raises(SystemExit):
            outbound_webhooks.dispatch_once(Dying())  # claimed (committed), then the process "dies"
        with app.app_context():
            leased = db.session.scalar(select(WebhookDelivery.leased_until > func.now()))
            db.session.rollback()
        assert leased
        hooks.settings = replace(hooks.settings, webhook_dispatch_threads=2)
        claimed_at = time.monotonic()
        with running_consumer(app):
            wait_until(lambda: receiver.acknowledged(), 15, what="the delivery after its lease")
        assert time.monotonic() - claimed_at >= 1.0  # not before the lease ran out
        assert len(receiver.seen()) == 1
        delivery = _deliveries(api, admin, hook["id"])[0]
        assert delivery["status"] == "delivered" and delivery["attempts"] == 2
        assert [a["status_code"] for a in delivery["attempt_log"]] == [200]
    finally:
        receiver.stop()


def test_many_dispatchers_in_two_workers_send_each_event_once(api, app, admin, user, show, broker, hooks):
    """Two workers with three dispatcher threads each, all woken by the same fan-outs:
    claims skip each other's rows, so no event goes out twice."""
    hooks.settings = replace(hooks.settings, webhook_dispatch_threads=3)

    def slow_ok(request):
        time.sleep(0.05)  # each attempt takes a while: overlapping claims would both send
        return 200

    receiver = Receiver(slow_ok).start()
    try:
        _subscribe(api, admin, receiver.url)
        with running_consumer(app), running_consumer(app):
            booked = [_book(api, user, show, [i]) for i in range(6)]
            _pump(app, broker, lambda: all(status_of(app, r) == "confirmed" for r in booked))
            _pump(app, broker, lambda: len(receiver.acknowledged()) == 7)  # 6 confirmations, 1 sold out
            wait_until(lambda: {s for _, _, s, _ in _delivery_rows(app)} == {"delivered"}, 10)
        ids = [r["event_id"] for r in receiver.seen()]
        assert len(ids) == len(set(ids)) == 7
    finally:
        receiver.stop()


def test_an_event_fanned_out_before_an_earlier_one_of_its_reservation_waits_for_it(api, app, admin, user, show,
                                                                                    hooks):
    """Two workers, or a retried message, may fan out a reservation's cancellation before
    its confirmation: the cancellation is not sent until the confirmation is fanned out
    (and delivered)."""
    from app.adapters.webhook_sender import Sender
    from app.services import outbound_webhooks

    receiver = Receiver().start()
    try:
        _subscribe(api, admin, receiver.url, ["reservation.confirmed", "reservation.cancelled"])
        r = _book(api, user, show, [0])
        with app.app_context():
            booking.confirm_payment(r)
        assert api.post(f"/api/v1/reservations/{r}/cancel", token=user).status_code == 202
        with app.app_context():
            rows = db.session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "webhooks.event")
                                      .order_by(OutboxEvent.id)).all()
            messages = [{"event_id": row.id, "topic": row.topic, **row.payload} for row in rows]
            db.session.rollback()
            assert [m["webhook_event"]["type"] for m in messages] == ["reservation.confirmed",
                                                                     "reservation.cancelled"]
            sender = Sender(timeout_seconds=2, allow_private=True)
            outbound_webhooks.fan_out(messages[1])  # the later event first
            assert outbound_webhooks.dispatch_once(sender) == 0  # it waits for the earlier one
            outbound_webhooks.fan_out(messages[0])
            while outbound_webhooks.dispatch_once(sender):
                pass
            sender.close()
        assert [x["type"] for x in receiver.seen()] == ["reservation.confirmed", "reservation.cancelled"]
    finally:
        receiver.stop()
