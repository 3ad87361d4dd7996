"""Staff roles: an admin grants them (PUT /users/{id}/roles), they take effect at once,
and a theater's manager writes that theater's catalog and nothing else."""
from __future__ import annotations

import concurrent.futures
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests

from app.services.auth import ensure_admin
from tests.helpers import PASSWORD


def user_id(api, token) -> int:
    return api.get("/api/v1/users/me", token).json["id"]


def put_roles(api, token, uid, roles, **kw):
    return api.call("PUT", f"/api/v1/users/{uid}/roles", token, json={"roles": roles}, **kw)


def grant(api, admin, token, *roles):
    """Give the user of ``token`` the roles (``(role, theater_id)`` pairs)."""
    r = put_roles(api, admin, user_id(api, token), [{"role": role, "theater_id": t} for role, t in roles])
    assert r.status_code == 200, r.json


def seats_of(api, screen_id) -> list[int]:
    return [seat["id"] for seat in api.get(f"/api/v1/screens/{screen_id}").json["seats"]]


def waiting_room_in(hours_before_show: int = 2) -> dict:
    opens_at = (datetime.now(timezone.utc) + timedelta(hours=24 - hours_before_show)).replace(microsecond=0)
    return {"opens_at": opens_at.isoformat(), "admit_per_minute": 60, "max_active": 10, "session_seconds": 300}


@pytest.fixture
def two_theaters(api, admin):
    """Theater A (the ``show`` catalog: screen, movie, showtime) and theater B in the same
    city with a screen and a showtime, plus an empty theater A2."""
    a = api.catalog(admin)
    b_theater = api.theater(admin, a["city"], name="Rex")["id"]
    b_screen = api.screen(admin, b_theater)["id"]
    b_show = api.showtime(admin, a["movie"], b_screen)["id"]
    a2 = api.theater(admin, a["city"], name="Empty")["id"]
    return {"A": a["theater"], "A_screen": a["screen"], "A_show": a["showtime"], "movie": a["movie"],
            "city": a["city"], "B": b_theater, "B_screen": b_screen, "B_show": b_show, "A2": a2}


# --- the roles API -----------------------------------------------------------------

def test_an_admin_replaces_and_reads_a_users_roles(api, admin, user, two_theaters):
    uid = user_id(api, user)
    r = put_roles(api, admin, uid, [{"role": "scanner", "theater_id": two_theaters["B"]},
                                    {"role": "manager", "theater_id": two_theaters["A"]},
                                    {"role": "manager", "theater_id": two_theaters["A"]}])
    assert r.status_code == 200, r.json
    wanted = [{"role": "manager", "theater_id": two_theaters["A"]}, {"role": "scanner", "theater_id": two_theaters["B"]}]
    assert r.json == {"user_id": uid, "roles": wanted}
    assert api.get(f"/api/v1/users/{uid}/roles", admin).json == {"user_id": uid, "roles": wanted}
    r = put_roles(api, admin, uid, [])
    assert r.status_code == 200 and r.json["roles"] == []
    assert api.get(f"/api/v1/users/{uid}/roles", admin).json["roles"] == []


@pytest.mark.parametrize("roles, field", [
    ([{"role": "owner", "theater_id": 1}], "roles.0.role"),
    ([{"role": "manager"}], "roles.0.theater_id"),
    ([{"role": "scanner", "theater_id": None}], "roles.0.theater_id"),
    ([{"role": "admin"}, {"role": "admin", "theater_id": 1}], "roles.1.theater_id"),
    ([{"role": "manager", "theater_id": 1}, {"role": "manager", "theater_id": 999999}], "roles.1.theater_id"),
    ([{"role": "manager", "theater_id": "1"}], "roles.0.theater_id"),
    ([{"role": "manager", "theater_id": 1, "extra": True}], "roles.0.extra"),
])
def test_roles_that_cannot_be_granted_are_a_422_per_field_and_change_nothing(api, admin, user, two_theaters,
                                                                             roles, field):
    uid = user_id(api, user)
    grant(api, admin, user, ("scanner", two_theaters["A"]))
    r = put_roles(api, admin, uid, roles)
    assert r.status_code == 422, r.json
    assert r.json["code"] == "validation_error" and field in r.json["errors"], r.json
    assert api.get(f"/api/v1/users/{uid}/roles", admin).json["roles"] == [
        {"role": "scanner", "theater_id": two_theaters["A"]}]


