"""The catalog API as API.md describes it, against real PostgreSQL and Redis."""
import json
from datetime import datetime, timedelta, timezone

from tests.helpers import ApiClient


def _page(r):
    return json.loads(r.headers["X-Pagination"])


def test_an_admin_builds_a_showtime_and_sees_its_seat_map(api, admin):
    ids = api.catalog(admin)
    r = api.get(f"/api/v1/showtimes/{ids['showtime']}/seats")
    assert r.status_code == 200
    body = r.json
    assert body["showtime_id"] == ids["showtime"]
    assert [s["label"] for s in body["seats"]] == ["A1", "A2", "A3", "B1", "B2", "B3"]
    seat = body["seats"][2]
    assert set(seat) >= {"id", "label", "row", "number", "category", "price_cents", "status"}
    assert (seat["row"], seat["number"], seat["category"], seat["price_cents"], seat["status"]) == \
        ("A", 3, "premium", 1500, "available")


def test_screen_layout_gives_seats_with_stable_ids(api, admin):
    ids = api.catalog(admin)
    screen = api.get(f"/api/v1/screens/{ids['screen']}").json
    assert screen["seat_count"] == 6
    before = {s["label"]: s["id"] for s in screen["seats"]}
    # Drop B3, add a C row, keep the rest: surviving labels keep their ids.
    layout = {"rows": [{"label": "A", "seats": ["standard", "standard", None, "premium"]},
                       {"label": "B", "seats": ["standard", "standard"]},
                       {"label": "C", "seats": ["standard"]}]}
    r = api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": layout}, admin)
    assert r.status_code == 200, r.json
    after = {s["label"]: s["id"] for s in r.json["seats"]}
    assert set(after) == {"A1", "A2", "A3", "B1", "B2", "C1"}
    assert all(after[label] == before[label] for label in ("A1", "A2", "A3", "B1", "B2"))
    assert r.json["seat_count"] == 6


