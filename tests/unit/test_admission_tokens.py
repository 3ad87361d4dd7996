"""Admission tokens (``AdmissionTokens``): a valid one grants exactly one user one showtime
until it expires; anything else, however close, grants nothing."""
from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from app.adapters.tokens import AdmissionTokens, TokenMinter
from app.config import JWT_ALGORITHM

KEY = "admission-key-" + "k" * 64
tokens = AdmissionTokens(KEY, JWT_ALGORITHM)
USER, SHOWTIME, NUMBER = 7, 42, 311


def in_a_minute_ms() -> int:
    return int(time.time() * 1000) + 60_000


def valid() -> str:
    return tokens.sign(USER, SHOWTIME, NUMBER, in_a_minute_ms())


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_a_valid_token_grants_its_user_its_showtime():
    admission = tokens.verify(valid(), USER, SHOWTIME)
    assert admission is not None
    assert (admission.user_id, admission.showtime_id, admission.number) == (USER, SHOWTIME, NUMBER)


def test_it_expires_with_the_session():
    until_ms = in_a_minute_ms()
    assert tokens.verify(tokens.sign(USER, SHOWTIME, NUMBER, until_ms), USER, SHOWTIME).expires_at == until_ms // 1000
    assert tokens.verify(tokens.sign(USER, SHOWTIME, NUMBER, int(time.time() * 1000) - 1000), USER, SHOWTIME) is None


def test_it_grants_nothing_to_another_user_or_for_another_showtime():
    assert tokens.verify(valid(), USER + 1, SHOWTIME) is None
    assert tokens.verify(valid(), USER, SHOWTIME + 1) is None


def _forgeries() -> dict[str, str]:
    claims = {**_claims(valid())}
    header, payload, signature = valid().split(".")
    minted = TokenMinter(KEY, JWT_ALGORITHM, 900, 3600).mint("access", str(USER), {"st": SHOWTIME, "n": NUMBER})
    return {
        "another key": jwt.encode(claims, "another-key-" + "x" * 64, JWT_ALGORITHM),
        "a tampered payload": ".".join([header, _b64({**claims, "sub": str(USER + 1)}), signature]),
        "the payload of another showtime": ".".join([header, _b64({**claims, "st": SHOWTIME + 1}), signature]),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "alg none, unsigned": ".".join([_b64({"alg": "none", "typ": "JWT"}), payload, ""]),
        "another HMAC algorithm": jwt.encode(claims, KEY, "HS384"),
        "no audience": jwt.encode({k: v for k, v in claims.items() if k != "aud"}, KEY, JWT_ALGORITHM),
        "another audience": jwt.encode({**claims, "aud": "marquee:access"}, KEY, JWT_ALGORITHM),
        "no expiry": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, KEY, JWT_ALGORITHM),
        "no number": jwt.encode({k: v for k, v in claims.items() if k != "n"}, KEY, JWT_ALGORITHM),
        "a showtime as text": jwt.encode({**claims, "st": str(SHOWTIME)}, KEY, JWT_ALGORITHM),
        "an access token with the same key and claims": minted.token,
        "too long": jwt.encode({**claims, "pad": "x" * 2048}, KEY, JWT_ALGORITHM),
        "not a token": "not.a.token",
        "empty": "",
    }


@pytest.mark.parametrize("forgery", list(_forgeries()))
def test_a_forged_token_grants_nothing(forgery):
    assert tokens.verify(_forgeries()[forgery], USER, SHOWTIME) is None
