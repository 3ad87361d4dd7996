"""Races with real threads against a real gunicorn (2 processes x 4 threads) and
real Redis and PostgreSQL: no seat sold twice, no partial holds, one scheduler."""
import concurrent.futures
import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import func, select, update

from app import db
from app.models import OutboxEvent, Reservation, ReservationSeat
from app.services import booking
from app.services import seats as seats_service
from tests.helpers import PASSWORD, advisory_lock_held, stop_process
from tests.integration.booking_helpers import forget_showtime_in_redis, live_seats, seat_ids, showtime_room

CLIENTS = 200


def _customers(base: str, count: int) -> list[str]:
    """Register and sign in ``count`` customers over HTTP; their access tokens."""
    def make(i):
        session = requests.Session()
        email = f"rush{i}@example.com"
        session.post(base + "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "R"})
        return session.post(base + "/api/v1/auth/login",
                            json={"email": email, "password": PASSWORD}).json()["access_token"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(make, range(count)))


@pytest.fixture
def rush_show(api, admin):
    return api.catalog(admin)


def _seat_ids(base, showtime_id):
    return [s["id"] for s in requests.get(f"{base}/api/v1/showtimes/{showtime_id}/seats").json()["seats"]]


def _rush(base, tokens, showtime_id, seats, wipe_redis=None):
    """Every customer at once asks for 1-3 of the same few seats, then reserves what it got."""
    rng = random.Random(7)
    wants = [rng.sample(seats, rng.randint(1, 3)) for _ in tokens]
    barrier = threading.Barrier(len(tokens))

    def customer(i):
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tokens[i]}"}
        barrier.wait()
        h = session.post(f"{base}/api/v1/showtimes/{showtime_id}/holds", json={"seat_ids": wants[i]},
                         headers=headers, timeout=30)
        r = None
        if h.status_code == 201:
            r = session.post(f"{base}/api/v1/reservations", headers=headers, timeout=30,
                             json={"hold_id": h.json()["id"], "payment_token": "tok_visa"})
        return wants[i], h, r

    stop = threading.Event()
    wiper = None
    if wipe_redis:
        def wipe():
            while not stop.is_set():
                wipe_redis()
                time.sleep(0.01)
        wiper = threading.Thread(target=wipe)
        wiper.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
            return list(pool.map(customer, range(len(tokens))))
    finally:
        stop.set()
        if wiper:
            wiper.join()


def test_rush_every_seat_one_hold_one_reservation_and_no_partial_holds(live_server, app, rush_show):
    tokens = _customers(live_server, CLIENTS)
    seats = _seat_ids(live_server, rush_show["showtime"])
    results = _rush(live_server, tokens, rush_show["showtime"], seats)

    codes = [h.status_code for _, h, _ in results]
    assert set(codes) <= {201, 409}, [h.text for _, h, _ in results if h.status_code not in (201, 409)]
    won = [(wanted, h.json(), r) for wanted, h, r in results if h.status_code == 201]
    held = [s for wanted, _, _ in won for s in wanted]
    assert len(held) == len(set(held)), "a seat was held twice"
    assert won, "nobody got a hold"
    # Winners got everything they asked for; losers were told which seats were taken.
    for wanted, body, _ in won:
        assert body["seat_ids"] == wanted
    for wanted, h, _ in results:
        if h.status_code == 409:
            assert h.json()["code"] in ("seats_unavailable",) and set(h.json()["seat_ids"]) <= set(wanted)
    # Every winner reserved; PostgreSQL holds each seat in at most one live reservation.
    assert all(r is not None and r.status_code == 202 for _, _, r in won), \
        [r.text for _, _, r in won if r is None or r.status_code != 202]
    live = live_seats(app, rush_show["showtime"])
    assert sorted(live) == sorted(held)
    # No partial holds: every seat Redis still keeps belongs to a winner's reservation.
    owners = app.extensions["marquee"].seats.owners(rush_show["showtime"], showtime_room(app, rush_show["showtime"]))
    winners = {f"r:{r.json()['id']}" for _, _, r in won}
    assert set(owners.values()) <= winners
    assert sorted(owners) == sorted(held)


def test_rush_with_redis_wiped_over_and_over_still_sells_no_seat_twice(live_server, app, rush_show):
    tokens = _customers(live_server, 120)
    seats = _seat_ids(live_server, rush_show["showtime"])
    results = _rush(live_server, tokens, rush_show["showtime"], seats,
                    wipe_redis=lambda: forget_showtime_in_redis(app, rush_show["showtime"]))
    statuses = [h.status_code for _, h, _ in results] + [r.status_code for _, _, r in results if r is not None]
    assert all(code < 500 for code in statuses), statuses
    assert {r.status_code for _, _, r in results if r is not None} <= {202, 409}
    reserved = [s for _, _, r in results if r is not None and r.status_code == 202 for s in
                [seat["id"] for seat in r.json()["seats"]]]
    assert len(reserved) == len(set(reserved)), "a seat was sold twice"
    live = live_seats(app, rush_show["showtime"])
    assert len(live) == len(set(live)) and sorted(live) == sorted(reserved)


