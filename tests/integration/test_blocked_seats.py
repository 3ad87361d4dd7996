"""Blocked seats (API.md): an admin takes free seats of a showtime out of sale, all or
none; they show as blocked, are never held nor sold, survive the loss of Redis, and are
free again once unblocked. A block and a reservation of the same seat never both win."""
import random
import threading
import time
from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from app import db
from app.models import BlockedSeat
from app.services import blocked_seats, booking, staff
from app.services import seats as seats_service
from tests.helpers import ApiClient
from tests.integration.booking_helpers import (
    forget_showtime_in_redis,
    hold,
    live_seats,
    reserve,
    seat_ids,
    showtime_room,
    statuses,
)


def block(api, token, showtime_id, seats, **body):
    return api.post(f"/api/v1/showtimes/{showtime_id}/blocked-seats", {"seat_ids": list(seats), **body}, token)


def unblock(api, token, showtime_id, seat):
    return api.delete(f"/api/v1/showtimes/{showtime_id}/blocked-seats/{seat}", token)


def redis_forgets_and_rebuilds_nothing(app, monkeypatch, showtime_id) -> None:
    """Redis loses the showtime, and rebuilds restore nothing until ``monkeypatch.undo()``:
    only PostgreSQL knows what is booked or blocked."""
    forget_showtime_in_redis(app, showtime_id)
    store, room = app.extensions["marquee"].seats, showtime_room(app, showtime_id)
    monkeypatch.setattr(seats_service, "sync_showtime", lambda sid: store.sync(sid, room, [], 60))


def blocked_in_postgresql(app, showtime_id) -> list[int]:
    with app.app_context():
        return sorted(db.session.scalars(select(BlockedSeat.seat_id).where(BlockedSeat.showtime_id == showtime_id)))


def test_a_block_shows_its_seats_blocked_and_lists_them(api, admin, show):
    s1, s2, s3, *_ = seat_ids(api, show["showtime"])
    before = api.get(f"/api/v1/showtimes/{show['showtime']}").json["seats_available"]
    r = block(api, admin, show["showtime"], [s2, s1], reason="Broken armrests")
    assert r.status_code == 201, r.json
    assert r.json["showtime_id"] == show["showtime"]
    assert [(s["seat_id"], s["label"], s["reason"]) for s in r.json["seats"]] == [
        (s1, "A1", "Broken armrests"), (s2, "A2", "Broken armrests")]  # layout order
    assert all(s["blocked_by"] is not None and s["blocked_at"] for s in r.json["seats"])
    assert api.get(f"/api/v1/showtimes/{show['showtime']}/blocked-seats", admin).json == r.json
    now = statuses(api, show["showtime"])
    assert (now[s1], now[s2], now[s3]) == ("blocked", "blocked", "available")
    assert api.get(f"/api/v1/showtimes/{show['showtime']}").json["seats_available"] == before - 2


def test_a_hold_of_a_blocked_seat_is_409_and_holds_nothing(api, admin, user, show):
    s1, s2, *_ = seat_ids(api, show["showtime"])
    assert block(api, admin, show["showtime"], [s1]).status_code == 201
    r = hold(api, user, show["showtime"], [s2, s1])
    assert r.status_code == 409 and r.json["code"] == "seats_unavailable" and r.json["seat_ids"] == [s1]
    assert statuses(api, show["showtime"])[s2] == "available"
    assert api.get("/api/v1/holds", user).json == []


def test_best_available_never_picks_a_blocked_seat(api, admin, user):
    ids = api.catalog(admin)
    r = api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": {"rows": [{"label": "A", "seats": ["standard"] * 4}]}},
                  admin)
    assert r.status_code == 200, r.json
    a1, a2, a3, a4 = seat_ids(api, ids["showtime"])
    assert block(api, admin, ids["showtime"], [a2]).status_code == 201
    r = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds", {"quantity": 3}, user)
    assert r.status_code == 409 and r.json["code"] == "not_enough_seats"
    r = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds", {"quantity": 2}, user)
    assert r.status_code == 201 and sorted(r.json["seat_ids"]) == [a3, a4]  # A2 A3 would be nearer the middle


