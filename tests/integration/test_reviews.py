"""Reviews through the queue: only from customers who have seen the movie; one per
user and movie; the movie's average and count exact under concurrent reviews."""
import concurrent.futures
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app import db
from app.models import Movie, OutboxEvent
from app.services import booking, reviews
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import relay, work_until


def _seen(api, app, admin, token, ids, seat_index):
    """A confirmed reservation whose showtime has since started."""
    seat = seat_ids(api, ids["showtime"])[seat_index]
    res = reserve(api, token, hold(api, token, ids["showtime"], [seat]).json["id"]).json
    with app.app_context():
        assert booking.confirm_payment(res["id"]) == "confirmed"


def _start_show(api, admin, ids):
    started = (datetime.now(timezone.utc) - timedelta(minutes=5)).replace(microsecond=0)
    assert api.patch(f"/api/v1/showtimes/{ids['showtime']}", {"starts_at": started.isoformat()}, admin).status_code == 200


@pytest.fixture
def ids(api, admin):
    return api.catalog(admin)


def test_only_customers_who_saw_the_movie_may_review(api, app, admin, user, ids):
    path = f"/api/v1/movies/{ids['movie']}/reviews"
    body = {"rating": 4, "text": "Tense."}
    assert api.post(path, body).status_code == 401
    r = api.post(path, body, user)
    assert r.status_code == 403 and r.json["code"] == "not_eligible"
    _seen(api, app, admin, user, ids, 0)
    assert api.post(path, body, user).status_code == 403  # confirmed, but not started yet
    _start_show(api, admin, ids)
    assert api.post(path, body, user).status_code == 202
    assert api.post("/api/v1/movies/999999/reviews", body, user).status_code == 404
    assert api.post(path, {"rating": 6, "text": "x"}, user).status_code == 422


def test_a_review_goes_through_the_queue_and_a_second_replaces_the_first(api, app, admin, user, ids, broker):
    _seen(api, app, admin, user, ids, 0)
    _start_show(api, admin, ids)
    path = f"/api/v1/movies/{ids['movie']}/reviews"
    assert api.post(path, {"rating": 2, "text": "Slow."}, user).status_code == 202
    assert api.get(path).json["review_count"] == 0  # accepted, not written yet
    relay(app, broker)
    work_until(app, lambda c: api.get(path).json["review_count"] == 1)
    assert api.post(path, {"rating": 5, "text": "Grew on me."}, user).status_code == 202
    relay(app, broker)
    work_until(app, lambda c: api.get(path).json["average_rating"] == 5.0)
    listing = api.get(path).json
    assert listing["review_count"] == 1 and [r["text"] for r in listing["items"]] == ["Grew on me."]
    movie = api.get(f"/api/v1/movies/{ids['movie']}").json
    assert movie["average_rating"] == 5.0 and movie["review_count"] == 1


def test_concurrent_reviews_keep_the_average_exact(api, app, admin):
    ratings = [1, 2, 3, 4, 5, 5, 4, 3]
    city = api.city(admin)
    theater = api.theater(admin, city["id"])
    screen = api.screen(admin, theater["id"], layout={"rows": [{"label": "A", "seats": ["standard"] * 10}]})
    movie = api.movie(admin)
    show = api.showtime(admin, movie["id"], screen["id"], prices={"standard": 900})
    ids = {"showtime": show["id"], "movie": movie["id"]}
    users = []
    for i, _ in enumerate(ratings):
        token = api.make_user(f"critic{i}@example.com")
        _seen(api, app, admin, token, ids, i)
        users.append(int(api.get("/api/v1/users/me", token).json["id"]))
    barrier = threading.Barrier(len(ratings))

    def review(i):
        with app.app_context():
            barrier.wait()
            reviews.apply_review({"user_id": users[i], "movie_id": ids["movie"], "rating": ratings[i], "text": "t"})

    with concurrent.futures.ThreadPoolExecutor(len(ratings)) as pool:
        list(pool.map(review, range(len(ratings))))
    with app.app_context():
        movie = db.session.get(Movie, ids["movie"])
        assert movie.review_count == len(ratings)
        assert float(movie.average_rating) == round(sum(ratings) / len(ratings), 2)


def test_reviews_wait_in_the_outbox_until_relayed(api, app, admin, user, ids):
    _seen(api, app, admin, user, ids, 0)
    _start_show(api, admin, ids)
    api.post(f"/api/v1/movies/{ids['movie']}/reviews", {"rating": 3, "text": "ok"}, user)
    with app.app_context():
        event = db.session.scalar(select(OutboxEvent).where(OutboxEvent.topic == "reviews.submit"))
        assert event.payload["rating"] == 3 and event.published_at is None
