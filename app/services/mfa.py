"""Multi-factor authentication for staff (and anyone who wants it): TOTP (RFC 6238,
pyotp) plus single-use recovery codes.

- ``setup`` keeps a new secret, sealed with AES-256-GCM under ``MFA_ENCRYPTION_KEY``
  (the database alone never reveals it), pending until ``confirm`` proves an
  authenticator app has it; confirming turns MFA on and hands out ten recovery codes,
  shown once, kept as SHA-256 hashes.
- Once on, a correct password at sign-in earns a challenge (``mfa_token``: random,
  single use, ``MFA_TOKEN_SECONDS``, kept in Redis by its hash) instead of tokens;
  ``verify_sign_in`` trades it and a code for the pair, whose ``amr`` says
  ``["pwd", "otp"]``.
- No code works twice: a TOTP code is accepted only for a time step after the last one
  accepted (``UPDATE ... WHERE last_step < :step``: of two parallel uses, one wins), a
  recovery code only while unused (``UPDATE ... WHERE used_at IS NULL``). Wrong codes
  count as failed sign-ins of the account (429 past ``LOGIN_MAX_FAILURES_PER_ACCOUNT``
  in the window), and a challenge dies after ``MFA_MAX_ATTEMPTS`` of them.
- Every change and failure is a security event in the audit log (never a code).
"""
from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import time
from dataclasses import dataclass

import pyotp
import segno
from sqlalchemy import delete, func, select, update

from app import db
from app.adapters import sealing
from app.bootstrap import marquee
from app.models import MfaRecoveryCode, User, UserMfa
from app.services import attempts, audit, auth, errors

RECOVERY_CODES = 10
_STEP_SECONDS = 30  # RFC 6238's default, what every authenticator app uses
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


class MfaAlreadyEnabled(errors.Conflict):
    code, title = "mfa_already_enabled", "Multi-factor authentication is already on"


class MfaNotEnabled(errors.Conflict):
    code, title = "mfa_not_enabled", "Multi-factor authentication is not on"


@dataclass(frozen=True)
class Challenge:
    """What a sign-in answers when a second factor is due."""

    mfa_token: str
    expires_in: int

    def as_dict(self) -> dict:
        return {"mfa_required": True, "mfa_token": self.mfa_token, "expires_in": self.expires_in}


# --- sealing ------------------------------------------------------------------

def _seal(user_id: int, secret: str) -> bytes:
    return sealing.seal(marquee().settings.mfa_encryption_key, secret.encode(), b"marquee mfa user %d" % user_id)


def _unseal(user_id: int, sealed: bytes) -> str:
    try:
        return sealing.unseal(marquee().settings.mfa_encryption_key, sealed, b"marquee mfa user %d" % user_id).decode()
    except sealing.Unsealable as exc:  # the key changed: the factor cannot be used any more
        raise errors.ServiceUnavailable("The second factor cannot be read; an admin must reset it") from exc


def _uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=marquee().settings.mfa_issuer)


# --- codes --------------------------------------------------------------------

