"""A reservation's stream (``GET /api/v1/reservations/{id}/events`` on the live process): the
caller checked as the app checks it, the owner's (or an admin's) only, the app's own view of
the reservation pushed at each change until the payment's outcome, then the end. Against the
real live process, with reservations made through the app's API and settled by the services
the worker calls."""
from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from app import db
from app.services import booking
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.live.conftest import wait_until

PAYMENT = {"kind": "charge", "amount_cents": 1000, "currency": "EUR", "gateway_ref": "ch_test"}


def _reserve(api, token, showtime, seat) -> int:
    held = hold(api, token, showtime, [seat])
    assert held.status_code == 201, held.json
    made = reserve(api, token, held.json["id"])
    assert made.status_code == 202, made.json
    return made.json["id"]


def _confirm(app, reservation_id) -> None:
    with app.app_context():
        booking.confirm_payment(reservation_id, payment={**PAYMENT, "status": "succeeded",
                                                         "idempotency_key": f"charge-{reservation_id}"})
        db.session.remove()


def _statuses_until_the_end(stream, timeout=10) -> list[str]:
    statuses = []
    while True:
        try:
            event = stream.next(timeout)
        except EOFError:
            return statuses
        assert event.event == "reservation" and event.id is None
        statuses.append(event.json["status"])


def test_the_owner_follows_a_reservation_to_its_confirmation_then_the_stream_ends(start_live, app, api, user,
                                                                                  show):
    reservation_id = _reserve(api, user, show["showtime"], seat_ids(api, show["showtime"])[0])
    live = start_live()
    stream = live.reservation_stream(reservation_id, user)
    first = stream.next()
    assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
    listed = {r["id"]: r for r in api.get("/api/v1/reservations", user).json}[reservation_id]
    assert first.json == {k: v for k, v in listed.items() if k != "links"}  # the app's view, as GET says it
    assert first.json["status"] == "pending_payment" and first.json["payment_status"] == "pending"
    _confirm(app, reservation_id)
    final = stream.next()
    assert final.json["status"] == "confirmed" and final.json["payment_status"] == "succeeded"
    with pytest.raises(EOFError):
        stream.next()
    assert live.metrics()["marquee_live_reservation_events_sent_total"] == 2


def test_a_settled_reservation_is_sent_once_and_the_stream_ends(start_live, app, api, user, show):
    reservation_id = _reserve(api, user, show["showtime"], seat_ids(api, show["showtime"])[0])
    assert api.post(f"/api/v1/reservations/{reservation_id}/cancel", token=user).status_code == 202
    live = start_live()
    assert _statuses_until_the_end(live.reservation_stream(reservation_id, user)) == ["cancelled"]


def test_a_declined_payment_ends_the_stream_with_its_reason(start_live, app, api, user, show):
    reservation_id = _reserve(api, user, show["showtime"], seat_ids(api, show["showtime"])[0])
    live = start_live()
    stream = live.reservation_stream(reservation_id, user)
    assert stream.next().json["status"] == "pending_payment"
    with app.app_context():
        booking.fail_payment(reservation_id, payment={**PAYMENT, "status": "declined", "failure_reason": "declined",
                                                      "idempotency_key": f"charge-{reservation_id}"})
        db.session.remove()
    final = stream.next()
    assert (final.json["status"], final.json["failure_reason"]) == ("payment_failed", "declined")
    with pytest.raises(EOFError):
        stream.next()


def test_only_the_owner_or_an_admin_and_only_with_a_valid_token(start_live, app, api, admin, user, other, show):
    reservation_id = _reserve(api, user, show["showtime"], seat_ids(api, show["showtime"])[0])
    live = start_live()
    refused = {
        "no token": (live.reservation_stream(reservation_id, None), 401, "token_missing"),
        "garbage": (live.reservation_stream(reservation_id, "not-a-jwt"), 401, "token_invalid"),
        "forged": (live.reservation_stream(reservation_id, user[:-4] + ("AAAA" if not user.endswith("AAAA")
                                                                         else "BBBB")), 401, "token_invalid"),
        "someone else's": (live.reservation_stream(reservation_id, other), 404, "not_found"),
        "unknown": (live.reservation_stream(reservation_id + 1000, user), 404, "not_found"),
    }
    for name, (stream, status, code) in refused.items():
        stream.read_head()
        body = stream.raw + stream.sock.recv(65536) if b"}" not in stream.raw else stream.raw
        assert (stream.status, code.encode() in body) == (status, True), name
        if status == 401:
            assert stream.headers["www-authenticate"] == "Bearer", name
    assert live.reservation_stream(reservation_id, admin).next().json["user_id"] != 0  # an admin reads anyone's
    # signed out: the token is revoked at once, here too
    assert api.post("/api/v1/auth/logout", token=user).status_code in (200, 204)
    revoked = live.reservation_stream(reservation_id, user).read_head()
    assert revoked.status == 401