def test_a_body_without_roles_is_a_422(api, admin, user):
    r = api.call("PUT", f"/api/v1/users/{user_id(api, user)}/roles", admin, json={})
    assert r.status_code == 422 and "roles" in r.json["errors"]


def test_an_unknown_user_is_a_404(api, admin):
    assert put_roles(api, admin, 987654, []).status_code == 404
    assert api.get("/api/v1/users/987654/roles", admin).status_code == 404


def test_only_an_admin_reads_or_grants_roles(api, admin, user, other, two_theaters):
    grant(api, admin, user, ("manager", two_theaters["A"]))
    uid = user_id(api, other)
    for token in (user, other):
        assert put_roles(api, token, uid, [{"role": "admin"}]).status_code == 403
        assert api.get(f"/api/v1/users/{uid}/roles", token).status_code == 403
    assert put_roles(api, None, uid, [{"role": "admin"}]).status_code == 401
    assert api.get(f"/api/v1/users/{uid}/roles", admin).json["roles"] == []


def test_the_last_admin_cannot_lose_the_admin_role(api, admin, two_theaters):
    uid = user_id(api, admin)
    r = put_roles(api, admin, uid, [{"role": "manager", "theater_id": two_theaters["A"]}])
    assert r.status_code == 409 and r.json["code"] == "last_admin", r.json
    assert api.get(f"/api/v1/users/{uid}/roles", admin).json["roles"] == [{"role": "admin", "theater_id": None}]


def test_a_demoted_admin_can_no_longer_write_with_a_token_issued_before(api, admin, user):
    uid = user_id(api, user)
    assert put_roles(api, admin, uid, [{"role": "admin"}]).status_code == 200
    # Promotion ends the sessions too: the next sign-in carries the admin role.
    assert api.get("/api/v1/users/me", user).status_code == 401
    promoted = api.login("user@test.example")["access_token"]
    assert api.post("/api/v1/cities", {"name": "Lyon", "timezone": "Europe/Paris"}, promoted).status_code == 201

    assert put_roles(api, admin, uid, []).status_code == 200
    r = api.post("/api/v1/cities", {"name": "Nice", "timezone": "Europe/Paris"}, promoted)
    assert r.status_code == 401, r.json
    again = api.login("user@test.example")["access_token"]
    assert api.post("/api/v1/cities", {"name": "Nice", "timezone": "Europe/Paris"}, again).status_code == 403


def test_a_demoted_admins_refresh_token_gives_no_admin_token(api, admin, user):
    uid = user_id(api, user)
    put_roles(api, admin, uid, [{"role": "admin"}])
    pair = api.login("user@test.example")
    assert put_roles(api, admin, uid, []).status_code == 200
    r = api.post("/api/v1/auth/refresh", token=pair["refresh_token"])
    assert r.status_code == 401, r.json


def test_a_granted_manager_writes_at_once_and_a_revoked_one_stops_at_once(api, admin, user, two_theaters):
    path = f"/api/v1/theaters/{two_theaters['A']}"
    assert api.patch(path, {"name": "Before"}, user).status_code == 403
    grant(api, admin, user, ("manager", two_theaters["A"]))
    r = api.patch(path, {"name": "Granted"}, user)  # the token from before the grant
    assert r.status_code == 200 and r.json["name"] == "Granted"
    grant(api, admin, user)
    assert api.patch(path, {"name": "Revoked"}, user).status_code == 403
    assert api.get(path).json["name"] == "Granted"


# --- scoping of every write ----------------------------------------------------------

def _writes_of_theater(api, ids, t: str) -> list[tuple[str, str, dict | None]]:
    """Every catalog write on theater ``t``'s objects (``A`` or ``B``)."""
    screen, show = ids[f"{t}_screen"], ids[f"{t}_show"]
    seat = seats_of(api, screen)[0]
    return [
        ("PATCH", f"/api/v1/theaters/{ids[t]}", {"name": "Renamed"}),
        ("DELETE", f"/api/v1/theaters/{ids[t]}", None),
        ("POST", f"/api/v1/theaters/{ids[t]}/screens",
         {"name": "Two", "layout": {"rows": [{"label": "A", "seats": ["standard"]}]}}),
        ("PATCH", f"/api/v1/screens/{screen}", {"name": "Renamed"}),
        ("DELETE", f"/api/v1/screens/{screen}", None),
        ("POST", "/api/v1/showtimes", {"movie_id": ids["movie"], "screen_id": screen,
                                       "starts_at": (datetime.now(timezone.utc) + timedelta(days=3))
                                       .replace(microsecond=0).isoformat(),
                                       "prices": {"standard": 900, "premium": 1400}, "currency": "EUR"}),
        ("PATCH", f"/api/v1/showtimes/{show}", {"prices": {"standard": 1, "premium": 2}}),
        ("DELETE", f"/api/v1/showtimes/{show}", None),
        ("POST", f"/api/v1/showtimes/{show}/blocked-seats", {"seat_ids": [seat]}),
        ("GET", f"/api/v1/showtimes/{show}/blocked-seats", None),
        ("DELETE", f"/api/v1/showtimes/{show}/blocked-seats/{seats_of(api, screen)[1]}", None),
        ("PUT", f"/api/v1/showtimes/{show}/waiting-room", waiting_room_in()),
        ("GET", f"/api/v1/showtimes/{show}/waiting-room", None),
        ("DELETE", f"/api/v1/showtimes/{show}/waiting-room", None),
    ]


