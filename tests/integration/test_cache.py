"""Hot reads are cached in Redis, and a read right after a write sees the write."""
from datetime import datetime, timedelta

import pytest


def _cache_keys(app):
    store = app.extensions["marquee"].redis
    return list(store.client.scan_iter(match=store.key("cache", "*")))


def test_movie_list_is_served_from_redis(api, admin, app):
    api.movie(admin, title="Alpha")
    assert api.get("/api/v1/movies").json[0]["title"] == "Alpha"
    assert any(b"movies" in k for k in _cache_keys(app))


@pytest.mark.parametrize("path_of, write", [
    ("/api/v1/movies", lambda api, a, ids: api.patch(f"/api/v1/movies/{ids['movie']}", {"title": "Renamed"}, a)),
    ("/api/v1/movies", lambda api, a, ids: api.movie(a, title="Another")),
    ("/api/v1/movies?city_id={city}", lambda api, a, ids: api.delete(f"/api/v1/showtimes/{ids['showtime']}", a)),
    ("/api/v1/movies/{movie}", lambda api, a, ids: api.patch(f"/api/v1/movies/{ids['movie']}", {"title": "Renamed"}, a)),
    ("/api/v1/showtimes?movie_id={movie}", lambda api, a, ids: api.showtime(
        a, ids["movie"], ids["screen"],
        starts_at=datetime.fromisoformat(ids["showtime_obj"]["starts_at"]) + timedelta(days=2))),
    ("/api/v1/showtimes/{showtime}", lambda api, a, ids: api.patch(
        f"/api/v1/showtimes/{ids['showtime']}", {"prices": {"standard": 1, "premium": 2}}, a)),
    ("/api/v1/showtimes/{showtime}/seats", lambda api, a, ids: api.patch(
        f"/api/v1/showtimes/{ids['showtime']}", {"prices": {"standard": 1, "premium": 2}}, a)),
    ("/api/v1/showtimes/{showtime}/seats", lambda api, a, ids: api.patch(
        f"/api/v1/screens/{ids['screen']}", {"layout": {"rows": [{"label": "Z", "seats": ["standard"]}]}}, a)),
    ("/api/v1/screens/{screen}", lambda api, a, ids: api.patch(
        f"/api/v1/screens/{ids['screen']}", {"name": "Renamed"}, a)),
    ("/api/v1/movies?city_id={city}", lambda api, a, ids: api.patch(
        f"/api/v1/theaters/{ids['theater']}", {"city_id": api.city(a, name="Elsewhere")["id"]}, a)),
])
def test_read_write_read_sees_the_write(api, admin, path_of, write):
    ids = api.catalog(admin)
    path = path_of.format(**ids)
    first = api.get(path)
    assert first.status_code == 200
    assert api.get(path).get_data() == first.get_data()  # now cached
    write(api, admin, ids)
    after = api.get(path)
    assert after.get_data() != first.get_data(), path


def test_reads_still_work_when_the_cache_cannot_be_reached(api, admin, app, monkeypatch):
    """The cache decides nothing: with Redis failing, catalog reads go to PostgreSQL."""
    import redis

    api.movie(admin, title="Alpha")
    client = app.extensions["marquee"].redis.client

    def down(*a, **k):
        raise redis.ConnectionError("cache down")

    monkeypatch.setattr(client, "mget", down)
    monkeypatch.setattr(client, "get", down)
    r = api.get("/api/v1/movies")
    assert r.status_code == 200 and r.json[0]["title"] == "Alpha"


def test_entries_from_before_redis_lost_its_keys_never_come_back(app):
    """Generations are random tokens: after a flush they cannot repeat, so neither
    Redis nor a process's memory serves what was cached before."""
    cache = app.extensions["marquee"].cache
    assert cache.get_or_compute(["ns"], "thing", 1, lambda: "before", local=True) == "before"
    assert cache.get_or_compute(["ns"], "thing", 1, lambda: "recomputed", local=True) == "before"  # a hit
    app.extensions["marquee"].redis.delete_prefixed()  # Redis restarts empty
    assert cache.get_or_compute(["ns"], "thing", 1, lambda: "after", local=True) == "after"
    cache.invalidate("ns")
    assert cache.get_or_compute(["ns"], "thing", 1, lambda: "after write", local=True) == "after write"