def _totp_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step (of now and one each side, for clock drift) whose code ``code`` is."""
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    now = int((time.time() if at is None else at) // _STEP_SECONDS)
    for step in (now, now - 1, now + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _normalize_recovery(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def _recovery_hash(code: str) -> str:
    return hashlib.sha256(_normalize_recovery(code).encode()).hexdigest()


def _new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))  # ~49.5 bits
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def _spend(user_id: int, code: str, *, pending: bool = False) -> str | None:
    """In the caller's unit of work: take ``code`` (TOTP, or a recovery code unless
    ``pending``) if it is good and unused; ``"otp"``, ``"recovery"`` or None."""
    factor = db.session.get(UserMfa, user_id)
    if factor is None or (factor.enabled_at is None) != pending:
        return None
    step = _totp_step(_unseal(user_id, factor.secret_sealed), code)
    if step is not None:
        taken = db.session.execute(
            update(UserMfa).where(UserMfa.user_id == user_id, UserMfa.last_step < step,
                                  UserMfa.enabled_at.is_(None) if pending else UserMfa.enabled_at.is_not(None))
            .values(last_step=step, **({"enabled_at": func.now()} if pending else {}))
            .returning(UserMfa.user_id).execution_options(synchronize_session=False)).first()
        db.session.expire(factor)
        return "otp" if taken else None
    if pending or not _normalize_recovery(code):
        return None
    used = db.session.execute(
        update(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id,
                                      MfaRecoveryCode.code_hash == _recovery_hash(code),
                                      MfaRecoveryCode.used_at.is_(None))
        .values(used_at=func.now()).returning(MfaRecoveryCode.id)).first()
    return "recovery" if used else None


# --- enrolment ----------------------------------------------------------------

def status(user_id: int) -> dict:
    factor = db.session.get(UserMfa, user_id)
    left = db.session.scalar(select(func.count()).select_from(MfaRecoveryCode).where(
        MfaRecoveryCode.user_id == user_id, MfaRecoveryCode.used_at.is_(None)))
    return {"enabled": bool(factor and factor.enabled_at), "pending": bool(factor and not factor.enabled_at),
            "enabled_at": factor.enabled_at if factor else None,
            "recovery_codes_left": left if factor and factor.enabled_at else 0}


def is_enabled(user_id: int) -> bool:
    return db.session.scalar(select(UserMfa.user_id).where(
        UserMfa.user_id == user_id, UserMfa.enabled_at.is_not(None))) is not None


def setup(user_id: int, *, ip: str | None = None) -> dict:
    """A new pending secret (replacing any pending one): ``{secret, otpauth_uri}``.
    409 ``mfa_already_enabled`` while MFA is on (disable it first)."""
    secret = pyotp.random_base32()  # 160 bits, RFC 4226's recommended length
    with db.unit_of_work():
        user = db.session.scalar(select(User).where(User.id == user_id).with_for_update())
        if user is None:
            raise errors.NotFound("No such user")
        factor = db.session.get(UserMfa, user_id)
        if factor is not None and factor.enabled_at is not None:
            raise MfaAlreadyEnabled("Turn multi-factor authentication off before setting it up again")
        if factor is None:
            db.session.add(UserMfa(user_id=user_id, secret_sealed=_seal(user_id, secret), last_step=-1))
        else:
            factor.secret_sealed, factor.last_step = _seal(user_id, secret), -1
        audit.record("auth.mfa.setup", actor_id=user_id, object_type="user", object_id=user_id, ip=ip)
        uri = _uri(user, secret)
    return {"secret": secret, "otpauth_uri": uri}


def qr_image(user_id: int, kind: str = "svg") -> bytes:
    """The pending secret's otpauth URI as a QR image (404 when none is pending)."""
    factor = db.session.get(UserMfa, user_id)
    user = db.session.get(User, user_id)
    if factor is None or factor.enabled_at is not None or user is None:
        raise errors.NotFound("No multi-factor set-up is pending")
    out = io.BytesIO()
    segno.make(_uri(user, _unseal(user_id, factor.secret_sealed)), error="m").save(
        out, kind=kind, scale=6, border=2)
    return out.getvalue()


def confirm(user_id: int, code: str, *, ip: str | None = None) -> list[str]:
    """Turn MFA on with a first code from the app; the recovery codes, shown this once."""
    codes = _new_recovery_codes()
    with db.unit_of_work():
        if _spend(user_id, code, pending=True) is None:
            failed = "auth.mfa.confirm_failed"
        else:
            failed = None
            db.session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id))
            db.session.add_all([MfaRecoveryCode(user_id=user_id, code_hash=_recovery_hash(c)) for c in codes])
            audit.record("auth.mfa.enabled", actor_id=user_id, object_type="user", object_id=user_id, ip=ip)
    if failed:
        if db.session.get(UserMfa, user_id) is None or is_enabled(user_id):
            raise errors.Conflict("No multi-factor set-up is pending; start with POST /auth/mfa/setup")
        audit.record_event(failed, actor_id=user_id, object_type="user", object_id=user_id, ip=ip)
        raise errors.MfaInvalid("That code is not right; check the app's clock and try the next one")
    return codes


def disable(user_id: int, code: str, *, ip: str | None = None) -> None:
    """Turn MFA off with a current code (or a recovery code)."""
    _count_attempt(user_id)
    with db.unit_of_work():
        if not is_enabled(user_id):
            raise MfaNotEnabled("Multi-factor authentication is not on")
        factor = _spend(user_id, code)
        if factor is not None:
            db.session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id))
            db.session.execute(delete(UserMfa).where(UserMfa.user_id == user_id))
            audit.record("auth.mfa.disabled", actor_id=user_id, object_type="user", object_id=user_id,
                         after={"factor": factor}, ip=ip)
    if factor is None:
        audit.record_event("auth.mfa.failed", actor_id=user_id, object_type="user", object_id=user_id, ip=ip,
                           during="disable")
        raise errors.MfaInvalid("That code is not right")
    _uncount_attempt(user_id)