def _pending_reservation(app, api, admin_token, user_token, show, seat):
    from tests.integration.booking_helpers import hold, reserve
    h = hold(api, user_token, show["showtime"], [seat]).json
    return reserve(api, user_token, h["id"]).json["id"]


def test_confirmation_racing_expiry_never_sells_twice_nor_loses_the_payment(api, app, admin, rush_show):
    """Regression: a confirmation racing the expiry job sells the seat twice or loses the payment."""
    seats = seat_ids(api, rush_show["showtime"])
    users = [api.make_user(f"racer{i}@example.com") for i in range(len(seats))]
    reservation_ids = [_pending_reservation(app, api, admin, users[i], rush_show, seat)
                       for i, seat in enumerate(seats)]
    with app.app_context():
        # Every deadline is "now": the payment and the job meet at the same instant.
        deadline = datetime.now(timezone.utc) + timedelta(seconds=30)
        db.session.execute(update(Reservation).values(expires_at=deadline))
        db.session.commit()
    in_time, too_late = deadline - timedelta(seconds=1), deadline + timedelta(seconds=1)

    outcomes = {}
    for rid in reservation_ids:
        barrier = threading.Barrier(2)

        def pay(rid=rid, barrier=barrier):
            with app.app_context():
                barrier.wait()
                outcomes[rid] = booking.confirm_payment(rid, now=in_time)

        def expire(barrier=barrier):
            with app.app_context():
                barrier.wait()
                booking.expire_unpaid_reservations(now=too_late)

        threads = [threading.Thread(target=pay), threading.Thread(target=expire)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    with app.app_context():
        for rid in reservation_ids:
            reservation = db.session.get(Reservation, rid)
            live = db.session.scalar(select(func.count()).select_from(ReservationSeat).where(
                ReservationSeat.reservation_id == rid, ReservationSeat.released_at.is_(None)))
            refunds = db.session.scalar(select(func.count()).select_from(OutboxEvent).where(
                OutboxEvent.topic == "payments.refund", OutboxEvent.aggregate_id == f"reservation:{rid}"))
            if outcomes[rid] == "confirmed":
                assert reservation.status == "confirmed" and live == 1 and refunds == 0
            else:  # the job won: the seat is free again and the money goes back
                assert outcomes[rid] == "refund"
                assert reservation.status == "expired" and live == 0 and refunds == 1
        db.session.rollback()


def test_only_one_scheduler_acts_at_a_time(app):
    """A second scheduler finds the advisory lock taken and skips its run."""
    with advisory_lock_held(app, seats_service.SCHEDULER_LOCK), app.app_context():
        assert booking.expire_unpaid_reservations() is None
        assert seats_service.sweep_stray_seat_keys() is None
    with app.app_context():
        assert booking.expire_unpaid_reservations() == 0  # free again once the first let go


def test_the_sweep_frees_seat_keys_nobody_owns(api, app, user, rush_show):
    from tests.integration.booking_helpers import hold, reserve

    seats = seat_ids(api, rush_show["showtime"])
    res = reserve(api, user, hold(api, user, rush_show["showtime"], seats[:1]).json["id"]).json
    store = app.extensions["marquee"].seats
    # A crash between a commit and its Redis step: a cancelled reservation's key stays...
    with app.app_context():
        db.session.execute(update(Reservation).where(Reservation.id == res["id"]).values(status="cancelled"))
        db.session.execute(update(ReservationSeat).values(released_at=datetime.now(timezone.utc)))
        db.session.commit()
    # ...and a seat whose hold record is gone.
    room = showtime_room(app, rush_show["showtime"])
    assert store.sync(rush_show["showtime"], room, [(seats[1], "h:999.deadbeef", 60000)], 3600) == 1
    live_hold = hold(api, api.make_user("live@example.com"), rush_show["showtime"], seats[2:3]).json
    with app.app_context():
        assert seats_service.sweep_stray_seat_keys() == 2
    assert store.owners(rush_show["showtime"], room) == {seats[2]: f"h:{live_hold['id']}"}


def test_the_scheduler_process_expires_reservations(api, app, user, rush_show, broker, tmp_path):
    """The real process (python -m worker.scheduler), not just its functions."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, TEST_ENV
    from tests.integration.booking_helpers import hold, reserve

    seat = seat_ids(api, rush_show["showtime"])[0]
    res = reserve(api, user, hold(api, user, rush_show["showtime"], [seat]).json["id"]).json
    with app.app_context():
        db.session.execute(update(Reservation).values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        db.session.commit()
    env = {**os.environ, **TEST_ENV, "EXPIRY_INTERVAL_SECONDS": "1", "LOG_LEVEL": "INFO",
           "AMQP_PREFIX": broker.prefix,  # its relay publishes into this test's own queues
           "RETRY_DELAYS_MS": ",".join(str(d) for d in broker.retry_delays_ms)}
    log = open(tmp_path / "scheduler.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "worker.scheduler"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            with app.app_context():
                status = db.session.get(Reservation, res["id"]).status
                db.session.rollback()
            if status == "expired":
                break
            time.sleep(0.2)
        assert status == "expired", (tmp_path / "scheduler.log").read_text()[-2000:]
    finally:
        stop_process(proc, timeout=15)
        log.close()
    assert proc.returncode == 0  # SIGTERM: finished cleanly
