"""The queue's public status served by the live process (API.md, "Waiting room for
on-sales"): the app's answer byte for byte, cacheable for a second, from Redis alone and at
most one Redis read per showtime a second however many ask; 404 without a room, problems
as the events path gives them; pipelined requests answered in order. Against the real live
process, with the room set through the app's API."""
from __future__ import annotations

import json
import math
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import requests

from app.adapters import waiting_room_store
from app.services import waiting_room
from tests.helpers import free_port
from tests.live.conftest import wait_until


def _put_room(api, admin, showtime: int, **settings) -> None:
    body = {"opens_at": (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat(),
            "admit_per_minute": 6000, "max_active": 100, "session_seconds": 600, **settings}
    response = api.call("PUT", f"/api/v1/showtimes/{showtime}/waiting-room", admin, json=body)
    assert response.status_code == 200, response.json


def _path(showtime: int) -> str:
    return f"/api/v1/showtimes/{showtime}/queue/status"


def _reads(live) -> float:
    return live.metrics()["marquee_live_queue_status_reads_total"]


def test_the_status_is_the_apps_answer_with_its_cache_control(start_live, app, api, admin, showtime):
    _put_room(api, admin, showtime)
    live = start_live()
    response = requests.get(live.url + _path(showtime), timeout=5)
    from_app = api.get(_path(showtime))
    assert response.status_code == 200 and response.content == from_app.data
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == from_app.headers["Cache-Control"] == "public, max-age=1"
    assert "on" not in response.json() and response.json()["serving_number"] == 0
    for n in range(2):
        token = api.make_user(f"waiting{n}@test.example")
        assert api.post(f"/api/v1/showtimes/{showtime}/queue", {}, token).status_code == 201
    with app.app_context():
        waiting_room.admit_all()
    changed = api.get(_path(showtime)).data
    assert json.loads(changed)["serving_number"] == 2
    started = time.monotonic()
    wait_until(lambda: requests.get(live.url + _path(showtime), timeout=5).content == changed, 3, 0.05,
               "the new status")
    assert time.monotonic() - started < 1.5  # reused for a second at most


def test_no_waiting_room_is_404_and_a_room_turned_off_becomes_404(start_live, api, admin, showtime):
    live = start_live()
    for showtime_id in (showtime, showtime + 1000):
        response = requests.get(live.url + _path(showtime_id), timeout=5)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
        assert response.headers["Content-Type"] == "application/problem+json"
    _put_room(api, admin, showtime)
    wait_until(lambda: requests.get(live.url + _path(showtime), timeout=5).status_code == 200, 3, 0.05, "the room")
    assert api.delete(f"/api/v1/showtimes/{showtime}/waiting-room", admin).status_code == 204
    wait_until(lambda: requests.get(live.url + _path(showtime), timeout=5).status_code == 404, 3, 0.05, "its end")
    assert api.get(_path(showtime)).status_code == 404  # as the app answers


def test_what_cannot_be_served_gets_a_problem_document(start_live, api, admin, showtime):
    _put_room(api, admin, showtime)
    live = start_live()
    for response, status, code in (
            (requests.get(live.url + _path(showtime) + "?since=0-0", timeout=5), 400, "unknown_parameter"),
            (requests.get(live.url + _path(showtime) + "?fresh", timeout=5), 400, "unknown_parameter"),
            (requests.post(live.url + _path(showtime), timeout=5), 405, "method_not_allowed"),
            (requests.get(live.url + "/api/v1/showtimes/0/queue/status", timeout=5), 404, "not_found")):
        assert response.status_code == status, response.request.url
        assert response.json()["code"] == code and response.headers["Cache-Control"] == "no-store"
    assert _reads(live) == 0


def test_two_hundred_requests_within_a_second_cost_at_most_a_couple_of_redis_reads(start_live, app, api, admin,
                                                                                   showtime):
    _put_room(api, admin, showtime)
    live = start_live()
    bodies: list[bytes] = []

    def poll() -> None:
        with requests.Session() as session:
            for _ in range(10):
                response = session.get(live.url + _path(showtime), timeout=5)
                assert response.status_code == 200
                bodies.append(response.content)

    threads = [threading.Thread(target=poll) for _ in range(20)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert len(bodies) == 200 and len(set(bodies)) == 1
    assert 1 <= _reads(live) <= math.ceil(elapsed) + 1 and (elapsed > 1 or _reads(live) <= 2), elapsed
    assert live.metrics()["marquee_live_queue_status_served_total"] == 200


def test_an_answer_is_reused_without_reading_redis_and_for_a_second_at_most(start_live, app, api, admin, showtime):
    """What Redis holds is changed behind the room's back: the old answer is given while no
    read is counted, and the new one within a second."""
    _put_room(api, admin, showtime)
    live = start_live()
    old = requests.get(live.url + _path(showtime), timeout=5).content
    reads = _reads(live)
    client = app.extensions["marquee"].redis.client
    room = waiting_room_store.room_key(app.extensions["marquee"].redis, showtime)
    published = json.loads(client.hget(room, "published"))
    client.hset(room, "published", json.dumps({**published, "serving_number": 7}))
    changed_at = time.monotonic()
    while (body := requests.get(live.url + _path(showtime), timeout=5).content) == old:
        assert _reads(live) == reads  # the old answer only while Redis was not read again
        assert time.monotonic() - changed_at < 1.2  # and for a second at most
    assert json.loads(body)["serving_number"] == 7 and _reads(live) == reads + 1


def test_requests_that_arrive_together_share_one_read(start_live, api, admin, showtime):
    _put_room(api, admin, showtime)
    live = start_live()
    request = f"GET {_path(showtime)} HTTP/1.1\r\nHost: live\r\n\r\n".encode()
    sockets = [socket.create_connection(("127.0.0.1", live.port), timeout=5) for _ in range(50)]
    try:
        for sock in sockets:
            sock.sendall(request)
        heads = [_responses(sock, 1)[0] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert {head.split(b"\r\n", 1)[0] for head, _ in heads} == {b"HTTP/1.1 200 OK"}
    assert len({body for _, body in heads}) == 1
    assert _reads(live) == 1


def test_pipelined_requests_are_answered_in_their_order(start_live, api, admin, showtime):
    """The first status must be read from Redis; the health check behind it waits for it."""
    _put_room(api, admin, showtime)
    live = start_live()
    pipelined = [f"GET {_path(showtime)} HTTP/1.1\r\nHost: live\r\nX-Request-ID: first-{n}\r\n\r\n" for n in range(2)]
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall((pipelined[0] + "GET /health HTTP/1.1\r\nHost: live\r\n\r\n" + pipelined[1]
                      + f"GET {_path(showtime + 1000)} HTTP/1.1\r\nHost: live\r\n\r\n").encode())
        answers = _responses(sock, 4)
    assert [body[:1] for _, body in answers] == [b"{"] * 4
    assert b"X-Request-ID: first-0" in answers[0][0] and b'"serving_number"' in answers[0][1]
    assert answers[1][1] == b'{"status": "ok"}'
    assert b"X-Request-ID: first-1" in answers[2][0] and answers[2][1] == answers[0][1]
    assert answers[3][0].startswith(b"HTTP/1.1 404") and b"no waiting room" in answers[3][1]


def test_without_redis_the_status_is_503_and_the_process_stays_up(start_live, showtime):
    live = start_live(env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    response = requests.get(live.url + _path(showtime), timeout=10)
    assert response.status_code == 503 and response.json()["code"] == "service_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert requests.get(live.url + "/health", timeout=5).status_code == 200


def _responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` responses (head, body) read from ``sock``, in the order they came."""
    raw, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536)
        head, raw = raw.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(raw) < length:
            raw += sock.recv(65536)
        answers.append((head, raw[:length]))
        raw = raw[length:]
    return answers