def test_streams_opened_while_their_reservations_settle_all_end_settled(start_live, app, api, admin, show):
    """Twenty-four reservations; for each, a stream opened at the same moment as its payment's
    outcome is committed (threads released together, in random order): every stream ends
    with the reservation's final state, none waits forever. A stream registered after its
    first read, or a change announced before the subscription, would leave one pending."""
    showtimes = [show["showtime"]] + [api.showtime(admin, show["movie"], show["screen"], starts_at=(
        datetime.now(timezone.utc) + timedelta(days=2, hours=4 * k)).replace(microsecond=0))["id"] for k in range(7)]
    token = api.make_user("rush@test.example")
    reservations = []
    for showtime in showtimes:
        for seat in seat_ids(api, showtime)[::2][:3]:
            reservations.append(_reserve(api, token, showtime, seat))
    live = start_live()
    outcomes: dict[int, list[str]] = {}
    failures: list[BaseException] = []

    def follow(reservation_id, barrier):
        try:
            barrier.wait(10)
            outcomes[reservation_id] = _statuses_until_the_end(live.reservation_stream(reservation_id, token))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    def settle(reservation_id, barrier):
        try:
            barrier.wait(10)
            _confirm(app, reservation_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    for batch in (reservations[i:i + 8] for i in range(0, len(reservations), 8)):
        barrier = threading.Barrier(2 * len(batch))
        threads = [threading.Thread(target=f, args=(r, barrier)) for r in batch for f in (follow, settle)]
        random.shuffle(threads)
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not failures
    assert {r: o[-1] for r, o in outcomes.items()} == dict.fromkeys(reservations, "confirmed")
    assert all(set(o) <= {"pending_payment", "confirmed"} for o in outcomes.values())


def test_a_change_whose_announcement_was_lost_arrives_with_the_next_recheck(start_live, app, api, user, show):
    """The services announce after the commit; if that publish fails, the stream reads the
    reservation again every heartbeat anyway."""
    reservation_id = _reserve(api, user, show["showtime"], seat_ids(api, show["showtime"])[0])
    live = start_live(heartbeat_seconds=1)
    stream = live.reservation_stream(reservation_id, user)
    assert stream.next().json["status"] == "pending_payment"
    store = app.extensions["marquee"].redis
    original = store.announce_reservations
    store.announce_reservations = lambda ids: None  # the announcement is lost
    try:
        _confirm(app, reservation_id)
    finally:
        store.announce_reservations = original
    assert stream.next(timeout=5).json["status"] == "confirmed"


def test_after_the_subscription_is_cut_every_stream_reads_again(start_live, app, api, user, show):
    """Redis drops the live process's subscription (CLIENT KILL); a change announced while it
    is down is lost to it; when redis-py subscribes again, every stream reads again."""
    reservation_id = _reserve(api, user, show["showtime"], seat_ids(api, show["showtime"])[0])
    live = start_live(heartbeat_seconds=15)
    stream = live.reservation_stream(reservation_id, user)
    assert stream.next().json["status"] == "pending_payment"
    client = app.extensions["marquee"].redis.client
    name = f"marquee-live:{app.extensions['marquee'].settings.redis_prefix}reservations"
    wait_until(lambda: any(c.get("name") == name for c in client.client_list()), 5, 0.05, "the subscription")
    for entry in client.client_list():
        if entry.get("name") == name:
            client.client_kill_filter(_id=entry["id"])
    _confirm(app, reservation_id)  # announced while nobody (or a half-dead connection) listens
    assert stream.next(timeout=8).json["status"] == "confirmed"


def test_a_heartbeat_while_the_stream_starts_does_not_go_out_before_its_head(start_live, app, api, user, show):
    """A stream is registered before its first read of the reservation; a heartbeat that came
    during that read was written before the response's head, and the proxy answered 502 (seen
    in the pipeline benchmark). The read is held up here by a lock on the reservations table
    across two heartbeats; the response must still begin with its status line."""
    reservation_id = _reserve(api, user, show["showtime"], seat_ids(api, show["showtime"])[0])
    live = start_live(heartbeat_seconds=1)
    with app.app_context(), app.extensions["marquee"].engine.connect() as connection:
        connection.execute(text("LOCK TABLE reservations IN ACCESS EXCLUSIVE MODE"))
        stream = live.reservation_stream(reservation_id, user)
        waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")  # the live process's read: nothing else runs
        with app.extensions["marquee"].engine.connect() as watcher:
            def read_waits() -> bool:
                try:
                    return watcher.execute(waiting).scalar() == 1
                finally:
                    watcher.rollback()  # pg_stat_activity is read once a transaction
            wait_until(read_waits, 10)  # the stream's first read waits for the lock
        time.sleep(2.5)  # two heartbeats meanwhile
        connection.rollback()
    while b"\r\n\r\n" not in stream.raw:
        stream._recv()
    assert stream.raw.startswith(b"HTTP/1.1 200 "), stream.raw[:80]  # b"e\r\n: keep-alive..." before the fix
    assert stream.next().json["status"] == "pending_payment"
