"""Pure rules of the proxy: settings, backend choice, health bookkeeping, its problem
documents, and limits that agree with the app's gunicorn behind it."""
from __future__ import annotations

import json
import re
import runpy
from collections import Counter
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import httptools
import pytest

from proxy.admin import AdminServer
from proxy.backends import DOWN, UP, Balancer
from proxy.config import BackendSpec, ConfigError, ProxyConfig, load
from proxy.http import CODES, connection_tokens, parser_error_code, problem_response, valid_request_id

ROOT = Path(__file__).resolve().parents[2]


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


# -- problem documents -------------------------------------------------------------------

def _statuses_answered_in(module: str) -> set[int]:
    """Every 4xx/5xx a module that answers clients names (499, nginx's "client closed",
    is only ever logged)."""
    source = (ROOT / "proxy" / module).read_text()
    return {int(n) for n in re.findall(r"\b[45]\d\d\b", source)} - {499}


def _problem(raw: bytes) -> tuple[bytes, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, json.loads(body)


@pytest.mark.parametrize("module", ["client.py", "cycle.py", "admin.py"])
def test_every_status_the_proxy_answers_has_a_code(module):
    statuses = _statuses_answered_in(module)
    assert statuses and statuses <= set(CODES), statuses - set(CODES)
    for status in statuses:
        head, body = _problem(problem_response(status, "why", b"rid-1", close=True))
        assert b"Content-Type: application/problem+json" in head
        assert body == {"type": "about:blank", "title": body["title"], "status": status,
                        "detail": "why", "code": CODES[status], "request_id": "rid-1"}
        assert body["title"] and re.fullmatch(r"[a-z_]+", body["code"])


def test_codes_are_the_apps_where_the_app_has_one():
    assert {s: CODES[s] for s in (400, 401, 404, 405, 413, 422, 431, 503)} == {
        400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
        413: "payload_too_large", 422: "validation_error", 431: "headers_too_large",
        503: "service_unavailable"}
    assert (CODES[408], CODES[414], CODES[501], CODES[502], CODES[504]) == (
        "request_timeout", "uri_too_long", "not_implemented", "bad_gateway", "gateway_timeout")
    _, body = _problem(problem_response(503, "none up", b"r", close=False, code="no_backend"))
    assert body["code"] == "no_backend" and body["status"] == 503


PARSER_REFUSALS = {
    b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n": "ambiguous_framing",
    b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n": "ambiguous_framing",
    b"Content-Length: 5\r\nContent-Length: 30\r\n\r\n": "ambiguous_framing",
    b"Transfer-Encoding: chunked, gzip\r\n\r\n": "ambiguous_framing",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n": "ambiguous_framing",
    b"Content-Length: 5x\r\n\r\n": "invalid_content_length",
    b"Content-Length: +5\r\n\r\n": "invalid_content_length",
    b"Content-Length: 99999999999999999999999\r\n\r\n": "invalid_content_length",
    b"Content-Length: \r\n\r\n": "invalid_content_length",
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n": "invalid_chunked_body",
    b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nhello\r\n": "invalid_chunked_body",
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX": "invalid_chunked_body",
    b"Transfer-Encoding : chunked\r\n\r\n": "bad_request",
    b"X: a\x01b\r\n\r\n": "bad_request",
}


@pytest.mark.parametrize("rest", sorted(PARSER_REFUSALS))
def test_a_400_from_the_parser_says_why(rest):
    """Pinned to llhttp's messages: an httptools upgrade that rewords them fails here."""
    parser = httptools.HttpRequestParser(SimpleNamespace())
    with pytest.raises(httptools.HttpParserError) as refused:
        parser.feed_data(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + rest)
    assert parser_error_code(str(refused.value)) == PARSER_REFUSALS[rest]


def test_admin_refusals_are_problem_documents_with_a_code():
    server = SimpleNamespace(config=SimpleNamespace(admin_token="s3cret"),
                             balancer=SimpleNamespace(by_name=lambda name: None))
    admin = AdminServer(server)

    def ask(method, url, **headers):
        request = SimpleNamespace(url=url, headers={k.encode(): v.encode() for k, v in headers.items()})
        return admin.route(method, request)

    for (method, url, headers), (status, code) in {
            ("GET", b"/nowhere", ()): (404, "not_found"),
            ("DELETE", b"/status", ()): (405, "method_not_allowed"),
            ("POST", b"/reload", ()): (401, "unauthorized"),
            ("POST", b"/backends/h:1/drain", (("authorization", "Bearer s3cret"),)): (404, "not_found"),
    }.items():
        answered, body, kind = ask(method, url, **dict(headers))
        assert (answered, body["status"], body["code"], kind) == (status, status, code, "json")
        assert body["type"] == "about:blank" and body["title"] and body["detail"]


# -- limits that agree with the app's gunicorn ---------------------------------------------

def _default(name: str):
    return next(f.default for f in fields(ProxyConfig) if f.name == name)


def _gunicorn(monkeypatch):
    """gunicorn's settings as gunicorn.conf.py makes them (no LIMIT_* in the environment)."""
    from gunicorn.config import Config

    for name in ("LIMIT_REQUEST_LINE", "LIMIT_REQUEST_FIELDS", "LIMIT_REQUEST_FIELD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    cfg = Config()
    for name in ("limit_request_line", "limit_request_fields", "limit_request_field_size"):
        cfg.set(name, settings[name])
    return cfg


def _forwarded(method: str, target: bytes, headers: list, peer_ip: bytes = b"127.0.0.1") -> bytes:
    """The bytes the proxy sends a backend for this request (its own ``_send_request``)."""
    from proxy.cycle import Cycle

    cfg = config()
    client = SimpleNamespace(server=SimpleNamespace(config=cfg), loop=SimpleNamespace(time=lambda: 0.0),
                             peer_ip=peer_ip, resume_reading=lambda reason: None)
    cycle = Cycle(client, method, target, "1.1", headers, b"r" * 32, True, False, None)
    sent: list[bytes] = []
    cycle.upstream = SimpleNamespace(write=sent.append)
    cycle._send_request()
    return sent[0]


def _gunicorn_reads(cfg, raw: bytes):
    from gunicorn.http.parser import RequestParser

    return next(RequestParser(cfg, iter([raw]), ("127.0.0.1", 1)))


# every method llhttp knows; the parser takes only some of them
LLHTTP_METHODS = [
    "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL",
    "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL",
    "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE",
    "PATCH", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE", "PRI", "DESCRIBE", "ANNOUNCE",
    "SETUP", "PLAY", "PAUSE", "TEARDOWN", "REDIRECT", "RECORD", "FLUSH", "QUERY",
]


def _forwardable(method: str) -> bool:
    """The parser takes it, and it is not CONNECT (an upgrade, which the proxy refuses)."""
    try:
        httptools.HttpRequestParser(SimpleNamespace()).feed_data(
            method.encode() + b" / HTTP/1.1\r\nHost: t\r\n\r\n")
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return False
    return True


def test_gunicorn_takes_the_longest_request_line_the_proxy_forwards(monkeypatch):
    cfg = _gunicorn(monkeypatch)
    assert 0 < cfg.limit_request_line <= 8190  # a real bound, and one gunicorn does not cut
    longest = max(filter(_forwardable, LLHTTP_METHODS), key=len)
    target = b"/a?q=" + b"x" * (_default("max_request_line") - 5)
    request = _gunicorn_reads(cfg, _forwarded(longest, target, [(b"Host", b"t")]))
    assert request.method == longest and len(request.uri) == _default("max_request_line")


@pytest.mark.parametrize("name", [b"X-Pad", b"X-Forwarded-For", b"Via"])
def test_gunicorn_takes_the_largest_header_the_proxy_forwards(name, monkeypatch):
    """One field fills the proxy's whole allowance (each counted as name + value + 4);
    X-Forwarded-For and Via grow on the way by the hop the proxy appends."""
    cfg = _gunicorn(monkeypatch)
    value = b"1" * (_default("max_header_bytes") - len(name) - 4)
    longest_ip = b"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    request = _gunicorn_reads(cfg, _forwarded("GET", b"/", [(name, value)], peer_ip=longest_ip))
    assert value in dict(request.headers)[name.decode().upper()].encode()


def test_gunicorn_takes_as_many_headers_as_the_proxy_forwards(monkeypatch):
    cfg = _gunicorn(monkeypatch)
    headers = [(b"Host", b"t")] + [(b"X-H%d" % i, b"1") for i in range(_default("max_headers") - 1)]
    raw = _forwarded("GET", b"/", headers)
    request = _gunicorn_reads(cfg, raw)
    assert len(request.headers) == raw.count(b"\r\n") - 2 > _default("max_headers")
