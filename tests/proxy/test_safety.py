"""What the proxy refuses, and that it keeps serving others meanwhile: smuggling attempts,
oversized heads and bodies, slow clients, too many connections, unknown protocols; every
refusal a problem document with a ``code``; requests right at its limits reach a backend
(gunicorn with the app's limits), so the proxy is the layer that refuses; and the headers
it writes (X-Forwarded-*, X-Request-ID, Via, hop-by-hop removed)."""
from __future__ import annotations

import json
import socket
import uuid

import pytest
import requests

from tests.proxy.conftest import exchange, request_at_limit, wait_until


@pytest.fixture
def proxy(live_backends, start_proxy):
    return start_proxy(live_backends.spec(), max_body_bytes=1024 * 1024,
                       client_header_timeout=1, client_body_timeout=1)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def problem_of(response: bytes) -> dict:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"Content-Type: application/problem+json" in head
    return json.loads(body)


def refusal(response: bytes) -> tuple[int, str]:
    """The status and ``code`` of the proxy's own problem document."""
    problem = problem_of(response)
    assert problem["status"] == status_of(response) and problem["request_id"]
    return problem["status"], problem["code"]


SMUGGLING = {
    "content-length and transfer-encoding": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /whoami HTTP/1.1\r\nHost: t\r\n\r\n"),
    "transfer-encoding then content-length": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 3\r\n\r\n0\r\n\r\n"),
    "two content-lengths": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nContent-Length: 5\r\n"
        b"Content-Length: 30\r\n\r\nhello"),
    "invalid content-length": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nContent-Length: 5x\r\n\r\nhello"),
    "signed content-length": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nContent-Length: +5\r\n\r\nhello"),
    "bad chunk size": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk size overflow": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
    "obfuscated transfer-encoding": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nTransfer-Encoding: xchunked\r\n"
        b"Content-Length: 5\r\n\r\nhello"),
    "space before colon": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: %s\r\nTransfer-Encoding : chunked\r\n"
        b"Content-Length: 5\r\n\r\nhello"),
    "bare LF line endings": (
        b"POST /echo HTTP/1.1\nHost: t\nX-Request-ID: %s\nContent-Length: 5\n\nhello"),
    "two hosts": b"GET /whoami HTTP/1.1\r\nHost: a\r\nHost: b\r\nX-Request-ID: %s\r\n\r\n",
}
SMUGGLING_CODES = {
    "content-length and transfer-encoding": "ambiguous_framing",
    "transfer-encoding then content-length": "ambiguous_framing",
    "two content-lengths": "ambiguous_framing",
    "obfuscated transfer-encoding": "ambiguous_framing",
    "invalid content-length": "invalid_content_length",
    "signed content-length": "invalid_content_length",
    "bad chunk size": "invalid_chunked_body",
    "chunk size overflow": "invalid_chunked_body",
    "space before colon": "bad_request",
    "bare LF line endings": "bad_request",
    "two hosts": "bad_request",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_ambiguous_framing_is_refused_and_never_forwarded(name, proxy, live_backends):
    request_id = uuid.uuid4().hex.encode()
    response = exchange(proxy.port, SMUGGLING[name].replace(b"%s", request_id))
    assert refusal(response) == (400, SMUGGLING_CODES[name]), response[:300]
    assert b"Connection: close" in response
    assert response.count(b"HTTP/1.1 ") == 1  # the smuggled second request got no answer
    assert not [r for r in live_backends.received() if r["request_id"] == request_id.decode()]
    assert requests.get(proxy.url + "/whoami", timeout=5).status_code == 200


def test_oversized_headers_get_431_and_a_long_target_414(proxy):
    big = b"GET /whoami HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n"
    assert refusal(exchange(proxy.port, big)) == (431, "headers_too_large")
    many = b"GET /whoami HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    assert refusal(exchange(proxy.port, many)) == (431, "headers_too_large")
    long_target = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    assert refusal(exchange(proxy.port, long_target)) == (414, "uri_too_long")
    assert requests.get(proxy.url + "/whoami", timeout=5).status_code == 200


@pytest.mark.parametrize("what, code", [("target", "uri_too_long"), ("header", "headers_too_large"),
                                        ("fields", "headers_too_large")])
def test_at_its_limits_a_request_reaches_a_backend_and_one_past_is_the_proxys_refusal(
        what, code, proxy, live_backends):
    """The backends run gunicorn with the app's limits (gunicorn.conf.py): what the proxy
    lets through, gunicorn takes; its HTML refusals never reach a client."""
    at = exchange(proxy.port, request_at_limit(what, b"/whoami"))
    assert status_of(at) == 200 and b"X-Backend: " in at, at[:300]
    past = exchange(proxy.port, request_at_limit(what, b"/whoami", over=1))
    assert refusal(past) == (414 if what == "target" else 431, code)


def test_bodies_over_the_limit_get_413(proxy, live_backends):
    request_id = uuid.uuid4().hex
    sized = requests.post(proxy.url + "/echo", data=b"x" * (1024 * 1024 + 1),
                          headers={"X-Request-ID": request_id}, timeout=10)
    assert sized.status_code == 413 and sized.json()["status"] == 413
    assert sized.json()["code"] == "payload_too_large"
    assert sized.headers["Content-Type"] == "application/problem+json"

    def chunks():
        for _ in range(40):
            yield b"y" * 65536  # 2.5 MiB, chunked, over the 1 MiB limit

    try:
        chunked = requests.post(proxy.url + "/echo", data=chunks(), timeout=10)
        assert chunked.status_code == 413 and chunked.json()["code"] == "payload_too_large"
    except requests.ConnectionError:
        pass  # the proxy may cut the upload before the client reads the 413
    assert not [r for r in live_backends.received() if r["request_id"] == request_id]
    assert requests.get(proxy.url + "/whoami", timeout=5).status_code == 200


def test_slow_clients_are_timed_out_while_others_are_served(proxy):
    sockets = []
    try:
        for _ in range(20):  # slow-loris: heads that never end
            sock = socket.create_connection(("127.0.0.1", proxy.port))
            sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: t\r\nX-A: ")
            sockets.append(sock)
        silent = socket.create_connection(("127.0.0.1", proxy.port))  # sends nothing at all
        sockets.append(silent)
        for _ in range(5):
            assert requests.get(proxy.url + "/whoami", timeout=5).status_code == 200
        for sock in sockets[:20]:
            sock.settimeout(5)
            response = sock.recv(65536)
            assert refusal(response) == (408, "request_timeout")
        silent.settimeout(5)
        assert silent.recv(100) == b""  # closed without a word
        # a body that stalls half way: 408 as well
        stalled = exchange(proxy.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        assert refusal(stalled) == (408, "request_timeout")
    finally:
        for sock in sockets:
            sock.close()


def test_connections_past_the_limit_get_503(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), max_connections=5)
    held = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(5)]
    try:
        wait_until(lambda: proxy.status()["client_connections"] == 5, 5, what="5 connections")
        response = exchange(proxy.port, b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n")
        assert refusal(response) == (503, "service_unavailable")
        assert b"Retry-After: 1" in response
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: requests.get(proxy.url + "/whoami", timeout=5).status_code == 200, 5,
               what="room again")