def test_blocking_a_held_booked_or_blocked_seat_is_409_naming_it_and_blocks_nothing(api, app, admin, user, other, show):
    s1, s2, s3, s4, *_ = seat_ids(api, show["showtime"])
    assert hold(api, user, show["showtime"], [s1]).status_code == 201
    assert reserve(api, other, hold(api, other, show["showtime"], [s2]).json["id"]).status_code == 202
    r = block(api, admin, show["showtime"], [s3, s1])
    assert r.status_code == 409 and r.json["code"] == "seats_unavailable" and r.json["seat_ids"] == [s1]
    r = block(api, admin, show["showtime"], [s2, s3])
    assert r.status_code == 409 and r.json["seat_ids"] == [s2]
    assert statuses(api, show["showtime"])[s3] == "available" and blocked_in_postgresql(app, show["showtime"]) == []
    assert block(api, admin, show["showtime"], [s4]).status_code == 201
    r = block(api, admin, show["showtime"], [s3, s4])
    assert r.status_code == 409 and r.json["seat_ids"] == [s4]
    assert statuses(api, show["showtime"])[s3] == "available"


def test_unblocking_frees_the_seat(api, admin, user, show):
    s1 = seat_ids(api, show["showtime"])[0]
    assert block(api, admin, show["showtime"], [s1]).status_code == 201
    assert unblock(api, admin, show["showtime"], s1).status_code == 204
    assert statuses(api, show["showtime"])[s1] == "available"
    assert api.get(f"/api/v1/showtimes/{show['showtime']}/blocked-seats", admin).json["seats"] == []
    assert hold(api, user, show["showtime"], [s1]).status_code == 201
    r = unblock(api, admin, show["showtime"], s1)  # no longer blocked
    assert r.status_code == 404 and r.json["code"] == "not_found"


def test_only_admins_block_list_and_unblock(api, admin, user, show):
    s1 = seat_ids(api, show["showtime"])[0]
    path = f"/api/v1/showtimes/{show['showtime']}/blocked-seats"
    for token, status in ((user, 403), (None, 401)):
        assert block(api, token, show["showtime"], [s1]).status_code == status
        assert api.get(path, token).status_code == status
    assert block(api, admin, show["showtime"], [s1]).status_code == 201
    assert unblock(api, user, show["showtime"], s1).status_code == 403
    assert unblock(api, None, show["showtime"], s1).status_code == 401
    assert statuses(api, show["showtime"])[s1] == "blocked"


def test_seats_not_of_the_showtime_or_listed_twice_are_422_and_block_nothing(api, app, admin, show):
    s1 = seat_ids(api, show["showtime"])[0]
    elsewhere = api.showtime(admin, show["movie"], api.screen(admin, show["theater"], name="Two")["id"])
    foreign = seat_ids(api, elsewhere["id"])[0]
    for seats in ([s1, foreign], [s1, s1], [], [999999]):
        r = block(api, admin, show["showtime"], seats)
        assert r.status_code == 422 and "seat_ids" in r.json["errors"], (seats, r.json)
    assert block(api, admin, show["showtime"], [s1], reason="").status_code == 422
    assert blocked_in_postgresql(app, show["showtime"]) == []
    assert block(api, admin, 999999, [s1]).status_code == 404
    assert api.get("/api/v1/showtimes/999999/blocked-seats", admin).status_code == 404
    assert unblock(api, admin, 999999, s1).status_code == 404


def test_a_showtime_that_has_started_is_refused(api, app, admin, show, monkeypatch):
    starts_at = datetime.fromisoformat(show["showtime_obj"]["starts_at"])
    monkeypatch.setattr(seats_service, "now", lambda: starts_at + timedelta(minutes=1))
    r = block(api, admin, show["showtime"], seat_ids(api, show["showtime"])[:1])
    assert r.status_code == 409 and r.json["code"] == "showtime_started"
    assert blocked_in_postgresql(app, show["showtime"]) == []


