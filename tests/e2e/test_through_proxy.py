"""End to end through the proxy: two real app instances (gunicorn, the test database)
behind ``python -m proxy``. Clients see one address; the request id a client sends is
the one in the proxy's log, on the app's log line and back in the response; the app
sees the client's address through X-Forwarded-For; an instance that dies costs a
browsing client nothing."""
from __future__ import annotations

import json
import threading

import pytest
import requests

from tests.conftest import start_app_instance
from tests.helpers import PASSWORD, free_port, stop_process
from tests.proxy.conftest import Proxy, wait_until


@pytest.fixture(scope="module")
def second_instance(live_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app2")
    port = free_port()
    proc = start_app_instance(port, tmp / "gunicorn.log", tmp / "prometheus")
    try:
        yield f"127.0.0.1:{port}", tmp / "gunicorn.log", proc
    finally:
        stop_process(proc)


@pytest.fixture
def proxy(live_server, second_instance, tmp_path):
    first = live_server.removeprefix("http://")
    proxy = Proxy(f"{first},{second_instance[0]}", tmp_path, strategy="round_robin")
    try:
        yield proxy
    finally:
        proxy.stop()


def _app_lines(*paths) -> list[dict]:
    lines = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    return lines


def test_a_customer_signs_up_and_browses_through_the_proxy(proxy, live_server_log, second_instance):
    base = proxy.url + "/api/v1"
    created = requests.post(base + "/auth/register", json={
        "email": "viaproxy@test.example", "password": PASSWORD, "name": "Via Proxy"}, timeout=10)
    assert created.status_code == 201, created.text
    login = requests.post(base + "/auth/login", json={"email": "viaproxy@test.example", "password": PASSWORD},
                          headers={"X-Request-ID": "e2e-login-1", "X-Forwarded-For": "198.51.100.9"},
                          timeout=10)
    assert login.status_code == 200 and login.headers["X-Request-ID"] == "e2e-login-1"
    token = login.json()["access_token"]
    me = requests.get(base + "/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert me.json()["email"] == "viaproxy@test.example"
    bad = requests.post(base + "/auth/login", json={"email": "nobody"}, timeout=10)
    assert bad.status_code in (400, 422) and bad.headers["Content-Type"].startswith("application/problem+json")

    # the same request id in the proxy's access log and on the app's line
    wait_until(lambda: any(line.get("request_id") == "e2e-login-1" for line in proxy.log_lines()), 5,
               what="the proxy's log line")
    app_line = wait_until(lambda: next((line for line in _app_lines(live_server_log, second_instance[1])
                                        if line.get("request_id") == "e2e-login-1"
                                        and line.get("logger") == "marquee.access"), None),
                          5, what="the app's log line")
    assert app_line["path"] == "/api/v1/auth/login" and app_line["status"] == 200
    # the proxy (127.0.0.1, trusted) appended what it saw; the app takes the client's hop
    assert app_line["remote_addr"] == "127.0.0.1" and app_line["client"] == "198.51.100.9"


def test_both_instances_serve_and_a_dying_one_costs_browsers_nothing(proxy, live_server, second_instance):
    address, _, proc = second_instance
    errors: list = []
    stop = threading.Event()
    served = []

    def browse():
        with requests.Session() as session:
            while not stop.is_set():
                response = session.get(proxy.url + "/api/v1/movies", timeout=10)
                (served if response.status_code == 200 else errors).append(response.status_code)

    threads = [threading.Thread(target=browse) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(served) >= 30, 20, what="traffic")
        assert proxy.backend_status(address)["requests"] > 0
        proc.kill()  # the gunicorn master: its workers follow
        proc.wait(10)
        count = len(served)
        wait_until(lambda: len(served) >= count + 60, 30, what="traffic after the kill")
        wait_until(lambda: proxy.backend_status(address)["state"] == "down", 10, what="ejection")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
