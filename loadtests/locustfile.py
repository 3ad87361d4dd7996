"""Locust scenarios against the running stack. Start them with ``loadtests/run.py``, which
picks the showtime, signs the customers in beforehand, runs Locust headless with its HTML
and CSV reports, and ends with the invariant audit:

    .venv/bin/python -m loadtests.run browse --users 200 --run-time 60s
    .venv/bin/python -m loadtests.run rush   --users 1000 --run-time 120s
    .venv/bin/python -m loadtests.run mixed  --users 600 --run-time 120s

User classes (``run.py`` chooses them by scenario):
  Browser        anonymous and signed-in customers reading movies, showtimes, seat maps
  RushCustomer   one showtime: hold (by best available, or hot seats near the middle picked
                 on the map), reserve, pay with a mix of test tokens, some cancel, some
                 abandon their holds
  CatalogAdmin   edits the catalog meanwhile (mixed only)

Answers that are correct refusals (409 for a seat someone else has, a hold that expired,
an overlapping showtime) are counted under their own request name as successes: a refused
hold under its problem's code, ``... [409 seats_unavailable]``; a 5xx, a timeout or an
unexpected status is a failure.

Environment (set by run.py): MARQUEE_SHOWTIME (rush), MARQUEE_TOKENS (a JSON file of
access tokens of signed-in customers), MARQUEE_ADMIN_TOKEN (mixed), MARQUEE_SEATS
(``best``, the default: holds ask for a quantity; ``pick``: holds name seats chosen on the
map), MARQUEE_MAP (``watch``, the default: the seat map is followed on its event stream;
``poll``: read again before every try), MARQUEE_RUSH_LOG (where each hold attempt's time,
outcome and party size are written at the end, as JSON).
"""
from __future__ import annotations

import itertools
import json
import os
import random
import time

from locust import HttpUser, between, events, task
from locust.exception import StopUser

SHOWTIME = int(os.environ.get("MARQUEE_SHOWTIME", "0") or 0)
SEATS = "pick" if os.environ.get("MARQUEE_SEATS") == "pick" else "best"
# how a rush customer sees the seat map: ``watch`` follows its event stream (a snapshot,
# then each change as it happens); ``poll`` reads the map again before every try
MAP = "poll" if os.environ.get("MARQUEE_MAP") == "poll" else "watch"
RUSH_LOG = os.environ.get("MARQUEE_RUSH_LOG")
# Wheelchair spaces and their companion seats are for accessible parties (until shortly
# before the show): best available leaves them, so a customer picking seats does too.
ACCESSIBLE = {"wheelchair", "companion"}
_tokens: list[str] = []
_next_token = itertools.count()
_next_customer = itertools.count()
_catalog: dict = {}
_hold_log: list[tuple[float, str, int]] = []


@events.init.add_listener
def _load(environment, **_kw) -> None:
    path = os.environ.get("MARQUEE_TOKENS")
    if path and os.path.exists(path):
        _tokens.extend(json.load(open(path)))


def _token() -> str | None:
    if not _tokens:
        return None
    return _tokens[next(_next_token) % len(_tokens)]


def _customer_token() -> str | None:
    """A signed-in customer of their own for each rush customer, none once all had theirs:
    Locust replaces users that stop while it is still spawning, and a replacement with a
    customer already in the rush would meet that customer's hold (409 hold_exists)."""
    index = next(_next_customer)
    return _tokens[index] if index < len(_tokens) else None


@events.quitting.add_listener
def _write_hold_log(environment, **_kw) -> None:
    """Each hold attempt's wall-clock time (when sent), outcome (``201``, the 409's code or
    ``failed``) and party size: run.py measures the sold-out time from the first and counts
    the refusals before and after it, and by party size."""
    if RUSH_LOG:
        with open(RUSH_LOG, "w") as out:
            json.dump({"seats": SEATS, "holds": _hold_log}, out)


def _problem_code(response) -> str:
    try:
        return str(response.json().get("code") or "no_code")
    except (ValueError, AttributeError):
        return "no_code"


def _expect(response, ok: tuple, correct_refusals: dict[int, str] | None = None) -> bool:
    """Mark the response: ``ok`` statuses succeed; a correct refusal succeeds under its own
    name; anything else (5xx, timeouts, surprises) fails. True when it was an ``ok``."""
    status = response.status_code
    if status in ok:
        response.success()
        return True
    if correct_refusals and status in correct_refusals:
        response.request_meta["name"] = f"{response.request_meta['name']} [{status} {correct_refusals[status]}]"
        response.success()
        return False
    response.failure(f"unexpected {status}: {response.text[:200]}")
    return False


