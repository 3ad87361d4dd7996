"""Every staff write leaves one audit entry (actor, action, object, before/after, the
request id), a failed write leaves none, and the audit-log API filters and paginates."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

LOG = "/api/v1/audit-log"


def me(api, token) -> int:
    return api.get("/api/v1/users/me", token).json["id"]


def entries(api, admin, **filters) -> list[dict]:
    r = api.get(LOG, admin, query_string={"page_size": 100, **filters})
    assert r.status_code == 200, r.json
    return r.json


class Auditor:
    """Sends staff writes with a fresh ``X-Request-ID`` each and finds their entries."""

    def __init__(self, api, admin) -> None:
        self.api, self.admin, self.n = api, admin, 0

    def write(self, token, method, path, body=None, status=200):
        self.n += 1
        request_id = f"audit-test-{self.n}"
        r = self.api.call(method, path, token, json=body, headers={"X-Request-ID": request_id})
        assert r.status_code == status, (method, path, r.json)
        return r, request_id

    def entry_of(self, request_id) -> dict:
        found = [e for e in entries(self.api, self.admin) if e["request_id"] == request_id]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture
def auditor(api, admin):
    return Auditor(api, admin)


def check(entry, *, action, actor, object_type, object_id, before=None, after=None):
    assert entry["action"] == action, entry
    assert entry["actor_id"] == actor
    assert (entry["object_type"], entry["object_id"]) == (object_type, str(object_id))
    if before is not None:
        assert {k: entry["before"][k] for k in before} == before, entry
    else:
        assert entry["before"] is None, entry
    if after is not None:
        assert {k: entry["after"][k] for k in after} == after, entry
    else:
        assert entry["after"] is None, entry
    assert entry["ip"] == "127.0.0.1"
    datetime.fromisoformat(entry["at"])


def test_each_kind_of_catalog_write_leaves_one_entry(api, admin, auditor):
    a = me(api, admin)
    w = auditor.write

    r, rid = w(admin, "POST", "/api/v1/cities", {"name": "Paris", "timezone": "Europe/Paris"}, 201)
    city = r.json["id"]
    check(auditor.entry_of(rid), action="city.create", actor=a, object_type="city", object_id=city,
          after={"id": city, "name": "Paris", "timezone": "Europe/Paris", "country": None})
    r, rid = w(admin, "PATCH", f"/api/v1/cities/{city}", {"name": "Lutece", "timezone": "Europe/Paris"})
    # an update shows only what changed
    check(auditor.entry_of(rid), action="city.update", actor=a, object_type="city", object_id=city,
          before={"name": "Paris"}, after={"name": "Lutece"})
    assert set(auditor.entry_of(rid)["after"]) == {"name"}

    r, rid = w(admin, "POST", "/api/v1/theaters", {"name": "Opera", "city_id": city, "address": "1 Rue X"}, 201)
    theater = r.json["id"]
    check(auditor.entry_of(rid), action="theater.create", actor=a, object_type="theater", object_id=theater,
          after={"name": "Opera", "city_id": city, "address": "1 Rue X"})
    r, rid = w(admin, "PATCH", f"/api/v1/theaters/{theater}", {"address": "2 Rue Y"})
    check(auditor.entry_of(rid), action="theater.update", actor=a, object_type="theater", object_id=theater,
          before={"address": "1 Rue X"}, after={"address": "2 Rue Y"})

    layout = {"rows": [{"label": "A", "seats": ["standard", "standard", "premium"]}]}
    r, rid = w(admin, "POST", f"/api/v1/theaters/{theater}/screens", {"name": "One", "layout": layout}, 201)
    screen = r.json["id"]
    check(auditor.entry_of(rid), action="screen.create", actor=a, object_type="screen", object_id=screen,
          after={"name": "One", "theater_id": theater, "layout": layout, "seat_count": 3})
    r, rid = w(admin, "PATCH", f"/api/v1/screens/{screen}", {"name": "Uno"})
    check(auditor.entry_of(rid), action="screen.update", actor=a, object_type="screen", object_id=screen,
          before={"name": "One"}, after={"name": "Uno"})

    r, rid = w(admin, "POST", "/api/v1/movies", {"title": "Heat", "duration_minutes": 120, "genres": ["Crime"]}, 201)
    movie = r.json["id"]
    check(auditor.entry_of(rid), action="movie.create", actor=a, object_type="movie", object_id=movie,
          after={"title": "Heat", "duration_minutes": 120, "genres": ["crime"]})
    r, rid = w(admin, "PATCH", f"/api/v1/movies/{movie}", {"duration_minutes": 130})
    check(auditor.entry_of(rid), action="movie.update", actor=a, object_type="movie", object_id=movie,
          before={"duration_minutes": 120}, after={"duration_minutes": 130})

    starts = (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0)
    r, rid = w(admin, "POST", "/api/v1/showtimes", {"movie_id": movie, "screen_id": screen,
                                                    "starts_at": starts.isoformat(),
                                                    "prices": {"standard": 1000, "premium": 1500},
                                                    "currency": "EUR"}, 201)
    show = r.json["id"]
    check(auditor.entry_of(rid), action="showtime.create", actor=a, object_type="showtime", object_id=show,
          after={"movie_id": movie, "screen_id": screen, "starts_at": starts.isoformat(),
                 "ends_at": (starts + timedelta(minutes=130)).isoformat(),
                 "prices": {"standard": 1000, "premium": 1500}, "currency": "EUR"})
    later = starts + timedelta(hours=3)
    r, rid = w(admin, "PATCH", f"/api/v1/showtimes/{show}", {"starts_at": later.isoformat()})
    check(auditor.entry_of(rid), action="showtime.update", actor=a, object_type="showtime", object_id=show,
          before={"starts_at": starts.isoformat(), "ends_at": (starts + timedelta(minutes=130)).isoformat()},
          after={"starts_at": later.isoformat(), "ends_at": (later + timedelta(minutes=130)).isoformat()})

    seat_ids = [s["id"] for s in api.get(f"/api/v1/screens/{screen}").json["seats"]]
    r, rid = w(admin, "POST", f"/api/v1/showtimes/{show}/blocked-seats",
               {"seat_ids": seat_ids[:2], "reason": "Broken"}, 201)
    check(auditor.entry_of(rid), action="blocked_seats.create", actor=a, object_type="showtime", object_id=show,
          after={"seat_ids": seat_ids[:2], "reason": "Broken"})
    r, rid = w(admin, "DELETE", f"/api/v1/showtimes/{show}/blocked-seats/{seat_ids[0]}", status=204)
    check(auditor.entry_of(rid), action="blocked_seats.delete", actor=a, object_type="showtime", object_id=show,
          before={"seat_ids": [seat_ids[0]], "reason": "Broken"})

    opens_at = (starts - timedelta(hours=2)).isoformat()
    room = {"opens_at": opens_at, "admit_per_minute": 60, "max_active": 10, "session_seconds": 300}
    r, rid = w(admin, "PUT", f"/api/v1/showtimes/{show}/waiting-room", room)
    check(auditor.entry_of(rid), action="waiting_room.set", actor=a, object_type="showtime", object_id=show,
          after={"admit_per_minute": 60, "max_active": 10})
    assert auditor.entry_of(rid)["before"] is None
    r, rid = w(admin, "PUT", f"/api/v1/showtimes/{show}/waiting-room", {**room, "max_active": 20})
    check(auditor.entry_of(rid), action="waiting_room.set", actor=a, object_type="showtime", object_id=show,
          before={"max_active": 10}, after={"max_active": 20})
    r, rid = w(admin, "DELETE", f"/api/v1/showtimes/{show}/waiting-room", status=204)
    check(auditor.entry_of(rid), action="waiting_room.delete", actor=a, object_type="showtime", object_id=show,
          before={"max_active": 20})

    w(admin, "DELETE", f"/api/v1/showtimes/{show}/blocked-seats/{seat_ids[1]}", status=204)
    # deletes keep the whole row in ``before``
    for path, kind, object_id, field, value in [
        (f"/api/v1/showtimes/{show}", "showtime", show, "starts_at", later.isoformat()),
        (f"/api/v1/screens/{screen}", "screen", screen, "name", "Uno"),
        (f"/api/v1/movies/{movie}", "movie", movie, "title", "Heat"),
        (f"/api/v1/theaters/{theater}", "theater", theater, "address", "2 Rue Y"),
        (f"/api/v1/cities/{city}", "city", city, "name", "Lutece"),
    ]:
        r, rid = w(admin, "DELETE", path, status=204)
        check(auditor.entry_of(rid), action=f"{kind}.delete", actor=a, object_type=kind, object_id=object_id,
              before={"id": object_id, field: value})
    # every write above, and nothing else
    assert len(entries(api, admin)) == auditor.n


def test_a_managers_writes_are_recorded_as_theirs(api, admin, user, show, auditor):
    uid = me(api, user)
    assert api.call("PUT", f"/api/v1/users/{uid}/roles", admin,
                    json={"roles": [{"role": "manager", "theater_id": show["theater"]}]}).status_code == 200
    r, rid = auditor.write(user, "PATCH", f"/api/v1/theaters/{show['theater']}", {"name": "Managed"})
    check(auditor.entry_of(rid), action="theater.update", actor=uid, object_type="theater",
          object_id=show["theater"], before={"name": "Opera"}, after={"name": "Managed"})


def test_a_role_change_leaves_an_entry_with_before_and_after(api, admin, user, show, auditor):
    uid = me(api, user)
    roles = {"roles": [{"role": "manager", "theater_id": show["theater"]}]}
    r, rid = auditor.write(admin, "PUT", f"/api/v1/users/{uid}/roles", roles)
    check(auditor.entry_of(rid), action="user.roles.set", actor=me(api, admin), object_type="user", object_id=uid,
          before={"roles": []}, after=roles)
    r, rid = auditor.write(admin, "PUT", f"/api/v1/users/{uid}/roles", {"roles": [{"role": "admin"}]})
    check(auditor.entry_of(rid), action="user.roles.set", actor=me(api, admin), object_type="user", object_id=uid,
          before=roles, after={"roles": [{"role": "admin", "theater_id": None}]})


def test_a_write_that_fails_leaves_no_entry(api, admin, user, show, auditor):
    before = len(entries(api, admin))
    starts = show["showtime_obj"]["starts_at"]
    failing = [
        # 409: overlaps the fixture's showtime on the same screen
        ("POST", "/api/v1/showtimes", {"movie_id": show["movie"], "screen_id": show["screen"], "starts_at": starts,
                                        "prices": {"standard": 1, "premium": 2}, "currency": "EUR"}, 409),
        # 409: a theater with screens, a city with theaters, a movie with showtimes
        ("DELETE", f"/api/v1/theaters/{show['theater']}", None, 409),
        ("DELETE", f"/api/v1/cities/{show['city']}", None, 409),
        ("DELETE", f"/api/v1/movies/{show['movie']}", None, 409),
        # 409: a longer cut makes two showtimes of one screen overlap (the showtimes' update fails
        # after the movie's row and its entry were written in the same transaction)
        ("PATCH", f"/api/v1/movies/{show['movie']}", {"duration_minutes": 1440}, 409),
        # 422 from the service (an unknown time zone), 404, 403
        ("PATCH", f"/api/v1/cities/{show['city']}", {"timezone": "Mars/Olympus"}, 422),
        ("PATCH", "/api/v1/theaters/999999", {"name": "Nowhere"}, 404),
        ("PATCH", f"/api/v1/theaters/{show['theater']}", {"name": "Not mine"}, 403),
    ]
    for method, path, body, status in failing:
        token = user if status == 403 else admin
        if method == "PATCH" and "movies" in path:
            later = datetime.fromisoformat(starts) + timedelta(hours=3)
            api.showtime(admin, show["movie"], show["screen"], starts_at=later)
            before += 1
        auditor.write(token, method, path, body, status)
    assert len(entries(api, admin)) == before
    assert api.get(f"/api/v1/movies/{show['movie']}").json["duration_minutes"] == 120


def test_the_audit_log_filters_and_paginates_newest_first(api, admin, user, show):
    a, uid = me(api, admin), me(api, user)
    api.call("PUT", f"/api/v1/users/{uid}/roles", admin,
             json={"roles": [{"role": "manager", "theater_id": show["theater"]}]})
    for name in ("One", "Two", "Three"):
        assert api.patch(f"/api/v1/theaters/{show['theater']}", {"name": name}, user).status_code == 200
    everything = entries(api, admin)
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    # the fixture's catalog (5 creates), the role, 3 updates
    assert len(everything) == 9

    mine = entries(api, admin, actor_id=uid)
    assert [e["after"]["name"] for e in mine] == ["Three", "Two", "One"]
    assert [e["action"] for e in entries(api, admin, action="user.roles.set")] == ["user.roles.set"]
    assert {e["action"] for e in entries(api, admin, action="theater.")} == {"theater.create", "theater.update"}
    assert len(entries(api, admin, action="theater.*")) == 4
    assert {e["object_type"] for e in entries(api, admin, object_type="screen")} == {"screen"}
    assert entries(api, admin, actor_id=a, action="theater.update") == []

    since = mine[1]["at"]
    assert [e["id"] for e in entries(api, admin, since=since)] == [e["id"] for e in everything
                                                                    if e["at"] >= since]
    assert entries(api, admin, since="2199-01-01T00:00:00+00:00") == []

    r = api.get(LOG, admin, query_string={"page": 2, "page_size": 4})
    assert r.status_code == 200
    assert [e["id"] for e in r.json] == [e["id"] for e in everything[4:8]]
    assert json.loads(r.headers["X-Pagination"])["total"] == 9
    assert api.get(LOG, admin, query_string={"page": 3, "page_size": 4}).json == everything[8:]


@pytest.mark.parametrize("query, status, field", [
    ("since=yesterday", 422, "since"),
    ("since=2026-13-40T00:00:00Z", 422, "since"),
    ("actor_id=abc", 422, "actor_id"),
    ("page_size=101", 422, "page_size"),
    ("actr_id=1", 400, None),
])
def test_bad_audit_log_queries_are_refused(api, admin, query, status, field):
    r = api.get(f"{LOG}?{query}", admin)
    assert r.status_code == status, r.json
    if field:
        assert field in r.json["errors"], r.json
    else:
        assert r.json["code"] == "unknown_parameter"


def test_an_offset_in_since_is_honoured(api, admin, show):
    newest = entries(api, admin)[0]
    at = datetime.fromisoformat(newest["at"]).astimezone(timezone(timedelta(hours=-5)))
    assert [e["id"] for e in entries(api, admin, since=at.isoformat())] == [newest["id"]]
    assert entries(api, admin, since=(at + timedelta(microseconds=1)).isoformat()) == []


def test_only_an_admin_reads_the_audit_log(api, admin, user, show):
    api.call("PUT", f"/api/v1/users/{me(api, user)}/roles", admin,
             json={"roles": [{"role": "manager", "theater_id": show["theater"]}]})
    assert api.get(LOG, user).status_code == 403
    assert api.get(LOG).status_code == 401


def test_an_admin_cancelling_a_customers_reservation_is_recorded_and_the_customers_own_is_not(
        api, admin, user, show, auditor):
    from tests.integration.booking_helpers import hold, reserve, seat_ids

    seats = seat_ids(api, show["showtime"])
    reservations = []
    for seat in seats[:2]:
        held = hold(api, user, show["showtime"], [seat])
        assert held.status_code == 201, held.json
        r = reserve(api, user, held.json["id"])
        assert r.status_code == 202, r.json
        reservations.append(r.json["id"])
    before = len(entries(api, admin))
    auditor.write(user, "POST", f"/api/v1/reservations/{reservations[0]}/cancel", status=202)
    assert len(entries(api, admin)) == before
    r, rid = auditor.write(admin, "POST", f"/api/v1/reservations/{reservations[1]}/cancel", status=202)
    check(auditor.entry_of(rid), action="reservation.cancel", actor=me(api, admin), object_type="reservation",
          object_id=reservations[1], before={"status": "pending_payment"}, after={"status": "cancelled"})


def test_admins_made_from_the_command_line_are_recorded_once(app, api, admin):
    from dataclasses import replace

    runner = app.test_cli_runner()
    assert runner.invoke(args=["create-admin", "boss@example.com", "--password", "boss-pass-1"]).exit_code == 0
    api.post("/api/v1/auth/register", {"email": "later@example.com", "password": "later-pass-1", "name": "L"})
    assert runner.invoke(args=["create-admin", "later@example.com", "--password", "new-pass-12"]).exit_code == 0
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, admin_email="later@example.com", admin_password="new-pass-12")
    try:  # a start-up that finds its admin there already records nothing
        assert runner.invoke(args=["bootstrap-admin"]).exit_code == 0
    finally:
        ext.settings = original
    found = entries(api, admin, action="user.admin.ensure")
    assert [(e["actor_id"], e["after"]) for e in found] == [
        (None, {"via": "create-admin", "created": False, "promoted": True, "password_set": True}),
        (None, {"via": "create-admin", "created": True, "promoted": False, "password_set": False}),
    ]
    assert not any(secret in json.dumps(e) for e in found for secret in ("boss-pass-1", "new-pass-12", "argon2"))
