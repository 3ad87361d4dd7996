"""The waiting room end to end (issue 14, DESIGN.md invariant 10): customers go through the
real proxy, routed as the stack's scripts/proxy.toml routes (events and queue status to the
live process, the rest to the session's gunicorn); the real scheduler admits every second
and the real worker takes the payments. Two customers join a room that lets one shopper in
at a time: each waits on the seat events stream until ``event: queue`` serves its number,
takes its admission token, holds the best seats with it, reserves, is charged, gets its
tickets; the reservation ends the first session (``done``) and only then is the second
customer admitted. A hold without a token is refused with the queue's address."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import requests

from app.adapters import waiting_room_store
from tests.e2e.conftest import Background
from tests.live.conftest import EventStream
from tests.proxy.conftest import Proxy


class Customer:
    """A customer's calls through the proxy, with their token."""

    def __init__(self, proxy: Proxy, token: str) -> None:
        self.url = proxy.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, self.url + path, timeout=10, **kw)


def _wait_for_turn(stream: EventStream, number: int, timeout: float = 15) -> list[int]:
    """The serving numbers ``event: queue`` showed on ``stream``, up to the first that
    reaches ``number``."""
    deadline = time.monotonic() + timeout
    serving = []
    while not serving or serving[-1] < number:
        event = stream.next(timeout=max(0.1, deadline - time.monotonic()))
        if event.event == "queue":
            assert event.id is None and event.json["on"]
            serving.append(event.json["serving_number"])
    return serving


def _buy(customer: Customer, showtime: int, entry_id: str, background: Background) -> None:
    """An admitted customer: token, best available hold, reservation, payment, tickets."""
    entry = customer.call("GET", f"/api/v1/queue/{entry_id}").json()
    assert entry["status"] == "admitted" and entry["position"] == 0, entry
    held = customer.call("POST", f"/api/v1/showtimes/{showtime}/holds", json={"quantity": 2},
                         headers={"Admission-Token": entry["admission_token"]})
    assert held.status_code == 201, held.text
    reserved = customer.call("POST", "/api/v1/reservations",
                             json={"hold_id": held.json()["id"], "payment_token": "tok_visa"})
    assert reserved.status_code == 202 and reserved.json()["status"] == "pending_payment", reserved.text
    reservation = reserved.json()["id"]
    background.until(lambda: customer.call("GET", f"/api/v1/reservations/{reservation}").json()["status"]
                     == "confirmed", 20, "the worker to confirm the payment")
    tickets = customer.call("GET", f"/api/v1/reservations/{reservation}/tickets")
    assert tickets.status_code == 200, tickets.text
    assert sorted(t["seat_label"] for t in tickets.json()) == sorted(s["label"] for s in reserved.json()["seats"])
    assert len(tickets.json()) == 2


def test_two_customers_wait_on_the_stream_are_admitted_in_turn_and_buy(api, app, admin, show, routed, live_process,
                                                                       background):
    showtime = show["showtime"]
    boss = Customer(routed, admin)
    opens_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    room = boss.call("PUT", f"/api/v1/showtimes/{showtime}/waiting-room", json={
        "opens_at": opens_at.isoformat(), "admit_per_minute": 60, "max_active": 1, "session_seconds": 120})
    assert room.status_code == 200, room.text
    first, second = (Customer(routed, api.make_user(f"fan{n}@example.com")) for n in (1, 2))

    refused = second.call("POST", f"/api/v1/showtimes/{showtime}/holds", json={"quantity": 2})
    assert refused.status_code == 403 and refused.json()["code"] == "admission_required"
    assert refused.json()["queue_url"] == f"/api/v1/showtimes/{showtime}/queue"

    entries = []
    for customer in (first, second):
        joined = customer.call("POST", f"/api/v1/showtimes/{showtime}/queue")
        assert joined.status_code == 201, joined.text
        entries.append(joined.json())
    assert [e["number"] for e in entries] == [1, 2] and {e["status"] for e in entries} == {"waiting"}

    served_before = live_process.metrics()["marquee_live_queue_status_served_total"]
    status = requests.get(f"{routed.url}/api/v1/showtimes/{showtime}/queue/status", timeout=10)
    assert status.status_code == 200 and status.headers["Cache-Control"] == "public, max-age=1"
    assert status.json()["showtime_id"] == showtime and status.json()["open"]
    assert live_process.metrics()["marquee_live_queue_status_served_total"] == served_before + 1  # not the app

    streams = [EventStream(routed.port, showtime).read_head() for _ in (first, second)]
    for stream in streams:
        assert stream.status == 200 and stream.next().event == "snapshot"

    assert _wait_for_turn(streams[0], 1)[-1] == 1
    redis = app.extensions["marquee"].redis

    def last_step() -> int:
        """When the scheduler's last admission step ran (epoch ms)."""
        return int(redis.client.hget(waiting_room_store.room_key(redis, showtime), "tick_ms"))

    admitted_at = last_step()
    background.until(lambda: last_step() >= admitted_at + 1500, 10, "two more admission steps")
    assert second.call("GET", f"/api/v1/queue/{entries[1]['id']}").json()["status"] == "waiting"  # max_active 1

    _buy(first, showtime, entries[0]["id"], background)
    assert first.call("GET", f"/api/v1/queue/{entries[0]['id']}").json()["status"] == "done"

    serving = _wait_for_turn(streams[1], 2)
    assert serving == sorted(serving) and set(serving) <= {0, 1, 2} and 1 in serving  # one at a time
    _buy(second, showtime, entries[1]["id"], background)
    assert second.call("GET", f"/api/v1/queue/{entries[1]['id']}").json()["status"] == "done"
    seat_map = requests.get(f"{routed.url}/api/v1/showtimes/{showtime}/seats", timeout=10).json()
    assert [s["status"] for s in seat_map["seats"]].count("booked") == 4
    for stream in streams:
        stream.close()