CHAIN_WIDE = [
    ("POST", "/api/v1/cities", {"name": "Lyon", "timezone": "Europe/Paris"}),
    ("PATCH", "/api/v1/cities/{city}", {"name": "Lutece"}),
    ("DELETE", "/api/v1/cities/{city}", None),
    ("POST", "/api/v1/theaters", {"name": "New", "city_id": "{city}", "address": "2 Rue Y"}),
    ("POST", "/api/v1/movies", {"title": "Ran", "duration_minutes": 160, "genres": ["drama"]}),
    ("PATCH", "/api/v1/movies/{movie}", {"title": "Renamed"}),
    ("DELETE", "/api/v1/movies/{movie}", None),
]


def _chain_wide(ids):
    out = []
    for method, path, body in CHAIN_WIDE:
        if body and body.get("city_id") == "{city}":
            body = {**body, "city_id": ids["city"]}
        out.append((method, path.format(city=ids["city"], movie=ids["movie"]), body))
    return out


def _snapshot(api, ids, t: str) -> list:
    """What a write of theater ``t`` could have changed, as its public reads show it."""
    return [api.get(f"/api/v1/theaters/{ids[t]}").json, api.get(f"/api/v1/screens/{ids[t + '_screen']}").json,
            api.get(f"/api/v1/showtimes/{ids[t + '_show']}").json,
            api.get(f"/api/v1/showtimes/{ids[t + '_show']}/seats").json["seats"],
            api.get(f"/api/v1/theaters/{ids[t]}/screens").json]


def _prepare(api, admin, ids, t: str) -> None:
    """An admin blocks a seat and opens a waiting room on theater ``t``'s showtime, so
    that unblocking and turning it off have something to act on."""
    show, seat = ids[f"{t}_show"], seats_of(api, ids[f"{t}_screen"])[1]
    assert api.post(f"/api/v1/showtimes/{show}/blocked-seats", {"seat_ids": [seat]}, admin).status_code == 201
    r = api.call("PUT", f"/api/v1/showtimes/{show}/waiting-room", admin, json=waiting_room_in(3))
    assert r.status_code == 200, r.json


def test_a_manager_of_a_is_refused_every_write_of_b_and_of_the_chain(api, admin, user, two_theaters):
    ids = two_theaters
    grant(api, admin, user, ("manager", ids["A"]))
    _prepare(api, admin, ids, "B")
    before = _snapshot(api, ids, "B")
    refused = _writes_of_theater(api, ids, "B") + _chain_wide(ids) + [
        # moving A's showtime to B's screen needs B too
        ("PATCH", f"/api/v1/showtimes/{ids['A_show']}", {"screen_id": ids["B_screen"]}),
        ("POST", "/api/v1/showtimes", {"movie_id": ids["movie"], "screen_id": ids["B_screen"],
                                       "starts_at": "2030-01-01T20:00:00+00:00",
                                       "prices": {"standard": 1, "premium": 2}, "currency": "EUR"}),
    ]
    for method, path, body in refused:
        r = api.call(method, path, user, json=body)
        assert r.status_code == 403, (method, path, r.status_code, r.json)
        assert r.json["code"] == "forbidden"
    assert _snapshot(api, ids, "B") == before
    assert api.get(f"/api/v1/showtimes/{ids['A_show']}").json["screen_id"] == ids["A_screen"]
    entries = api.get("/api/v1/audit-log", admin, query_string={"actor_id": user_id(api, user)}).json
    assert entries == []


