"""The waiting room on the seat events stream (API.md, "Waiting room for on-sales"): every
status the room pushes reaches every watcher as ``event: queue`` with the status as
pushed and no id (a client's Last-Event-ID stays the seat map's version); a watcher that
joins gets the current status right after its snapshot or catch-up; and seat changes are
still delivered once each and in order whatever statuses come between. Against the real
live process, with the room changed through the app's API and services."""
from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

from app.adapters import waiting_room_store
from app.services import waiting_room
from live import sse
from live.config import LiveSettings
from live.followers import Follower, Followers
from live.metrics import LiveMetrics
from tests.live.conftest import wait_until


def _put_room(api, admin, showtime: int, *, opens_in: float = -1, **settings) -> None:
    body = {"opens_at": (datetime.now(timezone.utc) + timedelta(seconds=opens_in)).isoformat(),
            "admit_per_minute": 6000, "max_active": 100, "session_seconds": 600, **settings}
    response = api.call("PUT", f"/api/v1/showtimes/{showtime}/waiting-room", admin, json=body)
    assert response.status_code == 200, response.json


def _pushed(app, showtime: int) -> list[dict]:
    """Every status the room pushed, in order (its status stream)."""
    client = app.extensions["marquee"].redis.client
    key = waiting_room_store.events_key(app.extensions["marquee"].redis, showtime)
    return [json.loads(fields[b"queue"]) for _, fields in client.xrange(key)]


def _published(app, showtime: int) -> dict:
    return app.extensions["marquee"].waiting_rooms.public_status(showtime)


def _join(api, showtime: int, count: int) -> None:
    for n in range(count):
        token = api.make_user(f"waiting{showtime}.{n}@test.example")
        assert api.post(f"/api/v1/showtimes/{showtime}/queue", {}, token).status_code == 201


def _admit(app) -> None:
    with app.app_context():
        waiting_room.admit_all()


def _queue(stream, timeout: float = 5):
    event = stream.next(timeout)
    assert (event.event, event.id) == ("queue", None), event
    return event.json


def test_every_status_the_room_pushes_reaches_the_watchers_as_queue_events_without_an_id(
        start_live, app, api, admin, showtime, changes):
    live = start_live()
    streams = [live.stream(showtime), live.stream(showtime, since="0-0")]
    assert streams[0].next().event == "snapshot"
    wait_until(lambda: live.metrics()["marquee_live_watchers"] == 2, 5, 0.05, "the watchers")
    _put_room(api, admin, showtime, opens_in=60)  # on, not open yet
    _put_room(api, admin, showtime)  # open now
    _join(api, showtime, 3)
    _admit(app)
    seat_change = changes.add((1, "held"))
    response = api.delete(f"/api/v1/showtimes/{showtime}/waiting-room", admin)
    assert response.status_code == 204
    pushed = _pushed(app, showtime)
    assert [(s["on"], s["open"], s["serving_number"], s["last_number"]) for s in pushed] == [
        (True, False, 0, 0), (True, True, 0, 0), (True, True, 3, 3), (False, False, 3, 3)]
    for stream in streams:
        assert [_queue(stream) for _ in range(3)] == pushed[:3]
        change = stream.next()
        assert (change.event, change.id) == ("seats", seat_change)  # seat changes keep their ids
        assert _queue(stream) == pushed[3]
        with pytest.raises(TimeoutError):
            stream.next(timeout=0.5)
    assert live.metrics()["marquee_live_queue_events_sent_total"] == 8


def test_a_new_watcher_gets_the_current_status_right_after_its_snapshot(start_live, app, api, admin, showtime,
                                                                         changes):
    _put_room(api, admin, showtime)
    _join(api, showtime, 2)
    _admit(app)
    changes.add((2, "held"))
    current = _published(app, showtime)
    assert current["serving_number"] == 2
    live = start_live()
    first = live.stream(showtime)  # the follower starts: it reads the status
    assert first.next().event == "snapshot" and _queue(first) == current
    wait_until(lambda: live.metrics()["marquee_live_watchers"] == 1, 5, 0.05, "the first watcher")
    second = live.stream(showtime)  # the follower runs: it has the status
    assert second.next().event == "snapshot" and _queue(second) == current
    for stream in (first, second):
        with pytest.raises(TimeoutError):
            stream.next(timeout=0.5)


