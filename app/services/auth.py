"""Accounts and sessions: registration, login throttling, token rotation and
revocation, password changes and resets (and the session cut-off they share).

Sessions are *families* of refresh tokens. Each refresh hands out a new refresh
token and retires the old one; presenting a retired one again means it was
stolen, so the whole family (and its access tokens) is revoked. Logout revokes
the access token in hand at once and ends its family.
"""
from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import jwt
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from app import db
from app.adapters.tokens import RotateOutcome, issued_at_us, revocations_key, session_cutoff_key
from app.bootstrap import marquee
from app.logging_setup import request_id_var
from app.models import OutboxEvent, PasswordResetToken, User
from app.services import attempts, audit, errors


class WrongPassword(errors.Forbidden):
    """A signed-in user confirmed a sensitive change with the wrong password: 403, not
    401, since the session itself is fine (a client must not sign out over it)."""

    code, title = "wrong_password", "The current password is not right"


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
    acct_n, acct_ttl = attempts.count(acct_key, window)
    addr_n, addr_ttl = attempts.count(addr_key, window)

    if acct_n > settings.login_max_failures_per_account:
        audit.record_event("auth.login_throttled", actor_id=None, ip=client_address,
                           email_sha256=hashlib.sha256(email.encode()).hexdigest()[:16])
        raise errors.RateLimited(
            "Too many failed sign-ins for this account; try again later", retry_after=acct_ttl
        )
    if addr_n > settings.login_max_failures_per_address:
        attempts.uncount(acct_key)  # refused unchecked: not held against the account
        raise errors.RateLimited(
            "Too many failed sign-ins from this address; try again later", retry_after=addr_ttl
        )

    user = db.session.scalar(select(User).where(User.email == email))
    hasher = marquee().passwords
    if not hasher.verify(user.password_hash if user else None, password):
        # a security event for the audit log (the address, never the password; an address
        # that is no account's only as a hash: it is personal data of nobody we know)
        audit.record_event("auth.login_failed", actor_id=user.id if user else None, ip=client_address,
                           object_type="user", object_id=user.id if user else None,
                           **({} if user else {"email_sha256": hashlib.sha256(email.encode()).hexdigest()[:16]}))
        raise errors.InvalidCredentials("Invalid email or password")
    # Success: the account's record is wiped, the address's attempt un-counted.
    store.client.delete(acct_key)
    attempts.uncount(addr_key)
    if hasher.needs_rehash(user.password_hash):
        with db.unit_of_work():
            user.password_hash = hasher.hash(password)
    return user


def confirm_password(user: User, password: str) -> None:
    """A signed-in user's password, asked again before a sensitive change
    (``WrongPassword``): failures count against the account as failed sign-ins do, so
    a stolen access token cannot be used to guess the password (429 past the limit)."""
    settings = marquee().settings
    key = _account_key(user.email)
    attempts.limit(key, settings.login_window_seconds, settings.login_max_failures_per_account,
                   "Too many wrong passwords for this account; try again later")
    if not marquee().passwords.verify(user.password_hash, password):
        raise WrongPassword("The current password is not right")
    marquee().redis.client.delete(key)


def sign_in(email: str, password: str, client_address: str) -> TokenPair:
    """``authenticate``, then a new session; refused if the user's sessions were cut off
    meanwhile (a password change or reset committed while the old password was being
    checked: the pair would come after the cut-off and outlive it)."""
    started_us = now_us()
    return start_session(authenticate(email, password, client_address), started_us)


def now_us() -> int:
    return time.time_ns() // 1000


def start_session(user: User, started_us: int, amr: tuple[str, ...] = ("pwd",)) -> TokenPair:
    """A new session for ``user``, whose password was checked at ``started_us``:
    refused if the user's sessions were cut off since (the pair would outlive the
    cut-off). ``amr`` (RFC 8176) names the factors the sign-in took."""
    pair = issue_tokens(user, amr=amr)
    cutoff = marquee().redis.client.get(_cutoff_key(user.id))  # Redis itself: the mirror may lag here
    if cutoff is not None and int(cutoff) > started_us:
        raise errors.InvalidCredentials("Invalid email or password")
    return pair


