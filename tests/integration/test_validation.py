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
    # the audit log paged by hand, and an offset past bigint was a 500 (found by schemathesis)
    r = api.get("/api/v1/audit-log?page=13057440208245861070004789278932991&page_size=10", admin)
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


# --- hostile bodies (issue 11) ------------------------------------------------

REGISTER = "/api/v1/auth/register"
SIGN_UP = {"email": "new@test.example", "password": "correct horse battery", "name": "New"}


def _deep(depth: int) -> str:
    return '{"name": ' + "[" * depth + "]" * depth + "}"


def _held_seats(api, ids) -> list:
    seats = api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"]
    return [s["id"] for s in seats if s["status"] != "available"]


@pytest.mark.parametrize("depth", [33, 1_000, 100_000])
def test_json_nested_past_the_limit_is_400_json_too_deep_on_register_and_holds(api, app, admin, user, depth):
    ids = api.catalog(admin)
    before = _rows(app)
    r = api.call("POST", REGISTER, data=_deep(depth), headers={"Content-Type": "application/json"})
    _assert_problem(r, 400, "json_too_deep")
    r = api.call("POST", f"/api/v1/showtimes/{ids['showtime']}/holds", user,
                 data='{"seat_ids": ' + "[" * depth + "]" * depth + "}", headers={"Content-Type": "application/json"})
    _assert_problem(r, 400, "json_too_deep")
    assert _rows(app) == before and _held_seats(api, ids) == []


def test_json_nested_within_the_limit_reaches_the_schema(api):
    _assert_problem(api.call("POST", REGISTER, data=_deep(10), headers={"Content-Type": "application/json"}),
                    422, "validation_error")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_malformed_json(api, app, literal):
    before = _rows(app)
    body = '{"email": "n@test.example", "password": "correct horse battery", "name": "N", "x": %s}' % literal
    _assert_problem(api.call("POST", REGISTER, data=body, headers={"Content-Type": "application/json"}),
                    400, "malformed_json")
    assert _rows(app) == before


@pytest.mark.parametrize("number", [str(2**63), str(2**64 + 1), "-" + str(2**70), "1e400", "9" * 5000])
def test_numbers_past_2_63_are_422_naming_the_field(api, app, admin, user, number):
    ids = api.catalog(admin)
    before = _rows(app)
    r = api.call("POST", f"/api/v1/showtimes/{ids['showtime']}/holds", user,
                 data='{"seat_ids": [%s]}' % number, headers={"Content-Type": "application/json"})
    _assert_problem(r, 422, "validation_error")
    assert list(r.json["errors"]) == ["seat_ids.0"]
    r = api.call("POST", "/api/v1/movies", admin, data='{"title": "M", "duration_minutes": %s}' % number,
                 headers={"Content-Type": "application/json"})
    _assert_problem(r, 422, "validation_error")
    assert "duration_minutes" in r.json["errors"]
    assert _rows(app) == before and _held_seats(api, ids) == []


@pytest.mark.parametrize("body", ["null", "1", '"text"', "[]", "[1, 2]", "true"])
def test_every_json_type_but_an_object_is_422(api, app, body):
    before = _rows(app)
    r = api.call("POST", REGISTER, data=body, headers={"Content-Type": "application/json"})
    _assert_problem(r, 422, "validation_error")
    assert _rows(app) == before


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
    "application/json;charset=latin-1", "application/jsonx", None,
])
def test_a_body_that_is_not_json_is_415(api, app, content_type):
    import json as _json

    before = _rows(app)
    headers = {"Content-Type": content_type} if content_type else {}
    r = api.call("POST", REGISTER, data=_json.dumps(SIGN_UP), headers=headers)
    _assert_problem(r, 415, "unsupported_media_type")
    assert _rows(app) == before


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8",
    "application/vnd.marquee+json",
])
def test_json_with_parameters_or_a_json_suffix_is_accepted(api, content_type):
    import json as _json

    r = api.call("POST", REGISTER, data=_json.dumps(SIGN_UP), headers={"Content-Type": content_type})
    assert r.status_code == 201, r.json


