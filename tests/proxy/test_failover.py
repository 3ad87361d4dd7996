"""Backends that die: clients of idempotent requests notice nothing, the dead backend is
ejected and comes back after passing its checks; a POST that reached a backend is never
sent again; nothing left gives 503 with problem JSON."""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import requests

from tests.helpers import free_port
from tests.proxy.conftest import wait_until


def test_a_backend_killed_under_a_stream_of_gets_costs_clients_nothing(live_backends, start_proxy):
    b1, b2, b3 = live_backends
    proxy = start_proxy(live_backends.spec(), strategy="round_robin")
    stop = threading.Event()
    errors: list[str] = []
    seen: Counter = Counter()
    lock = threading.Lock()

    def client():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.get(proxy.url + "/whoami", timeout=10)
                    ok = response.status_code == 200
                    with lock:
                        if ok:
                            seen[response.json()["backend"]] += 1
                        else:
                            errors.append(f"{response.status_code} {response.text[:200]}")
                except requests.RequestException as exc:
                    with lock:
                        errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: seen["b2"] >= 20, 20, what="traffic on b2")
        b2.kill()
        killed_at = sum(seen.values())
        wait_until(lambda: proxy.backend_status(b2.address)["state"] == "down", 10, what="b2 ejected")
        wait_until(lambda: sum(seen.values()) >= killed_at + 200, 30, what="traffic after the kill")
        before_return = seen["b2"]
        b2.ensure_running()
        wait_until(lambda: proxy.backend_status(b2.address)["state"] == "up", 15, what="b2 back")
        wait_until(lambda: seen["b2"] >= before_return + 20, 20, what="traffic on b2 again")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert proxy.backend_status(b2.address)["ejections"] >= 1
    events = [line.get("event") for line in proxy.log_lines()]
    assert "backend_down" in events and "backend_up" in events


def test_a_post_that_reached_a_backend_which_died_is_not_sent_again(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), strategy="round_robin")
    request_id = uuid.uuid4().hex
    response = requests.post(proxy.url + "/die", data=b"pay for seat A1",
                             headers={"X-Request-ID": request_id}, timeout=10)
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["request_id"] == request_id
    assert response.json()["code"] == "bad_gateway"
    receipts = [r for r in live_backends.received() if r["request_id"] == request_id]
    assert len(receipts) == 1, receipts  # it reached one backend, once


def test_an_idempotent_request_whose_backend_died_is_retried_elsewhere(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), strategy="round_robin")
    request_id = uuid.uuid4().hex
    response = requests.get(proxy.url + "/die?on=b1", headers={"X-Request-ID": request_id}, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"backend": "b2", "survived": True}
    receipts = [r["backend"] for r in live_backends.received() if r["request_id"] == request_id]
    assert receipts == ["b1", "b2"]


def test_a_connect_failure_is_retried_even_for_a_post(live_backends, start_proxy):
    """Nothing reached the dead address, so even a POST goes to the next backend."""
    dead = f"127.0.0.1:{free_port()}"
    proxy = start_proxy(f"{dead},{live_backends[0].address}", strategy="round_robin",
                        health_interval=60)
    for _ in range(2):
        response = requests.post(proxy.url + "/echo", data=b"x" * 100, timeout=10)
        assert response.status_code == 200
        assert response.json()["length"] == 100
    status = proxy.backend_status(dead)
    assert status["state"] == "down" and status["ejections"] == 1


def test_all_backends_down_gives_503_problem_json(start_proxy):
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(3))
    proxy = start_proxy(dead)
    wait_until(lambda: all(b["state"] == "down" for b in proxy.status()["backends"]), 10,
               what="every backend down")
    for method in ("GET", "POST"):
        response = requests.request(method, proxy.url + "/whoami", data=b"x", timeout=10)
        assert response.status_code == 503
        assert response.headers["Content-Type"] == "application/problem+json"
        body = response.json()
        assert body["status"] == 503 and body["title"] == "Service Unavailable"
        assert body["code"] == "no_backend"
        assert body["request_id"] == response.headers["X-Request-ID"]


def test_without_panic_failing_checks_everywhere_give_503(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), panic_threshold=0)
    for backend in live_backends:
        backend.set_health(False)
    wait_until(lambda: all(b["state"] == "down" for b in proxy.status()["backends"]), 10,
               what="every backend down")
    refused = requests.get(proxy.url + "/whoami", timeout=10)
    assert refused.status_code == 503 and refused.json()["code"] == "no_backend"
    assert refused.headers["Content-Type"] == "application/problem+json"
    for backend in live_backends:
        backend.set_health(True)
    wait_until(lambda: requests.get(proxy.url + "/whoami", timeout=10).status_code == 200, 10,
               what="service back")


def test_when_checks_fail_almost_everywhere_the_proxy_panics_and_keeps_serving(live_backends, start_proxy):
    """Under overload /health answers late everywhere: ejecting every backend would turn a
    slow service into no service. Below half healthy the proxy uses them all."""
    proxy = start_proxy(live_backends.spec(), strategy="round_robin")
    for backend in live_backends[:2]:
        backend.set_health(False)
    wait_until(lambda: proxy.status()["panic"], 10, what="panic")
    with requests.Session() as session:
        seen = Counter(session.get(proxy.url + "/whoami", timeout=10).json()["backend"] for _ in range(30))
    assert seen == {"b1": 10, "b2": 10, "b3": 10}
    metrics = requests.get(proxy.admin + "/metrics", timeout=5).text
    assert 'marquee_proxy_panic{pool="default"} 1.0' in metrics  # the flat form's one pool
    for backend in live_backends:
        backend.set_health(True)
    wait_until(lambda: not proxy.status()["panic"], 10, what="the end of the panic")


def test_a_returning_backend_ramps_up_instead_of_taking_a_full_share(live_backends, start_proxy):
    b1, b2, b3 = live_backends
    proxy = start_proxy(live_backends.spec(), strategy="round_robin", slow_start=30)
    b3.set_health(False)
    wait_until(lambda: proxy.backend_status(b3.address)["state"] == "down", 10, what="b3 down")
    b3.set_health(True)
    wait_until(lambda: proxy.backend_status(b3.address)["state"] == "up", 10, what="b3 up")
    with requests.Session() as session:
        seen = Counter(session.get(proxy.url + "/whoami", timeout=10).json()["backend"]
                       for _ in range(60))
    # at the start of a 30 s ramp b3 weighs about a tenth of the others: ~3 of 60, not 20
    assert seen["b3"] <= 8, seen
    assert proxy.backend_status(b3.address)["effective_weight"] < 1


def test_an_upstream_that_never_answers_gives_504(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), read_timeout=0.5, max_tries=1)
    started = time.monotonic()
    response = requests.post(proxy.url + "/slow?ms=3000", timeout=10)
    assert response.status_code == 504
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 504 and response.json()["code"] == "gateway_timeout"
    assert time.monotonic() - started < 2.5
