"""What one event stream says: the snapshot first (without a version), exactly the changes
after a version (with one), then the live ones; reset for a version the stream no longer
holds; heartbeats; problem documents for what cannot be served. Against the real live
process, the suite's Redis and database."""
from __future__ import annotations

import socket

import pytest
import requests

from tests.helpers import free_port


def test_a_stream_without_a_version_starts_with_the_snapshot_then_follows(start_live, showtime, changes):
    live = start_live()
    before = changes.add((1, "held"))
    stream = live.stream(showtime)
    snapshot = stream.next()
    assert stream.status == 200 and stream.headers["content-type"] == "text/event-stream"
    assert snapshot.event == "snapshot" and snapshot.id == before
    seat_map = snapshot.json
    assert seat_map["showtime_id"] == showtime and seat_map["version"] == before
    assert len(seat_map["seats"]) == 6 and {"id", "status"} <= set(seat_map["seats"][0])
    after = changes.add((2, "booked"), (3, "held"))
    change = stream.next()  # the change after the snapshot's version, not the one before
    assert (change.event, change.id) == ("seats", after)
    assert change.json == {"showtime_id": showtime, "version": after,
                           "seats": [{"id": 2, "status": "booked"}, {"id": 3, "status": "held"}]}
    with pytest.raises(TimeoutError):
        stream.next(timeout=0.5)


def test_watchers_that_connect_together_share_one_snapshot(start_live, showtime):
    live = start_live()
    streams = [live.stream(showtime) for _ in range(30)]  # every request sent before any is read
    versions = {stream.next().id for stream in streams}
    assert versions == {"0-0"}
    assert live.metrics()["marquee_live_snapshots_total"] < len(streams)


def test_since_sends_exactly_the_changes_after_it_in_order_then_live_ones(start_live, showtime, changes):
    live = start_live()
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3, 4, 5)]
    stream = live.stream(showtime, since=versions[1])
    caught_up = stream.changes(3)
    assert [e.id for e in caught_up] == versions[2:]
    assert [e.json["seats"] for e in caught_up] == [[{"id": seat, "status": "held"}] for seat in (3, 4, 5)]
    later = changes.add((6, "held"))
    assert stream.next().id == later
    with pytest.raises(TimeoutError):
        stream.next(timeout=0.5)
    # a second watcher of the same (now followed) showtime catches up the same way
    again = live.stream(showtime, since=versions[3])
    assert [e.id for e in again.changes(2)] == [versions[4], later]


def test_last_event_id_wins_over_since_and_http10_streams_end_with_the_connection(start_live, showtime, changes):
    live = start_live()
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3)]
    stream = live.stream(showtime, since=versions[0], last_event_id=versions[1], http10=True)
    assert stream.next().id == versions[2]
    assert "transfer-encoding" not in stream.headers and stream.headers["connection"] == "close"


def test_a_version_from_a_missing_stream_is_reset_but_0_0_follows(start_live, showtime, changes):
    live = start_live()
    follows = live.stream(showtime, since="0-0")
    gone = live.stream(showtime, since="1700000000000-0")
    reset = gone.next()
    assert reset.event == "reset" and reset.id is None and reset.json["showtime_id"] == showtime
    with pytest.raises(EOFError):
        gone.next()
    first = changes.add((1, "held"))
    assert follows.next().id == first


def test_a_trimmed_version_is_reset_and_a_kept_one_resumes(start_live, showtime, changes):
    live = start_live()
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3, 4, 5)]
    changes.client.xtrim(changes.key, maxlen=2, approximate=False)  # versions[0..2] are gone
    for since in (versions[0], versions[2], "0-0", "9999999999999-0"):
        stream = live.stream(showtime, since=since)
        assert stream.next().event == "reset", since
        with pytest.raises(EOFError):
            stream.next()
    assert live.metrics()["marquee_live_resets_total"] == 4
    kept = live.stream(showtime, since=versions[3])
    assert kept.next().id == versions[4]
    last = live.stream(showtime, since=versions[4])  # the stream's last id
    changes.client.xdel(changes.key, versions[3])
    deleted = live.stream(showtime, since=versions[3])
    assert deleted.next().event == "reset"
    newer = changes.add((6, "held"))
    assert last.next().id == newer and kept.next().id == newer


def test_heartbeats_keep_an_idle_stream_open(start_live, showtime):
    live = start_live(heartbeat_seconds=0.3)
    stream = live.stream(showtime, since="0-0")
    beats = [stream.next(timeout=1.5, heartbeats=True) for _ in range(3)]
    assert all(beat.comment for beat in beats)


def test_what_cannot_be_served_gets_a_problem_document(start_live, showtime):
    live = start_live()
    base = f"{live.url}/api/v1/showtimes/{showtime}/seats/events"
    cases = [
        (requests.get(f"{live.url}/api/v1/showtimes/{showtime + 1000}/seats/events", timeout=5), 404, "not_found"),
        (requests.get(base + "?since=yesterday", timeout=5), 400, "invalid_version"),
        (requests.get(base, headers={"Last-Event-ID": "12"}, timeout=5), 400, "invalid_version"),
        (requests.get(base + "?since=0-0&since=0-0", timeout=5), 400, "invalid_version"),
        (requests.get(base + "?from=0-0", timeout=5), 400, "unknown_parameter"),
        (requests.post(base, timeout=5), 405, "method_not_allowed"),
        (requests.get(f"{live.url}/api/v1/showtimes/{showtime}/seats", timeout=5), 404, "not_found"),
        (requests.get(f"{live.url}/api/v1/showtimes/99999999999999999999/seats/events", timeout=5), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.request.url
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == code and response.json()["status"] == status
    assert cases[5][0].headers["Allow"] == "GET"
    health = requests.get(live.url + "/health", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert live.metrics()["marquee_live_showtimes_followed"] == 0  # an unknown showtime is not followed


def test_a_request_head_too_large_or_malformed_is_refused(start_live, showtime):
    live = start_live()
    for raw, status in ((b"GET /health HTTP/1.1\r\nX-Pad: " + b"x" * 20000 + b"\r\n\r\n", 431),
                        (b"NOT HTTP\r\n\r\n", 400), (b"GET http://live HTTP/1.1\r\nHost: live\r\n\r\n", 404)):
        with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
            sock.sendall(raw)
            assert sock.recv(65536).split(b"\r\n", 1)[0].split()[1] == str(status).encode()


def test_without_redis_a_stream_gets_503_and_the_process_stays_up(start_live, showtime):
    live = start_live(env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    response = requests.get(f"{live.url}/api/v1/showtimes/{showtime}/seats/events?since=0-0", timeout=10)
    assert response.status_code == 503 and response.json()["code"] == "service_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert requests.get(live.url + "/health", timeout=5).status_code == 200