def test_a_layout_with_thousands_of_seats_works(api, admin):
    city = api.city(admin)
    theater = api.theater(admin, city["id"])
    rows = [{"label": chr(65 + i // 26) + chr(65 + i % 26), "seats": ["standard"] * 50 + [None] + ["premium"] * 50}
            for i in range(60)]
    r = api.post(f"/api/v1/theaters/{theater['id']}/screens", {"name": "IMAX", "layout": {"rows": rows}}, admin)
    assert r.status_code == 201, r.json
    assert r.json["seat_count"] == 6000 and len(r.json["seats"]) == 6000
    movie = api.movie(admin)
    show = api.showtime(admin, movie["id"], r.json["id"])
    seats = api.get(f"/api/v1/showtimes/{show['id']}/seats").json["seats"]
    assert len(seats) == 6000 and len({s["id"] for s in seats}) == 6000


def test_new_layout_categories_need_prices_on_future_showtimes(api, admin):
    ids = api.catalog(admin)
    layout = {"rows": [{"label": "A", "seats": ["recliner"]}]}
    r = api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": layout}, admin)
    assert r.status_code == 409 and "recliner" in r.json["detail"]


def test_deleting_what_is_still_referenced_is_409(api, admin):
    ids = api.catalog(admin)
    for path in (f"/api/v1/cities/{ids['city']}", f"/api/v1/theaters/{ids['theater']}",
                 f"/api/v1/screens/{ids['screen']}", f"/api/v1/movies/{ids['movie']}"):
        r = api.delete(path, admin)
        assert r.status_code == 409 and r.json["code"] == "in_use", (path, r.json)
    # Top-down, everything goes.
    for path in (f"/api/v1/showtimes/{ids['showtime']}", f"/api/v1/screens/{ids['screen']}",
                 f"/api/v1/movies/{ids['movie']}", f"/api/v1/theaters/{ids['theater']}",
                 f"/api/v1/cities/{ids['city']}"):
        assert api.delete(path, admin).status_code == 204, path
        assert api.get(path).status_code == 404


def test_overlapping_showtime_on_the_same_screen_is_409(api, admin):
    ids = api.catalog(admin)
    start = datetime.fromisoformat(ids["showtime_obj"]["starts_at"])
    body = {"movie_id": ids["movie"], "screen_id": ids["screen"], "prices": {"standard": 1, "premium": 1},
            "currency": "EUR"}
    r = api.post("/api/v1/showtimes", dict(body, starts_at=(start + timedelta(minutes=119)).isoformat()), admin)
    assert r.status_code == 409 and r.json["code"] == "showtime_overlap"
    # Back to back is fine: a showtime ends exactly when the next starts.
    r = api.post("/api/v1/showtimes", dict(body, starts_at=(start + timedelta(minutes=120)).isoformat()), admin)
    assert r.status_code == 201, r.json
    assert r.json["ends_at"] == (start + timedelta(minutes=240)).isoformat()


def test_a_longer_cut_that_would_overlap_is_refused(api, admin):
    ids = api.catalog(admin)
    start = datetime.fromisoformat(ids["showtime_obj"]["starts_at"])
    api.showtime(admin, ids["movie"], ids["screen"], starts_at=start + timedelta(minutes=130))
    r = api.patch(f"/api/v1/movies/{ids['movie']}", {"duration_minutes": 150}, admin)
    assert r.status_code == 409 and r.json["code"] == "showtime_overlap"
    assert api.get(f"/api/v1/movies/{ids['movie']}").json["duration_minutes"] == 120
    r = api.patch(f"/api/v1/movies/{ids['movie']}", {"duration_minutes": 125}, admin)
    assert r.status_code == 200
    show = api.get(f"/api/v1/showtimes/{ids['showtime']}").json
    assert show["ends_at"] == (start + timedelta(minutes=125)).isoformat()


def test_theaters_near_a_point_nearest_first_within_the_radius(api, admin):
    city = api.city(admin)
    api.theater(admin, city["id"], name="Opera", latitude=48.8708, longitude=2.3319)
    api.theater(admin, city["id"], name="Bastille", latitude=48.8530, longitude=2.3708)
    api.theater(admin, city["id"], name="Versailles", latitude=48.8049, longitude=2.1204)
    api.theater(admin, city["id"], name="Nowhere")  # no coordinates: never "near"
    r = api.get("/api/v1/theaters?near=48.8566,2.3522&radius_km=5")
    assert [t["name"] for t in r.json] == ["Bastille", "Opera"]
    assert 0 < r.json[0]["distance_km"] < r.json[1]["distance_km"] < 5
    r = api.get("/api/v1/theaters?near=48.8566,2.3522&radius_km=30")
    assert [t["name"] for t in r.json] == ["Bastille", "Opera", "Versailles"]
    assert _page(r)["total"] == 3


def test_theaters_filter_by_city(api, admin):
    paris, lyon = api.city(admin), api.city(admin, name="Lyon")
    api.theater(admin, paris["id"], name="P")
    api.theater(admin, lyon["id"], name="L")
    assert [t["name"] for t in api.get(f"/api/v1/theaters?city_id={lyon['id']}").json] == ["L"]


def test_lists_are_paginated_and_say_so(api, admin):
    for i in range(25):
        api.movie(admin, title=f"Movie {i:02d}")
    r = api.get("/api/v1/movies?page=2&page_size=10")
    assert [m["title"] for m in r.json] == [f"Movie {i:02d}" for i in range(10, 20)]
    assert _page(r) == {"total": 25, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 2,
                        "page_size": 10, "previous_page": 1, "next_page": 3}
    assert len(api.get("/api/v1/movies?page_size=100").json) == 25


def test_movie_search_and_filters(api, admin):
    ids = api.catalog(admin)  # "Heat", crime, en, showing in Paris tomorrow
    api.movie(admin, title="Heat Wave", genres=["Comedy"], language="fr")
    api.movie(admin, title="100% Pure", genres=["drama"])
    titles = lambda q: [m["title"] for m in api.get("/api/v1/movies" + q).json]  # noqa: E731
    assert titles("?q=heat") == ["Heat", "Heat Wave"]
    assert titles("?q=100%25") == ["100% Pure"]
    assert titles("?q=%25") == ["100% Pure"]  # % is literal, not a wildcard
    assert titles("?genre=comedy") == ["Heat Wave"]
    assert titles("?language=FR") == ["Heat Wave"]
    assert titles(f"?city_id={ids['city']}") == ["Heat"]
    show_day = datetime.fromisoformat(ids["showtime_obj"]["starts_at"]).astimezone().date()
    other_day = show_day + timedelta(days=3)
    assert titles(f"?city_id={ids['city']}&date={other_day}") == []


def test_showtime_date_filter_uses_the_city_local_date(api, admin):
    city = api.city(admin, name="Tokyo", country="Japan", timezone="Asia/Tokyo")
    theater = api.theater(admin, city["id"])
    screen = api.screen(admin, theater["id"])
    movie = api.movie(admin)
    # 2030-03-01 23:30 UTC is 2030-03-02 08:30 in Tokyo.
    show = api.showtime(admin, movie["id"], screen["id"], starts_at=datetime(2030, 3, 1, 23, 30, tzinfo=timezone.utc))
    ids = lambda q: [s["id"] for s in api.get("/api/v1/showtimes" + q).json]  # noqa: E731
    assert ids("?date=2030-03-02") == [show["id"]]
    assert ids("?date=2030-03-01") == []
    assert ids(f"?theater_id={theater['id']}&movie_id={movie['id']}") == [show["id"]]
    assert ids(f"?city_id={city['id']}&date=2030-03-02") == [show["id"]]


def test_etags_let_pollers_skip_unchanged_bodies(api, admin):
    ids = api.catalog(admin)
    path = f"/api/v1/showtimes/{ids['showtime']}/seats"
    first = api.get(path)
    again = api.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_request_id_is_kept_or_created(client):
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    assert len(client.get("/health").headers["X-Request-ID"]) == 32


def test_same_city_twice_is_a_conflict(api, admin):
    api.city(admin)
    r = api.post("/api/v1/cities", {"name": "Paris", "country": "France", "timezone": "Europe/Paris"}, admin)
    assert r.status_code == 409


def test_client_fixture_builds_independent_users(client):
    api = ApiClient(client)
    a, b = api.make_user("a@example.com"), api.make_user("b@example.com")
    assert api.get("/api/v1/users/me", a).json["email"] == "a@example.com"
    assert api.get("/api/v1/users/me", b).json["email"] == "b@example.com"


def test_a_showtime_moves_to_another_day_and_screen(api, admin):
    ids = api.catalog(admin)
    other = api.screen(admin, ids["theater"], name="Two")
    start = datetime.fromisoformat(ids["showtime_obj"]["starts_at"]) + timedelta(days=3)
    r = api.patch(f"/api/v1/showtimes/{ids['showtime']}",
                  {"starts_at": start.isoformat(), "screen_id": other["id"]}, admin)
    assert r.status_code == 200, r.json
    assert r.json["screen_id"] == other["id"]
    assert r.json["starts_at"] == start.isoformat()
    assert r.json["ends_at"] == (start + timedelta(minutes=120)).isoformat()


def test_a_layout_whose_seats_are_referenced_cannot_drop_them(api, admin, app):
    """Seats referenced by another table (bookings, once the booking engine lands)
    block a layout that would delete them: 409 layout_in_use, and nothing changes.
    Until then the reference is a real foreign key from a scratch table."""
    from sqlalchemy import text

    from app import db

    ids = api.catalog(admin)
    seat_b3 = [s for s in api.get(f"/api/v1/screens/{ids['screen']}").json["seats"] if s["label"] == "B3"][0]
    with app.app_context():
        db.session.execute(text("CREATE TABLE scratch_seat_refs (seat_id bigint REFERENCES seats(id) ON DELETE RESTRICT)"))
        db.session.execute(text("INSERT INTO scratch_seat_refs VALUES (:id)"), {"id": seat_b3["id"]})
        db.session.commit()
    try:
        before = api.get(f"/api/v1/screens/{ids['screen']}").json
        layout = {"rows": [{"label": "A", "seats": ["standard", "standard", None, "premium"]}]}
        r = api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": layout}, admin)
        assert r.status_code == 409 and r.json["code"] == "layout_in_use"
        assert api.get(f"/api/v1/screens/{ids['screen']}").json == before
        # Keeping the referenced seat is fine.
        layout["rows"].append({"label": "B", "seats": ["standard", "standard", None, "premium"]})
        layout["rows"][0]["seats"].append("standard")
        assert api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": layout}, admin).status_code == 200
    finally:
        with app.app_context():
            db.session.execute(text("DROP TABLE scratch_seat_refs"))
            db.session.commit()
