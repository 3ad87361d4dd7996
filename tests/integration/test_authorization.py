"""Every catalog write needs admin: 401 anonymously, 403 for a customer, and nothing changes."""
import pytest

from app import db

WRITES = [
    ("POST", "/api/v1/cities"),
    ("PATCH", "/api/v1/cities/{city}"),
    ("DELETE", "/api/v1/cities/{city}"),
    ("POST", "/api/v1/theaters"),
    ("PATCH", "/api/v1/theaters/{theater}"),
    ("DELETE", "/api/v1/theaters/{theater}"),
    ("POST", "/api/v1/theaters/{theater}/screens"),
    ("PATCH", "/api/v1/screens/{screen}"),
    ("DELETE", "/api/v1/screens/{screen}"),
    ("POST", "/api/v1/movies"),
    ("PATCH", "/api/v1/movies/{movie}"),
    ("DELETE", "/api/v1/movies/{movie}"),
    ("POST", "/api/v1/showtimes"),
    ("PATCH", "/api/v1/showtimes/{showtime}"),
    ("DELETE", "/api/v1/showtimes/{showtime}"),
]


def _counts(app):
    from sqlalchemy import text

    with app.app_context():
        return {t: db.session.execute(text(f"SELECT count(*), md5(coalesce(string_agg(t::text, ''), '')) FROM {t} t")).one()
                for t in ("cities", "theaters", "screens", "seats", "movies", "showtimes")}


@pytest.mark.parametrize("method, path", WRITES)
def test_catalog_writes_are_refused_without_admin(api, app, admin, user, method, path):
    ids = api.catalog(admin)
    url = path.format(**ids)
    body = {"name": "Hacked"}
    before = _counts(app)
    anonymous = api.call(method, url, json=body)
    assert anonymous.status_code == 401, anonymous.json
    assert anonymous.content_type == "application/problem+json"
    customer = api.call(method, url, user, json=body)
    assert customer.status_code == 403, customer.json
    assert customer.json["code"] == "forbidden"
    assert _counts(app) == before


def test_catalog_reads_are_public(api, admin):
    ids = api.catalog(admin)
    for path in ["/api/v1/cities", "/api/v1/theaters", f"/api/v1/theaters/{ids['theater']}/screens",
                 f"/api/v1/screens/{ids['screen']}", "/api/v1/movies", f"/api/v1/movies/{ids['movie']}",
                 "/api/v1/showtimes", f"/api/v1/showtimes/{ids['showtime']}",
                 f"/api/v1/showtimes/{ids['showtime']}/seats"]:
        assert api.get(path).status_code == 200, path


def test_a_demoted_admins_next_session_has_no_admin_rights(api, app):
    """Role comes from the database at sign-in and at refresh, not from old claims forever."""
    from sqlalchemy import update

    from app.models import User

    api.make_user("temp@example.com", role="admin")
    pair = api.login("temp@example.com")
    with app.app_context():
        db.session.execute(update(User).where(User.email == "temp@example.com").values(role="user"))
        db.session.commit()
    refreshed = api.post("/api/v1/auth/refresh", token=pair["refresh_token"]).json
    r = api.post("/api/v1/cities", {"name": "X", "timezone": "UTC"}, refreshed["access_token"])
    assert r.status_code == 403
