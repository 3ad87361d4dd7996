"""The Ed25519 keys that sign ticket codes, and their public set (JWKS).

- One key is current: it signs every new ticket. It is created on first use (a fresh
  Ed25519 key from the OS's random source), its private half stored encrypted in
  ``ticket_keys`` (AES-256-GCM under the settings' ``ticket_keys_encryption_key``, the
  kid as associated data, so a sealed key cannot be moved to another row).
- :func:`rotate` retires it and makes a new one current, in one transaction. A retired
  key's private half is erased then (nothing signs with it again); its public half stays
  in the JWKS (:func:`jwks`) while a showtime it signed a ticket for has not ended
  (``signed_until``, raised by :func:`note_signed` in the issuing transaction), then
  drops out. The server itself still verifies codes of every key it ever made, so that
  scans of a past show uploaded late are judged, not refused.
- The kid is the RFC 7638 thumbprint of the public key, shortened (72 bits).

No private key ever leaves this module: not in the JWKS, the audit log or a log line.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import bindparam, insert, or_, select, text, update

from app import db
from app.adapters import sealing
from app.bootstrap import marquee
from app.models import AuditEntry, TicketKey
from app.services import audit, errors

# pg_advisory_xact_lock key: one creation or rotation of the current key at a time.
KEY_LOCK = 0x6D71_0C23  # "mq" check-in (migration 0023)
KID_LENGTH = 12  # base64url characters of the thumbprint: 72 bits


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text_: str) -> bytes:
    return base64.urlsafe_b64decode(text_ + "=" * (-len(text_) % 4))


def kid_of(public_raw: bytes) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256 of the canonical required members),
    base64url, cut to ``KID_LENGTH`` characters."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url(public_raw)},
                           separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())[:KID_LENGTH]


def jwk(key: TicketKey) -> dict:
    """The public JWK of a key (RFC 8037): never anything private."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_key), "kid": key.kid,
            "use": "sig", "alg": "EdDSA"}


# --- sealing the private halves ---------------------------------------------------

def _seal(seed: bytes, kid: str) -> bytes:
    return sealing.seal(marquee().settings.ticket_keys_encryption_key, seed, kid.encode())


def _unseal(blob: bytes, kid: str) -> Ed25519PrivateKey:
    try:
        seed = sealing.unseal(marquee().settings.ticket_keys_encryption_key, blob, kid.encode())
    except sealing.Unsealable:
        raise errors.ServiceUnavailable(
            "The ticket signing key cannot be decrypted: TICKET_KEYS_ENCRYPTION_KEY is not the one it was "
            "stored under") from None
    return Ed25519PrivateKey.from_private_bytes(seed)


def _new_key_row() -> tuple[dict, Ed25519PrivateKey]:
    private = Ed25519PrivateKey.generate()
    public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    kid = kid_of(public_raw)
    return {"kid": kid, "public_key": public_raw, "private_key_encrypted": _seal(seed, kid)}, private


# --- caches: a kid names one key pair forever -------------------------------------

