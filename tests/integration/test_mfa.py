"""Staff multi-factor authentication (TOTP), end to end through the API, on the real
PostgreSQL and Redis: set-up, sign-in in two steps, codes that never work twice (even
in parallel), recovery codes, brute force, REQUIRE_STAFF_MFA, and the audit trail."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pyotp
from sqlalchemy import select, text

from app import db
from app.models import AuditEntry, MfaRecoveryCode, UserMfa
from tests.helpers import PASSWORD

ADMIN = "admin@test.example"


def _now_code(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def _enrol(api, token) -> tuple[str, list[str]]:
    r = api.post("/api/v1/auth/mfa/setup", token=token)
    assert r.status_code == 201, r.json
    secret = r.json["secret"]
    assert r.json["otpauth_uri"].startswith("otpauth://totp/") and f"secret={secret}" in r.json["otpauth_uri"]
    confirmed = api.post("/api/v1/auth/mfa/confirm", {"code": _now_code(secret)}, token)
    assert confirmed.status_code == 200, confirmed.json
    assert len(confirmed.json["recovery_codes"]) == 10
    return secret, confirmed.json["recovery_codes"]


def _challenge(api, email=ADMIN) -> str:
    r = api.post("/api/v1/auth/login", {"email": email, "password": PASSWORD})
    assert r.status_code == 200 and r.json["mfa_required"] is True and "access_token" not in r.json, r.json
    return r.json["mfa_token"]


def _verify(api, mfa_token, code):
    return api.post("/api/v1/auth/mfa/verify", {"mfa_token": mfa_token, "code": code})


def _actions(app) -> list[str]:
    with app.app_context():
        actions = list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
        db.session.remove()
    return actions


def _wait_next_step():
    """Past the current 30 s step boundary if it is near, so a test's codes stay in one window."""
    if 30 - time.time() % 30 < 3:
        time.sleep(30 - time.time() % 30 + 0.1)


def test_setup_confirm_and_the_two_step_sign_in(api, app, admin):
    _wait_next_step()
    assert api.get("/api/v1/auth/mfa", token=admin).json == {
        "enabled": False, "pending": False, "enabled_at": None, "recovery_codes_left": 0}
    r = api.post("/api/v1/auth/mfa/setup", token=admin)
    qr = api.get(r.json["qr_url"], token=admin)
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml" and b"<svg" in qr.data
    assert api.get(r.json["qr_url"]).status_code == 401
    # a wrong first code does not turn it on
    wrong = api.post("/api/v1/auth/mfa/confirm", {"code": "000000" if _now_code(r.json["secret"]) != "000000"
                                                  else "111111"}, admin)
    assert wrong.status_code == 401 and wrong.json["code"] == "mfa_invalid"
    assert api.get("/api/v1/auth/mfa", token=admin).json["pending"] is True
    secret = r.json["secret"]
    assert api.post("/api/v1/auth/mfa/confirm", {"code": _now_code(secret)}, admin).status_code == 200
    assert api.post("/api/v1/auth/mfa/setup", token=admin).json["code"] == "mfa_already_enabled"
    status = api.get("/api/v1/auth/mfa", token=admin).json
    assert status["enabled"] is True and status["recovery_codes_left"] == 10

    # the secret is sealed at rest: neither it nor its bytes are in the row
    with app.app_context():
        sealed = db.session.scalar(select(UserMfa.secret_sealed))
        assert secret.encode() not in sealed and len(sealed) > len(secret)
        db.session.remove()

    token = _challenge(api)
    assert _verify(api, token, "12345678").status_code == 401  # neither a TOTP nor a recovery code
    pair = _verify(api, token, _now_code(secret, 1))  # the next step's code: clock drift allowed
    assert pair.status_code == 200, pair.json
    me = api.get("/api/v1/users/me", token=pair.json["access_token"])
    assert me.status_code == 200
    # the challenge was single use
    assert _verify(api, token, _now_code(secret, 1)).json["code"] == "mfa_invalid"
    # refreshing keeps what the sign-in proved (amr), so staff stay able to write
    refreshed = api.post("/api/v1/auth/refresh", token=pair.json["refresh_token"])
    assert refreshed.status_code == 200
    from flask_jwt_extended import decode_token
    with app.app_context():
        assert decode_token(refreshed.json["access_token"])["amr"] == ["pwd", "otp"]

    actions = _actions(app)
    for expected in ("auth.mfa.setup", "auth.mfa.confirm_failed", "auth.mfa.enabled", "auth.mfa.failed"):
        assert expected in actions, actions


