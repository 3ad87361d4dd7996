"""Hypothesis writes requests, well-formed and not, and sends them raw. Whatever it
writes, the proxy keeps running, answers every one with either the backend's response or
its own problem document, and never forwards what it could not parse: a request it
refused never shows up at a backend, and no backend ever has to reject a request the
proxy let through (gunicorn's own 400 page would show it)."""
from __future__ import annotations

import uuid

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.conftest import exchange, wait_until

TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
                min_size=1, max_size=12)
ANY_BYTES = st.binary(max_size=24).map(lambda b: b.decode("latin-1"))


def mostly(valid, odd):
    """The valid form four times in five, so that most requests get past the first line."""
    return st.integers(0, 4).flatmap(lambda i: odd if i == 0 else valid)


METHODS = mostly(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
                 st.one_of(TOKEN, st.sampled_from(["G ET", "", "GET\x00", "CONNECT", "get"])))
TARGETS = mostly(st.sampled_from(["/whoami", "/echo", "/echo?x=1", "/slow?ms=0", "http://h/echo"]),
                 st.one_of(st.just("*"), st.text(max_size=20).map(lambda s: "/" + s),
                           ANY_BYTES.map(lambda s: "/" + s)))
VERSIONS = mostly(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
                  st.sampled_from(["HTTP/2.0", "HTTP/1.1 ", "HTTP/0.9", "http/1.1", "", "HTTP/1.10"]))
HEADER_NAMES = mostly(st.sampled_from(["Content-Length", "Transfer-Encoding", "Host", "Connection",
                                       "Expect", "Upgrade", "Keep-Alive", "X-Forwarded-For", "Via",
                                       "TE", "Trailer", "X-Anything"]),
                      st.one_of(TOKEN, ANY_BYTES, st.sampled_from(
                          ["Content-Length ", " Host", "Transfer-Encoding\t", "Content_Length"])))
HEADER_VALUES = mostly(st.sampled_from(["chunked", "5", "0", "close", "keep-alive", "100-continue",
                                        "gzip, chunked", "Upgrade", "h2c", "1.2.3.4", "fuzz"]),
                       st.one_of(st.sampled_from(["-1", "5, 5", "chunked, gzip", " chunked", "+5",
                                                 "99999999999999999999", "chunked\x00"]),
                                 st.text(max_size=16), ANY_BYTES))
LINE_ENDS = mostly(st.just("\r\n"), st.sampled_from(["\n", "\r", "\r\r\n"]))
BODIES = st.one_of(st.just(b""), st.binary(max_size=64),
                   st.sampled_from([b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"zz\r\n",
                                    b"5\r\nhel", b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n"]))


@st.composite
def raw_requests(draw) -> bytes:
    end = draw(LINE_ENDS)
    line = f"{draw(METHODS)} {draw(TARGETS)} {draw(VERSIONS)}"
    headers = [("Host", "fuzz")] if draw(st.integers(0, 4)) else []
    headers += draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4))
    body = draw(BODIES)
    if draw(st.booleans()):
        headers.append(("Content-Length", str(len(body))))
    headers.insert(draw(st.integers(0, len(headers))), ("X-Request-ID", "fz" + uuid.uuid4().hex))
    head = line + end + "".join(f"{n}: {v}{end}" for n, v in headers) + end
    return head.encode("latin-1", "replace") + body


@pytest.fixture(scope="module")
def fuzz_proxy(backends, tmp_path_factory):
    from tests.proxy.conftest import Proxy

    for backend in backends:
        backend.ensure_running()
    proxy = Proxy(backends.spec(), tmp_path_factory.mktemp("fuzz"), client_header_timeout=1,
                  client_body_timeout=1, read_timeout=5)
    try:
        yield proxy
    finally:
        proxy.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=raw_requests())
def test_whatever_arrives_the_proxy_survives_and_forwards_only_what_it_parsed(raw, fuzz_proxy, backends):
    # the extra CRLFs end any head still open, so most requests get an answer
    response = exchange(fuzz_proxy.port, raw + b"\r\n\r\n", timeout=1.5, half_close=True)
    assert fuzz_proxy.proc.poll() is None, "the proxy died"
    request_id = raw.split(b"X-Request-ID: ", 1)[1][:34].decode()
    refused = response.startswith((b"HTTP/1.1 4", b"HTTP/1.1 50"))
    if refused and b"X-Backend:" not in response.split(b"\r\n\r\n", 1)[0]:  # the proxy refused it
        assert request_id not in {r["request_id"] for r in backends.received()}, raw
    for part in response.split(b"HTTP/1.1 ")[1:]:
        head = part.split(b"\r\n\r\n", 1)[0]
        from_backend = b"X-Backend:" in head
        from_proxy = b"Content-Type: application/problem+json" in head and b"Server:" not in head
        # anything else is gunicorn's own error page: a request we should not have forwarded
        assert from_backend or from_proxy or part.startswith(b"100 Continue"), response[:500]
        if not from_backend and not part.startswith(b"100"):
            assert b"Via: 1.1 marquee" in head


def test_after_the_fuzzing_the_proxy_still_serves(fuzz_proxy, backends):
    response = requests.get(fuzz_proxy.url + "/whoami", timeout=5)
    assert response.status_code == 200
    errors = [line for line in fuzz_proxy.log_lines() if line.get("level") == "ERROR"]
    assert errors == []  # no "proxy error" (a bug of ours) was logged


@pytest.mark.parametrize("method,target", [("GET", "/whoami"), ("POST", "/echo")])
def test_a_body_that_never_comes_whole_never_reaches_a_backend(fuzz_proxy, backends, method, target):
    """What Hypothesis once drew: a head declaring five body bytes, four of them, then a
    half-close. The proxy waits for the rest (the client body timeout), answers 408, and
    no backend ever saw the request (a small body is received whole before one is chosen)."""
    request_id = "fz" + uuid.uuid4().hex
    raw = (f"{method} {target} HTTP/1.1\r\nHost: fuzz\r\nX-Request-ID: {request_id}\r\n"
           f"Content-Length: 5\r\n\r\nabcd").encode()
    response = exchange(fuzz_proxy.port, raw, timeout=3, half_close=True)
    assert response.startswith(b"HTTP/1.1 408"), response[:300]

    def logged():
        return [line for line in fuzz_proxy.log_lines() if line.get("request_id") == request_id]

    wait_until(logged, 10, 0.05, "the proxy's access line")
    [line] = logged()
    assert (line["status"], line["tries"], line["backend"]) == (408, 0, "-"), line  # no backend chosen
    assert request_id not in {r["request_id"] for r in backends.received()}
    whole = raw.replace(b"abcd", b"abcde").replace(request_id.encode(), b"fz" + uuid.uuid4().hex.encode())
    assert exchange(fuzz_proxy.port, whole, timeout=3, half_close=True).startswith(b"HTTP/1.1 200")
