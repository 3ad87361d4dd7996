"""The client address used by login throttling: X-Forwarded-For only from a trusted proxy."""
from app.api.security import resolve_client_address
from app.config import _networks

TRUSTED = _networks("127.0.0.1/32,10.0.0.0/8")


def test_peer_is_the_client_when_not_a_trusted_proxy():
    assert resolve_client_address("203.0.113.9", "198.51.100.1", TRUSTED) == "203.0.113.9"


def test_forwarded_for_is_used_from_a_trusted_proxy():
    assert resolve_client_address("127.0.0.1", "198.51.100.1", TRUSTED) == "198.51.100.1"


def test_spoofed_left_entries_are_ignored():
    # The client sent "X-Forwarded-For: 1.2.3.4"; our proxy appended the real address.
    assert resolve_client_address("127.0.0.1", "1.2.3.4, 198.51.100.1", TRUSTED) == "198.51.100.1"


def test_chains_of_trusted_proxies_are_skipped():
    assert resolve_client_address("127.0.0.1", "198.51.100.1, 10.1.2.3", TRUSTED) == "198.51.100.1"


def test_garbage_header_falls_back_to_the_peer():
    assert resolve_client_address("127.0.0.1", "not-an-ip", TRUSTED) == "127.0.0.1"
    assert resolve_client_address("127.0.0.1", "", TRUSTED) == "127.0.0.1"
