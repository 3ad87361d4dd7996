"""Bad input gets a clear 4xx problem document and writes nothing."""
import pytest
from sqlalchemy import text

from app import db


def _rows(app) -> dict:
    with app.app_context():
        return {t: db.session.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("users", "cities", "theaters", "screens", "seats", "movies", "showtimes")}


def _assert_problem(r, status, code=None):
    assert r.status_code == status, r.json
    assert r.content_type == "application/problem+json"
    for key in ("status", "title", "detail", "code"):
        assert key in r.json, r.json
    assert r.json["status"] == status
    if code:
        assert r.json["code"] == code


BAD_BODIES = [
    ("/api/v1/cities", {"name": 5, "timezone": "UTC"}, "name"),
    ("/api/v1/cities", {"timezone": "UTC"}, "name"),
    ("/api/v1/cities", {"name": "X", "timezone": "Nowhere/Land"}, "timezone"),
    ("/api/v1/cities", {"name": "X" * 121, "timezone": "UTC"}, "name"),
    ("/api/v1/cities", {"name": "X", "timezone": "UTC", "mayor": "me"}, "mayor"),
    ("/api/v1/theaters", {"name": "T", "city_id": "one", "address": "a"}, "city_id"),
    ("/api/v1/theaters", {"name": "T", "city_id": 999999, "address": "a"}, "city_id"),
    ("/api/v1/theaters", {"name": "T", "city_id": "{city}", "address": "a", "latitude": 91, "longitude": 0}, "latitude"),
    ("/api/v1/theaters", {"name": "T", "city_id": "{city}", "address": "a", "latitude": 45.0}, "latitude"),
    ("/api/v1/movies", {"title": "M", "duration_minutes": 0}, "duration_minutes"),
    ("/api/v1/movies", {"title": "M", "duration_minutes": 90.5}, "duration_minutes"),
    ("/api/v1/movies", {"title": "M", "duration_minutes": "90"}, "duration_minutes"),
    ("/api/v1/movies", {"title": "M", "duration_minutes": 90, "poster_url": "not a url"}, "poster_url"),
    ("/api/v1/movies", {"title": "M", "duration_minutes": 90, "genres": ["g"] * 21}, "genres"),
    ("/api/v1/movies", {"title": "M", "duration_minutes": 90, "release_date": "yesterday"}, "release_date"),
    ("/api/v1/showtimes", {"movie_id": 999999, "screen_id": "{screen}", "starts_at": "2030-01-01T10:00:00+00:00",
                           "prices": {"standard": 1, "premium": 1}, "currency": "EUR"}, "movie_id"),
    ("/api/v1/showtimes", {"movie_id": "{movie}", "screen_id": "{screen}", "starts_at": "2030-01-01T10:00:00",
                           "prices": {"standard": 1, "premium": 1}, "currency": "EUR"}, "starts_at"),
    ("/api/v1/showtimes", {"movie_id": "{movie}", "screen_id": "{screen}", "starts_at": "2030-01-01T10:00:00+00:00",
                           "prices": {"standard": 1}, "currency": "EUR"}, "prices"),
    ("/api/v1/showtimes", {"movie_id": "{movie}", "screen_id": "{screen}", "starts_at": "2030-01-01T10:00:00+00:00",
                           "prices": {"standard": -1, "premium": 1}, "currency": "EUR"}, "prices"),
    ("/api/v1/showtimes", {"movie_id": "{movie}", "screen_id": "{screen}", "starts_at": "2030-01-01T10:00:00+00:00",
                           "prices": {"standard": 1, "premium": 1}, "currency": "euro"}, "currency"),
    ("/api/v1/showtimes", {"movie_id": "{movie}", "screen_id": "{screen}", "starts_at": "1900-01-01T10:00:00+00:00",
                           "prices": {"standard": 1, "premium": 1}, "currency": "EUR"}, "starts_at"),
    ("/api/v1/theaters/{theater}/screens", {"name": "S", "layout": {"rows": [{"label": "A", "seats": [None]}]}}, "layout"),
    ("/api/v1/theaters/{theater}/screens", {"name": "S", "layout": {"rows": "A"}}, "layout"),
    ("/api/v1/theaters/{theater}/screens", {"name": "S", "layout": {"rows": [{"label": "A", "seats": ["VIP SEAT"]}]}}, "layout"),
    ("/api/v1/auth/register", {"email": "not-an-email", "password": "password1", "name": "A"}, "email"),
    ("/api/v1/auth/register", {"email": "a@b.co", "password": "short", "name": "A"}, "password"),
    ("/api/v1/auth/register", {"email": "a@b.co", "password": "p" * 300, "name": "A"}, "password"),
]


