"""A password change ends every other session at once, on every app process, while the
caller goes on with the new pair it gets back (a per-user cut-off: tokens issued before
it are void, carried by the same pushed revocations as a logout, with the same barrier)."""
from __future__ import annotations

import concurrent.futures
import time
import uuid

import jwt
import requests

from app import bootstrap
from app.adapters.tokens import session_cutoff_key
from app.services import auth
from tests.helpers import PASSWORD, wait_until

ME = "/api/v1/users/me"
NEW_PASSWORD = "a brand new passphrase"


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _revoked(deps, claims) -> bool:
    with bootstrap.using(deps):
        return auth.is_token_revoked(claims)


def _user_id(api, token) -> int:
    return api.get(ME, token).json["id"]


def test_a_password_change_ends_the_other_sessions_and_keeps_the_caller_signed_in(api, user):
    laptop = api.login("user@test.example")  # another device's session
    r = api.post("/api/v1/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, user)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    pair = r.json
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    for old in (user, laptop["access_token"]):
        answer = api.get(ME, old)
        assert (answer.status_code, answer.json["code"]) == (401, "token_revoked")
    assert api.post("/api/v1/auth/refresh", token=laptop["refresh_token"]).status_code == 401
    assert api.get(ME, pair["access_token"]).status_code == 200
    refreshed = api.post("/api/v1/auth/refresh", token=pair["refresh_token"])
    assert refreshed.status_code == 200 and api.get(ME, refreshed.json["access_token"]).status_code == 200
    assert api.post("/api/v1/auth/login", {"email": "user@test.example", "password": PASSWORD}).status_code == 401
    api.login("user@test.example", NEW_PASSWORD)


def test_a_wrong_current_password_is_403_and_changes_nothing(api, user):
    r = api.post("/api/v1/auth/password", {"current_password": "not it at all", "new_password": NEW_PASSWORD}, user)
    assert (r.status_code, r.json["code"]) == (403, "wrong_password")
    assert api.get(ME, user).status_code == 200
    api.login("user@test.example")


def test_the_new_password_follows_the_registration_policy(api, user):
    r = api.post("/api/v1/auth/password", {"current_password": PASSWORD, "new_password": "short"}, user)
    assert r.status_code == 422 and "new_password" in r.json["errors"]
    r = api.post("/api/v1/auth/password", {"current_password": PASSWORD, "new_password": "x" * 257}, user)
    assert r.status_code == 422
    assert api.post("/api/v1/auth/password", {"new_password": NEW_PASSWORD}, user).status_code == 422
    assert api.post("/api/v1/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
                    ).status_code == 401


def test_wrong_current_passwords_are_throttled_like_failed_sign_ins(api, user):
    body = {"current_password": "guess", "new_password": NEW_PASSWORD}
    codes = [api.post("/api/v1/auth/password", body, user).status_code for _ in range(6)]
    assert codes == [403] * 5 + [429]


def test_a_password_change_is_known_at_once_by_another_process(processes, api, user, app):
    """The race itself, 300 times: no pause between the change in one process and the
    check in the other; the caller's new pair is good there at once."""
    here, there = processes
    user_id = _user_id(api, user)
    with bootstrap.using(here):
        pair = auth.issue_tokens(auth.get_profile(user_id))
    for _ in range(300):
        old = [_claims(pair.access_token), _claims(pair.refresh_token)]
        assert not any(_revoked(there, c) for c in old)
        with app.app_context(), bootstrap.using(here):
            pair = auth.change_password(user_id, PASSWORD, PASSWORD)
        assert all(_revoked(there, c) for c in old)
        assert not _revoked(there, _claims(pair.access_token)) and not _revoked(there, _claims(pair.refresh_token))
    # Not asserted here: that the mirror (not Redis) answered each round. Pub/sub channels
    # are global to a Redis server, whatever the database, so another suite's clean-up on
    # the same server makes mirrors reload at random moments (test_pushed_state checks it).


def test_many_threads_see_cut_offs_at_once(processes):
    here, there = processes
    users = range(10_000, 11_000)  # the cut-off touches Redis only: no rows needed

    def cut_then_check(user_id):
        claims = {"jti": uuid.uuid4().hex, "fam": uuid.uuid4().hex, "sub": str(user_id),
                  "iat": time.time(), "exp": time.time() + 900}
        assert not _revoked(there, claims)
        with bootstrap.using(here):
            cutoff = auth.end_sessions(user_id)
        return _revoked(there, claims) and not _revoked(there, {**claims, "iat": (cutoff + 1) / 1e6})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(cut_then_check, users))


