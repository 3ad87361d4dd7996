"""Secrets kept in the database, sealed: AES-256-GCM with a fresh 96-bit nonce, stored as
``nonce || ciphertext+tag``. ``context`` (associated data) binds a sealed value to what it
belongs to (a user, a key id), so a value copied to another row does not open there.

Used for the TOTP secrets (``MFA_ENCRYPTION_KEY``), the Ed25519 ticket keys' private
halves (``TICKET_KEYS_ENCRYPTION_KEY``) and the outbound webhooks' signing secrets; each
service chooses its key, its context and what a value that does not open means."""
from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class Unsealable(Exception):
    """The value was sealed under another key or context (or altered)."""


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def unseal(key: bytes, sealed: bytes, context: bytes) -> bytes:
    sealed = bytes(sealed)
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], context)
    except InvalidTag:
        raise Unsealable("sealed under another key or context") from None