def test_a_code_works_once_even_within_its_window(api, app, admin):
    _wait_next_step()
    secret, _ = _enrol(api, admin)  # confirming used the current step's code
    code = _now_code(secret)
    replay = _verify(api, _challenge(api), code)
    assert replay.status_code == 401 and replay.json["code"] == "mfa_invalid"  # used by the confirmation
    fresh = _now_code(secret, 1)
    assert _verify(api, _challenge(api), fresh).status_code == 200
    assert _verify(api, _challenge(api), fresh).status_code == 401  # the same code again
    assert _verify(api, _challenge(api), code).status_code == 401  # an earlier step after a later one


def _race(app, challenges, code) -> list[int]:
    """Verify every challenge with ``code`` at once, each on its own client (thread)."""
    barrier = threading.Barrier(len(challenges))
    statuses = []

    def verify(token):
        local = app.test_client()
        barrier.wait()
        statuses.append(local.post("/api/v1/auth/mfa/verify", json={"mfa_token": token, "code": code}).status_code)

    threads = [threading.Thread(target=verify, args=(t,)) for t in challenges]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(statuses)


def test_two_parallel_verifies_with_one_code_admit_one(api, app, client, admin):
    _wait_next_step()
    secret, _ = _enrol(api, admin)
    # five: the account's failure limit (LOGIN_MAX_FAILURES_PER_ACCOUNT) counts every attempt first
    challenges = [_challenge(api) for _ in range(5)]
    assert _race(app, challenges, _now_code(secret, 1)) == [200, 401, 401, 401, 401]


def test_recovery_codes_work_once_even_in_parallel(api, app, admin):
    _wait_next_step()
    _, codes = _enrol(api, admin)
    first = _verify(api, _challenge(api), codes[0].upper().replace("-", " "))  # typed loosely
    assert first.status_code == 200, first.json
    assert _verify(api, _challenge(api), codes[0]).status_code == 401  # used twice
    assert api.get("/api/v1/auth/mfa", token=admin).json["recovery_codes_left"] == 9

    challenges = [_challenge(api) for _ in range(4)]  # within the account's failure limit, with the one above
    assert _race(app, challenges, codes[1]) == [200, 401, 401, 401]
    with app.app_context():
        used = db.session.scalars(select(MfaRecoveryCode.used_at).where(MfaRecoveryCode.used_at.is_not(None))).all()
        assert len(used) == 2
        db.session.remove()
    assert _actions(app).count("auth.mfa.recovery_code_used") == 2


def test_mfa_tokens_forged_expired_or_spent_are_refused(api, app, admin):
    _wait_next_step()
    secret, _ = _enrol(api, admin)
    assert _verify(api, "x" * 43, _now_code(secret, 1)).json["code"] == "mfa_invalid"  # forged
    bad = api.post("/api/v1/auth/mfa/verify", {"mfa_token": "short", "code": "123456"})
    assert bad.status_code == 422
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, mfa_token_seconds=1)
    try:
        token = _challenge(api)
    finally:
        ext.settings = original
    time.sleep(1.5)  # Redis's TTL, not a race: the challenge must be gone
    assert _verify(api, token, _now_code(secret, 1)).json["code"] == "mfa_invalid"
    # a challenge dies after MFA_MAX_ATTEMPTS wrong codes, even if a right one follows
    token = _challenge(api)
    wrong = "000000" if _now_code(secret, 1) != "000000" else "111111"
    for _ in range(original.mfa_max_attempts):
        assert _verify(api, token, wrong).status_code == 401
    assert _verify(api, token, _now_code(secret, 1)).json["code"] == "mfa_invalid"


def test_guessing_codes_hits_the_rate_limit(api, app, admin):
    _wait_next_step()
    secret, _ = _enrol(api, admin)
    limit = app.extensions["marquee"].settings.login_max_failures_per_account
    wrong = "000000" if _now_code(secret, 1) != "000000" else "111111"
    answers = []
    for _ in range(limit + 2):
        answers.append(_verify(api, _challenge(api), wrong))
    assert [a.status_code for a in answers[:limit]] == [401] * limit
    assert answers[-1].status_code == 429 and int(answers[-1].headers["Retry-After"]) > 0
    # even the right code is refused while the account is locked out
    assert _verify(api, _challenge(api), _now_code(secret, 1)).status_code == 429


def test_disable_needs_a_code(api, app, admin):
    _wait_next_step()
    secret, codes = _enrol(api, admin)
    assert api.post("/api/v1/auth/mfa/disable", {"code": "999999" if _now_code(secret) != "999999" else "888888"},
                    admin).status_code == 401
    assert api.post("/api/v1/auth/mfa/disable", {"code": codes[3]}, admin).status_code == 204
    assert api.get("/api/v1/auth/mfa", token=admin).json["enabled"] is False
    assert "access_token" in api.login(ADMIN)  # one step again
    assert api.post("/api/v1/auth/mfa/disable", {"code": codes[4]}, admin).json["code"] == "mfa_not_enabled"
    assert "auth.mfa.disabled" in _actions(app)


