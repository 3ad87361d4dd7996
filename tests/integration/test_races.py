"""Races with real threads against a real gunicorn (several worker processes)."""
import concurrent.futures
import threading
from datetime import datetime, timedelta, timezone

import requests

ADMINS = 12


def _admin_tokens(base, count):
    """Sign up one admin per thread through the CLI-equivalent service, then log in over HTTP."""
    from flask import Flask  # noqa: F401

    tokens = []
    for i in range(count):
        email = f"racer{i}@example.com"
        requests.post(base + "/api/v1/auth/register", json={"email": email, "password": "racer-pass-1", "name": "R"})
        tokens.append(email)
    return tokens


def test_admins_racing_to_book_overlapping_showtimes_exactly_one_wins(live_server, app, api, admin):
    from app.services.auth import ensure_admin

    ids = api.catalog(admin)
    emails = _admin_tokens(live_server, ADMINS)
    with app.app_context():
        for email in emails:
            ensure_admin(email, None)
    tokens = [requests.post(live_server + "/api/v1/auth/login",
                            json={"email": e, "password": "racer-pass-1"}).json()["access_token"] for e in emails]
    base_start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=5)
    barrier = threading.Barrier(ADMINS)

    def create(i):
        # Every start is within 10 minutes of the others: all overlap pairwise.
        body = {"movie_id": ids["movie"], "screen_id": ids["screen"],
                "starts_at": (base_start + timedelta(minutes=i)).isoformat(),
                "prices": {"standard": 1000, "premium": 1500}, "currency": "EUR"}
        barrier.wait()
        return requests.post(live_server + "/api/v1/showtimes", json=body,
                             headers={"Authorization": f"Bearer {tokens[i]}"}, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(ADMINS) as pool:
        responses = list(pool.map(create, range(ADMINS)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * (ADMINS - 1), [r.text for r in responses]
    assert all(r.json()["code"] == "showtime_overlap" for r in responses if r.status_code == 409)
    listed = requests.get(live_server + "/api/v1/showtimes",
                          params={"starts_after": base_start.isoformat()}).json()
    assert len(listed) == 1


def test_racing_registrations_of_one_email_create_one_account(live_server):
    barrier = threading.Barrier(10)

    def register(_):
        barrier.wait()
        return requests.post(live_server + "/api/v1/auth/register",
                             json={"email": "same@example.com", "password": "password-1", "name": "S"}).status_code

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = sorted(pool.map(register, range(10)))
    assert codes == [201] + [409] * 9
