"""Sign-up, sign-in, tokens, rotation, revocation and throttling, against real
PostgreSQL and Redis."""
import base64
import json
from datetime import timedelta

import jwt as pyjwt
import pytest
from sqlalchemy import select

from app import db
from app.models import User
from tests.helpers import PASSWORD

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/users/me"


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_register_returns_the_public_profile_and_hashes_with_argon2id(api, app):
    r = api.post(REGISTER, {"email": "Ann@Example.com", "password": PASSWORD, "name": "Ann"})
    assert r.status_code == 201
    assert r.json == {"id": r.json["id"], "email": "ann@example.com", "name": "Ann", "role": "user",
                      "created_at": r.json["created_at"]}
    with app.app_context():
        stored = db.session.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_register_twice_is_email_taken_whatever_the_case(api):
    api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    r = api.post(REGISTER, {"email": "ANN@example.com", "password": PASSWORD, "name": "Ann"})
    assert r.status_code == 409 and r.json["code"] == "email_taken"
    assert r.content_type == "application/problem+json"


def test_login_gives_a_bearer_pair_and_me_shows_the_profile(api):
    api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    pair = api.login("ann@example.com")
    assert pair["token_type"] == "Bearer" and pair["expires_in"] > 0
    me = api.get(ME, pair["access_token"])
    assert me.status_code == 200 and me.json["email"] == "ann@example.com"
    assert "password" not in json.dumps(me.json)


def test_wrong_password_and_unknown_email_look_the_same(api):
    api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    wrong = api.post(LOGIN, {"email": "ann@example.com", "password": "nope-nope"})
    unknown = api.post(LOGIN, {"email": "bob@example.com", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json["code"] == unknown.json["code"] == "invalid_credentials"
    assert wrong.json["detail"] == unknown.json["detail"]


def test_me_without_a_token_is_401(api):
    r = api.get(ME)
    assert r.status_code == 401 and r.json["code"] == "token_missing"


def test_expired_token_is_refused(api, app, user):
    from flask_jwt_extended import create_access_token

    with app.app_context():
        token = create_access_token(identity="1", expires_delta=timedelta(seconds=-5),
                                    additional_claims={"role": "admin", "fam": "x"})
    r = api.get(ME, token)
    assert r.status_code == 401 and r.json["code"] == "token_expired"


def test_token_signed_with_another_key_is_refused(api, user):
    claims = pyjwt.decode(user, options={"verify_signature": False})
    forged = pyjwt.encode(dict(claims, role="admin"), "another-key-of-sufficient-length-000000", algorithm="HS256")
    r = api.get(ME, forged)
    assert r.status_code == 401 and r.json["code"] == "token_invalid"


def test_alg_none_token_is_refused(api, user):
    claims = pyjwt.decode(user, options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(dict(claims, role='admin'))}."
    r = api.get(ME, unsigned)
    assert r.status_code == 401
    r = api.post("/api/v1/cities", {"name": "X", "timezone": "UTC"}, unsigned)
    assert r.status_code == 401


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_hs512_token_with_the_right_key_is_refused_because_the_algorithm_is_pinned(api, app, user):
    claims = pyjwt.decode(user, options={"verify_signature": False})
    other_alg = pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], algorithm="HS512")
    assert api.get(ME, other_alg).status_code == 401


def test_logout_revokes_the_access_token_at_once_and_ends_the_session(api):
    api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    pair = api.login("ann@example.com")
    assert api.post(LOGOUT, token=pair["access_token"]).status_code == 204
    r = api.get(ME, pair["access_token"])
    assert r.status_code == 401 and r.json["code"] == "token_revoked"
    assert api.post(REFRESH, token=pair["refresh_token"]).status_code == 401
    # Another session of the same user is untouched.
    other = api.login("ann@example.com")
    assert api.get(ME, other["access_token"]).status_code == 200