# --- tokens -----------------------------------------------------------------

def _family_key(family: str) -> str:
    return marquee().redis.key("auth", "fam", family)


def _family_revoked_key(family: str) -> str:
    return marquee().redis.key("auth", "famrev", family)


def _revoked_jti_key(jti: str) -> str:
    return marquee().redis.key("auth", "jti", jti)


def issue_tokens(user: User, family: str | None = None, amr: tuple[str, ...] | list[str] = ("pwd",)) -> TokenPair:
    """A new access/refresh pair; a new family unless rotating an existing one. Both
    carry ``amr``, the sign-in's factors, so a refreshed pair keeps what it proved."""
    deps = marquee()
    new_family = family is None
    family = family or uuid.uuid4().hex
    amr = list(amr)
    access = deps.tokens.mint("access", str(user.id), {"role": user.role, "fam": family, "amr": amr})
    refresh = deps.tokens.mint("refresh", str(user.id), {"fam": family, "amr": amr})
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
    pair = issue_tokens(user, family=family, amr=[str(f) for f in claims.get("amr") or ("pwd",)][:4])
    outcome = RotateOutcome(int(marquee().rotate_refresh(
        keys=[_family_key(family), _family_revoked_key(family), _revocations_key(), _cutoff_key(claims["sub"])],
        args=[claims["jti"], pair.refresh_jti, settings.refresh_token_seconds, settings.access_token_seconds,
              marquee().revocations.channel, issued_at_us(claims)],
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


def _cutoff_key(user_id: int | str) -> str:
    return session_cutoff_key(marquee().redis, user_id)


def end_sessions(user_id: int) -> int:
    """Void every token of the user issued until now, on every app process at once;
    returns the cut-off (microseconds, Redis's clock) that a new pair must come after.

    The cut-off is stored and announced in one script (``cut_sessions.lua``) and,
    like a logout, confirmed only once every subscriber has the announcement
    (``delivered``). A refresh racing it is checked against it in the rotation's own
    script, so no pair minted from an old refresh token outlives it."""
    deps = marquee()
    marker = _cutoff_key(user_id)
    cutoff = deps.cut_sessions(keys=[marker, _revocations_key()],
                               args=[deps.settings.refresh_token_seconds, deps.revocations.channel])
    cutoff = cutoff.decode() if isinstance(cutoff, bytes) else str(cutoff)
    deps.revocations.delivered()  # every app process knows it before the client does
    deps.revocations.learn(marker, cutoff)
    return int(cutoff)


def change_password(user_id: int, current_password: str, new_password: str,
                    amr: tuple[str, ...] | list[str] = ("pwd",)) -> TokenPair:
    """Replace the caller's password (``WrongPassword`` if ``current_password`` is
    wrong), end every session of theirs, this one included, and hand back a new pair
    (keeping ``amr``, the factors the caller's session proved): the caller stays
    signed in, every other device must sign in again."""
    hasher = marquee().passwords
    new_hash = hasher.hash(new_password)
    with db.unit_of_work():
        user = db.session.scalar(select(User).where(User.id == user_id).with_for_update())
        if user is None or user.erased_at is not None:
            raise errors.TokenRevoked("This account no longer exists")
        confirm_password(user, current_password)
        user.password_hash = new_hash
    _wait_past(end_sessions(user.id))
    return issue_tokens(user, amr=amr)


def _wait_past(cutoff_us: int, most_seconds: float = 1.0) -> None:
    """Until this host's clock is past a cut-off taken on Redis's (at once on one
    machine; a host whose clock lags Redis's waits the lag, a second at most), so a
    pair minted next outlives it."""
    lag = (cutoff_us + 1) / 1_000_000 - time.time()
    if lag > 0:
        time.sleep(min(lag, most_seconds))


def is_token_revoked(claims: dict) -> bool:
    """Blocklist check for every authenticated request: the process's mirror of the
    revocations (``PushedState``), or Redis while there is none (fails closed if Redis
    is down). A token is revoked when it, its family, or every session of its user
    issued after it (the cut-off: a password change or reset, an erasure) was ended."""
    keys = [_revoked_jti_key(claims["jti"])]
    if claims.get("fam"):
        keys.append(_family_revoked_key(claims["fam"]))
    keys.append(_cutoff_key(claims.get("sub", "")))
    mirrored = marquee().revocations.lookup(keys)
    if mirrored is None:
        *markers, cutoff = marquee().redis.client.mget(keys)
        return any(v is not None for v in markers) or _cut_off(claims, cutoff)
    *markers, cutoff = mirrored
    now_ms = time.time() * 1000
    return any(until is not None and int(until) > now_ms for until in markers) or _cut_off(claims, cutoff)


def verify_access_token(authorization: str | None) -> dict:
    """The claims of the access token in an ``Authorization: Bearer`` header, for a request
    served outside the web app (the live process's reservation streams): what the web app
    checks (``TokenMinter.verify``, then ``is_token_revoked``). ``TokenMissing``,
    ``TokenInvalid``, ``TokenExpired`` or ``TokenRevoked`` otherwise."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.TokenMissing()
    try:
        claims = marquee().tokens.verify(token.strip())
    except jwt.ExpiredSignatureError:
        raise errors.TokenExpired() from None
    except jwt.PyJWTError:
        raise errors.TokenInvalid() from None
    if is_token_revoked(claims):
        raise errors.TokenRevoked("The token has been revoked")
    return claims


def _cut_off(claims: dict, cutoff: str | bytes | None) -> bool:
    return cutoff is not None and issued_at_us(claims) < int(cutoff)


# --- password resets ----------------------------------------------------------
#
# The request answers the same whether the address is known or not, and does the
# same work: two throttling counters, one token drawn and hashed, and one SQL
# statement that inserts the reset and its email's outbox row only if the address
# belongs to an account (zero rows otherwise), then one commit. The email goes out
# later, from the worker.
#
# The plaintext token exists in three places, each as briefly as it can: the outbox
# row's payload (the worker needs it to write the email), from the request's commit
# until the worker has sent the email, which then removes it from the row; the
# RabbitMQ message, until the worker acknowledges it; and the email itself.
# PostgreSQL keeps only its SHA-256. Using a reset (or erasing the account) also
# removes the token from any outbox row not yet mailed, and a worker that finds its
# reset used or expired sends nothing.

class ResetTokenInvalid(errors.BadRequest):
    """The token is unknown, used, voided by a newer one used first, or expired: one
    answer for all, so that it tells nothing more."""

    code, title = "reset_token_invalid", "This password reset link is invalid or has expired"


_REQUEST_RESET = text("""
WITH reset AS (
    INSERT INTO password_reset_tokens (user_id, token_hash, expires_at)
    SELECT id, :token_hash, now() + make_interval(secs => :ttl)
    FROM users WHERE email = :email AND erased_at IS NULL
    RETURNING id, user_id),
mail AS (
    INSERT INTO outbox (topic, aggregate_id, payload)
    SELECT 'notifications.email', 'user:' || user_id, jsonb_strip_nulls(jsonb_build_object(
        'kind', 'password_reset', 'user_id', user_id, 'reset_id', id, 'token', CAST(:token AS text),
        'idempotency_key', 'password_reset-' || id, 'request_id', CAST(:request_id AS text)))
    FROM reset
    RETURNING id)
SELECT count(*) FROM mail  -- the outbox's trigger wakes the relay (migration 0026)
""")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _reset_throttle(email: str, client_address: str) -> None:
    """Every request counts, known address or not: per email address and per client."""
    settings = marquee().settings
    store = marquee().redis
    window = settings.password_reset_window_seconds
    digest = hashlib.sha256(email.encode()).hexdigest()[:32]
    for key, most in ((store.key("auth", "reset", "email", digest), settings.password_reset_max_per_email),
                      (store.key("auth", "reset", "addr", client_address), settings.password_reset_max_per_client)):
        attempts.limit(key, window, most, "Too many password reset requests; try again later")


def request_password_reset(email: str, client_address: str) -> None:
    """Mail a single-use reset token to ``email`` if it belongs to an account; the
    caller learns nothing either way (see the section's comment). ``RateLimited``."""
    email = normalize_email(email)
    _reset_throttle(email, client_address)
    token = secrets.token_urlsafe(32)  # 256 random bits
    with db.unit_of_work():
        # A commit that wrote rows waits for the WAL's flush to disk; one that wrote none
        # does not: a difference of a millisecond or two that would tell whether the
        # address is known. Neither waits here (a reset lost to a crash in the next
        # fraction of a second is simply asked for again).
        db.session.execute(text("SET LOCAL synchronous_commit TO off"))
        db.session.execute(_REQUEST_RESET, {
            "token_hash": _token_hash(token), "ttl": marquee().settings.password_reset_ttl_seconds,
            "email": email, "token": token, "request_id": request_id_var.get()})


def confirm_password_reset(token: str, new_password: str) -> None:
    """Set a new password with a mailed token: it is consumed in one statement (only
    one of two racing uses wins), the user's other tokens are voided, and every
    session of the user ends at once. ``ResetTokenInvalid`` otherwise."""
    new_hash = marquee().passwords.hash(new_password)
    with db.unit_of_work():
        user_id = db.session.scalar(
            update(PasswordResetToken)
            .where(PasswordResetToken.token_hash == _token_hash(token), PasswordResetToken.used_at.is_(None),
                   PasswordResetToken.expires_at > func.now())
            .values(used_at=func.now()).returning(PasswordResetToken.user_id))
        user = db.session.scalar(select(User).where(User.id == user_id).with_for_update()) if user_id else None
        if user is None or user.erased_at is not None:
            raise ResetTokenInvalid("This password reset link is invalid, used or expired; ask for a new one")
        void_reset_tokens(user.id)
        user.password_hash = new_hash
    marquee().redis.client.delete(_account_key(user.email))  # failed sign-ins before the reset are forgiven
    end_sessions(user.id)


def void_reset_tokens(user_id: int) -> None:
    """In the caller's transaction: the user's unused reset tokens stop working, and
    no outbox row still carries one in clear."""
    db.session.execute(update(PasswordResetToken)
                       .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
                       .values(used_at=func.now()))
    _forget_tokens(OutboxEvent.aggregate_id == f"user:{user_id}")


def _forget_tokens(*where) -> None:
    db.session.execute(update(OutboxEvent)
                       .where(OutboxEvent.topic == "notifications.email", OutboxEvent.payload.has_key("token"), *where)
                       .values(payload=text("payload - 'token'")))


def reset_email_context(payload: dict) -> dict | None:
    """What the ``password_reset`` email says (the worker, in its transaction), or None
    when there is nothing to mail any more: the reset was used, voided or has expired,
    or the account was erased."""
    token = payload.get("token")
    reset = db.session.get(PasswordResetToken, int(payload["reset_id"])) if token else None
    if reset is None or reset.used_at is not None or reset.expires_at <= datetime.now(timezone.utc):
        return None
    user = db.session.get(User, reset.user_id)
    if user is None or user.erased_at is not None:
        return None
    settings = marquee().settings
    return {"user": user, "token": token, "minutes": settings.password_reset_ttl_seconds // 60,
            # in the fragment: never sent to a server, so never in an access log or a Referer
            "link": f"{settings.public_base_url}/reset-password#token={token}"}


def forget_mailed_token(payload: dict) -> None:
    """After the email went out: its outbox row no longer carries the token."""
    with db.unit_of_work():
        _forget_tokens(OutboxEvent.id == int(payload["event_id"]))
