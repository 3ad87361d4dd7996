"""Small helpers shared by the tests: JSON calls with tokens, catalog builders."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

PASSWORD = "correct horse battery"


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """``predicate()``'s first truthy value, polled every ``interval`` s; AssertionError
    after ``timeout`` s (for processes started by the tests: nothing here is timed)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


@contextmanager
def advisory_lock_held(app, key: int):
    """For the block, another connection (a thread's) holds the transaction-scoped
    advisory lock ``key``, as another scheduler's run would."""
    from app import db

    held, release = threading.Event(), threading.Event()

    def holder():
        with app.app_context():
            assert db.try_xact_lock(key)
            held.set()
            release.wait(10)
            db.session.rollback()
            db.session.remove()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        thread.join(10)


def logged_stacks(log_path) -> list[dict] | None:
    """The threads of the first ``thread stacks`` record in a process's JSON log (its answer to
    SIGUSR1: ``app.logging_setup.dump_stacks_on_sigusr1``), or None while there is none."""
    for line in log_path.read_text().splitlines():
        if '"thread stacks"' in line:
            return json.loads(line)["threads"]
    return None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 20, dump_after: float | None = None) -> float:
    """SIGTERM, and SIGKILL if it has not gone within ``timeout``; returns the seconds it took.
    ``dump_after``: for a process that writes its threads' stacks on SIGUSR1 (the worker, the
    scheduler, the live process: ``dump_stacks_on_sigusr1``), still running after that many
    seconds, ask for them, so that its log says where it was stuck."""
    started = time.monotonic()
    proc.terminate()
    try:
        if dump_after is not None and dump_after < timeout:
            try:
                proc.wait(timeout=dump_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=max(0.0, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - started


class ApiClient:
    """JSON calls through the Flask test client, with an optional Bearer token."""

    def __init__(self, client) -> None:
        self.client = client

    def call(self, method: str, path: str, token: str | None = None, json=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.open(path, method=method, json=json, headers=headers, **kw)

    def get(self, path, token=None, **kw):
        return self.call("GET", path, token, **kw)

    def post(self, path, json=None, token=None, **kw):
        return self.call("POST", path, token, json=json, **kw)

    def patch(self, path, json=None, token=None, **kw):
        return self.call("PATCH", path, token, json=json, **kw)

    def delete(self, path, token=None, **kw):
        return self.call("DELETE", path, token, **kw)

    def make_user(self, email: str, role: str = "user", password: str = PASSWORD) -> str:
        """Register (or promote) a user and return an access token."""
        r = self.post("/api/v1/auth/register", {"email": email, "password": password, "name": "T"})
        assert r.status_code == 201, r.json
        if role == "admin":
            from app.services.auth import ensure_admin

            with self.client.application.app_context():
                ensure_admin(email, None)
        return self.login(email, password)["access_token"]

    def login(self, email: str, password: str = PASSWORD, **kw) -> dict:
        r = self.post("/api/v1/auth/login", {"email": email, "password": password}, **kw)
        assert r.status_code == 200, r.json
        return r.json

    # --- catalog builders (as an admin) ---------------------------------------
    def city(self, token, **over):
        body = {"name": "Paris", "country": "France", "timezone": "Europe/Paris", **over}
        r = self.post("/api/v1/cities", body, token)
        assert r.status_code == 201, r.json
        return r.json

    def theater(self, token, city_id, **over):
        body = {"name": "Opera", "city_id": city_id, "address": "1 Rue X", **over}
        r = self.post("/api/v1/theaters", body, token)
        assert r.status_code == 201, r.json
        return r.json

    def screen(self, token, theater_id, layout=None, **over):
        layout = layout or {"rows": [{"label": "A", "seats": ["standard", "standard", None, "premium"]},
                                     {"label": "B", "seats": ["standard", "standard", None, "premium"]}]}
        r = self.post(f"/api/v1/theaters/{theater_id}/screens", {"name": "One", "layout": layout, **over}, token)
        assert r.status_code == 201, r.json
        return r.json

    def movie(self, token, **over):
        body = {"title": "Heat", "duration_minutes": 120, "genres": ["crime"], "language": "en", **over}
        r = self.post("/api/v1/movies", body, token)
        assert r.status_code == 201, r.json
        return r.json

    def showtime(self, token, movie_id, screen_id, starts_at=None, **over):
        starts_at = starts_at or (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0)
        body = {"movie_id": movie_id, "screen_id": screen_id, "starts_at": starts_at.isoformat(),
                "prices": {"standard": 1000, "premium": 1500}, "currency": "EUR", **over}
        r = self.post("/api/v1/showtimes", body, token)
        assert r.status_code == 201, r.json
        return r.json

    def catalog(self, token) -> dict:
        """A city, theater, screen, movie and showtime; returns their ids."""
        city = self.city(token)
        theater = self.theater(token, city["id"], latitude=48.87, longitude=2.33)
        screen = self.screen(token, theater["id"])
        movie = self.movie(token)
        show = self.showtime(token, movie["id"], screen["id"])
        return {"city": city["id"], "theater": theater["id"], "screen": screen["id"],
                "movie": movie["id"], "showtime": show["id"], "showtime_obj": show}


def bitmap_index_entries(engine, query: str, **params) -> int:
    """How many index entries a bitmap scan for ``query`` finds, live or not: the entries
    of dead row versions that an index scan has marked dead are no longer among them."""
    from sqlalchemy import text

    with engine.connect() as connection:
        connection.execute(text("SET LOCAL enable_indexscan = off"))
        plan = connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}"), params).scalar()
        connection.rollback()

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)
    return sum(n["Actual Rows"] for n in nodes(plan[0]["Plan"]) if n["Node Type"] == "Bitmap Index Scan")