def test_refresh_rotates_and_the_old_refresh_token_stops_working(api):
    api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    first = api.login("ann@example.com")
    r = api.post(REFRESH, token=first["refresh_token"])
    assert r.status_code == 200
    second = r.json
    assert second["refresh_token"] != first["refresh_token"]
    assert api.get(ME, second["access_token"]).status_code == 200
    assert api.post(REFRESH, token=second["refresh_token"]).status_code == 200


def test_reusing_an_old_refresh_token_revokes_the_whole_family(api):
    api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    first = api.login("ann@example.com")
    second = api.post(REFRESH, token=first["refresh_token"]).json
    # An attacker replays the first refresh token.
    replay = api.post(REFRESH, token=first["refresh_token"])
    assert replay.status_code == 401 and replay.json["code"] == "refresh_token_reused"
    # The legitimate holder's tokens of that family are dead too.
    assert api.post(REFRESH, token=second["refresh_token"]).status_code == 401
    assert api.get(ME, second["access_token"]).status_code == 401


def test_an_access_token_cannot_refresh_and_a_refresh_token_cannot_act(api):
    api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    pair = api.login("ann@example.com")
    assert api.post(REFRESH, token=pair["access_token"]).status_code == 401
    assert api.get(ME, pair["refresh_token"]).status_code == 401


def test_brute_force_on_one_account_gets_429_with_retry_after(api):
    api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    codes = [api.post(LOGIN, {"email": "ann@example.com", "password": f"guess-{i}"}).status_code for i in range(5)]
    assert codes == [401] * 5
    r = api.post(LOGIN, {"email": "ann@example.com", "password": "guess-x"})
    assert r.status_code == 429 and r.json["code"] == "rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= 900
    # Even the right password waits: otherwise guessing would go on.
    assert api.post(LOGIN, {"email": "ann@example.com", "password": PASSWORD}).status_code == 429