@pytest.mark.parametrize("path, body, field", BAD_BODIES)
def test_invalid_bodies_are_422_with_field_errors_and_write_nothing(api, app, admin, path, body, field):
    ids = api.catalog(admin)

    def fill(v):
        if isinstance(v, str) and v.startswith("{") and v.endswith("}") and v[1:-1] in ids:
            return ids[v[1:-1]]
        return v

    body = {k: fill(v) for k, v in body.items()}
    before = _rows(app)
    r = api.post(path.format(**ids), body, admin)
    _assert_problem(r, 422, "validation_error")
    # One shape (API.md): a field path to a list of messages, nested fields dotted.
    paths = [p for p in r.json["errors"] if p == field or p.startswith(field + ".")]
    assert paths and all(isinstance(r.json["errors"][p], list) for p in paths), r.json
    assert _rows(app) == before


def test_malformed_json_is_400(api, admin):
    r = api.call("POST", "/api/v1/cities", admin, data='{"name": "X",', headers={"Content-Type": "application/json"})
    _assert_problem(r, 400, "malformed_json")


def test_a_huge_body_is_413(api, admin, app):
    before = _rows(app)
    r = api.call("POST", "/api/v1/movies", admin, data="x" * (2 * 1024 * 1024),
                 headers={"Content-Type": "application/json"})
    _assert_problem(r, 413, "payload_too_large")
    assert _rows(app) == before


def test_unknown_ids_are_404(api):
    for path in ["/api/v1/cities/424242", "/api/v1/theaters/424242", "/api/v1/screens/424242",
                 "/api/v1/movies/424242", "/api/v1/showtimes/424242", "/api/v1/showtimes/424242/seats",
                 "/api/v1/theaters/424242/screens"]:
        _assert_problem(api.get(path), 404, "not_found")


def test_unknown_route_is_404_and_wrong_method_405(api):
    _assert_problem(api.get("/api/v1/nothing-here"), 404, "not_found")
    _assert_problem(api.call("PUT", "/api/v1/cities"), 405, "method_not_allowed")


def test_bad_query_arguments_are_422(api):
    _assert_problem(api.get("/api/v1/theaters?near=north"), 422, "validation_error")
    _assert_problem(api.get("/api/v1/theaters?near=95,10"), 422, "validation_error")
    _assert_problem(api.get("/api/v1/movies?date=tomorrow"), 422, "validation_error")
    _assert_problem(api.get("/api/v1/movies?page_size=1000"), 422, "validation_error")
    _assert_problem(api.get("/api/v1/movies?page=0"), 422, "validation_error")


def test_a_failed_patch_changes_nothing(api, admin, app):
    ids = api.catalog(admin)
    before = api.get(f"/api/v1/theaters/{ids['theater']}").json
    r = api.patch(f"/api/v1/theaters/{ids['theater']}", {"name": "New", "latitude": None}, admin)
    _assert_problem(r, 422)
    assert api.get(f"/api/v1/theaters/{ids['theater']}").json == before


def test_unexpected_failures_are_problem_json_without_a_stack_trace(app, monkeypatch):
    from app.services import catalog

    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(catalog, "get_city", boom)
    r = app.test_client().get("/api/v1/cities/1")
    _assert_problem(r, 500, "internal_error")
    assert "secret internals" not in r.get_data(as_text=True)
    assert "Traceback" not in r.get_data(as_text=True)


def test_text_postgresql_cannot_store_is_422_not_500(api, admin, app):
    before = _rows(app)
    for bad in ("nul\x00byte", "lone \udc00 surrogate"):
        r = api.post("/api/v1/movies", {"title": bad, "duration_minutes": 90}, admin)
        _assert_problem(r, 422, "validation_error")
        assert "title" in r.json["errors"]
        r = api.post("/api/v1/movies", {"title": "ok", "duration_minutes": 90, "genres": [bad]}, admin)
        _assert_problem(r, 422, "validation_error")
    _assert_problem(api.get("/api/v1/movies?q=a%00b"), 422, "validation_error")
    assert _rows(app) == before


def test_a_page_far_past_the_end_is_empty_not_an_error(api, admin):
    api.movie(admin)
    r = api.get("/api/v1/movies?page=5240708695775812249452544")
    assert r.status_code == 200 and r.json == []
    r = api.get("/api/v1/theaters?page=99999999999999999999&near=48.8,2.3")
    assert r.status_code == 200 and r.json == []


def test_times_postgresql_cannot_store_are_422_not_500(api, admin):
    ids = api.catalog(admin)
    # Offsets PostgreSQL would refuse are normalised to UTC before they reach it.
    assert api.get("/api/v1/showtimes", query_string={"starts_after": "2030-01-01T10:00:00+18:43"}).status_code == 200
    _assert_problem(api.get("/api/v1/showtimes", query_string={"starts_after": "0001-01-01T00:00:00+18:00"}), 422)
    for day in ("0001-01-01", "9999-12-31"):
        _assert_problem(api.get(f"/api/v1/showtimes?date={day}"), 422)
        _assert_problem(api.get(f"/api/v1/movies?date={day}"), 422)
    r = api.patch(f"/api/v1/showtimes/{ids['showtime']}", {"starts_at": "2030-01-01T10:00:00+23:00"}, admin)
    # An exotic but valid offset is accepted and stored as the same instant in UTC.
    assert r.status_code == 200 and r.json["starts_at"] == "2029-12-31T11:00:00+00:00"
