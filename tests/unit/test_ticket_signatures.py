"""Ticket codes as a scanner sees them: Ed25519 signatures checked with nothing but a
JWKS (RFC 7517/8037), the kid as an RFC 7638 thumbprint, forgeries refused.

``verify_with_jwks`` is what a scanner app does offline, written from the format
documented in ``app.services.tickets`` with ``cryptography`` alone: no app, no
database, no secret. The integration tests use it on codes the server issued.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime, timezone

import pytest
import segno
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.services import ticket_keys, tickets

# RFC 8037, appendix A.1 and A.3: an Ed25519 key and its JWK thumbprint.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify_with_jwks(jwks: dict, code: str) -> dict | None:
    """A scanner's offline check: the claims of a genuine v2 code, else None."""
    match = re.fullmatch(r"v2\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)", code)
    if match is None:
        return None
    kid, payload, signature = match.groups()
    key = next((k for k in jwks["keys"] if k["kid"] == kid), None)
    if key is None or (key["kty"], key["crv"], key["alg"]) != ("OKP", "Ed25519", "EdDSA"):
        return None
    try:
        Ed25519PublicKey.from_public_bytes(_unb64(key["x"])).verify(_unb64(signature), f"v2.{kid}.{payload}".encode())
    except (InvalidSignature, ValueError):
        return None
    ticket, reservation, showtime, seat, starts = (int(p) for p in _unb64(payload).decode().split(":"))
    return {"ticket_id": ticket, "reservation_id": reservation, "showtime_id": showtime, "seat_id": seat,
            "starts_at": datetime.fromtimestamp(starts, timezone.utc), "kid": kid}


def _key(seed: bytes | None = None) -> tuple[ticket_keys.SigningKey, dict]:
    private = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()
    public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = ticket_keys.kid_of(public_raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(public_raw), "kid": kid, "use": "sig", "alg": "EdDSA"}
    return ticket_keys.SigningKey(kid, private), jwk


STARTS = datetime(2026, 12, 4, 19, 0, tzinfo=timezone.utc)
CLAIMS = {"ticket_id": 901, "reservation_id": 314, "showtime_id": 42, "seat_id": 104, "starts_at": STARTS}


def test_the_kid_is_the_rfc7638_thumbprint_of_the_rfc8037_key():
    key, jwk = _key(_unb64(RFC8037_D))
    assert jwk["x"] == RFC8037_X
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": RFC8037_X}, separators=(",", ":"))
    assert _b64(hashlib.sha256(canonical.encode()).digest()) == RFC8037_THUMBPRINT
    assert key.kid == RFC8037_THUMBPRINT[:ticket_keys.KID_LENGTH]


def test_a_code_verifies_with_the_public_key_set_alone():
    key, jwk = _key()
    code = tickets.make_code(key, **CLAIMS)
    assert code.startswith(f"v2.{key.kid}.") and len(code) <= tickets.MAX_CODE_LENGTH
    assert tickets.CODE_SHAPE.match(code)
    assert verify_with_jwks({"keys": [jwk]}, code) == {**CLAIMS, "kid": key.kid}
    # Deterministic (RFC 8032): one ticket, one code.
    assert tickets.make_code(key, **CLAIMS) == code


def test_the_largest_ids_still_fit_the_column_and_a_small_qr_code():
    key, _jwk = _key()
    big = 2**63 - 1
    code = tickets.make_code(key, ticket_id=big, reservation_id=big, showtime_id=big, seat_id=big,
                             starts_at=datetime(2199, 12, 31, tzinfo=timezone.utc))
    assert len(code) <= tickets.MAX_CODE_LENGTH and tickets.CODE_SHAPE.match(code)
    typical = tickets.make_code(key, **CLAIMS)
    assert segno.make(typical, error="m").version <= 9  # 53x53 modules: any phone camera reads it


def test_a_changed_payload_fails():
    key, jwk = _key()
    version, kid, payload, signature = tickets.make_code(key, **CLAIMS).split(".")
    other_seat = _b64(_unb64(payload).replace(b":104:", b":105:"))
    assert verify_with_jwks({"keys": [jwk]}, f"{version}.{kid}.{other_seat}.{signature}") is None


def test_a_code_signed_by_another_key_fails_under_its_own_kid_and_under_ours():
    ours, jwk = _key()
    theirs, _their_jwk = _key()
    forged_unknown_kid = tickets.make_code(theirs, **CLAIMS)
    assert verify_with_jwks({"keys": [jwk]}, forged_unknown_kid) is None
    forged_known_kid = tickets.make_code(ticket_keys.SigningKey(ours.kid, theirs.private), **CLAIMS)
    assert forged_known_kid.split(".")[1] == ours.kid
    assert verify_with_jwks({"keys": [jwk]}, forged_known_kid) is None


def test_the_kid_is_signed_too():
    """A code moved under another published kid fails: the kid is in the signed bytes."""
    first, first_jwk = _key()
    second, second_jwk = _key()
    version, _kid, payload, signature = tickets.make_code(first, **CLAIMS).split(".")
    moved = f"{version}.{second.kid}.{payload}.{signature}"
    assert verify_with_jwks({"keys": [first_jwk, second_jwk]}, moved) is None


@pytest.mark.parametrize("garbage", ["", "v2", "v2...", "v2.a.b.c", "v1.x.y.z", "\u00e2\u00f5.\u00f0", "v2." + "A" * 300])
def test_garbage_is_not_a_code(garbage):
    assert not tickets.CODE_SHAPE.match(garbage)
    assert tickets.read_code(garbage) is None  # refused on its shape, before any key lookup
