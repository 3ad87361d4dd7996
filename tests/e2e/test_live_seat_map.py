"""The live seat map end to end (issue 13, DESIGN.md invariant 9): the real proxy routes
the events path to the real live process and the rest to the session's gunicorn; every
kind of seat change made through the app appears on the stream exactly once, in order;
and a client that resumes from its last id while a rush of holds runs rebuilds exactly
the seat map."""
from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import replace

import pytest
import requests

from app.services import booking, waitlist
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.live.conftest import EventStream, wait_until
from tests.proxy.conftest import Proxy


def _seat_map(routed: Proxy, showtime: int) -> dict:
    r = requests.get(f"{routed.url}/api/v1/showtimes/{showtime}/seats", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _watch(routed: Proxy, showtime: int) -> EventStream:
    """A stream through the proxy from the seat map's version: what follows is exactly
    what changes from now on."""
    stream = EventStream(routed.port, showtime, since=_seat_map(routed, showtime)["version"]).read_head()
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    return stream


def _changes(stream: EventStream, count: int) -> list[tuple[int, str]]:
    """The next ``count`` events' changes, then proof that nothing else came."""
    seen = []
    for event in stream.changes(count):
        assert event.event == "seats" and event.id == event.json["version"]
        seen += [(c["id"], c["status"]) for c in event.json["seats"]]
    with pytest.raises(TimeoutError):
        stream.next(timeout=1.5)  # exactly once: nothing more
    return seen


def test_a_hold_and_its_release(api, user, show, routed):
    s1, s2 = seat_ids(api, show["showtime"])[:2]
    stream = _watch(routed, show["showtime"])
    h = hold(api, user, show["showtime"], [s1, s2]).json
    assert sorted(_changes(stream, 1)) == [(s1, "held"), (s2, "held")]
    assert api.delete(f"/api/v1/holds/{h['id']}", user).status_code == 204
    assert sorted(_changes(stream, 1)) == [(s1, "available"), (s2, "available")]


def test_best_available(api, user, show, routed):
    stream = _watch(routed, show["showtime"])
    r = api.post(f"/api/v1/showtimes/{show['showtime']}/holds", {"quantity": 2}, user)
    assert r.status_code == 201, r.json
    assert sorted(_changes(stream, 1)) == sorted((s, "held") for s in r.json["seat_ids"])


def test_an_expiry_with_no_request_at_all(api, app, user, show, routed):
    """Nothing touches the showtime after the hold: the live process frees it on time."""
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, hold_ttl_seconds=1)
    try:
        s1 = seat_ids(api, show["showtime"])[0]
        stream = _watch(routed, show["showtime"])
        hold(api, user, show["showtime"], [s1])
    finally:
        ext.settings = original
    assert _changes(stream, 2) == [(s1, "held"), (s1, "available")]  # within the stream's 5 s wait


def test_a_reservation_its_payment_and_its_cancellation(api, app, user, show, routed):
    s1 = seat_ids(api, show["showtime"])[0]
    stream = _watch(routed, show["showtime"])
    res = reserve(api, user, hold(api, user, show["showtime"], [s1]).json["id"]).json
    assert _changes(stream, 2) == [(s1, "held"), (s1, "held")]  # the hold, then the reservation awaiting payment
    with app.app_context():
        assert booking.confirm_payment(res["id"]) == "confirmed"
    assert _changes(stream, 1) == [(s1, "booked")]
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", {}, user).status_code == 202
    assert _changes(stream, 1) == [(s1, "available")]


def test_a_failed_payment(api, app, user, show, routed):
    s1 = seat_ids(api, show["showtime"])[0]
    res = reserve(api, user, hold(api, user, show["showtime"], [s1]).json["id"]).json
    stream = _watch(routed, show["showtime"])
    with app.app_context():
        booking.fail_payment(res["id"])
    assert _changes(stream, 1) == [(s1, "available")]


def test_a_block_and_an_unblock(api, admin, show, routed):
    s1 = seat_ids(api, show["showtime"])[0]
    stream = _watch(routed, show["showtime"])
    assert api.post(f"/api/v1/showtimes/{show['showtime']}/blocked-seats", {"seat_ids": [s1]}, admin).status_code == 201
    assert _changes(stream, 1) == [(s1, "blocked")]
    assert api.delete(f"/api/v1/showtimes/{show['showtime']}/blocked-seats/{s1}", admin).status_code == 204
    assert _changes(stream, 1) == [(s1, "available")]


def test_a_waitlist_offer(api, app, user, other, show, routed):
    """A cancellation of a sold-out show frees a seat, and the waiting customer's offer takes it."""
    showtime = show["showtime"]
    seats = seat_ids(api, showtime)
    everyone = api.make_user("everything@example.com")
    reserve(api, everyone, hold(api, everyone, showtime, seats[:-1]).json["id"])
    res = reserve(api, user, hold(api, user, showtime, seats[-1:]).json["id"]).json
    assert api.post(f"/api/v1/showtimes/{showtime}/waitlist", {"seats": 1}, other).status_code == 201
    stream = _watch(routed, showtime)
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", {}, user).status_code == 202
    assert _changes(stream, 2) == [(seats[-1], "available"), (seats[-1], "held")]  # freed, then offered
    with app.app_context():
        assert waitlist.make_offers(showtime) == 0  # nothing more to offer: nothing more on the stream


def test_a_client_resuming_with_its_last_id_misses_nothing_during_a_rush(api, show, routed):
    """Hold-and-release cycles by eight customers meanwhile; the client drops its stream
    three times and resumes with Last-Event-ID; the map it rebuilds equals a fresh one."""
    showtime = show["showtime"]
    first = _seat_map(routed, showtime)
    mine = {s["id"]: s["status"] for s in first["seats"]}
    tokens = [api.make_user(f"rusher{i}@example.com") for i in range(8)]
    free = seat_ids(api, showtime)
    stop = threading.Event()

    def rush(i):
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tokens[i]}"}
        cycles = 0
        while not stop.is_set():
            seat = free[(i + cycles) % len(free)]
            r = session.post(f"{routed.url}/api/v1/showtimes/{showtime}/holds", json={"seat_ids": [seat]},
                             headers=headers, timeout=10)
            if r.status_code == 201 and cycles % 3:  # a third of the holds are left to run
                session.delete(f"{routed.url}/api/v1/holds/{r.json()['id']}", headers=headers, timeout=10)
            elif r.status_code == 201:
                stop.wait(0.2)
                session.delete(f"{routed.url}/api/v1/holds/{r.json()['id']}", headers=headers, timeout=10)
            cycles += 1
        return cycles

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        rushing = [pool.submit(rush, i) for i in range(8)]
        last = first["version"]
        for _ in range(3):
            stream = EventStream(routed.port, showtime, last_event_id=last).read_head()
            for _ in range(15):
                event = stream.next(timeout=10)
                assert event.event == "seats"
                for change in event.json["seats"]:
                    mine[change["id"]] = change["status"]
                last = event.id
            stream.close()  # dropped mid-rush
        stop.set()
        assert sum(f.result() for f in rushing) > 45
    stream = EventStream(routed.port, showtime, last_event_id=last).read_head()
    final = _seat_map(routed, showtime)

    def caught_up():
        try:
            while True:
                event = stream.next(timeout=0.5)
                for change in event.json["seats"]:
                    mine[change["id"]] = change["status"]
        except TimeoutError:
            return mine == {s["id"]: s["status"] for s in _seat_map(routed, showtime)["seats"]}

    assert final["version"] >= first["version"]
    wait_until(caught_up, 10, 0, "the rebuilt map to equal the seat map")
