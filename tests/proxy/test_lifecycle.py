"""Operating the proxy: graceful stop on SIGTERM, draining one backend, reloading the
backend list on SIGHUP or from the admin port without dropping connections, status and
Prometheus metrics."""
from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time

import requests

from tests.proxy.conftest import Proxy, exchange, wait_until


def _slow_in_thread(url: str, results: list) -> threading.Thread:
    def go():
        try:
            response = requests.get(url, timeout=30)
            results.append((response.status_code, response.json().get("backend")))
        except requests.RequestException as exc:
            results.append(("error", repr(exc)))

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_sigterm_lets_in_flight_requests_finish_then_exits(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec())
    idle = socket.create_connection(("127.0.0.1", proxy.port))  # an idle keep-alive client
    results: list = []
    thread = _slow_in_thread(proxy.url + "/slow?ms=1500", results)
    wait_until(lambda: sum(b["in_flight"] for b in proxy.status()["backends"]) == 1, 5,
               what="the slow request in flight")
    proxy.proc.send_signal(signal.SIGTERM)
    # no new connections once stopping
    wait_until(lambda: _refused(proxy.port), 5, what="the listener to close")
    idle.settimeout(5)
    assert idle.recv(10) == b""  # idle connections are closed at once
    thread.join(30)
    assert results and results[0][0] == 200
    assert proxy.proc.wait(15) == 0
    events = [line.get("event") for line in proxy.log_lines()]
    assert "drain" in events and events[-1] == "stop"
    idle.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigterm_cuts_what_outlives_the_drain_deadline(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), drain_timeout=0.5)
    results: list = []
    thread = _slow_in_thread(proxy.url + "/slow?ms=5000", results)
    wait_until(lambda: sum(b["in_flight"] for b in proxy.status()["backends"]) == 1, 5,
               what="the slow request in flight")
    started = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0
    assert time.monotonic() - started < 3
    thread.join(30)
    assert results[0][0] == "error"


def test_draining_a_backend_finishes_its_requests_and_sends_it_no_more(live_backends, start_proxy):
    b1, b2, b3 = live_backends
    proxy = start_proxy(live_backends.spec(), strategy="round_robin")
    results: list = []
    thread = _slow_in_thread(proxy.url + "/slow?ms=1500", results)  # round-robin: b1 first
    wait_until(lambda: proxy.backend_status(b1.address)["in_flight"] == 1, 5, what="b1 busy")
    drained = requests.post(f"{proxy.admin}/backends/{b1.address}/drain", timeout=5).json()
    assert drained["state"] == "draining" and drained["in_flight"] == 1
    with requests.Session() as session:
        seen = {session.get(proxy.url + "/whoami", timeout=5).json()["backend"] for _ in range(20)}
    assert seen == {"b2", "b3"}
    thread.join(30)
    assert results == [(200, "b1")]
    assert proxy.backend_status(b1.address)["in_flight"] == 0  # safe to restart b1 now
    requests.post(f"{proxy.admin}/backends/{b1.address}/undrain", timeout=5)
    with requests.Session() as session:
        seen = {session.get(proxy.url + "/whoami", timeout=5).json()["backend"] for _ in range(20)}
    assert seen == {"b1", "b2", "b3"}
    missing = requests.post(f"{proxy.admin}/backends/127.0.0.1:1/drain", timeout=5)
    assert missing.status_code == 404


def test_the_admin_port_refuses_with_problem_documents(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), admin_token="s3cret")
    for method, path, status, code in (("GET", "/nowhere", 404, "not_found"),
                                       ("POST", "/backends/127.0.0.1:1/drain", 401, "unauthorized"),
                                       ("DELETE", "/status", 405, "method_not_allowed")):
        response = requests.request(method, proxy.admin + path, timeout=5)
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/problem+json"
        body = response.json()
        assert (body["status"], body["code"]) == (status, code) and body["title"] and body["detail"]
    missing = requests.post(f"{proxy.admin}/backends/127.0.0.1:1/drain", timeout=5,
                            headers={"Authorization": "Bearer s3cret"})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert missing.headers["Content-Type"] == "application/problem+json"
    malformed = exchange(proxy.admin_port, b"GET /status HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    head, _, body = malformed.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Type: application/problem+json" in head
    assert json.loads(body)["code"] == "invalid_content_length"


def test_sighup_reloads_backends_without_dropping_connections(live_backends, tmp_path):
    b1, b2, b3 = live_backends
    config = tmp_path / "proxy.toml"
    config.write_text(f'strategy = "round_robin"\nbackends = ["{b1.address}", "{b2.address}"]\n')
    proxy = Proxy("", tmp_path, config_file=config)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)

        def who() -> str:
            conn.request("GET", "/whoami")
            return __import__("json").loads(conn.getresponse().read())["backend"]

        assert {who() for _ in range(4)} == {"b1", "b2"}
        sock = conn.sock
        config.write_text(f'strategy = "round_robin"\nbackends = ["{b2.address}", "{b3.address}"]\n')
        proxy.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: [b["name"] for b in proxy.status()["backends"]] == [b2.address, b3.address],
                   5, what="the reload")
        assert {who() for _ in range(4)} == {"b2", "b3"}
        assert conn.sock is sock  # the same client connection throughout
        # a broken file keeps the current list; the admin call says why
        config.write_text("backends = [\"nonsense\"]\n")
        refused = requests.post(proxy.admin + "/reload", timeout=5)
        assert refused.status_code == 422 and "nonsense" in refused.json()["detail"]
        assert refused.json()["code"] == "validation_error"
        assert refused.headers["Content-Type"] == "application/problem+json"
        config.write_text(f'backends = ["{b1.address}=2", "{b3.address}"]\n')
        reloaded = requests.post(proxy.admin + "/reload", timeout=5).json()
        assert reloaded["added"] == [b1.address] and reloaded["removed"] == [b2.address]
        assert {who() for _ in range(6)} == {"b1", "b3"}
        conn.close()
    finally:
        proxy.stop()


def test_status_and_prometheus_metrics(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec())
    with requests.Session() as session:
        for _ in range(9):
            session.get(proxy.url + "/whoami", timeout=5)
    status = proxy.status()
    assert status["totals"]["requests"] == 9
    for backend in status["backends"]:
        assert backend["requests"] == 3 and backend["state"] == "up"
        assert backend["latency_ms"]["p50"] is not None and backend["latency_ms"]["p99"] is not None
    metrics = requests.get(proxy.admin + "/metrics", timeout=5).text
    for backend in live_backends:
        labels = f'backend="{backend.address}",pool="default"'  # the flat form's one pool
        assert f'marquee_proxy_requests_total{{{labels},status="200"}} 3.0' in metrics
        assert f'marquee_proxy_backend_up{{{labels}}} 1.0' in metrics
    assert "marquee_proxy_request_duration_seconds_bucket" in metrics
    assert "marquee_proxy_client_connections" in metrics
