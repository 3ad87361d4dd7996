"""Pools through the running proxy: each path reaches its pool's backends, each pool is
checked on its own terms (one pool down leaves the other serving), a pool with no backend
to take a request gets the proxy's 503, per-pool connection limits hold, and a reload
switches routes while a configuration that does not load changes nothing."""
from __future__ import annotations

import json
import signal
import time

import requests

from tests.proxy.conftest import EVENTS, read_events, wait_until, write_pools

EVENTS_URL = "/api/v1/showtimes/7/seats/events"


def start_pools(start_proxy, tmp_path, app_backends, live_backend, routes=((EVENTS, "live"),), **pools):
    config = write_pools(tmp_path / "proxy.toml", app_backends.spec(), live_backend.address, routes, **pools)
    return start_proxy("", config_file=config)


def backend_of(url: str) -> str:
    response = requests.get(url, timeout=10)
    return response.headers.get("X-Backend") or f"{response.status_code} {response.text[:200]}"


def test_each_path_reaches_its_pool_whatever_its_query(live_backends, live_backend, start_proxy, tmp_path):
    routes = (("/api/v1/showtimes/1/seats/events", "app"), (EVENTS, "live"), ("/live/**", "live"))
    proxy = start_pools(start_proxy, tmp_path, live_backends, live_backend, routes)
    response, events, ending = read_events(proxy.url + EVENTS_URL + "?n=2&interval_ms=0&last_ms=0&since=1-0")
    assert response.headers["X-Backend"] == "live" and ending == "end" and len(events) == 2
    assert live_backend.received[-1] == EVENTS_URL + "?n=2&interval_ms=0&last_ms=0&since=1-0"  # sent as it came
    app = {"b1", "b2", "b3"}
    assert backend_of(proxy.url + "/live/anything?x=1") == "live"
    for path in ("/api/v1/showtimes/1/seats/events",  # the first route wins
                 "/api/v1/showtimes/7/seats", "/api/v1/showtimes/7/seats/events/more",
                 "/api/v1/showtimes/7/8/seats/events", "/whoami?next=/api/v1/showtimes/7/seats/events"):
        assert backend_of(proxy.url + path) in app, path
    assert not [p for p in live_backend.paths() if not p.endswith(("/health", "/events", "/live/anything"))]


def test_status_and_metrics_show_pools_and_routes(live_backends, live_backend, start_proxy, tmp_path):
    proxy = start_pools(start_proxy, tmp_path, live_backends, live_backend,
                        live_pool={"read_timeout": 15, "strategy": "round_robin"})
    read_events(proxy.url + EVENTS_URL + "?n=1&last_ms=0")
    status = proxy.status()
    assert status["default_pool"] == "app" and status["routes"] == [{"path": EVENTS, "pool": "live"}]
    pools = {pool["name"]: pool for pool in status["pools"]}
    assert pools["live"]["backends"] == [live_backend.address] and pools["live"]["read_timeout"] == 15
    assert pools["app"]["backends"] == [b.address for b in live_backends] and pools["app"]["read_timeout"] == 60
    assert {b["name"]: b["pool"] for b in status["backends"]} == {
        **{b.address: "app" for b in live_backends}, live_backend.address: "live"}
    metrics = requests.get(proxy.admin + "/metrics", timeout=5).text
    assert f'marquee_proxy_requests_total{{backend="{live_backend.address}",pool="live",status="200"}} 1.0' in metrics
    assert f'marquee_proxy_backend_up{{backend="{live_backend.address}",pool="live"}} 1.0' in metrics
    assert 'marquee_proxy_panic{pool="live"} 0.0' in metrics and 'marquee_proxy_panic{pool="app"} 0.0' in metrics


def _states(proxy) -> dict[str, str]:
    return {b["name"]: b["state"] for b in proxy.status()["backends"]}