def test_per_address_limit_counts_failures_only(api):
    """Many honest customers behind one address still sign in; guessers do not."""
    for i in range(30):  # more successes than the per-address limit (20)
        api.post(REGISTER, {"email": f"c{i}@example.com", "password": PASSWORD, "name": "C"})
        assert api.post(LOGIN, {"email": f"c{i}@example.com", "password": PASSWORD}).status_code == 200
    # Failures spread over many accounts from one address hit the address limit.
    codes = [api.post(LOGIN, {"email": f"victim{i}@example.com", "password": "x"}).status_code for i in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429


def test_x_forwarded_for_from_an_untrusted_peer_cannot_dodge_the_address_limit(api):
    for i in range(20):
        api.post(LOGIN, {"email": f"v{i}@example.com", "password": "x"},
                 headers={"X-Forwarded-For": f"198.51.100.{i}"}, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    r = api.post(LOGIN, {"email": "v99@example.com", "password": "x"},
                 headers={"X-Forwarded-For": "198.51.100.250"}, environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert r.status_code == 429


def test_behind_a_trusted_proxy_each_client_address_is_counted_apart(api):
    for i in range(20):
        api.post(LOGIN, {"email": f"v{i}@example.com", "password": "x"},
                 headers={"X-Forwarded-For": "198.51.100.1"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    blocked = api.post(LOGIN, {"email": "w@example.com", "password": "x"},
                       headers={"X-Forwarded-For": "198.51.100.1"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    other = api.post(LOGIN, {"email": "w@example.com", "password": "x"},
                     headers={"X-Forwarded-For": "198.51.100.2"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert blocked.status_code == 429 and other.status_code == 401


def test_parallel_guesses_cannot_slip_past_the_account_limit(live_server):
    """Attempts are counted before the password check, so a burst stops at the limit."""
    import concurrent.futures

    import requests

    requests.post(live_server + REGISTER, json={"email": "ann@example.com", "password": PASSWORD, "name": "A"})

    def guess(i):
        return requests.post(live_server + LOGIN, json={"email": "ann@example.com", "password": f"g{i}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(guess, range(40)))
    assert codes.count(401) == 5 and codes.count(429) == 35


def test_create_admin_cli_creates_and_promotes(app, api):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["create-admin", "boss@example.com", "--password", "boss-pass-1"])
    assert r.exit_code == 0 and "created admin" in r.output
    token = api.login("boss@example.com", "boss-pass-1")["access_token"]
    assert api.get(ME, token).json["role"] == "admin"
    api.post(REGISTER, {"email": "later@example.com", "password": PASSWORD, "name": "L"})
    r = runner.invoke(args=["create-admin", "later@example.com", "--password", "new-pass-12"])
    assert "promoted" in r.output
    assert api.get(ME, api.login("later@example.com", "new-pass-12")["access_token"]).json["role"] == "admin"


def test_admin_from_the_environment_is_bootstrapped(app, api, monkeypatch):
    from dataclasses import replace

    ext = app.extensions["marquee"]
    monkeypatch.setattr(ext, "settings", replace(ext.settings, admin_email="env@example.com",
                                                 admin_password="env-pass-123"))
    r = app.test_cli_runner().invoke(args=["bootstrap-admin"])
    assert r.exit_code == 0, r.output
    assert api.get(ME, api.login("env@example.com", "env-pass-123")["access_token"]).json["role"] == "admin"


@pytest.mark.parametrize("token", [
    "eyJhbGciOiJIUzI1NiJ9.t7e3.x",  # a header that decodes to bytes no UTF-8 reader takes
    base64.urlsafe_b64encode(b"\xb7\xb7\xb7").decode() + ".e30.x",
    "abc",
    "a.b.c.d",
])
def test_a_bad_token_says_invalid_token_and_keeps_the_decoder_to_the_log(api, token, caplog):
    with caplog.at_level("INFO", logger="marquee"):
        r = api.get(ME, token)
    assert r.status_code == 401 and r.json["code"] == "token_invalid"
    assert r.json["detail"] == "Invalid token"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert any(getattr(rec, "reason", None) for rec in caplog.records if rec.message == "invalid token refused")


def test_answers_that_carry_tokens_are_never_stored(api):
    r = api.post(REGISTER, {"email": "ann@example.com", "password": PASSWORD, "name": "Ann"})
    assert r.headers["Cache-Control"] == "no-store"
    login = api.post(LOGIN, {"email": "ann@example.com", "password": PASSWORD})
    assert login.status_code == 200 and login.headers["Cache-Control"] == "no-store"
    refreshed = api.post(REFRESH, token=login.json["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.headers["Cache-Control"] == "no-store"
    failed = api.post(LOGIN, {"email": "ann@example.com", "password": "wrong password"})
    assert failed.status_code == 401 and failed.headers["Cache-Control"] == "no-store"


def test_a_token_verified_before_is_still_checked_for_expiry_revocation_and_its_user(api, app):
    """Tokens seen before skip the decoding (security.VerifiedTokens), not the checks
    that change with time: expiry and revocation; and get_jwt() is the token's own."""
    from app.adapters.tokens import TokenMinter
    from app.config import JWT_ALGORITHM
    from tests.helpers import wait_until

    ann = api.make_user("ann@example.com")
    bob = api.make_user("bob@example.com")
    for _ in range(3):  # the first verifies, the next ones are seen before
        assert api.get(ME, ann).json["email"] == "ann@example.com"
        assert api.get(ME, bob).json["email"] == "bob@example.com"
    claims = pyjwt.decode(ann, options={"verify_signature": False})
    minter = TokenMinter(app.config["JWT_SECRET_KEY"], JWT_ALGORITHM, 2, 60)
    short = minter.mint("access", claims["sub"], {"role": "user", "fam": claims["fam"]}).token
    assert api.get(ME, short).status_code == 200
    expired = wait_until(lambda: (r := api.get(ME, short)).status_code == 401 and r, timeout=10, interval=0.2)
    assert expired.json["code"] == "token_expired"
    assert api.post(LOGOUT, token=bob).status_code == 204
    r = api.get(ME, bob)
    assert r.status_code == 401 and r.json["code"] == "token_revoked"
