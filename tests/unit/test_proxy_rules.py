"""Pure rules of the proxy: settings, backend choice, health bookkeeping."""
from __future__ import annotations

from collections import Counter

import pytest

from proxy.backends import DOWN, UP, Balancer
from proxy.config import BackendSpec, ConfigError, load
from proxy.http import connection_tokens, valid_request_id


def config(**env):
    base = {"PROXY_BACKENDS": "127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003"}
    return load(environ={**base, **{"PROXY_" + k.upper(): str(v) for k, v in env.items()}})


def test_settings_from_the_environment_and_a_file(tmp_path):
    cfg = config(strategy="least_connections", max_tries="2", access_log="off")
    assert cfg.strategy == "least_connections" and cfg.max_tries == 2 and cfg.access_log is False
    assert [b.name for b in cfg.backends] == ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]
    path = tmp_path / "p.toml"
    path.write_text('port = 9000\nbackends = ["10.0.0.1:80=3", {address = "10.0.0.2:80", weight = 2}]\n')
    from_file = load(str(path), environ={"PROXY_PORT": "9100"})
    assert from_file.port == 9100  # the environment wins
    assert from_file.backends == (BackendSpec("10.0.0.1", 80, 3), BackendSpec("10.0.0.2", 80, 2))


@pytest.mark.parametrize("env", [
    {"PROXY_BACKENDS": ""}, {"PROXY_BACKENDS": "nohost"}, {"PROXY_BACKENDS": "h:99999"},
    {"PROXY_BACKENDS": "h:1=0"}, {"PROXY_BACKENDS": "h:1,h:1"},
    {"PROXY_BACKENDS": "h:1", "PROXY_STRATEGY": "random"},
    {"PROXY_BACKENDS": "h:1", "PROXY_MAX_TRIES": "many"},
    {"PROXY_BACKENDS": "h:1", "PROXY_READ_TIMEOUT": "-1"},
])
def test_unusable_settings_are_refused_with_their_name(env):
    with pytest.raises(ConfigError):
        load(environ=env)


def test_round_robin_is_even_and_weighted():
    balancer = Balancer(config())
    assert Counter(balancer.choose().name for _ in range(300)) == {
        "127.0.0.1:8001": 100, "127.0.0.1:8002": 100, "127.0.0.1:8003": 100}
    weighted = Balancer(load(environ={"PROXY_BACKENDS": "a:1=5,b:1=1"}))
    order = [weighted.choose().name for _ in range(6)]
    assert Counter(order) == {"a:1": 5, "b:1": 1}
    assert order[0] == "a:1" and order.index("b:1") in (2, 3)  # smooth: b is not left to the end


def test_least_connections_prefers_the_idle_and_rotates_ties():
    balancer = Balancer(config(strategy="least_connections"))
    first, second, third = balancer.backends
    first.in_flight, second.in_flight, third.in_flight = 5, 0, 2
    assert balancer.choose() is second
    second.in_flight = 2
    assert {balancer.choose().name for _ in range(4)} == {second.name, third.name}


def test_excluded_unavailable_and_ramping_backends():
    balancer = Balancer(config())
    first, second, third = balancer.backends
    assert balancer.choose(exclude=[first, second]) is third
    first.draining = True
    second.state = DOWN
    assert {balancer.choose().name for _ in range(5)} == {third.name}
    third.state = DOWN  # none passes its checks: panic, the ones in service are all used
    assert balancer.panicking and {balancer.choose().name for _ in range(4)} == {second.name, third.name}
    strict = Balancer(config(panic_threshold=0))
    for backend in strict.backends:
        backend.state = DOWN
    assert not strict.panicking and strict.choose() is None
    first.draining, second.state, third.state = False, UP, UP
    second.up_since = __import__("time").monotonic()  # just came back: a tenth of its weight
    picks = Counter(balancer.choose().name for _ in range(210))
    assert picks[second.name] <= 15


def test_health_rise_and_fall_and_passive_ejection():
    balancer = Balancer(config(health_rise=2, health_fall=3))
    backend = balancer.backends[0]
    assert not backend.check_failed("x") and not backend.check_failed("x")
    assert backend.check_failed("x") and backend.state == DOWN
    assert not backend.check_passed()
    assert backend.check_passed() and backend.state == UP and backend.up_since > 0
    assert backend.request_failed() and backend.state == DOWN and backend.ejections == 2


def test_reload_keeps_state_of_kept_backends():
    balancer = Balancer(config())
    kept = balancer.backends[1]
    kept.requests = 7
    changes = balancer.reload(load(environ={"PROXY_BACKENDS": "127.0.0.1:8002=4,127.0.0.1:8009"}))
    assert changes == {"added": ["127.0.0.1:8009"], "removed": ["127.0.0.1:8001", "127.0.0.1:8003"],
                       "kept": ["127.0.0.1:8002"]}
    assert balancer.backends[0] is kept and kept.requests == 7 and kept.weight == 4


def test_header_helpers():
    assert connection_tokens([(b"Connection", b"keep-alive, X-Secret"), (b"Host", b"h")]) == {
        b"keep-alive", b"x-secret"}
    assert valid_request_id(b"abc-123_x.y:z") and not valid_request_id(b"a b")
    assert not valid_request_id(b"x" * 129) and not valid_request_id(None)


def test_access_log_lines_are_json_whatever_the_path():
    import io
    import json
    from types import SimpleNamespace

    from proxy.server import AccessLog

    stream = io.StringIO()
    log = AccessLog(loop=None, stream=stream, batch=1)
    for target, error in ((b"/plain?a=1&b=%20", ""), (b'/q"uote\\back', "backend closed"),
                          (b"/caf\xe9", "")):
        cycle = SimpleNamespace(target=target, request_id=b"rid-1", client=SimpleNamespace(peer_ip=b"127.0.0.1"),
                                method="GET", status=200, tries=1, bytes_out=5, error=error)
        log.write(cycle, "127.0.0.1:8001", 0.0123)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["path"] for line in lines] == ["/plain?a=1&b=%20", '/q"uote\\back', "/caf\xe9"]
    assert lines[1]["error"] == "backend closed" and lines[0]["error"] is None
    assert lines[0]["duration_ms"] == 12.3 and lines[0]["ts"].endswith("+00:00")
    assert lines[0]["logger"] == "proxy.access" and lines[0]["request_id"] == "rid-1"