def test_blocked_seats_are_refused_after_redis_forgets_everything(api, app, admin, user, show):
    s1, s2, *_ = seat_ids(api, show["showtime"])
    assert block(api, admin, show["showtime"], [s1]).status_code == 201
    forget_showtime_in_redis(app, show["showtime"])
    assert statuses(api, show["showtime"])[s1] == "blocked"  # PostgreSQL's view: the block made it stale
    r = hold(api, user, show["showtime"], [s2, s1])
    assert r.status_code == 409 and r.json["seat_ids"] == [s1]  # rebuilt from PostgreSQL
    forget_showtime_in_redis(app, show["showtime"])
    r = api.post(f"/api/v1/showtimes/{show['showtime']}/holds", {"quantity": 2}, user)
    assert r.status_code == 201 and s1 not in r.json["seat_ids"], r.json  # B1 B2: A1 A2 would be nearer


def test_a_block_whose_commit_fails_leaves_no_seat_blocked_in_redis(api, app, admin, user, show):
    s1 = seat_ids(api, show["showtime"])[0]
    with app.app_context(), pytest.raises(Exception, match="too long"):
        # the column holds 200: the insert fails
        blocked_seats.block(show["showtime"], [s1], "x" * 201, actor=staff.Actor(1, is_admin=True))
    assert statuses(api, show["showtime"])[s1] == "available"
    assert hold(api, user, show["showtime"], [s1]).status_code == 201


# --- a block and a reservation of the same seat --------------------------------

def test_a_block_after_a_hold_is_409_and_the_hold_is_reserved(api, app, admin, user, show):
    s1 = seat_ids(api, show["showtime"])[0]
    h = hold(api, user, show["showtime"], [s1]).json
    r = block(api, admin, show["showtime"], [s1])
    assert r.status_code == 409 and r.json["code"] == "seats_unavailable" and r.json["seat_ids"] == [s1]
    assert reserve(api, user, h["id"]).status_code == 202
    assert live_seats(app, show["showtime"]) == [s1] and blocked_in_postgresql(app, show["showtime"]) == []


def test_a_reservation_refuses_a_seat_blocked_while_redis_had_lost_the_block(api, app, admin, user, show, monkeypatch):
    """Redis loses the block and a rebuild restores nothing, so a hold of the seat
    succeeds: PostgreSQL refuses the reservation (the block's row), a clean 409."""
    s1 = seat_ids(api, show["showtime"])[0]
    assert block(api, admin, show["showtime"], [s1]).status_code == 201
    redis_forgets_and_rebuilds_nothing(app, monkeypatch, show["showtime"])
    h = hold(api, user, show["showtime"], [s1])
    assert h.status_code == 201
    monkeypatch.undo()
    r = reserve(api, user, h.json["id"])
    assert r.status_code == 409 and r.json["code"] == "seats_unavailable" and r.json["seat_ids"] == [s1]
    assert live_seats(app, show["showtime"]) == [] and blocked_in_postgresql(app, show["showtime"]) == [s1]


def test_a_block_refuses_a_seat_sold_while_redis_had_lost_the_reservation(api, app, admin, user, show, monkeypatch):
    """The other way round: Redis lost the reservation's seat and a rebuild restored
    nothing, so only PostgreSQL knows the seat is sold: the block is a clean 409."""
    s1 = seat_ids(api, show["showtime"])[0]
    assert reserve(api, user, hold(api, user, show["showtime"], [s1]).json["id"]).status_code == 202
    redis_forgets_and_rebuilds_nothing(app, monkeypatch, show["showtime"])
    r = block(api, admin, show["showtime"], [s1])
    assert r.status_code == 409 and r.json["code"] == "seats_unavailable" and r.json["seat_ids"] == [s1]
    assert live_seats(app, show["showtime"]) == [s1] and blocked_in_postgresql(app, show["showtime"]) == []