def test_a_process_loading_later_knows_the_cut_off(processes, app):
    here, _there = processes
    claims = {"jti": uuid.uuid4().hex, "sub": "4242", "iat": time.time(), "exp": time.time() + 900}
    with bootstrap.using(here):
        auth.end_sessions(4242)
    newcomer = bootstrap.build(app.extensions["marquee"].settings)
    try:
        assert _revoked(newcomer, claims)  # before its mirror: Redis
        assert wait_until(lambda: newcomer.revocations.lookup(["x"]) is not None, timeout=5)
        assert newcomer.revocations.lookup([session_cutoff_key(newcomer.redis, 4242)]) != [None]  # loaded, valued
        assert _revoked(newcomer, claims)
        assert not _revoked(newcomer, {**claims, "iat": time.time() + 1})
    finally:
        newcomer.revocations.close()
        newcomer.engine.dispose()


def test_a_refresh_racing_the_cut_off_never_outlives_it(api, user, app):
    """A refresh token checked before the cut-off but rotated after it is refused by the
    rotation's script itself (the cut-off is checked in the same step)."""
    laptop = api.login("user@test.example")
    claims = _claims(laptop["refresh_token"])
    with app.app_context():
        auth.end_sessions(int(claims["sub"]))  # lands between the token's check and its rotation
        try:
            auth.rotate_refresh_token(claims)
        except auth.errors.TokenRevoked:
            pass
        else:
            raise AssertionError("a refresh token older than the cut-off was rotated")


def test_password_change_through_gunicorn_is_known_by_every_worker_at_once(live_server):
    email = f"pw-{uuid.uuid4().hex[:8]}@test.example"
    requests.post(live_server + "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "P"},
                  timeout=10)

    def login():
        return requests.post(live_server + "/api/v1/auth/login", json={"email": email, "password": PASSWORD},
                             timeout=10).json()

    mine, other = login(), login()
    others = {"Authorization": f"Bearer {other['access_token']}"}
    for _ in range(20):  # both workers have seen the token, and subscribed
        assert requests.get(live_server + ME, headers=others, timeout=10).status_code == 200
    r = requests.post(live_server + "/api/v1/auth/password", timeout=10,
                      headers={"Authorization": f"Bearer {mine['access_token']}"},
                      json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 200
    fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
    answers = [requests.get(live_server + ME, headers=others, timeout=10) for _ in range(40)]
    assert {(a.status_code, a.json()["code"]) for a in answers} == {(401, "token_revoked")}
    assert {requests.get(live_server + ME, headers=fresh, timeout=10).status_code for _ in range(40)} == {200}


def test_a_sign_in_with_the_old_password_racing_a_change_gets_no_session(api, user, app, monkeypatch):
    """The old password checked just before the change commits: the pair would be minted
    after the cut-off, so the sign-in is refused instead."""
    user_id = _user_id(api, user)
    authenticate = auth.authenticate

    def then_the_change_lands(*args):
        found = authenticate(*args)
        auth.change_password(user_id, PASSWORD, NEW_PASSWORD)
        return found

    monkeypatch.setattr(auth, "authenticate", then_the_change_lands)
    r = api.post("/api/v1/auth/login", {"email": "user@test.example", "password": PASSWORD})
    assert (r.status_code, r.json["code"]) == (401, "invalid_credentials")
    monkeypatch.undo()
    api.login("user@test.example", NEW_PASSWORD)  # a sign-in after the change is fine