def test_without_a_status_stream_the_rooms_published_status_is_the_current_one(start_live, app, api, admin,
                                                                                 showtime):
    _put_room(api, admin, showtime)
    client = app.extensions["marquee"].redis.client
    client.delete(waiting_room_store.events_key(app.extensions["marquee"].redis, showtime))
    live = start_live()
    stream = live.stream(showtime)
    assert stream.next().event == "snapshot" and _queue(stream) == _published(app, showtime)
    wait_until(lambda: live.metrics()["marquee_live_watchers"] == 1, 5, 0.05, "the watcher")
    _join(api, showtime, 1)
    _admit(app)  # the stream starts again: followed from its start
    assert _queue(stream)["serving_number"] == 1


def test_a_showtime_without_a_waiting_room_gets_no_queue_event(start_live, showtime):
    live = start_live()
    stream = live.stream(showtime)
    assert stream.next().event == "snapshot"
    with pytest.raises(TimeoutError):
        stream.next(timeout=1)


def test_a_resuming_watcher_gets_its_changes_then_the_current_status_then_the_live_ones(
        start_live, app, api, admin, showtime, changes):
    _put_room(api, admin, showtime)
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3, 4)]
    live = start_live()
    follows = live.stream(showtime, since=versions[-1])  # the follower runs from here
    assert _queue(follows) == _published(app, showtime)
    wait_until(lambda: live.metrics()["marquee_live_watchers"] == 1, 5, 0.05, "the watcher")
    resumed = live.stream(showtime, last_event_id=versions[1])
    assert [(e.event, e.id) for e in resumed.changes(2)] == [("seats", v) for v in versions[2:]]
    assert _queue(resumed) == _published(app, showtime)
    _join(api, showtime, 1)
    _admit(app)
    later = changes.add((5, "held"))
    for stream in (follows, resumed):
        assert _queue(stream)["serving_number"] == 1
        assert stream.next().id == later


def test_resuming_during_a_sale_misses_no_seat_change_and_sees_every_status_in_order(
        start_live, app, api, admin, showtime, changes):
    """Seat changes and statuses keep coming (an admin raising the rate meanwhile); the client
    hangs up again and again and resumes from its last id: each seat change once, in order;
    each stream starts with the status of the moment, and the rates only ever grow."""
    _put_room(api, admin, showtime, admit_per_minute=1000)
    live = start_live()
    start = changes.add((1, "held"))
    watcher = live.stream(showtime, since=start)  # keeps the showtime followed throughout
    assert _queue(watcher)["admit_per_minute"] == 1000
    done = threading.Event()
    versions: list[str] = []

    def write_seats() -> None:
        for n in range(300):
            versions.append(changes.add((n % 6 + 1, "held" if n % 2 else "available")))
            done.wait(0.005)

    def raise_rates() -> None:
        with app.app_context():
            opens_at = datetime.now(timezone.utc) - timedelta(seconds=1)
            for rate in range(1001, 1041):
                waiting_room.configure(showtime, opens_at, rate, 100, 600, actor=None)
                done.wait(0.03)

    threads = [threading.Thread(target=write_seats, daemon=True), threading.Thread(target=raise_rates, daemon=True)]
    for thread in threads:
        thread.start()
    received, last, sessions = [], start, []
    while any(thread.is_alive() for thread in threads) or last != versions[-1]:
        stream = live.stream(showtime, last_event_id=last)
        rates, changes_read = [], 0
        try:
            while not rates or changes_read < 5 + len(sessions) % 7:  # its first status and a few changes
                event = stream.next(timeout=1.5)
                if event.event == "queue":
                    assert event.id is None and len(rates) < 41  # each status at most once
                    rates.append(event.json["admit_per_minute"])
                else:
                    received.append(event.id)
                    last, changes_read = event.id, changes_read + 1
        except TimeoutError:
            assert rates, "a stream without its current status"
        stream.close()
        sessions.append(rates)
    done.set()
    assert len(sessions) > 20
    assert received == versions  # in order, none missing, none twice
    assert all(rates == sorted(set(rates)) for rates in sessions)  # states in the order they were pushed
    firsts = [rates[0] for rates in sessions]
    assert firsts == sorted(firsts) and firsts[-1] == 1040  # each the current one when it joined
    statuses = [1000]
    while statuses[-1] != 1040:
        event = watcher.next(timeout=5)
        if event.event == "queue":
            assert len(statuses) < 41
            statuses.append(event.json["admit_per_minute"])
    assert statuses == list(range(1000, 1041))  # the first watcher: every status, once, in order


