"""Signed session tokens (PyJWT), minted without Flask.

The tokens carry the claims Flask-JWT-Extended reads when the web app verifies
them (``sub``, ``jti``, ``type``, ``fresh``, ``iat``, ``nbf``, ``exp``), signed
with the one pinned algorithm, so minting needs no app and verifying stays with
the library in the HTTP layer.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum

import jwt


class RotateOutcome(IntEnum):
    """What ``rotate_refresh.lua`` answers."""

    ROTATED = 1
    UNKNOWN = 0  # no such family, or it has ended
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
        """An ``access`` or ``refresh`` token for ``identity`` with extra ``claims``."""
        now = datetime.now(timezone.utc)
        jti = str(uuid.uuid4())
        payload = {"fresh": False, "iat": now, "nbf": now, "jti": jti, "type": token_type, "sub": identity,
                   "exp": now + self._lifetimes[token_type], **claims}
        return MintedToken(jwt.encode(payload, self._secret, self._algorithm), jti)
