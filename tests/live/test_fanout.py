"""Many watchers, one reader: each showtime is read from Redis once whatever the number of
its watchers; a client that resumes (after its own disconnect, or after the live process was
killed and restarted) misses nothing and gets nothing twice while changes keep coming; a
client that does not read is cut off and the others go on; a stop ends streams cleanly."""
from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.live.conftest import wait_until


def _readers(changes, showtime_id: int) -> list[dict]:
    """The live process's connections that read the showtime's stream (CLIENT LIST)."""
    db = changes.client.connection_pool.connection_kwargs.get("db", 0)
    name = f"marquee-live:mqtest:st:{showtime_id}"
    return [c for c in changes.client.client_list() if c["name"] == name and int(c["db"]) == db]


class Writer(threading.Thread):
    """Adds ``count`` changes, one every ``pause`` seconds, as another process would."""

    def __init__(self, changes, count: int, pause: float) -> None:
        super().__init__(daemon=True)
        self.changes, self.count, self.pause = changes, count, pause
        self.versions: list[str] = []

    def run(self) -> None:
        for n in range(self.count):
            self.versions.append(self.changes.add((n % 6 + 1, "held" if n % 2 else "available")))
            time.sleep(self.pause)


def test_one_redis_reader_per_showtime_whatever_the_number_of_watchers(start_live, api, admin, catalog, showtime,
                                                                       changes):
    other = api.showtime(admin, catalog["movie"], catalog["screen"],
                         starts_at=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3))["id"]
    live = start_live(linger_seconds=0.5, read_block_ms=100)
    streams = [live.stream(showtime, since="0-0") for _ in range(25)] + [live.stream(other, since="0-0")
                                                                        for _ in range(5)]
    wait_until(lambda: live.metrics()["marquee_live_watchers"] == 30, 5, 0.05, "the watchers")
    version = changes.add((1, "held"))
    assert all(stream.next().id == version for stream in streams[:25])
    assert len(_readers(changes, showtime)) == 1 and len(_readers(changes, other)) == 1
    metrics = live.metrics()
    assert metrics["marquee_live_watchers"] == 30
    assert metrics["marquee_live_showtimes_followed"] == 2 and metrics["marquee_live_redis_readers"] == 2
    assert metrics["marquee_live_events_sent_total"] == 25  # one change, 25 watchers
    for stream in streams:
        stream.close()
    # a little after its last watcher leaves, a showtime is no longer followed
    wait_until(lambda: live.metrics()["marquee_live_showtimes_followed"] == 0, 5, 0.1, "the followers to stop")
    wait_until(lambda: not _readers(changes, showtime) and not _readers(changes, other), 5, 0.1, "readers gone")


def test_a_client_that_resumes_while_changes_keep_coming_misses_nothing_and_gets_nothing_twice(
        start_live, showtime, changes):
    live = start_live()
    start = changes.add((1, "held"))
    watcher = live.stream(showtime, since=start)  # keeps the showtime followed throughout
    writer = Writer(changes, 400, 0.004)
    writer.start()
    received, last, rounds = [], start, 0
    while not writer.versions or last != writer.versions[-1] or writer.is_alive():
        stream = live.stream(showtime, last_event_id=last)
        try:
            for _ in range(7 + rounds % 11):  # a few changes, then hang up mid-stream
                event = stream.next(timeout=1.5)
                received.append(event.id)
                last = event.id
        except TimeoutError:
            pass  # the writer is done: nothing more to read
        stream.close()
        rounds += 1
    writer.join()
    assert rounds > 20
    assert received == writer.versions  # in order, none missing, none twice
    assert [e.id for e in watcher.changes(len(writer.versions))] == writer.versions


