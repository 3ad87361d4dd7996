"""SSRF guard of outbound webhooks (app.adapters.webhook_sender): which addresses are
public, URL checks at creation, and the check at connection time against the address
actually connected to (a name that re-resolves to loopback: DNS rebinding)."""
from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.adapters import webhook_sender
from app.adapters.webhook_sender import Sender, check_url, public

NOT_PUBLIC = ["127.0.0.1", "127.255.0.9", "10.0.0.1", "172.16.5.4", "192.168.0.1", "169.254.169.254", "0.0.0.0",
              "100.64.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.10", "198.18.0.1",
              "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "::ffff:127.0.0.1",
              "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1", "2001:db8::1", "64:ff9b::7f00:1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_refused(address):
    assert public(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert public(ipaddress.ip_address(address)) is True


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8080/x", "http://[::1]/x",
                                 "http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:127.0.0.1]/x", "http://2130706433/x", "http://0x7f.0.0.1/x",
                                 "http://0/x"])
def test_loopback_private_and_metadata_urls_are_refused_by_default(url):
    assert "not a public address" in check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8080/x", "http://[::1]/x"])
def test_the_setting_allows_them(url):
    assert check_url(url, allow_private=True) is None


@pytest.mark.parametrize("url, why", [("ftp://example.com/", "http or https"), ("file:///etc/passwd", "http or https"),
                                      ("http:///x", "no host"), ("https://u:p@example.com/", "credentials"),
                                      ("http://example.com:99999/", "Not a valid URL"),
                                      ("http://no-such-host.invalid/", "cannot resolve")])
def test_malformed_urls_are_refused(url, why):
    assert why in check_url(url, allow_private=False)


def _resolving_to(address):
    def fake(host, port, *args, **kwargs):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]
    return fake


@pytest.fixture
def loopback_receiver():
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            hits.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()


def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_at_connection(monkeypatch, loopback_receiver):
    port, hits = loopback_receiver
    monkeypatch.setattr(webhook_sender.socket, "getaddrinfo", _resolving_to("93.184.216.34"))
    assert check_url(f"http://hooks.example.com:{port}/x", allow_private=False) is None  # public at creation
    monkeypatch.setattr(webhook_sender.socket, "getaddrinfo", _resolving_to("127.0.0.1"))  # rebound
    outcome = Sender(timeout_seconds=2, allow_private=False).post(f"http://hooks.example.com:{port}/x", b"{}", {})
    assert outcome.status_code is None and "not a public address" in outcome.error
    assert hits == []  # nothing reached the loopback receiver


def test_the_sender_connects_to_the_vetted_address_and_posts(monkeypatch, loopback_receiver):
    port, hits = loopback_receiver
    monkeypatch.setattr(webhook_sender.socket, "getaddrinfo", _resolving_to("127.0.0.1"))
    outcome = Sender(timeout_seconds=2, allow_private=True).post(f"http://hooks.example.com:{port}/x", b'{"a":1}', {})
    assert outcome.delivered and outcome.status_code == 200 and hits == [b'{"a":1}']


def test_redirects_are_not_followed(loopback_receiver):
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(307)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        outcome = Sender(timeout_seconds=2, allow_private=True).post(
            f"http://127.0.0.1:{server.server_address[1]}/x", b"{}", {})
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.status_code == 307 and not outcome.delivered and outcome.error == "HTTP 307"


def test_a_receiver_that_does_not_answer_times_out():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        outcome = Sender(timeout_seconds=0.5, allow_private=True).post(
            f"http://127.0.0.1:{silent.getsockname()[1]}/x", b"{}", {})
    finally:
        silent.close()
    assert outcome.status_code is None and "timed out" in outcome.error.lower() and outcome.duration_ms < 3000
