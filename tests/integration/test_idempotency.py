"""Idempotency-Key on creating POSTs: replay, mismatch, concurrency, scope."""
import concurrent.futures
import threading

import requests

CITY = {"name": "Oslo", "country": "Norway", "timezone": "Europe/Oslo"}


def _count(api):
    import json
    return json.loads(api.get("/api/v1/cities").headers["X-Pagination"])["total"]


def test_the_same_key_and_body_returns_the_first_response_again(api, admin):
    first = api.post("/api/v1/cities", CITY, admin, headers={"Idempotency-Key": "k-1"})
    again = api.post("/api/v1/cities", CITY, admin, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert _count(api) == 1


def test_the_same_key_with_another_body_is_422(api, admin):
    api.post("/api/v1/cities", CITY, admin, headers={"Idempotency-Key": "k-1"})
    r = api.post("/api/v1/cities", dict(CITY, name="Bergen"), admin, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 422 and r.json["code"] == "idempotency_key_reused"
    assert _count(api) == 1


def test_keys_are_per_user_and_per_endpoint(api, admin):
    other = api.make_user("admin2@test.example", role="admin")
    api.post("/api/v1/cities", CITY, admin, headers={"Idempotency-Key": "k-1"})
    r = api.post("/api/v1/cities", dict(CITY, name="Bergen"), other, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 201
    r = api.post("/api/v1/movies", {"title": "M", "duration_minutes": 90}, admin, headers={"Idempotency-Key": "k-1"})
    assert r.status_code == 201


def test_an_error_answer_is_replayed_too(api, admin):
    bad = dict(CITY, timezone="Nowhere/Land")
    first = api.post("/api/v1/cities", bad, admin, headers={"Idempotency-Key": "k-2"})
    again = api.post("/api/v1/cities", bad, admin, headers={"Idempotency-Key": "k-2"})
    assert first.status_code == again.status_code == 422 and again.json["code"] == first.json["code"]


def test_a_malformed_key_is_refused(api, admin):
    r = api.post("/api/v1/cities", CITY, admin, headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 422 and _count(api) == 0


def test_concurrent_duplicates_create_exactly_one(live_server, api, admin):
    barrier = threading.Barrier(8)

    def send(_):
        barrier.wait()
        return requests.post(live_server + "/api/v1/cities", json=CITY, timeout=10,
                             headers={"Authorization": f"Bearer {admin}", "Idempotency-Key": "race-1"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) >= 1 and set(codes) <= {201, 409}, codes
    assert all(r.headers.get("Retry-After") for r in responses if r.status_code == 409)
    assert _count(api) == 1


def test_a_replayed_checkout_points_at_the_same_reservation(api, admin):
    """The replay repeats the first answer's Location, not only its body."""
    from tests.integration.booking_helpers import hold, seat_ids

    show = api.catalog(admin)
    customer = api.make_user("replay@test.example")
    h = hold(api, customer, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    body = {"hold_id": h["id"], "payment_token": "tok_visa"}
    first = api.post("/api/v1/reservations", body, customer, headers={"Idempotency-Key": "checkout-1"})
    again = api.post("/api/v1/reservations", body, customer, headers={"Idempotency-Key": "checkout-1"})
    assert first.status_code == again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["Location"].endswith(f"/reservations/{first.json['id']}")
    assert again.headers["Location"] == first.headers["Location"] and again.json["id"] == first.json["id"]
