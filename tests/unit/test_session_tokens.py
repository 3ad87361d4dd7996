"""Session tokens say when they were issued to the microsecond: a session cut-off voids
those issued before it, and a token minted right after one must not be mistaken for them."""
from __future__ import annotations

import time

import jwt

from app.adapters.tokens import TokenMinter, issued_at_us

SECRET = "unit-test-secret-" + "x" * 32


def _minter() -> TokenMinter:
    return TokenMinter(SECRET, "HS256", access_seconds=900, refresh_seconds=3600)


def test_iat_keeps_microseconds_and_verifies():
    before = time.time()
    minted = _minter().mint("access", "7", {"fam": "f"})
    claims = jwt.decode(minted.token, SECRET, algorithms=["HS256"])  # the library accepts a fractional iat
    assert isinstance(claims["iat"], float)
    assert before * 1_000_000 <= issued_at_us(claims) <= time.time() * 1_000_000
    assert claims["sub"] == "7" and claims["type"] == "access" and claims["exp"] > claims["iat"]


def test_tokens_minted_one_after_the_other_are_ordered():
    minter = _minter()
    stamps = [issued_at_us(jwt.decode(minter.mint("refresh", "7", {}).token, SECRET, algorithms=["HS256"]))
              for _ in range(50)]
    assert stamps == sorted(stamps) and len(set(stamps)) > 1  # not all in one second's bucket


def test_a_token_without_iat_counts_as_issued_at_the_epoch():
    assert issued_at_us({}) == 0 and issued_at_us({"iat": 1.5}) == 1_500_000


def test_verify_takes_only_our_access_tokens_signed_with_the_pinned_algorithm():
    import pytest

    minter = _minter()
    claims = minter.verify(minter.mint("access", "7", {"role": "admin"}).token)
    assert claims["sub"] == "7" and claims["role"] == "admin"
    with pytest.raises(jwt.InvalidTokenError, match="access"):
        minter.verify(minter.mint("refresh", "7", {}).token)  # a refresh token is no access token
    expired = TokenMinter(SECRET, "HS256", access_seconds=-1, refresh_seconds=1).mint("access", "7", {}).token
    with pytest.raises(jwt.ExpiredSignatureError):
        minter.verify(expired)
    unsigned = jwt.encode({"sub": "7", "type": "access", "jti": "j", "iat": time.time(), "nbf": time.time(),
                           "exp": time.time() + 60}, None, algorithm="none")
    with pytest.raises(jwt.InvalidAlgorithmError):
        minter.verify(unsigned)
    other_key = TokenMinter("another-secret-" + "y" * 32, "HS256", 900, 3600).mint("access", "7", {}).token
    with pytest.raises(jwt.InvalidSignatureError):
        minter.verify(other_key)
    missing = jwt.encode({"sub": "7", "type": "access", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    with pytest.raises(jwt.MissingRequiredClaimError):
        minter.verify(missing)