class Browser(HttpUser):
    """Half anonymous, half signed in: the catalog, showtimes and seat maps."""

    weight = 3
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        token = _token() if random.random() < 0.5 else None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        if not _catalog:
            movies = self.client.get("/api/v1/movies?page_size=100", name="/movies").json()
            shows = self.client.get("/api/v1/showtimes?page_size=100", name="/showtimes").json()
            _catalog["movies"] = [m["id"] for m in movies] or [0]
            _catalog["showtimes"] = [s["id"] for s in shows] or [0]

    @task(4)
    def movies(self) -> None:
        self.client.get("/api/v1/movies", name="/movies", headers=self.headers)

    @task(2)
    def movie(self) -> None:
        movie = random.choice(_catalog["movies"])
        self.client.get(f"/api/v1/movies/{movie}", name="/movies/[id]", headers=self.headers)

    @task(3)
    def showtimes(self) -> None:
        movie = random.choice(_catalog["movies"])
        self.client.get(f"/api/v1/showtimes?movie_id={movie}", name="/showtimes?movie_id", headers=self.headers)

    @task(4)
    def seat_map(self) -> None:
        showtime = SHOWTIME or random.choice(_catalog["showtimes"])
        self.client.get(f"/api/v1/showtimes/{showtime}/seats", name="/showtimes/[id]/seats",
                        headers=self.headers)

    @task(1)
    def my_reservations(self) -> None:
        if self.headers:
            self.client.get("/api/v1/reservations", name="/reservations", headers=self.headers)


class LiveSeatMap:
    """A seat map kept live from ``GET /showtimes/{id}/seats/events``: the snapshot, then
    each change applied as it arrives (a greenlet reads the stream). ``seats()`` waits for
    the snapshot; after a ``reset`` or a dropped stream it reconnects from its last id."""

    def __init__(self, client, showtime: int) -> None:
        import gevent
        from gevent.event import Event

        self.client, self.showtime = client, showtime
        self.by_id: dict[int, dict] = {}
        self.order: list[int] = []
        self.version: str | None = None
        self.ready = Event()
        self.response = None
        self.closed = False
        self.reader = gevent.spawn(self._follow)

    def seats(self) -> list[dict] | None:
        if not self.ready.wait(timeout=30):
            return None
        return [self.by_id[i] for i in self.order]

    def close(self) -> None:
        self.closed = True
        if self.response is not None:
            self.response.close()
        self.reader.kill(block=False)

    def _follow(self) -> None:
        while not self.closed:
            query = f"?since={self.version}" if self.version else ""
            try:
                with self.client.get(f"/api/v1/showtimes/{self.showtime}/seats/events{query}", stream=True,
                                     name="/showtimes/[id]/seats/events", timeout=60, catch_response=True) as response:
                    self.response = response
                    if response.status_code != 200:
                        response.failure(f"{response.status_code}")
                        return
                    response.success()
                    self._read(response)
            except Exception:  # noqa: BLE001 - a dropped stream: reconnect from the last id
                if self.closed:
                    return
            time.sleep(0.5)

    def _read(self, response) -> None:
        event, data = None, None
        for line in response.iter_lines(decode_unicode=True):
            if self.closed:
                return
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event:
                self._apply(event, json.loads(data) if data else {})
                event, data = None, None
                if self.version is None:
                    return  # reset: fetch the map again (a new snapshot)

    def _apply(self, event: str, data: dict) -> None:
        if event == "snapshot":
            self.by_id = {s["id"]: s for s in data["seats"]}
            self.order = [s["id"] for s in data["seats"]]
            self.version = data["version"]
            self.ready.set()
        elif event == "seats":
            for change in data["seats"]:
                if change["id"] in self.by_id:
                    self.by_id[change["id"]] = {**self.by_id[change["id"]], "status": change["status"]}
            self.version = data["version"]
        elif event == "reset":
            self.version = None


