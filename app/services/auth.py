"""Accounts and sessions: registration, login throttling, token rotation and
revocation.

Sessions are *families* of refresh tokens. Each refresh hands out a new refresh
token and retires the old one; presenting a retired one again means it was
stolen, so the whole family (and its access tokens) is revoked. Logout revokes
the access token in hand at once and ends its family.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import db
from app.adapters.tokens import RotateOutcome, revocations_key
from app.bootstrap import marquee
from app.models import User
from app.services import errors


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_jti: str

    def as_dict(self) -> dict:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }



def normalize_email(email: str) -> str:
    return email.strip().lower()


def register(email: str, password: str, name: str, role: str = "user") -> User:
    """Create an account; ``EmailTaken`` if the address is already registered."""
    password_hash = marquee().passwords.hash(password)
    try:
        with db.unit_of_work():
            user = User(email=normalize_email(email), name=name.strip(), password_hash=password_hash, role=role)
            db.session.add(user)
    except IntegrityError as exc:
        raise errors.EmailTaken("An account with this email already exists") from exc
    return user


def get_profile(user_id: int) -> User:
    """The signed-in user's own account (``TokenRevoked`` once it no longer exists)."""
    user = db.session.get(User, user_id)
    if user is None:
        raise errors.TokenRevoked("This account no longer exists")
    return user


def ensure_admin(email: str, password: str | None, name: str = "Administrator") -> tuple[User, bool]:
    """Create an admin, or promote (and optionally re-password) an existing account.

    Returns the user and whether it was created.
    """
    email = normalize_email(email)
    with db.unit_of_work():
        user = db.session.scalar(select(User).where(User.email == email).with_for_update())
        if user is not None:
            user.role = "admin"
            if password:
                user.password_hash = marquee().passwords.hash(password)
            return user, False
    if not password:
        raise errors.Invalid("A password is needed to create an admin")
    return register(email, password, name, role="admin"), True


# --- login throttling -------------------------------------------------------

def _account_key(email: str) -> str:
    digest = hashlib.sha256(email.encode()).hexdigest()[:32]
    return marquee().redis.key("auth", "fail", "acct", digest)


def _address_key(address: str) -> str:
    return marquee().redis.key("auth", "fail", "addr", address)


def authenticate(email: str, password: str, client_address: str) -> User:
    """Check credentials under per-account and per-address failure limits.

    Each attempt is counted *before* the password is checked (so a burst of
    parallel guesses cannot slip past the limit) and un-counted when it
    succeeds: the per-address limit therefore counts failures only, and many
    honest customers behind one address still sign in.
    """
    settings = marquee().settings
    store = marquee().redis
    window = settings.login_window_seconds
    email = normalize_email(email)
    acct_key, addr_key = _account_key(email), _address_key(client_address)
    counter = marquee().count_failure
    acct_n, acct_ttl = counter(keys=[acct_key], args=[window])
    addr_n, addr_ttl = counter(keys=[addr_key], args=[window])

    def uncount(key: str) -> None:
        if store.client.decr(key) <= 0:
            store.client.delete(key)

    if acct_n > settings.login_max_failures_per_account:
        raise errors.RateLimited(
            "Too many failed sign-ins for this account; try again later", retry_after=acct_ttl
        )
    if addr_n > settings.login_max_failures_per_address:
        uncount(acct_key)  # refused unchecked: not held against the account
        raise errors.RateLimited(
            "Too many failed sign-ins from this address; try again later", retry_after=addr_ttl
        )

    user = db.session.scalar(select(User).where(User.email == email))
    hasher = marquee().passwords
    if not hasher.verify(user.password_hash if user else None, password):
        raise errors.InvalidCredentials("Invalid email or password")
    # Success: the account's record is wiped, the address's attempt un-counted.
    store.client.delete(acct_key)
    uncount(addr_key)
    if hasher.needs_rehash(user.password_hash):
        with db.unit_of_work():
            user.password_hash = hasher.hash(password)
    return user


# --- tokens -----------------------------------------------------------------