def test_a_block_waits_for_a_reservation_in_flight_then_refuses_its_seat(api, app, admin, user, show, monkeypatch):
    """The reservation's transaction is open (its seats not yet committed) when Redis
    loses everything and an admin blocks the seat: the block waits on the showtime's
    lock, then sees the reservation and answers 409. Never both."""
    s1 = seat_ids(api, show["showtime"])[0]
    h = hold(api, user, show["showtime"], [s1]).json
    inside, go_on = threading.Event(), threading.Event()
    payment_request = booking._payment_request

    def paused(reservation, token):  # called inside the reservation's unit of work
        inside.set()
        go_on.wait(10)
        return payment_request(reservation, token)

    monkeypatch.setattr(booking, "_payment_request", paused)
    answers = {}
    customer = threading.Thread(target=lambda: answers.update(reserve=reserve(ApiClient(app.test_client()), user,
                                                                              h["id"])))
    admin_thread = threading.Thread(target=lambda: answers.update(block=block(ApiClient(app.test_client()), admin,
                                                                              show["showtime"], [s1])))
    customer.start()
    try:
        assert inside.wait(10)
        forget_showtime_in_redis(app, show["showtime"])
        admin_thread.start()
        admin_thread.join(1.0)  # time enough to block, were it not waiting for the reservation
    finally:
        go_on.set()
        customer.join(10)
        admin_thread.join(10)
    assert answers["reserve"].status_code == 202, answers["reserve"].json
    assert answers["block"].status_code == 409 and answers["block"].json["seat_ids"] == [s1]
    assert live_seats(app, show["showtime"]) == [s1] and blocked_in_postgresql(app, show["showtime"]) == []


RACERS = 40


def test_customers_racing_an_admin_for_the_same_seats_never_both_win(live_server, app, api, admin):
    """Customers hold and reserve 1-2 of 24 seats while an admin blocks them one by one
    and Redis keeps losing the showtime: no seat ends both sold and blocked."""
    ids = api.catalog(admin)
    layout = {"rows": [{"label": row, "seats": ["standard"] * 8} for row in "ABC"]}
    assert api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": layout}, admin).status_code == 200
    assert api.patch(f"/api/v1/showtimes/{ids['showtime']}", {"orphan_seats": "allow"}, admin).status_code == 200
    showtime, seats = ids["showtime"], seat_ids(api, ids["showtime"])
    tokens = [api.make_user(f"racer{i}@test.example") for i in range(RACERS)]
    rng = random.Random(12)
    wants = [rng.sample(seats, rng.randint(1, 2)) for _ in tokens]
    order = rng.sample(seats, len(seats))
    barrier = threading.Barrier(RACERS + 1)
    base = f"{live_server}/api/v1"

    def customer(i):
        """Hold and reserve; again while Redis lost the hold on the way (up to three times)."""
        session, headers = requests.Session(), {"Authorization": f"Bearer {tokens[i]}"}
        answers = []
        barrier.wait()
        for _ in range(3):
            answers.append(session.post(f"{base}/showtimes/{showtime}/holds", json={"seat_ids": wants[i]},
                                        headers=headers, timeout=30))
            if answers[-1].status_code != 201:
                break
            answers.append(session.post(f"{base}/reservations", headers=headers, timeout=30,
                                        json={"hold_id": answers[-1].json()["id"], "payment_token": "tok_visa"}))
            if answers[-1].json().get("code") != "hold_expired":
                break
        return answers

    customers_done = threading.Event()

    def admin_blocks():
        """Each seat not blocked yet, round after round, while the customers run."""
        session, headers = requests.Session(), {"Authorization": f"Bearer {admin}"}
        answers, won = [], set()
        barrier.wait()
        while not customers_done.is_set() and len(won) < len(seats):
            for seat in [s for s in order if s not in won]:
                answers.append(session.post(f"{base}/showtimes/{showtime}/blocked-seats", json={"seat_ids": [seat]},
                                            headers=headers, timeout=30))
                if answers[-1].status_code == 201:
                    won.add(seat)
        return answers

    stop = threading.Event()

    def wipe():
        while not stop.is_set():
            forget_showtime_in_redis(app, showtime)
            time.sleep(0.15)

    wiper = threading.Thread(target=wipe)
    wiper.start()
    answers: dict = {}
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, customer(i))) for i in range(RACERS)]
    admin_thread = threading.Thread(target=lambda: answers.__setitem__("admin", admin_blocks()))
    try:
        for t in [*threads, admin_thread]:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        customers_done.set()
        admin_thread.join(60)
        stop.set()
        wiper.join()
    blocks = answers["admin"]
    customers = [r for i in range(RACERS) for r in answers[i]]
    assert all(r.status_code < 500 for r in customers), [r.text for r in customers if r.status_code >= 500]
    # A block refuses to decide while Redis keeps losing the showtime (503, try again), never guesses.
    assert {r.status_code for r in blocks} <= {201, 409, 503}, [r.text for r in blocks]
    blocked = {r.json()["seats"][0]["seat_id"] for r in blocks if r.status_code == 201}
    sold = {s["id"] for r in customers if r.status_code == 202 for s in r.json()["seats"]}
    assert blocked and sold, "the race had no winners on one side"
    assert blocked_in_postgresql(app, showtime) == sorted(blocked)
    assert sorted(live_seats(app, showtime)) == sorted(sold)
    assert not blocked & sold, f"seats both sold and blocked: {sorted(blocked & sold)}"