class RushCustomer(HttpUser):
    """One customer in the rush for SHOWTIME: a few tries at seats, then done. Each signed-in
    customer comes once."""

    weight = 2
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        token = _customer_token()
        # without a customer, the first task stops (StopUser here would be logged as an error)
        self.tries = 0 if token and SHOWTIME else 6
        self.headers = {"Authorization": f"Bearer {token}"}
        self.party = random.choices([1, 2, 3, 4], weights=[45, 35, 12, 8])[0]
        self.live = LiveSeatMap(self.client, SHOWTIME) if MAP == "watch" and self.tries == 0 else None

    def on_stop(self) -> None:
        if self.live is not None:
            self.live.close()

    def _seat_map(self) -> list[dict] | None:
        if self.live is not None:
            return self.live.seats()
        seat_map = self.client.get(f"/api/v1/showtimes/{SHOWTIME}/seats", name="/showtimes/[id]/seats",
                                   headers=self.headers)
        return seat_map.json()["seats"] if seat_map.status_code == 200 else None

    @task
    def try_to_buy(self) -> None:
        self.tries += 1
        if self.tries > 6:
            raise StopUser()  # gave up, or no customer left
        seats = self._seat_map()
        if seats is None:
            return
        free = [s for s in seats if s["status"] == "available" and s["category"] not in ACCESSIBLE]
        if not free:
            raise StopUser()  # sold out
        if len(free) < self.party:
            return  # not enough seats free for the party on the map: a client does not ask (a try all the same)
        hold = self._hold(seats, free)
        if hold is None:
            return
        roll = random.random()
        if roll < 0.10:
            raise StopUser()  # abandons the hold: it expires on its own
        payment = random.choices(["tok_visa", "tok_declined", "tok_error"], weights=[85, 8, 7])[0]
        with self.client.post("/api/v1/reservations", json={"hold_id": hold["id"], "payment_token": payment},
                              name="/reservations (reserve)", headers=self.headers,
                              catch_response=True) as response:
            if not _expect(response, (202,), {409: "hold expired"}):
                return
            reservation = response.json()
        status = self._wait_for_payment(reservation["id"])
        if status == "confirmed":
            self.client.get(f"/api/v1/reservations/{reservation['id']}/tickets",
                            name="/reservations/[id]/tickets", headers=self.headers)
            if random.random() < 0.10:
                with self.client.post(f"/api/v1/reservations/{reservation['id']}/cancel",
                                      name="/reservations/[id]/cancel", headers=self.headers,
                                      catch_response=True) as response:
                    _expect(response, (202,))
        if status != "payment_failed":
            raise StopUser()  # bought (or cancelled): done
        # a declined card: try again with other seats

    def _hold(self, seats: list[dict], free: list[dict]) -> dict | None:
        """The hold, or None when refused: by best available (the party's size; the map is only
        shown) or, with MARQUEE_SEATS=pick, seats chosen on the map. A refusal is counted under
        its problem's code."""
        if SEATS == "pick":
            body = {"seat_ids": self._choose(seats, free)}
        else:
            body = {"quantity": self.party}
        sent = time.time()
        with self.client.post(f"/api/v1/showtimes/{SHOWTIME}/holds", json=body,
                              name=f"/showtimes/[id]/holds ({SEATS})", headers=self.headers,
                              catch_response=True) as response:
            refusal = {409: _problem_code(response)} if response.status_code == 409 else None
            held = _expect(response, (201,), refusal)
            outcome = "201" if held else (refusal or {}).get(409, "failed")
            _hold_log.append((sent, outcome, self.party))
            return response.json() if held else None

    def _choose(self, seats: list[dict], free: list[dict]) -> list[int]:
        rows = sorted({s["row"] for s in seats})
        middle_row = rows[len(rows) // 2] if rows else ""
        numbers = [s["number"] for s in seats]
        middle_number = (min(numbers) + max(numbers)) / 2 if numbers else 0

        def distance(seat):
            return abs(rows.index(seat["row"]) - rows.index(middle_row)) * 2 + abs(seat["number"] - middle_number)

        if random.random() < 0.7:  # the hot seats: everyone wants the middle
            pool = sorted(free, key=distance)[: max(12, self.party * 3)]
        else:
            pool = free
        start = random.choice(pool)
        same_row = sorted((s for s in free if s["row"] == start["row"]),
                          key=lambda s: abs(s["number"] - start["number"]))
        return [s["id"] for s in same_row[: self.party]]

    def _wait_for_payment(self, reservation_id: int) -> str:
        deadline = time.monotonic() + 30
        status = "pending_payment"
        while status == "pending_payment" and time.monotonic() < deadline:
            time.sleep(0.5)
            response = self.client.get(f"/api/v1/reservations/{reservation_id}", name="/reservations/[id]",
                                       headers=self.headers)
            if response.status_code == 200:
                status = response.json()["status"]
        return status


class CatalogAdmin(HttpUser):
    """An admin at work during the on-sale: edits movies, adds and removes late showtimes."""

    fixed_count = 1
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        token = os.environ.get("MARQUEE_ADMIN_TOKEN")
        if not token:
            raise StopUser()
        self.headers = {"Authorization": f"Bearer {token}"}
        self.screens = []
        for theater in self.client.get("/api/v1/theaters?page_size=100", name="/theaters").json():
            screens = self.client.get(f"/api/v1/theaters/{theater['id']}/screens", name="/theaters/[id]/screens")
            if screens.status_code == 200:
                self.screens += [s["id"] for s in screens.json()]
        self.movies = [m["id"] for m in self.client.get("/api/v1/movies?page_size=100", name="/movies").json()]

    @task(3)
    def edit_movie(self) -> None:
        movie = random.choice(self.movies)
        with self.client.patch(f"/api/v1/movies/{movie}", json={"description": f"Edited at {time.time():.0f}"},
                               name="/movies/[id] (admin edit)", headers=self.headers,
                               catch_response=True) as response:
            _expect(response, (200,))

    @task(1)
    def add_and_remove_a_showtime(self) -> None:
        days = random.randint(20, 60)
        starts = time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(time.time() + days * 86400))
        body = {"movie_id": random.choice(self.movies), "screen_id": random.choice(self.screens),
                "starts_at": starts, "prices": {"standard": 1200, "premium": 1500, "recliner": 1900,
                                                "wheelchair": 1200}, "currency": "EUR"}
        with self.client.post("/api/v1/showtimes", json=body, name="/showtimes (admin create)",
                              headers=self.headers, catch_response=True) as response:
            if not _expect(response, (201,), {409: "overlap"}):
                return
            created = response.json()["id"]
        with self.client.delete(f"/api/v1/showtimes/{created}", name="/showtimes/[id] (admin delete)",
                                headers=self.headers, catch_response=True) as response:
            _expect(response, (204,))