def test_after_a_crash_and_a_restart_clients_resume_from_their_last_id_and_miss_nothing(
        start_live, showtime, changes):
    live = start_live()
    start = changes.add((1, "held"))
    clients = [{"last": start, "received": [], "stream": live.stream(showtime, since=start)} for _ in range(5)]
    writer = Writer(changes, 300, 0.01)
    writer.start()

    def read_some(count: int) -> None:
        for client in clients:
            for _ in range(count):
                event = client["stream"].next(timeout=5)
                client["received"].append(event.id)
                client["last"] = event.id

    read_some(20)
    live.kill()
    time.sleep(0.3)  # changes go on while it is down
    live.start()  # as supervisord would
    for client in clients:
        with pytest.raises((EOFError, ConnectionError, OSError)):
            while True:  # what was sent before the crash, then the end of the connection
                event = client["stream"].next(timeout=5)
                client["received"].append(event.id)
                client["last"] = event.id
        client["stream"] = live.stream(showtime, last_event_id=client["last"])
    writer.join()
    for client in clients:
        while client["last"] != writer.versions[-1]:
            event = client["stream"].next(timeout=5)
            client["received"].append(event.id)
            client["last"] = event.id
        assert client["received"] == writer.versions


def test_a_client_that_does_not_read_is_cut_off_and_the_others_keep_receiving(start_live, showtime, changes):
    live = start_live(client_buffer_bytes=64 * 1024)
    stuck = live.stream(showtime, since="0-0", rcvbuf=4096)  # never read
    reader = live.stream(showtime, since="0-0")
    wait_until(lambda: live.metrics()["marquee_live_watchers"] == 2, 5, 0.05, "both watchers")
    big = [(seat, "held") for seat in range(1, 701)]  # about 17 KB a change
    versions = []

    def write() -> None:
        for _ in range(500):  # about 8 MB: past the kernel's buffers and the 64 KiB limit
            versions.append(changes.add(*big))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    got = [reader.next(timeout=10).id for _ in range(500)]
    writer.join()
    assert got == versions
    metrics = live.metrics()
    assert metrics["marquee_live_clients_cut_total"] == 1 and metrics["marquee_live_watchers"] == 1
    with pytest.raises((EOFError, ConnectionError)):  # what the kernel held, then the cut
        while True:
            stuck.next(timeout=5)


def test_a_stop_ends_every_stream_cleanly_and_logs_it(start_live, showtime, changes):
    live = start_live()
    streams = [live.stream(showtime, since="0-0") for _ in range(3)]
    version = changes.add((2, "held"))
    assert all(stream.next().id == version for stream in streams)
    live.proc.send_signal(signal.SIGTERM)
    assert live.proc.wait(10) == 0
    for stream in streams:
        with pytest.raises(EOFError, match="stream ended"):  # the chunked body's last chunk came
            stream.next()
    lines = [json.loads(line) for line in live.log_path.read_text().splitlines() if line.startswith("{")]
    ended = [line for line in lines if line["message"] == "stream ended"]
    assert len(ended) == 3 and {line["reason"] for line in ended} == {"shutdown"}
    assert all(line["showtime_id"] == showtime and line["request_id"] for line in ended)


def test_a_hold_that_runs_out_shows_on_the_stream_with_no_request_touching_the_showtime(
        start_live, app, api, showtime):
    from app.services import seats

    user_id = api.get("/api/v1/users/me", api.make_user("watcher@test.example")).json["id"]
    live = start_live()
    stream = live.stream(showtime, since="0-0")
    wait_until(lambda: live.metrics()["marquee_live_watchers"] == 1, 5, 0.05, "the watcher")
    with app.app_context():
        seats.take_hold(user_id, showtime, [1, 2], 1)
    held = stream.next()
    assert held.json["seats"] == [{"id": 1, "status": "held"}, {"id": 2, "status": "held"}]
    started = time.monotonic()
    expired = stream.next(timeout=5)  # the hold's second, then at most about one more
    assert expired.json["seats"] == [{"id": 1, "status": "available"}, {"id": 2, "status": "available"}]
    assert time.monotonic() - started < 2.5
