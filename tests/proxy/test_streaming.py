"""Bodies flow through without being held whole: chunked and sized uploads and downloads
far larger than the proxy's memory peak, back-pressure from a reader that stops, and
server-sent events delivered as they are sent."""
from __future__ import annotations

import hashlib
import socket
import time

import requests

from tests.proxy.conftest import wait_until

MIB = 1024 * 1024
PATTERN = bytes(range(256)) * 256  # what backend_app's /download sends, repeated


def _pieces(total: int, size: int = 256 * 1024):
    block = bytes(range(256)) * (size // 256)
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece


def _sha(total: int) -> str:
    digest = hashlib.sha256()
    for piece in _pieces(total):
        digest.update(piece)
    return digest.hexdigest()


def test_chunked_upload_larger_than_the_proxy_would_hold(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), max_body_bytes=0)
    total = 128 * MIB
    response = requests.post(proxy.url + "/echo", data=_pieces(total), timeout=120)  # generator: chunked
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["chunked"] is True
    assert body["length"] == total and body["sha256"] == _sha(total)
    assert proxy.rss_peak_kib() < 64 * 1024  # never near the body's 128 MiB


def test_sized_upload_streams_with_its_content_length(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), max_body_bytes=0)
    total = 32 * MIB
    data = b"".join(_pieces(total))
    response = requests.post(proxy.url + "/echo", data=data, timeout=120)
    body = response.json()
    assert body["chunked"] is False and body["content_length"] == str(total)
    assert body["length"] == total and body["sha256"] == hashlib.sha256(data).hexdigest()


def test_chunked_download_larger_than_the_proxy_would_hold(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec())
    total = 128 * MIB
    with requests.get(proxy.url + f"/download?bytes={total}", stream=True, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        digest, length = hashlib.sha256(), 0
        for piece in response.iter_content(256 * 1024):
            digest.update(piece)
            length += len(piece)
    expected = hashlib.sha256()
    left = total
    while left:
        piece = PATTERN[: min(left, len(PATTERN))]
        expected.update(piece)
        left -= len(piece)
    assert length == total and digest.hexdigest() == expected.hexdigest()
    assert proxy.rss_peak_kib() < 64 * 1024


def test_a_reader_that_stops_pauses_the_backend_instead_of_filling_the_proxy(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec())
    total = 256 * MIB
    with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"GET /download?bytes={total} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        received = len(sock.recv(65536))
        time.sleep(2)  # read nothing: if the proxy buffered, it would take in ~all 256 MiB here
        paused_peak = proxy.rss_peak_kib()
        sock.settimeout(30)
        while True:
            data = sock.recv(1024 * 1024)
            if not data:
                break
            received += len(data)
            if received >= total:
                break
    assert paused_peak < 64 * 1024
    assert received >= total * 0.99


def test_server_sent_events_arrive_as_they_are_sent(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec())
    arrivals = []
    started = time.monotonic()
    with requests.get(proxy.url + "/sse?n=5&interval_ms=400", stream=True, timeout=30,
                      headers={"Accept": "text/event-stream"}) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        buffer = b""
        for piece in response.iter_content(chunk_size=None):
            buffer += piece
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                arrivals.append((time.monotonic() - started, event))
    assert [event.split(b"\n")[0] for _, event in arrivals] == [b"id: %d" % i for i in range(5)]
    # the stream lasts 1.6 s; had the proxy buffered it, every event would arrive at its end
    assert arrivals[-1][0] - arrivals[0][0] >= 1.2


def test_head_and_no_content_responses_keep_the_connection_usable(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec())
    with requests.Session() as session:
        head = session.head(proxy.url + "/whoami", timeout=10)
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["Content-Length"]) > 0
        after = session.get(proxy.url + "/whoami", timeout=10)
        assert after.status_code == 200 and after.json()["backend"]
    wait_until(lambda: proxy.status()["totals"]["requests"] == 2, 5, what="two requests logged")