def test_a_manager_of_a_does_every_write_of_a(api, admin, user, two_theaters):
    ids = two_theaters
    grant(api, admin, user, ("manager", ids["A"]), ("manager", ids["A2"]))
    _prepare(api, admin, ids, "A")
    show, screen = ids["A_show"], ids["A_screen"]
    seat, blocked = seats_of(api, screen)[0], seats_of(api, screen)[1]

    def ok(method, path, body=None, status=200):
        r = api.call(method, path, user, json=body)
        assert r.status_code == status, (method, path, r.json)
        return r.json

    assert ok("PATCH", f"/api/v1/theaters/{ids['A']}", {"name": "Mine"})["name"] == "Mine"
    new_screen = ok("POST", f"/api/v1/theaters/{ids['A']}/screens",
                    {"name": "Two", "layout": {"rows": [{"label": "A", "seats": ["standard", "premium"]}]}},
                    status=201)["id"]
    assert ok("PATCH", f"/api/v1/screens/{new_screen}", {"name": "Deux"})["name"] == "Deux"
    starts = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0).isoformat()
    new_show = ok("POST", "/api/v1/showtimes", {"movie_id": ids["movie"], "screen_id": new_screen, "starts_at": starts,
                                                "prices": {"standard": 900, "premium": 1400}, "currency": "EUR"},
                  status=201)["id"]
    # moving a showtime between two screens of theaters the manager manages
    assert ok("PATCH", f"/api/v1/showtimes/{new_show}", {"screen_id": screen})["screen_id"] == screen
    assert ok("PATCH", f"/api/v1/showtimes/{show}", {"prices": {"standard": 1100, "premium": 1600}})["prices"] == {
        "standard": 1100, "premium": 1600}
    assert ok("POST", f"/api/v1/showtimes/{show}/blocked-seats", {"seat_ids": [seat]}, status=201)["seats"][0][
        "seat_id"] == seat
    assert len(ok("GET", f"/api/v1/showtimes/{show}/blocked-seats")["seats"]) == 2
    ok("DELETE", f"/api/v1/showtimes/{show}/blocked-seats/{blocked}", status=204)
    assert ok("PUT", f"/api/v1/showtimes/{show}/waiting-room", waiting_room_in(1))["max_active"] == 10
    assert ok("GET", f"/api/v1/showtimes/{show}/waiting-room")["stats"]["waiting"] == 0
    ok("DELETE", f"/api/v1/showtimes/{show}/waiting-room", status=204)
    ok("DELETE", f"/api/v1/showtimes/{new_show}", status=204)
    ok("DELETE", f"/api/v1/screens/{new_screen}", status=204)
    ok("DELETE", f"/api/v1/theaters/{ids['A2']}", status=204)


@pytest.mark.parametrize("role", ["scanner", None])
def test_a_scanner_or_a_customer_writes_nothing_of_the_catalog(api, admin, user, two_theaters, role):
    ids = two_theaters
    if role:
        grant(api, admin, user, (role, ids["A"]))
    _prepare(api, admin, ids, "A")
    before = _snapshot(api, ids, "A")
    for method, path, body in _writes_of_theater(api, ids, "A") + _chain_wide(ids):
        r = api.call(method, path, user, json=body)
        assert r.status_code == 403, (method, path, r.json)
        r = api.call(method, path, None, json=body)
        assert r.status_code == 401, (method, path, r.json)
    assert _snapshot(api, ids, "A") == before


def test_reads_of_the_catalog_stay_public(api, admin, user, two_theaters):
    ids = two_theaters
    grant(api, admin, user, ("manager", ids["A"]))
    for path in ("/api/v1/cities", f"/api/v1/theaters/{ids['B']}", f"/api/v1/screens/{ids['B_screen']}",
                 f"/api/v1/showtimes/{ids['B_show']}", f"/api/v1/showtimes/{ids['B_show']}/seats",
                 f"/api/v1/theaters/{ids['A']}/screens", "/api/v1/movies"):
        for token in (None, user):
            assert api.get(path, token).status_code == 200, path


# --- the last admin, under concurrency ------------------------------------------------

ROUNDS = 8


