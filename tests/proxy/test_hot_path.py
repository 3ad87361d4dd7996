"""What the per-request shortcuts must not break: deadlines on a connection that has served
requests before (one timer a connection, moved rather than replaced), and every request's
place in its backend's in-flight count whatever way it ended (no task a request: the
attempts are callbacks)."""
from __future__ import annotations

import socket
import time

import requests

from tests.proxy.conftest import free_port, wait_until


def _response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (or what came before the connection closed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response else 0


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False


def _kept_alive(proxy, requests_before: int) -> socket.socket:
    """A connection that has had ``requests_before`` requests answered (each one moved its deadlines)."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    for _ in range(requests_before):
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _status(_response(sock)) == 200
    return sock


def test_deadlines_on_a_kept_alive_connection_pass_on_time(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), keepalive_timeout=3, client_header_timeout=0.5, read_timeout=0.5)
    # a head started after the idle deadline (3 s) was set: its own (0.5 s) comes first
    with _kept_alive(proxy, 5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        started = time.monotonic()
        assert _status(_response(sock)) == 408
        assert time.monotonic() - started < 2
    # a backend silent past read_timeout on the 6th request (POST: not retried)
    with _kept_alive(proxy, 5) as sock:
        sock.sendall(b"POST /slow?ms=4000 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        started = time.monotonic()
        assert _status(_response(sock)) == 504
        assert time.monotonic() - started < 2
    # idle after requests: closed at keepalive_timeout, not before and not much after
    with _kept_alive(proxy, 5) as sock:
        started = time.monotonic()
        assert not _closed_within(sock, 2)
        assert _closed_within(sock, 3)
        assert 2.5 < time.monotonic() - started < 5


def test_every_request_leaves_its_backends_in_flight_count_whatever_its_end(live_backends, start_proxy):
    dead = f"127.0.0.1:{free_port()}"  # refuses connections: every request that picks it is retried
    proxy = start_proxy(f"{live_backends.spec()},{dead}", read_timeout=0.5, passive_failures=1000,
                        health_interval=60)
    for _ in range(12):  # answered (some after a refused connect)
        assert requests.get(proxy.url + "/whoami", timeout=5).status_code == 200
    assert requests.post(proxy.url + "/slow?ms=3000", timeout=5).status_code == 504
    for _ in range(4):  # clients that leave while their backend is still at it
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"GET /slow?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.1)
    pipelined = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n" * 3
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(pipelined)
        assert [_status(_response(sock)) for _ in range(3)] == [200, 200, 200]

    def settled():
        backends = proxy.status()["backends"]
        assert all(b["in_flight"] >= 0 for b in backends), backends
        return all(b["in_flight"] == 0 for b in backends)

    wait_until(settled, 5, what="every backend's in_flight back to 0")
    status = proxy.status()
    assert next(b for b in status["backends"] if b["name"] == dead)["failures"] > 0  # it was tried
    assert status["totals"]["requests"] >= 12 + 1 + 4 + 3


def test_a_response_s_fields_are_sorted_out_in_one_pass_and_named_hop_by_hop_ones_dropped():
    from proxy.cycle import _response_fields

    headers = [(b"Server", b"gunicorn"), (b"Connection", b"keep-alive"), (b"Content-Length", b"16"),
               (b"X-Request-ID", b"theirs"), (b"Content-Type", b"application/json"), (b"Keep-Alive", b"timeout=5")]
    lines = []
    assert _response_fields(headers, lines, frozenset()) == (b"16", False, False, False)
    assert lines == [b"Server: gunicorn", b"Content-Type: application/json"]
    # a Connection field naming a field: the caller is told, and drops it on the second pass
    headers = [(b"connection", b"close, X-Hop"), (b"X-Hop", b"1"), (b"Transfer-Encoding", b"chunked"),
               (b"content-type", b"text/event-stream; charset=utf-8"), (b"Via", b"1.1 other")]
    lines = []
    assert _response_fields(headers, lines, frozenset()) == (None, True, True, True)
    assert lines == [b"X-Hop: 1", b"content-type: text/event-stream; charset=utf-8"]
    lines = []
    _response_fields(headers, lines, frozenset({b"x-hop"}))
    assert lines == [b"content-type: text/event-stream; charset=utf-8"]
    # no Content-Type: nothing said about streaming
    assert _response_fields([(b"Content-Length", b"0")], [], frozenset()) == (b"0", False, None, False)