def _family_key(family: str) -> str:
    return marquee().redis.key("auth", "fam", family)


def _family_revoked_key(family: str) -> str:
    return marquee().redis.key("auth", "famrev", family)


def _revoked_jti_key(jti: str) -> str:
    return marquee().redis.key("auth", "jti", jti)


def issue_tokens(user: User, family: str | None = None) -> TokenPair:
    """A new access/refresh pair; a new family unless rotating an existing one."""
    deps = marquee()
    new_family = family is None
    family = family or uuid.uuid4().hex
    access = deps.tokens.mint("access", str(user.id), {"role": user.role, "fam": family})
    refresh = deps.tokens.mint("refresh", str(user.id), {"fam": family})
    if new_family:
        deps.redis.client.set(_family_key(family), refresh.jti, ex=deps.settings.refresh_token_seconds)
    return TokenPair(access.token, refresh.token, deps.settings.access_token_seconds, refresh.jti)


def rotate_refresh_token(claims: dict) -> TokenPair:
    """Exchange a refresh token for a new pair; a reused one revokes its family."""
    settings = marquee().settings
    family = claims.get("fam")
    user = db.session.get(User, int(claims["sub"])) if family else None
    if user is None:
        raise errors.TokenRevoked("This session has ended; sign in again")
    pair = issue_tokens(user, family=family)
    outcome = RotateOutcome(int(marquee().rotate_refresh(
        keys=[_family_key(family), _family_revoked_key(family), _revocations_key()],
        args=[claims["jti"], pair.refresh_jti, settings.refresh_token_seconds, settings.access_token_seconds,
              marquee().revocations.channel],
    )))
    if outcome is RotateOutcome.REUSED:
        marquee().revocations.delivered()
        raise errors.RefreshTokenReused(
            "This refresh token was already used; the session has been revoked"
        )
    if outcome is not RotateOutcome.ROTATED:
        raise errors.TokenRevoked("This session has ended; sign in again")
    return pair


def _revocations_key() -> str:
    return revocations_key(marquee().redis)


def _revoke(pipe, marker: str, seconds: int, now_ms: int) -> tuple[str, str]:
    """In a MULTI: the marker (what the fallback check reads), its entry by expiry, and
    the announcement every app process's mirror applies."""
    until_ms = str(now_ms + seconds * 1000)
    pipe.set(marker, "1", ex=seconds)
    pipe.zadd(_revocations_key(), {marker: until_ms})
    marquee().revocations.publish(pipe, marker, until_ms)
    return marker, until_ms


def logout(claims: dict) -> None:
    """Revoke the presented access token now, and end its refresh family."""
    store = marquee().redis
    now_ms = int(time.time() * 1000)
    remaining = max(int(claims["exp"] - now_ms / 1000) + 1, 1)
    pipe = store.client.pipeline(transaction=True)
    revoked = [_revoke(pipe, _revoked_jti_key(claims["jti"]), remaining, now_ms)]
    family = claims.get("fam")
    if family:
        pipe.delete(_family_key(family))
        revoked.append(_revoke(pipe, _family_revoked_key(family), marquee().settings.access_token_seconds, now_ms))
    pipe.zremrangebyscore(_revocations_key(), "-inf", now_ms)
    pipe.execute()
    marquee().revocations.delivered()  # every app process knows it before the client does
    for marker, until_ms in revoked:
        marquee().revocations.learn(marker, until_ms)


def is_token_revoked(claims: dict) -> bool:
    """Blocklist check for every authenticated request: the process's mirror of the
    revocations (``PushedState``), or Redis while there is none (fails closed if Redis
    is down)."""
    keys = [_revoked_jti_key(claims["jti"])]
    if claims.get("fam"):
        keys.append(_family_revoked_key(claims["fam"]))
    mirrored = marquee().revocations.lookup(keys)
    if mirrored is None:
        return any(v is not None for v in marquee().redis.client.mget(keys))
    now_ms = time.time() * 1000
    return any(until is not None and int(until) > now_ms for until in mirrored)