class _KeyCache:
    """Keys by kid, per process. A kid is a hash of its public key, so what it names
    never changes: nothing to invalidate (a retired key is simply no longer asked for
    to sign, since the current kid is read from the database each time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}

    def private(self, kid: str, blob: bytes) -> Ed25519PrivateKey:
        with self._lock:
            found = self._private.get(kid)
        if found is None:
            found = _unseal(blob, kid)
            with self._lock:
                self._private[kid] = found
        return found

    def public(self, kid: str) -> Ed25519PublicKey | None:
        with self._lock:
            found = self._public.get(kid)
        if found is None:
            raw = db.session.scalar(select(TicketKey.public_key).where(TicketKey.kid == kid))
            if raw is None:
                return None
            found = Ed25519PublicKey.from_public_bytes(raw)
            with self._lock:
                self._public[kid] = found
        return found


_cache = _KeyCache()


# --- the current key ----------------------------------------------------------------

_CURRENT = select(TicketKey.kid, TicketKey.private_key_encrypted).where(TicketKey.retired_at.is_(None))


def _current_row():
    return db.session.execute(_CURRENT).one_or_none()


def _create_first_key() -> None:
    """The first key, in a transaction of its own (not the caller's: a confirmation
    that rolls back must not take the key with it, nor hold the lock meanwhile)."""
    with marquee().engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": KEY_LOCK})
        if connection.scalar(select(TicketKey.id).where(TicketKey.retired_at.is_(None))) is not None:
            return  # another process made it while this one waited
        row, _private = _new_key_row()
        connection.execute(insert(TicketKey).values(**row))
        connection.execute(insert(AuditEntry).values(
            action="ticket_key.create", actor_id=None, object_type="ticket_key", object_id=row["kid"],
            after={"kid": row["kid"], "reason": "first use"}))


def current() -> SigningKey:
    """The key that signs new tickets (made on first use)."""
    row = _current_row()
    if row is None:
        _create_first_key()
        row = _current_row()
    return signing_key(row.kid, row.private_key_encrypted)


def signing_key(kid: str, sealed_private_key: bytes) -> SigningKey:
    """The key ``kid`` as read from its row by a caller's own statement (its private half
    unsealed once per process)."""
    return SigningKey(kid, _cache.private(kid, sealed_private_key))


def public_key(kid: str) -> Ed25519PublicKey | None:
    """The public key of any key this server ever made, retired ones included."""
    return _cache.public(kid)


_KEYS = TicketKey.__table__
_NOTE_SIGNED = update(_KEYS).where(
    _KEYS.c.kid == bindparam("signer"),
    or_(_KEYS.c.signed_until.is_(None), _KEYS.c.signed_until < bindparam("ends_at")),
).values(signed_until=bindparam("ends_at"))


def note_signed(kid: str, showtime_ends_at: datetime) -> None:
    """In the issuing transaction: ``kid`` signed a ticket of a showtime ending then.
    Takes the key's row lock only when it raises ``signed_until`` (the first ticket of a
    later show), so confirmations of one show do not queue behind each other. A statement
    on the table, not the ORM's bulk UPDATE, which also looks for the key among the
    session's objects to update them (about a twelfth of a confirmation's CPU in a py-spy
    profile; none is loaded here)."""
    db.session.execute(_NOTE_SIGNED, {"signer": kid, "ends_at": showtime_ends_at})


# --- rotation and the public set ----------------------------------------------------------

def rotate(*, actor_id: int | None, ip: str | None = None) -> tuple[TicketKey, TicketKey | None]:
    """Retire the current key (its private half erased) and make a new one current:
    new tickets are signed with the new key from the commit on. Returns (new, retired)."""
    with db.unit_of_work():
        db.xact_lock(KEY_LOCK)
        old = db.session.scalar(select(TicketKey).where(TicketKey.retired_at.is_(None)).with_for_update())
        before = None
        if old is not None:
            before = _described(old)
            old.retired_at = datetime.now(timezone.utc)
            old.private_key_encrypted = None
            db.session.flush()  # the old key leaves the "current" index before the new one enters
        row, _private = _new_key_row()
        new = TicketKey(**row)
        db.session.add(new)
        db.session.flush()
        audit.record("ticket_key.rotate", actor_id=actor_id, object_type="ticket_key", object_id=new.kid,
                     before=before, after=_described(new), ip=ip)
    return new, old


def _described(key: TicketKey) -> dict:
    """What the audit log keeps of a key: public facts only."""
    return {"kid": key.kid, "x": b64url(key.public_key), "retired_at": key.retired_at,
            "signed_until": key.signed_until}


def published(at: datetime | None = None) -> list[TicketKey]:
    """The keys a scanner needs at ``at`` (default now): the current one, and every
    retired one whose signed tickets' showtimes have not all ended. Current first,
    then newest first."""
    at = at or datetime.now(timezone.utc)
    if _current_row() is None:
        _create_first_key()
    return list(db.session.scalars(
        select(TicketKey).where(or_(TicketKey.retired_at.is_(None), TicketKey.signed_until >= at))
        .order_by(TicketKey.retired_at.is_(None).desc(), TicketKey.id.desc())))


def jwks(at: datetime | None = None) -> dict:
    """The JSON Web Key Set of :func:`published` keys (RFC 7517, RFC 8037)."""
    return {"keys": [jwk(key) for key in published(at)]}


def describe_all() -> list[dict]:
    """Every key, for an operator (CLI): kid, created, retired, signed until."""
    return [{"kid": k.kid, "created_at": k.created_at, "retired_at": k.retired_at, "signed_until": k.signed_until,
             "can_sign": k.private_key_encrypted is not None}
            for k in db.session.scalars(select(TicketKey).order_by(TicketKey.id))]