def test_unsupported_versions_upgrades_and_codings(proxy):
    assert refusal(exchange(proxy.port, b"GET /whoami HTTP/2.0\r\nHost: t\r\n\r\n")) == (
        505, "http_version_not_supported")
    # an Upgrade is ignored: plain HTTP/1.1 answer, then the connection closes
    upgrade = b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    answer = exchange(proxy.port, upgrade + b"GET /whoami HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(answer) == 200 and answer.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in answer and b"websocket" not in answer.lower()
    with_body = b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabc"
    assert refusal(exchange(proxy.port, with_body)) == (501, "not_implemented")
    connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n"
    assert refusal(exchange(proxy.port, connect)) == (501, "not_implemented")
    gzip = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert refusal(exchange(proxy.port, gzip)) == (501, "not_implemented")
    no_host = b"GET /whoami HTTP/1.1\r\n\r\n"
    assert refusal(exchange(proxy.port, no_host)) == (400, "bad_request")
    expect = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx"
    assert refusal(exchange(proxy.port, expect)) == (417, "expectation_failed")


def test_forwarding_headers_and_request_ids(proxy):
    response = requests.get(proxy.url + "/whoami", timeout=5, headers={
        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
        "Connection": "keep-alive, X-Secret", "X-Secret": "hop", "Keep-Alive": "timeout=5",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==", "TE": "trailers", "X-Custom": "kept"})
    seen = response.json()["headers"]
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"  # appended, not replaced
    assert seen["x-forwarded-proto"] == "http"  # set by the proxy, never the client's word
    assert seen["via"] == "1.1 marquee"
    assert seen["x-custom"] == "kept"
    for hop in ("x-secret", "keep-alive", "proxy-authorization", "te"):
        assert hop not in seen
    created = response.headers["X-Request-ID"]
    assert len(created) == 32 and seen["x-request-id"] == created
    assert "1.1 marquee" in response.headers["Via"]

    given = requests.get(proxy.url + "/whoami", headers={"X-Request-ID": "client-id-42"}, timeout=5)
    assert given.headers["X-Request-ID"] == "client-id-42"
    assert given.json()["headers"]["x-request-id"] == "client-id-42"
    bogus = requests.get(proxy.url + "/whoami", headers={"X-Request-ID": "no spaces allowed"}, timeout=5)
    assert bogus.headers["X-Request-ID"] != "no spaces allowed"


def test_expect_continue_and_pipelining(proxy):
    raw = (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(raw)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        assert status_of(sock.recv(65536)) == 200
    pipelined = b"".join(b"GET /slow?ms=%d HTTP/1.1\r\nHost: t\r\nX-Request-ID: p%d\r\n\r\n" % (ms, i)
                         for i, ms in enumerate((300, 0, 100)))
    response = exchange(proxy.port, pipelined + b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    ids = [line.split(b": ")[1] for line in response.split(b"\r\n") if line.startswith(b"X-Request-ID")]
    assert ids[:3] == [b"p0", b"p1", b"p2"] and len(ids) == 4  # answered in order


def test_access_log_is_json_with_the_request_id(proxy):
    requests.get(proxy.url + "/whoami", headers={"X-Request-ID": "log-me-1"}, timeout=5)
    wait_until(lambda: any(line.get("request_id") == "log-me-1" for line in proxy.log_lines()), 5,
               what="the access log line")
    line = next(line for line in proxy.log_lines() if line.get("request_id") == "log-me-1")
    assert line["status"] == 200 and line["method"] == "GET" and line["path"] == "/whoami"
    assert line["backend"].startswith("127.0.0.1:") and line["duration_ms"] >= 0


def test_a_client_that_half_closes_still_gets_its_answer(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    assert status_of(data) == 200