@pytest.mark.parametrize("method, path", [("POST", REGISTER), ("PATCH", "/api/v1/cities/{city}")])
@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_no_body_where_one_is_required_is_422(api, admin, app, method, path, content_type):
    ids = api.catalog(admin)
    before = _rows(app)
    headers = {"Content-Type": content_type} if content_type else {}
    r = api.call(method, path.format(**ids), admin, headers=headers)
    _assert_problem(r, 422, "validation_error")
    assert list(r.json["errors"]) == ["_schema"]
    assert _rows(app) == before


# --- query parameters ---------------------------------------------------------

@pytest.mark.parametrize("path, typo", [
    ("/api/v1/showtimes?moive_id=1", "moive_id"),
    ("/api/v1/movies?page=1&sort=title", "sort"),
    ("/api/v1/cities/1?expand=theaters", "expand"),  # no query schema at all
    ("/api/v1/showtimes/1/seats?x=1", "x"),
])
def test_an_unknown_query_parameter_is_400_naming_it(api, admin, path, typo):
    api.catalog(admin)
    r = api.get(path)
    _assert_problem(r, 400, "unknown_parameter")
    assert r.json["parameters"] == [typo] and typo in r.json["detail"]


def test_declared_query_parameters_still_pass(api, admin):
    ids = api.catalog(admin)
    r = api.get(f"/api/v1/showtimes?movie_id={ids['movie']}&page=1&page_size=5")
    assert r.status_code == 200 and [s["id"] for s in r.json] == [ids["showtime"]]
    assert api.get("/api/v1/reservations?status=confirmed&page=2", admin).status_code == 200
    assert api.get(f"/api/v1/movies/{ids['movie']}/reviews?page=1&page_size=5").status_code == 200


def test_the_spec_says_unknown_parameters_are_refused(client):
    assert "unknown_parameter" in client.get("/openapi.json").json["info"]["description"]


# --- protocol details -----------------------------------------------------------

def test_a_page_past_the_end_still_says_which_page_it_is(api, admin):
    import json as _json

    api.catalog(admin)
    r = api.get("/api/v1/movies?page=9&page_size=10")
    meta = _json.loads(r.headers["X-Pagination"])
    assert r.json == [] and meta["page"] == 9 and meta["total"] == 1 and meta["last_page"] == 1
    assert meta["previous_page"] == 1 and "next_page" not in meta
    empty = _json.loads(api.get("/api/v1/reservations?page=3", admin).headers["X-Pagination"])
    assert empty["page"] == 3 and empty["total"] == 0


@pytest.mark.parametrize("path", ["/api/v1/movies", "/api/v1/cities/{city}", "/api/v1/showtimes/{showtime}"])
def test_a_304_carries_its_etag(api, admin, path):
    ids = api.catalog(admin)
    first = api.get(path.format(**ids))
    assert first.status_code == 200 and first.headers["ETag"]
    again = api.get(path.format(**ids), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["ETag"] == first.headers["ETag"]
    assert again.get_data() == b""


def test_a_delete_answers_204_without_a_content_type_or_body(api, admin, user):
    ids = api.catalog(admin)
    hold = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds",
                    {"seat_ids": [api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"][0]["id"]]},
                    user).json
    for r in (api.delete(f"/api/v1/holds/{hold['id']}", user), api.delete(f"/api/v1/cities/{api.city(admin, name='Lyon')['id']}",
                                                                          admin)):
        assert r.status_code == 204 and "Content-Type" not in r.headers and r.get_data() == b""


@pytest.mark.parametrize("path", ["/api/v1/movies/-1", "/api/v1/movies/0", f"/api/v1/movies/{2**63}",
                                  f"/api/v1/showtimes/{10**30}/seats", "/api/v1/reservations/99999999999999999999"])
def test_ids_that_are_not_positive_bigints_are_404_saying_where(api, user, path):
    r = api.get(path, user)
    _assert_problem(r, 404, "not_found")
    assert r.json["detail"] == f"No resource at {path}"


def test_path_ids_are_positive_in_the_spec(client):
    spec = client.get("/openapi.json").json
    ids = [param for item in spec["paths"].values() for param in item.get("parameters", [])
           if param["in"] == "path" and param["schema"]["type"] == "integer"]
    assert ids and all(p["schema"]["minimum"] == 1 and p["schema"]["maximum"] == 2**63 - 1 for p in ids)


def test_405_is_a_problem_with_allow(api):
    r = api.call("PATCH", "/api/v1/auth/login")
    _assert_problem(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"] and "PATCH is not allowed" in r.json["detail"]