def test_a_showtime_with_blocked_seats_does_not_move_to_another_screen(api, admin, show):
    """Its blocks name seats of its screen: they are lifted first (409 otherwise)."""
    showtime = show["showtime"]
    seat = seat_ids(api, showtime)[0]
    assert api.post(f"/api/v1/showtimes/{showtime}/blocked-seats", {"seat_ids": [seat]}, admin).status_code == 201
    theater = api.get(f"/api/v1/showtimes/{showtime}").json["theater"]["id"]
    layout = {"rows": [{"label": "A", "seats": ["standard"] * 3}]}
    other = api.post(f"/api/v1/theaters/{theater}/screens", {"name": "Other", "layout": layout}, admin)
    assert other.status_code == 201, other.json
    r = api.patch(f"/api/v1/showtimes/{showtime}", {"screen_id": other.json["id"]}, admin)
    assert r.status_code == 409, r.json
    assert api.delete(f"/api/v1/showtimes/{showtime}/blocked-seats/{seat}", admin).status_code == 204
    assert api.patch(f"/api/v1/showtimes/{showtime}", {"screen_id": other.json["id"]}, admin).status_code == 200


def test_reservations_in_flight_share_the_showtime_lock_and_a_block_waits_for_them(app):
    """The lock that orders a block and the reservations of one showtime (``db.xact_lock``,
    shared for a reservation, exclusive for a block): while a reservation's unit of work
    holds it, another reservation of the showtime takes it at once, a block of the showtime
    waits (here: past a 200 ms lock timeout), and a block of another showtime does not."""
    held, done = threading.Event(), threading.Event()

    def reservation_in_flight():
        with app.app_context(), db.unit_of_work():
            blocked_seats._lock_showtime_seats(7, shared=True)
            held.set()
            done.wait(10)

    def lock_within_200_ms(showtime_id, shared):
        outcome = []

        def attempt():
            with app.app_context():
                try:
                    with db.unit_of_work():
                        db.session.execute(text("SET LOCAL lock_timeout = '200ms'"))
                        blocked_seats._lock_showtime_seats(showtime_id, shared=shared)
                    outcome.append(True)
                except OperationalError:
                    outcome.append(False)
                finally:
                    db.session.remove()

        thread = threading.Thread(target=attempt)
        thread.start()
        thread.join(10)
        return outcome == [True]

    holder = threading.Thread(target=reservation_in_flight)
    holder.start()
    try:
        assert held.wait(10)
        assert lock_within_200_ms(7, shared=True)  # reservations never wait on each other
        assert not lock_within_200_ms(7, shared=False)  # a block waits for the reservation
        assert lock_within_200_ms(8, shared=False)  # another showtime's block does not
    finally:
        done.set()
        holder.join(10)
    assert lock_within_200_ms(7, shared=False)  # the reservation committed: the block goes ahead
