"""Signed session tokens (PyJWT), minted without Flask.

The tokens carry the claims Flask-JWT-Extended reads when the web app verifies
them (``sub``, ``jti``, ``type``, ``fresh``, ``iat``, ``nbf``, ``exp``), signed
with the one pinned algorithm, so minting needs no app and verifying stays with
the library in the HTTP layer.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum

import jwt
import redis

from app.adapters.redis_store import RedisStore


def revocations_key(store: RedisStore) -> str:
    """The zset of live revocation markers by expiry (ms), which app processes mirror
    (``PushedState``); the markers themselves are keys with a TTL."""
    return store.key("auth", "revoked")


def session_cutoff_key(store: RedisStore, user_id: int | str) -> str:
    """A user's session cut-off marker: its value is the instant (microseconds since the
    epoch, Redis's clock) before which every token of that user is void. It lives in the
    revocations zset like the other markers, and in each process's mirror with the
    cut-off as its value (the other markers carry their expiry)."""
    return store.key("auth", "cut", str(user_id))


def live_revocations(store: RedisStore) -> Callable[[redis.Redis], dict[str, str]]:
    """Load the live revocations, ``{marker key: expiry ms}``, and the session cut-offs,
    ``{cut-off key: cut-off us}`` (``PushedState``'s load)."""
    cut_prefix = session_cutoff_key(store, "")

    def load(client: redis.Redis) -> dict[str, str]:
        now_ms = int(time.time() * 1000)
        live = {member.decode(): str(int(score))
                for member, score in client.zrangebyscore(revocations_key(store), now_ms, "+inf", withscores=True)}
        cuts = [marker for marker in live if marker.startswith(cut_prefix)]
        for marker, cutoff in zip(cuts, client.mget(cuts) if cuts else [], strict=True):
            if cutoff is None:
                del live[marker]  # expired meanwhile: every token it voided has expired too
            else:
                live[marker] = cutoff.decode()
        return live
    return load


def issued_at_us(claims: dict) -> int:
    """A token's ``iat`` in microseconds (tokens carry it with that precision)."""
    return round(float(claims.get("iat", 0)) * 1_000_000)


class RotateOutcome(IntEnum):
    """What ``rotate_refresh.lua`` answers."""

    ROTATED = 1
    UNKNOWN = 0  # no such family, or it has ended, or the user's sessions were cut off since
    REUSED = -1  # a retired token came back: the family is revoked


@dataclass(frozen=True)
class MintedToken:
    token: str
    jti: str


class TokenMinter:
    def __init__(self, secret: str, algorithm: str, access_seconds: int, refresh_seconds: int) -> None:
        self._secret, self._algorithm = secret, algorithm
        self._lifetimes = {"access": timedelta(seconds=access_seconds),
                           "refresh": timedelta(seconds=refresh_seconds)}

    def mint(self, token_type: str, identity: str, claims: dict) -> MintedToken:
        """An ``access`` or ``refresh`` token for ``identity`` with extra ``claims``.

        ``iat`` keeps microseconds (a JSON number with a fraction, as RFC 7519 allows):
        a session cut-off voids the tokens issued before it, so a token minted a moment
        after one must say so."""
        now = datetime.now(timezone.utc)
        jti = str(uuid.uuid4())
        payload = {"fresh": False, "iat": now.timestamp(), "nbf": now, "jti": jti, "type": token_type, "sub": identity,
                   "exp": now + self._lifetimes[token_type], **claims}
        return MintedToken(jwt.encode(payload, self._secret, self._algorithm), jti)

    def verify(self, token: str, token_type: str = "access") -> dict:
        """The claims of a ``token_type`` token this server minted, checked as the web app's
        flask-jwt-extended checks them, for the processes without Flask (the live process):
        the one pinned algorithm, the signature, ``exp`` and ``nbf`` (no leeway), the claims
        a minted token always has, and its type. Revocation is the caller's (the services).
        Raises ``jwt.ExpiredSignatureError`` or another ``jwt.PyJWTError``."""
        claims = jwt.decode(token, self._secret, algorithms=[self._algorithm],
                            options={"require": ["exp", "nbf", "iat", "jti", "sub", "type"]})
        if claims["type"] != token_type:
            raise jwt.InvalidTokenError(f"not an {token_type} token")
        return claims


@dataclass(frozen=True)
class Admission:
    user_id: int
    showtime_id: int
    number: int
    expires_at: int  # epoch seconds


class AdmissionTokens:
    """A waiting room's admission: signed (HMAC, the one pinned algorithm) for one user and
    one showtime, expiring when the session's time is up. Checked without the database: a
    signature, the audience, the expiry, and that the caller and showtime are the token's."""

    AUDIENCE = "marquee:admission"

    def __init__(self, secret: str, algorithm: str) -> None:
        self._secret, self._algorithm = secret, algorithm

    def sign(self, user_id: int, showtime_id: int, number: int, expires_at_ms: int) -> str:
        now = datetime.now(timezone.utc)
        return jwt.encode({"sub": str(user_id), "st": showtime_id, "n": number, "aud": self.AUDIENCE,
                           "iat": now, "exp": expires_at_ms // 1000}, self._secret, self._algorithm)

    def verify(self, token: str | None, user_id: int, showtime_id: int) -> Admission | None:
        """The admission ``token`` grants ``user_id`` for ``showtime_id`` now; None if it is
        missing, forged, expired, or someone else's or another showtime's."""
        if not token or len(token) > 2048:
            return None
        try:
            claims = jwt.decode(token, self._secret, algorithms=[self._algorithm], audience=self.AUDIENCE,
                                options={"require": ["exp", "sub", "aud"]})
        except jwt.PyJWTError:
            return None
        if claims.get("sub") != str(user_id) or claims.get("st") != showtime_id or not isinstance(claims.get("n"), int):
            return None
        return Admission(user_id, showtime_id, claims["n"], int(claims["exp"]))