def reset(admin_id: int, user_id: int, *, ip: str | None = None) -> None:
    """An admin removes a user's factor (a lost device and lost recovery codes): the
    user signs in with the password alone and sets MFA up again; every session of the
    user ends, so none keeps the second factor it proved. 404 for an unknown user, 409
    ``mfa_not_enabled`` when there is nothing to remove."""
    with db.unit_of_work():
        user = db.session.scalar(select(User).where(User.id == user_id).with_for_update())
        if user is None:
            raise errors.NotFound("No such user")
        factor = db.session.get(UserMfa, user_id)
        if factor is None:
            raise MfaNotEnabled("This user has no second factor")
        db.session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id))
        db.session.execute(delete(UserMfa).where(UserMfa.user_id == user_id))
        audit.record("auth.mfa.reset", actor_id=admin_id, object_type="user", object_id=user_id,
                     before={"enabled": factor.enabled_at is not None}, after={"enabled": False}, ip=ip)
    auth.end_sessions(user_id)


# --- sign-in ------------------------------------------------------------------

def _challenge_key(token: str) -> str:
    return marquee().redis.key("auth", "mfa", hashlib.sha256(token.encode()).hexdigest())


def _attempts_key(user_id: int) -> str:
    return marquee().redis.key("auth", "fail", "mfa", user_id)


def _count_attempt(user_id: int) -> None:
    """Counted as password attempts are (``services.attempts``); 429 past the account's limit."""
    settings = marquee().settings
    attempts.limit(_attempts_key(user_id), settings.login_window_seconds, settings.login_max_failures_per_account,
                   "Too many wrong codes for this account; try again later")


def _uncount_attempt(user_id: int) -> None:
    attempts.uncount(_attempts_key(user_id))


def sign_in(email: str, password: str, client_address: str) -> auth.TokenPair | Challenge:
    """The password step: a pair for an account without MFA, a ``Challenge`` otherwise."""
    started_us = auth.now_us()
    user = auth.authenticate(email, password, client_address)
    if not is_enabled(user.id):
        return auth.start_session(user, started_us)
    settings = marquee().settings
    token = secrets.token_urlsafe(32)
    marquee().redis.client.hset(_challenge_key(token), mapping={"uid": user.id, "started_us": started_us,
                                                                "fails": 0})
    marquee().redis.client.expire(_challenge_key(token), settings.mfa_token_seconds)
    return Challenge(token, settings.mfa_token_seconds)


def verify_sign_in(mfa_token: str, code: str, client_address: str) -> auth.TokenPair:
    """The second step: the challenge and a code (TOTP or recovery) for the pair."""
    settings = marquee().settings
    client = marquee().redis.client
    key = _challenge_key(mfa_token)
    challenge = client.hgetall(key)
    if not challenge:
        raise errors.MfaInvalid("This sign-in challenge is unknown, used or expired; sign in again")
    user_id, started_us = int(challenge[b"uid"]), int(challenge[b"started_us"])
    _count_attempt(user_id)
    with db.unit_of_work():
        factor = _spend(user_id, code)
    if factor is None:
        if client.hincrby(key, "fails", 1) >= settings.mfa_max_attempts:
            client.delete(key)  # this challenge has had its tries: sign in again
        audit.record_event("auth.mfa.failed", actor_id=user_id, object_type="user", object_id=user_id,
                           ip=client_address, during="sign-in")
        raise errors.MfaInvalid("That code is not right, or was used already")
    if not client.delete(key):  # a parallel verify of this challenge got there first
        raise errors.MfaInvalid("This sign-in challenge is unknown, used or expired; sign in again")
    _uncount_attempt(user_id)
    if factor == "recovery":
        audit.record_event("auth.mfa.recovery_code_used", actor_id=user_id, object_type="user",
                           object_id=user_id, ip=client_address)
    user = db.session.get(User, user_id)
    if user is None or user.erased_at is not None:
        raise errors.MfaInvalid("This sign-in challenge is unknown, used or expired; sign in again")
    return auth.start_session(user, started_us, amr=("pwd", "otp"))