def test_each_pool_is_checked_on_its_own_and_one_down_leaves_the_other_serving(
        live_backends, live_backend, start_proxy, tmp_path):
    proxy = start_pools(start_proxy, tmp_path, live_backends, live_backend,
                        live_pool={"health_path": "/live/health"}, panic_threshold=0)
    live_backend.healthy = False
    wait_until(lambda: _states(proxy)[live_backend.address] == "down", 10, what="the live pool down")
    assert all(_states(proxy)[b.address] == "up" for b in live_backends)
    refused = requests.get(proxy.url + EVENTS_URL, timeout=10)
    assert refused.status_code == 503 and refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "no_backend"
    assert backend_of(proxy.url + "/whoami") in {"b1", "b2", "b3"}
    # each pool's own health path: the live process was never asked for the app's, nor the reverse
    assert set(p for p in live_backend.paths() if p.endswith("/health")) == {"/live/health"}
    assert "/live/health" not in {r["path"] for r in live_backends.received()}

    live_backend.healthy = True
    for backend in live_backends:
        backend.set_health(False)
    wait_until(lambda: _states(proxy)[live_backend.address] == "up", 10, what="the live pool back")
    wait_until(lambda: all(_states(proxy)[b.address] == "down" for b in live_backends), 10, what="the app pool down")
    assert requests.get(proxy.url + "/whoami", timeout=10).json()["code"] == "no_backend"
    response, events, ending = read_events(proxy.url + EVENTS_URL + "?n=2&interval_ms=0&last_ms=0")
    assert response.status_code == 200 and len(events) == 2 and ending == "end"


def test_a_pool_whose_only_backend_is_gone_answers_503(live_backends, live_backend, start_proxy, tmp_path):
    proxy = start_pools(start_proxy, tmp_path, live_backends, live_backend)
    live_backend.stop()
    wait_until(lambda: _states(proxy)[live_backend.address] == "down", 10, what="the live pool down")
    refused = requests.get(proxy.url + EVENTS_URL, timeout=10)
    assert refused.status_code == 503 and refused.json()["code"] == "no_backend"
    assert backend_of(proxy.url + "/whoami") in {"b1", "b2", "b3"}


def test_a_backend_at_its_pools_connection_limit_takes_no_more(live_backends, live_backend, start_proxy, tmp_path):
    proxy = start_pools(start_proxy, tmp_path, live_backends, live_backend,
                        live_pool={"max_connections_per_backend": 1})
    first = requests.get(proxy.url + EVENTS_URL + "?n=1&heartbeat_ms=100", stream=True, timeout=10)
    try:
        wait_until(lambda: live_backend.streams_open == 1, 5, what="the first stream")
        second = requests.get(proxy.url + EVENTS_URL + "?n=1&last_ms=0", timeout=10)
        assert second.status_code == 503 and second.json()["code"] == "no_backend"
        assert backend_of(proxy.url + "/whoami") in {"b1", "b2", "b3"}  # the app pool has no limit
    finally:
        first.close()
    wait_until(lambda: proxy.backend_status(live_backend.address)["in_flight"] == 0, 5, what="room again")
    response, events, _ = read_events(proxy.url + EVENTS_URL + "?n=1&last_ms=0")
    assert response.status_code == 200 and len(events) == 1


def test_a_reload_switches_routes_and_a_broken_file_changes_nothing(live_backends, live_backend, start_proxy, tmp_path):
    proxy = start_pools(start_proxy, tmp_path, live_backends, live_backend)
    config = tmp_path / "proxy.toml"
    stream = proxy.url + EVENTS_URL + "?n=1&last_ms=0"
    assert backend_of(stream) == "live"

    write_pools(config, live_backends.spec(), live_backend.address, routes=())
    reloaded = requests.post(proxy.admin + "/reload", timeout=5)
    assert reloaded.status_code == 200 and reloaded.json()["routes"] == []
    assert backend_of(stream) in {"b1", "b2", "b3"}

    for routes in (((EVENTS, "nowhere"),), (("/api/v1/showtimes/7*/seats/events", "live"),)):
        write_pools(config, live_backends.spec(), live_backend.address, routes=routes)
        refused = requests.post(proxy.admin + "/reload", timeout=5)
        assert refused.status_code == 422 and refused.json()["code"] == "validation_error"
        assert proxy.status()["routes"] == [] and backend_of(stream) in {"b1", "b2", "b3"}

    write_pools(config, live_backends.spec(), live_backend.address)
    proxy.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: proxy.status()["routes"] == [{"path": EVENTS, "pool": "live"}], 5, what="the SIGHUP reload")
    assert backend_of(stream) == "live"

    # a pool dropped by a reload: its backend leaves, and its health checks stop
    config.write_text(f'default_pool = "app"\n[pools.app]\nbackends = {json.dumps(live_backends.spec().split(","))}\n')
    dropped = requests.post(proxy.admin + "/reload", timeout=5).json()
    assert dropped["removed"] == [live_backend.address] and dropped["pools"]["live"]["removed"] == [live_backend.address]
    assert [pool["name"] for pool in proxy.status()["pools"]] == ["app"]
    assert backend_of(stream) in {"b1", "b2", "b3"}
    checks = len(live_backend.received)
    time.sleep(1)  # five health intervals
    assert len(live_backend.received) == checks