# -- the follower's hand-over, with its read position set by the test ----------------------------

class Recorder:
    """A watcher that keeps what it is sent: ``("seats", version)`` and ``("queue", rate)``."""

    def __init__(self) -> None:
        self.closed = False
        self.sent: list[tuple[str, object]] = []

    def send(self, frame) -> bool:
        for message in frame.raw.decode().split("\n\n")[:-1]:
            lines = dict(line.split(": ", 1) for line in message.split("\n"))
            if lines["event"] == "queue":
                assert "id" not in lines
                self.sent.append(("queue", json.loads(lines["data"])["admit_per_minute"]))
            else:
                self.sent.append(("seats", lines["id"]))
        return True

    def end(self, frame=None, reason: str = "") -> None:
        self.closed = True


def _status(rate: int) -> dict:
    """A status stream entry's fields."""
    return {"queue": json.dumps({"showtime_id": 1, "on": True, "admit_per_minute": rate})}


def _frame(rate: int):
    return sse.queue_event(_status(rate)["queue"])


def _run(app, showtime_id: int, scenario):
    async def main():
        hub = Followers(app.extensions["marquee"], LiveSettings(), LiveMetrics(None), executor=None)
        try:
            return await scenario(Follower(hub, showtime_id))
        finally:
            await hub.redis.aclose()

    return asyncio.run(main())


def test_statuses_reach_watchers_ahead_of_the_reader_and_seat_changes_keep_their_order(app, showtime, changes):
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3, 4)]
    ahead, behind = Recorder(), Recorder()

    async def scenario(follower):
        follower.last_id = versions[0]  # the reader lags: a snapshot at versions[2] is newer
        follower.queue_status = _frame(7)
        await follower.join(ahead, versions[2])
        await follower.join(behind, versions[0])
        await follower.deliver([], [("1-0", _status(8))])  # while a watcher is still ahead
        await follower.deliver([(v, {"seats": "[]"}) for v in versions[1:]], [("1-1", _status(9)), ("1-2", _status(10))])
        await follower.deliver([("9999999999999-0", {"seats": "[]"}), ("9999999999999-1", {"seats": "[]"})],
                               [("1-3", _status(11))])

    _run(app, showtime, scenario)
    after = [("queue", 9), ("queue", 10), ("seats", "9999999999999-0"), ("seats", "9999999999999-1"), ("queue", 11)]
    assert ahead.sent == [("queue", 7), ("queue", 8), ("seats", versions[3]), *after]
    assert behind.sent == [("queue", 7), ("queue", 8), *(("seats", v) for v in versions[1:]), *after]


def test_a_watcher_catching_up_gets_the_status_after_its_changes_and_then_every_later_one(app, showtime, changes):
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3, 4)]
    watcher = Recorder()

    async def scenario(follower):
        follower.last_id = versions[2]
        follower.queue_status = _frame(7)
        joining = asyncio.create_task(follower.join(watcher, versions[0]))
        await asyncio.sleep(0)  # the catch-up read is under way: the reader waits for it
        await follower.deliver([(versions[3], {"seats": "[]"})], [("1-0", _status(8))])
        await joining

    _run(app, showtime, scenario)
    assert watcher.sent == [("seats", versions[1]), ("seats", versions[2]), ("queue", 7), ("seats", versions[3]),
                            ("queue", 8)]