def test_require_staff_mfa_stops_staff_writes_without_a_second_factor(api, app, admin, user):
    _wait_next_step()
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, require_staff_mfa=True)
    try:
        city = {"name": "Lyon", "country": "France", "timezone": "Europe/Paris"}
        refused = api.post("/api/v1/cities", city, admin)
        assert refused.status_code == 403 and refused.json["code"] == "mfa_required"
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert api.get("/api/v1/cities", token=admin).status_code == 200  # reads stay open
        secret, _ = _enrol(api, admin)  # setting MFA up stays reachable
        assert api.post("/api/v1/cities", city, admin).status_code == 403  # the old session proved no factor
        pair = _verify(api, _challenge(api), _now_code(secret, 1)).json
        assert api.post("/api/v1/cities", city, pair["access_token"]).status_code == 201
        # a customer is no staff: untouched
        assert api.post("/api/v1/auth/mfa/setup", token=user).status_code == 201
        assert api.get("/api/v1/users/me", token=user).status_code == 200
    finally:
        ext.settings = original
    assert api.post("/api/v1/cities", {"name": "Nice", "country": "France", "timezone": "Europe/Paris"},
                    admin).status_code == 201  # off again: as before


def test_sign_in_failures_are_security_events(api, app, user):
    r = api.post("/api/v1/auth/login", {"email": "user@test.example", "password": "wrong-password-1"},
                 headers={"X-Request-ID": "mfa-test-req-1"})
    assert r.status_code == 401
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.login_failed")).one()
        assert entry.object_id == str(entry.actor_id) and entry.request_id == "mfa-test-req-1"
        assert entry.ip and entry.actor_id is not None and entry.after is None
        db.session.remove()
    # an address that is no account's is kept only as a hash
    assert api.post("/api/v1/auth/login", {"email": "nobody@test.example", "password": "wrong-password-1"}
                    ).status_code == 401
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.login_failed")
                                   .order_by(AuditEntry.id.desc())).first()
        assert entry.actor_id is None and set(entry.after) == {"email_sha256"}
        assert "nobody@test.example" not in str(db.session.execute(text("SELECT * FROM audit_log")).all())
        assert "wrong-password-1" not in str(db.session.execute(text("SELECT * FROM audit_log")).all())
        db.session.remove()


def test_require_staff_mfa_covers_managers_and_scanners_too(api, app, admin, user, other):
    _wait_next_step()
    show = api.catalog(admin)
    me = api.get("/api/v1/users/me", token=user).json["id"]
    scanner = api.get("/api/v1/users/me", token=other).json["id"]
    assert api.call("PUT", f"/api/v1/users/{me}/roles", admin, json={
        "roles": [{"role": "manager", "theater_id": show["theater"]}]}).status_code == 200
    assert api.call("PUT", f"/api/v1/users/{scanner}/roles", admin, json={
        "roles": [{"role": "scanner", "theater_id": show["theater"]}]}).status_code == 200
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, require_staff_mfa=True)
    try:
        rename = api.patch(f"/api/v1/theaters/{show['theater']}", {"name": "Renamed"}, user)
        assert rename.status_code == 403 and rename.json["code"] == "mfa_required"
        scan = api.post("/api/v1/checkin", {"code": "v2.nothing.at.all"}, other)
        assert scan.status_code == 403 and scan.json["code"] == "mfa_required"
        assert api.get(f"/api/v1/showtimes/{show['showtime']}/checkin-list", token=other).status_code == 200
        # with a second factor the manager writes again
        secret, _ = _enrol(api, user)
        pair = _verify(api, _challenge(api, "user@test.example"), _now_code(secret, 1)).json
        assert api.patch(f"/api/v1/theaters/{show['theater']}", {"name": "Renamed"},
                         pair["access_token"]).status_code == 200
    finally:
        ext.settings = original


def test_an_admin_resets_a_lost_factor_and_the_users_sessions_end(api, app, admin, user):
    _wait_next_step()
    secret, _ = _enrol(api, user)
    pair = _verify(api, _challenge(api, "user@test.example"), _now_code(secret, 1)).json
    uid = api.get("/api/v1/users/me", token=user).json["id"]
    assert api.delete(f"/api/v1/users/{uid}/mfa", user).status_code == 403  # not an admin
    assert api.delete("/api/v1/users/999999/mfa", admin).status_code == 404
    assert api.delete(f"/api/v1/users/{uid}/mfa", admin).status_code == 204
    assert api.get("/api/v1/users/me", token=pair["access_token"]).status_code == 401  # sessions ended
    assert "access_token" in api.login("user@test.example")  # the password alone again
    assert api.delete(f"/api/v1/users/{uid}/mfa", admin).json["code"] == "mfa_not_enabled"
    assert "auth.mfa.reset" in _actions(app)