def test_two_admins_demoting_each_other_at_once_leave_one_admin(live_server, app, api, admin):
    """Each round, admins A and B demote each other at the same moment through a real
    gunicorn: one wins (200), the other is refused, and one admin is left, every time."""
    emails = ["racer-a@example.com", "racer-b@example.com"]
    for email in emails:
        requests.post(live_server + "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "R"},
                      timeout=30)
    with app.app_context():
        ids = [ensure_admin(email, None)[0].id for email in emails]
    # only A and B are admins: the fixture's admin steps down
    assert put_roles(api, admin, user_id(api, admin), []).status_code == 200
    for _ in range(ROUNDS):
        with app.app_context():
            for email in emails:
                ensure_admin(email, None)
        tokens = [requests.post(live_server + "/api/v1/auth/login", json={"email": e, "password": PASSWORD},
                                timeout=30).json()["access_token"] for e in emails]
        barrier = threading.Barrier(2)

        def demote(i, tokens=tokens, barrier=barrier):
            barrier.wait()
            return requests.put(f"{live_server}/api/v1/users/{ids[1 - i]}/roles", json={"roles": []},
                                headers={"Authorization": f"Bearer {tokens[i]}"}, timeout=30)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(demote, range(2)))
        # The loser is refused as the last admin (409), or, when its request comes in after
        # the winner's commit, already without its admin session (401 token_revoked).
        outcomes = sorted((r.status_code, r.json().get("code")) for r in responses)
        assert outcomes in ([(200, None), (409, "last_admin")], [(200, None), (401, "token_revoked")]), \
            [r.text for r in responses]
        with app.app_context():
            from sqlalchemy import func, select

            from app import db
            from app.models import User

            assert db.session.scalar(select(func.count()).where(User.role == "admin")) == 1
            db.session.remove()


def test_a_block_racing_a_move_of_its_showtime_to_another_theater_is_judged_on_the_new_theater(
        live_server, app, api, admin, user, two_theaters):
    """An admin's transaction moves a showtime of A to B's screen and holds it open; a manager
    of A blocks a seat of it meanwhile, through gunicorn. The block waits for the move (the
    showtime's row is share-locked where the theater is decided) and is then refused: it
    never blocks seats of A's screen on a showtime that is B's."""
    from sqlalchemy import create_engine, text

    from tests.conftest import TEST_ENV
    from tests.helpers import wait_until

    ids = two_theaters
    grant(api, admin, user, ("manager", ids["A"]))
    starts = (datetime.now(timezone.utc) + timedelta(days=6)).replace(microsecond=0)
    show = api.showtime(admin, ids["movie"], ids["A_screen"], starts_at=starts)["id"]
    seat = seats_of(api, ids["A_screen"])[0]
    engine = create_engine(TEST_ENV["DATABASE_URL"])
    result = {}
    try:
        with engine.connect() as move:
            move.execute(text("UPDATE showtimes SET screen_id = :screen WHERE id = :show"),
                         {"screen": ids["B_screen"], "show": show})

            def block():
                result["response"] = requests.post(
                    f"{live_server}/api/v1/showtimes/{show}/blocked-seats", json={"seat_ids": [seat]},
                    headers={"Authorization": f"Bearer {user}"}, timeout=30)

            thread = threading.Thread(target=block)
            thread.start()

            def waiting_for_the_move():
                with engine.connect() as probe:
                    return probe.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query LIKE '%showtimes%'")).scalar()

            wait_until(lambda: waiting_for_the_move() or not thread.is_alive(), timeout=15, what="the block")
            move.commit()
            thread.join(30)
    finally:
        engine.dispose()
    r = result["response"]
    assert r.status_code == 403, r.text
    with app.app_context():
        from app import db

        assert db.session.execute(text("SELECT count(*) FROM blocked_seats WHERE showtime_id = :s"),
                                  {"s": show}).scalar() == 0
        db.session.remove()


def test_an_erased_account_keeps_no_staff_role_and_its_export_lists_them(api, admin, user, two_theaters):
    uid = user_id(api, user)
    grant(api, admin, user, ("manager", two_theaters["A"]), ("scanner", two_theaters["B"]))
    exported = api.get("/api/v1/users/me/export", user).json["data"]["user_roles"]
    assert sorted((r["role"], r["theater_id"]) for r in exported) == [
        ("manager", two_theaters["A"]), ("scanner", two_theaters["B"])]
    assert api.call("DELETE", "/api/v1/users/me", user, json={"password": PASSWORD}).status_code == 204
    assert api.get(f"/api/v1/users/{uid}/roles", admin).status_code == 404
    with api.client.application.app_context():
        from sqlalchemy import func, select

        from app import db
        from app.models import UserRole

        assert db.session.scalar(select(func.count()).select_from(UserRole)) == 0
        db.session.remove()
