"""Locust scenarios against the running stack. Start them with ``loadtests/run.py``, which
picks the showtime, signs the customers in beforehand, runs Locust headless with its HTML
and CSV reports, and ends with the invariant audit:

    .venv/bin/python -m loadtests.run browse --users 200 --run-time 60s
    .venv/bin/python -m loadtests.run rush   --users 1000 --run-time 120s
    .venv/bin/python -m loadtests.run mixed  --users 600 --run-time 120s
    .venv/bin/python -m loadtests.run onsale                         (loadtests/onsale.py)

User classes (``run.py`` chooses them by scenario):
  Browser        anonymous and signed-in customers reading movies, showtimes, seat maps
  RushCustomer   one showtime: hold (by best available, or hot seats near the middle picked
                 on the map), reserve, pay with a mix of test tokens, some cancel, some
                 abandon their holds
  CatalogAdmin   edits the catalog meanwhile (mixed only)
  OnsaleCustomer one showtime behind its waiting room: join the queue, wait on the shared
                 seat events stream (SaleWatch), get admitted, hold by best available,
                 reserve, pay; some abandon (onsale only)

Answers that are correct refusals (409 for a seat someone else has, a hold that expired,
an overlapping showtime) are counted under their own request name as successes: a refused
hold under its problem's code, ``... [409 seats_unavailable]``; a 5xx, a timeout or an
unexpected status is a failure.

Environment (set by run.py): MARQUEE_SHOWTIME (rush), MARQUEE_TOKENS (a JSON file of
access tokens of signed-in customers), MARQUEE_ADMIN_TOKEN (mixed), MARQUEE_SEATS
(``best``, the default: holds ask for a quantity; ``pick``: holds name seats chosen on the
map), MARQUEE_MAP (``watch``, the default: the seat map is followed on its event stream;
``poll``: read again before every try), MARQUEE_RUSH_LOG (where each hold attempt's time,
outcome and party size are written at the end, as JSON); for the on-sale (set by
onsale.py): MARQUEE_OPENS_AT (the queue's opening, epoch seconds), MARQUEE_EARLY (how many
customers arrive before it), MARQUEE_WAIT (``stream``, the default, or ``poll``),
MARQUEE_STREAMS (``shared``, the default: one stream per Locust process; ``each``: one per
customer), MARQUEE_ARRIVALS (the arrival windows, 60 s), MARQUEE_NUMBER_SPREAD,
MARQUEE_ONSALE_LOG (where each customer's journey is written at the end, as JSON).
"""
from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import time

import gevent
import requests
from gevent.event import Event
from locust import HttpUser, between, constant, events, task
from locust.exception import StopUser
from urllib3.util import Retry

SHOWTIME = int(os.environ.get("MARQUEE_SHOWTIME", "0") or 0)
SEATS = "pick" if os.environ.get("MARQUEE_SEATS") == "pick" else "best"
# how a rush customer sees the seat map: ``watch`` follows its event stream (a snapshot,
# then each change as it happens); ``poll`` reads the map again before every try
MAP = "poll" if os.environ.get("MARQUEE_MAP") == "poll" else "watch"
RUSH_LOG = os.environ.get("MARQUEE_RUSH_LOG")
OPENS_AT = float(os.environ.get("MARQUEE_OPENS_AT", "0") or 0)  # epoch seconds
EARLY = int(os.environ.get("MARQUEE_EARLY", "0") or 0)
# seconds: the early customers arrive in this time before the opening, the late in this time after
ARRIVALS = float(os.environ.get("MARQUEE_ARRIVALS", "60"))
WAIT = "poll" if os.environ.get("MARQUEE_WAIT") == "poll" else "stream"
STREAMS = "each" if os.environ.get("MARQUEE_STREAMS") == "each" else "shared"
NUMBER_SPREAD = float(os.environ.get("MARQUEE_NUMBER_SPREAD", "20"))
ONSALE_LOG = os.environ.get("MARQUEE_ONSALE_LOG")
# Wheelchair spaces and their companion seats are for accessible parties (until shortly
# before the show): best available leaves them, so a customer picking seats does too.
ACCESSIBLE = {"wheelchair", "companion"}
_tokens: list[str] = []
_next_token = itertools.count()
_next_customer = itertools.count()
_catalog: dict = {}
_hold_log: list[tuple[float, str, int]] = []
_journeys: list[dict] = []
_finished = itertools.count(1)
_watches: list["SaleWatch"] = []  # one shared by the process's customers, or one each (MARQUEE_STREAMS=each)


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


@events.quitting.add_listener
def _write_journeys(environment, **_kw) -> None:
    """Each on-sale customer's journey, and what the watches saw: onsale.py's report."""
    if ONSALE_LOG:
        with open(ONSALE_LOG, "w") as out:
            json.dump({"customers": _journeys, "watch": SaleWatch.summaries(_watches)}, out)


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


def _server_sent_events(lines, stopped):
    """``(event, data)`` of each message of an event stream's lines (comments skipped),
    until ``stopped()`` (checked at every line: heartbeats too)."""
    event, data = None, None
    for line in lines:
        if stopped():
            return
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event:
            yield event, json.loads(data) if data else {}
            event, data = None, None


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
        for event, data in _server_sent_events(response.iter_lines(decode_unicode=True), lambda: self.closed):
            self._apply(event, data)
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


# --- the on-sale (loadtests/onsale.py) ----------------------------------------------------

TIMEOUT = 30  # seconds: a request not answered by then is a timeout (a failure)
PARTY_WEIGHTS = [45, 35, 12, 8]  # parties of 1-4, as the rush
ACCESSIBLE_SHARE = 0.03
PAYMENTS = (["tok_visa", "tok_declined", "tok_error"], [85, 8, 7])


def _outcome(response, ok: tuple, refusals: tuple = ()) -> str:
    """``ok`` (the status as text) for an expected answer; a refusal in ``refusals`` is
    counted under its problem's code and succeeds; anything else (5xx, timeouts,
    surprises) fails. Answers the outcome: the status, ``<status> <code>`` or ``failed``."""
    status = response.status_code
    if status in ok:
        response.success()
        return str(status)
    if status in refusals:
        outcome = f"{status} {_problem_code(response)}"
        response.request_meta["name"] = f"{response.request_meta['name']} [{outcome}]"
        response.success()
        return outcome
    response.failure(f"unexpected {status}: {response.text[:200] if status else repr(response.error)[:200]}")
    return "failed"


class SaleWatch:
    """The queue's public status and the seat map, followed once for the whole process: a
    greenlet reads the seat events stream (snapshot, seat changes, ``event: queue``), another
    polls the status while the stream has not carried a queue event (or always, with
    ``--wait poll``), and the seat map while there is no stream (no live process). Customers
    wait on it: ``reached`` wakes a customer when the serving number reaches theirs."""

    def __init__(self, host: str, showtime: int) -> None:
        self.base = f"{host}/api/v1/showtimes/{showtime}"
        self.session = requests.Session()
        self.seats: dict[int, dict] = {}
        self.free = {"wheelchair": 0, "companion": 0, "other": 0}
        self.version: str | None = None
        self.serving = 0
        self.open = Event()
        self.mapped = Event()
        self._waiters: list[tuple[int, int, Event]] = []
        self._seq = itertools.count()
        self.queue_events = self.polls = self.map_polls = self.poll_failures = self.stream_opens = self.stream_failures = 0
        self.stream_has_queue = False
        self.streaming = False
        self.history: list[tuple[float, int, int, int]] = []  # (time, free to hold, held, booked) at each change
        self.serving_log: list[tuple[float, int]] = []
        self.closed = False
        self.greenlets = [gevent.spawn(self._follow), gevent.spawn(self._poll)]

    # -- what customers ask -----------------------------------------------------------
    def reached(self, number: int) -> Event:
        """Set once the serving number is ``number`` or more."""
        reached = Event()
        if self.serving >= number:
            reached.set()
        else:
            heapq.heappush(self._waiters, (number, next(self._seq), reached))
        return reached

    def holdable(self, party: int, accessible: bool) -> bool:
        """The map shows seats for the party: a free wheelchair space and the rest beside it
        for an accessible party, ``party`` free seats of the others for anyone else."""
        if not self.mapped.wait(30):
            return True  # no map: the customer tries
        if accessible:
            return self.free["wheelchair"] > 0 and sum(self.free.values()) >= party
        return self.free["other"] >= party

    def sold_out_for(self, party: int) -> bool:
        return self.mapped.is_set() and not self.holdable(party, False)

    # -- following ---------------------------------------------------------------------
    def _set_status(self, status: dict) -> None:
        serving = int(status.get("serving_number") or 0)
        if status.get("open"):
            self.open.set()
        if serving > self.serving:
            self.serving = serving
            self.serving_log.append((time.time(), serving))
            while self._waiters and self._waiters[0][0] <= serving:
                heapq.heappop(self._waiters)[2].set()

    def _follow(self) -> None:
        while not self.closed:
            query = f"?since={self.version}" if self.version else ""
            try:
                with self.session.get(f"{self.base}/seats/events{query}", stream=True, timeout=(10, 60)) as response:
                    if response.status_code != 200:
                        self.stream_failures += 1
                    else:
                        self.stream_opens += 1
                        self.streaming = True
                        self._read(response)
            except requests.RequestException:
                if not self.closed:
                    self.stream_failures += 1
            self.streaming = False
            gevent.sleep(0.5)

    def _read(self, response) -> None:
        lines = response.iter_lines(chunk_size=None, decode_unicode=True)
        for event, data in _server_sent_events(lines, lambda: self.closed):
            self._apply(event, data)
            if self.version is None:
                return  # reset: a new snapshot

    def _apply(self, event: str, data: dict) -> None:
        if event == "snapshot":
            self.seats = {s["id"]: {"status": s["status"], "category": s["category"]} for s in data["seats"]}
            self.version = data["version"]
            self.mapped.set()
            self._count()
        elif event == "seats":
            for change in data["seats"]:
                if change["id"] in self.seats:
                    self.seats[change["id"]]["status"] = change["status"]
            self.version = data["version"]
            self._count()
        elif event == "queue":
            self.queue_events += 1
            self.stream_has_queue = True
            if WAIT == "stream":
                self._set_status(data)
        elif event == "reset":
            self.version = None

    def _count(self) -> None:
        """The free seats by kind (what ``holdable`` reads), and the map's counts in ``history``."""
        statuses = [s["status"] for s in self.seats.values()]
        free = [s["category"] for s in self.seats.values() if s["status"] == "available"]
        self.free = {"wheelchair": free.count("wheelchair"), "companion": free.count("companion"),
                     "other": sum(1 for c in free if c not in ACCESSIBLE)}
        self.history.append((time.time(), self.free["other"], statuses.count("held"), statuses.count("booked")))

    def _poll(self) -> None:
        """The status, once a second, while the stream does not carry it; the seat map too
        while there is no stream."""
        while not self.closed:
            gevent.sleep(1.0)  # first, a second for the stream to connect
            if WAIT == "poll" or not (self.stream_has_queue and self.streaming):
                self.polls += 1
                status = self._get("queue/status")
                if status is not None:
                    self._set_status(status)
            if not self.streaming:
                self.map_polls += 1
                seat_map = self._get("seats")
                if seat_map is not None and not self.streaming:
                    self._apply("snapshot", seat_map)

    def _get(self, path: str) -> dict | None:
        try:
            response = self.session.get(f"{self.base}/{path}", timeout=TIMEOUT)
            if response.status_code == 200:
                return response.json()
        except requests.RequestException:
            pass
        self.poll_failures += 1
        return None

    def close(self) -> None:
        self.closed = True
        gevent.killall(self.greenlets, block=False)

    @staticmethod
    def summaries(watches: list["SaleWatch"]) -> dict | None:
        """The counts of every watch summed; the map's history and the serving numbers of the first."""
        if not watches:
            return None
        counts = ("queue_events", "polls", "map_polls", "poll_failures", "stream_opens", "stream_failures")
        return {**{name: sum(getattr(w, name) for w in watches) for name in counts}, "watches": len(watches),
                "wait": WAIT, "streams": STREAMS, "history": watches[0].history, "serving": watches[0].serving_log}


def _watch_for_customer(host: str) -> SaleWatch:
    if STREAMS == "each" or not _watches:
        _watches.append(SaleWatch(host, SHOWTIME))
    return _watches[-1]


class OnsaleCustomer(HttpUser):
    """One customer of the on-sale (loadtests/onsale.py), start to end, then done.

    Arrives at a random moment in the ARRIVALS seconds before the opening (the first EARLY
    customers) or after it, and joins the queue. Waits on the SaleWatch, sending nothing:
    one who joined before the opening GETs its entry once after it (at a random moment in
    NUMBER_SPREAD seconds, so that thousands do not ask in the same second) for its number;
    everyone GETs it once more when the serving number reaches that number, for the
    admission token (one GET does both for a number already reached). 5% leave the queue
    while waiting (after 10-120 s); a waiting customer who sees no seat for their party on
    the map for 15-90 s leaves.

    Admitted: 2% leave without holding; one who sees no seat for their party on the map
    leaves (the session ends, the slot goes to the next number); the others look at the
    map for 0.5-2 s and, if their seats are still there, hold by best available (parties
    of 1-4 as in the rush; 3% are accessible parties, ``{"quantity": n, "accessible": 1}``)
    with the ``Admission-Token`` header, up to three tries; 4% release the hold and leave,
    4% let it lapse (hold and session expire); the rest reserve 1-3 s later, paying with
    the rush's mix of test tokens, follow the payment once a second and fetch the tickets."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.index = next(_next_customer)
        self.token = _tokens[self.index] if self.index < len(_tokens) else None
        self.rng = random.Random(self.index)
        self.watch = _watch_for_customer(self.host) if self.token and SHOWTIME else None
        early = self.index < EARLY
        party = self.rng.choices([1, 2, 3, 4], weights=PARTY_WEIGHTS)[0]
        accessible = self.rng.random() < ACCESSIBLE_SHARE
        self.record = {"i": self.index, "early": early, "party": min(party, 2) if accessible else party,
                       "accessible": accessible, "arrive": (OPENS_AT - ARRIVALS if early else OPENS_AT)
                       + self.rng.uniform(0, ARRIVALS), "entry_gets": 0, "holds": [], "outcome": None}
        self.headers = {"Authorization": f"Bearer {self.token}"}
        # As a browser does (RFC 9112, 9.3.1): a request on a kept-alive connection the proxy
        # closed as it went idle (75 s) is sent again once; a POST only if it never left.
        self.client.get_adapter(self.host).max_retries = Retry(total=1, status=0, raise_on_status=False)

    @task
    def shop(self) -> None:
        if self.watch is None:
            raise StopUser()  # no customer left for this user
        try:
            self.record["outcome"] = self._journey()
        finally:
            self.record["end"] = time.time()
            _journeys.append(self.record)
            if STREAMS == "each":
                self.watch.close()
            if next(_finished) == min(len(_tokens), self.environment.runner.target_user_count or 0):
                gevent.spawn_later(2, self.environment.runner.quit)  # everyone is done
        raise StopUser()

    # -- the journey -------------------------------------------------------------------
    def _journey(self) -> str:
        record, watch = self.record, self.watch
        gevent.sleep(max(0.0, record["arrive"] - time.time()))
        entry = self._join()
        if entry is None:
            return "join failed"
        leave_at = record["joined"] + self.rng.uniform(10, 120) if self.rng.random() < 0.05 else None
        patience = self.rng.uniform(15, 90)
        if entry["status"] == "pre_queue":
            while not watch.open.wait(1.0):
                if self._gives_up(leave_at, patience):
                    return self._leave(entry, "left waiting")
            gevent.sleep(max(0.0, OPENS_AT + self.rng.uniform(0, NUMBER_SPREAD) - time.time()))
            entry = self._entry(entry["id"], "number")
            if entry is None:
                return "entry failed"
        record["number"], record["number_at"] = entry["number"], time.time()
        while entry["status"] == "waiting":
            reached = watch.reached(entry["number"])
            while not reached.wait(2.0):
                if self._gives_up(leave_at, patience):
                    return self._leave(entry, "left waiting")
            record["seen"] = time.time()
            entry = self._entry(entry["id"], "admission")
            if entry is None:
                return "entry failed"
        if entry["status"] != "admitted":
            return f"entry {entry['status']}"
        record["admitted_until"] = entry["admitted_until"]
        record.setdefault("seen", time.time())
        return self._shop(entry)

    def _gives_up(self, leave_at: float | None, patience: float) -> bool:
        """Leaving the queue: at a time chosen beforehand, or after ``patience`` seconds of a
        map with no seats for the party."""
        now = time.time()
        if leave_at is not None and now >= leave_at:
            return True
        if self.watch.sold_out_for(self.record["party"]):
            self.record.setdefault("sold_out_seen", now)
            return now - self.record["sold_out_seen"] >= patience
        self.record.pop("sold_out_seen", None)
        return False

    def _shop(self, entry: dict) -> str:
        record, watch = self.record, self.watch
        headers = {**self.headers, "Admission-Token": entry["admission_token"]}
        if self.rng.random() < 0.02:
            return self._leave(entry, "admitted, left without holding")
        hold = None
        for _ in range(3):
            if not watch.holdable(record["party"], record["accessible"]):
                return self._leave(entry, "admitted, no seats on the map")
            gevent.sleep(self.rng.uniform(0.5, 2.0))
            if not watch.holdable(record["party"], record["accessible"]):
                continue  # the seats went while the customer looked: the live map shows it, no click
            hold = self._hold(headers)
            if hold is not None:
                break
        if hold is None:
            return self._leave(entry, "admitted, gave up after three tries")
        roll = self.rng.random()
        if roll < 0.04:
            with self.client.delete(f"/api/v1/holds/{hold['id']}", name="/holds/[id] (release)", headers=self.headers,
                                    catch_response=True, timeout=TIMEOUT) as response:
                _outcome(response, (204,))
            return self._leave(entry, "released the hold")
        if roll < 0.08:
            return "let the hold lapse"
        gevent.sleep(self.rng.uniform(1.0, 3.0))
        payment = self.rng.choices(*PAYMENTS)[0]
        sent = time.time()
        with self.client.post("/api/v1/reservations", json={"hold_id": hold["id"], "payment_token": payment},
                              name="/reservations (reserve)", headers=self.headers, catch_response=True,
                              timeout=TIMEOUT) as response:
            outcome = _outcome(response, (202,), (409,))
            record["reserve"] = (sent, outcome, response.request_meta["response_time"], payment)
            if outcome != "202":
                return f"reserve {outcome}"
            reservation = response.json()
        status = self._wait_for_payment(reservation["id"])
        if status == "confirmed":
            with self.client.get(f"/api/v1/reservations/{reservation['id']}/tickets", name="/reservations/[id]/tickets",
                                 headers=self.headers, catch_response=True, timeout=TIMEOUT) as response:
                _outcome(response, (200,))
            return "bought"
        return f"payment {status}"

    # -- requests ------------------------------------------------------------------------
    def _join(self) -> dict | None:
        sent = time.time()
        with self.client.post(f"/api/v1/showtimes/{SHOWTIME}/queue", name="/showtimes/[id]/queue (join)",
                              headers=self.headers, catch_response=True, timeout=TIMEOUT) as response:
            outcome = _outcome(response, (200, 201))
            self.record["joined"] = sent
            self.record["join"] = (outcome, response.request_meta["response_time"])
            if outcome == "failed":
                return None
            entry = response.json()
            self.record["join_status"] = entry["status"]
            return entry

    def _entry(self, entry_id: str, why: str) -> dict | None:
        self.record["entry_gets"] += 1
        with self.client.get(f"/api/v1/queue/{entry_id}", name=f"/queue/[id] ({why})", headers=self.headers,
                             catch_response=True, timeout=TIMEOUT) as response:
            if _outcome(response, (200,)) == "failed":
                return None
            return response.json()

    def _leave(self, entry: dict, outcome: str) -> str:
        self.record["left"] = time.time()
        with self.client.delete(f"/api/v1/queue/{entry['id']}", name="/queue/[id] (leave)", headers=self.headers,
                                catch_response=True, timeout=TIMEOUT) as response:
            _outcome(response, (204,))
        return outcome

    def _hold(self, headers: dict) -> dict | None:
        record = self.record
        body = {"quantity": record["party"], **({"accessible": 1} if record["accessible"] else {})}
        sent = time.time()
        with self.client.post(f"/api/v1/showtimes/{SHOWTIME}/holds", json=body, name="/showtimes/[id]/holds (best)",
                              headers=headers, catch_response=True, timeout=TIMEOUT) as response:
            outcome = _outcome(response, (201,), (403, 409))
            record["holds"].append((sent, outcome, response.request_meta["response_time"]))
            return response.json() if outcome == "201" else None

    def _wait_for_payment(self, reservation_id: int) -> str:
        """The checkout page asks once a second until the payment is settled."""
        deadline = time.monotonic() + 90
        status = "pending_payment"
        while status == "pending_payment" and time.monotonic() < deadline:
            gevent.sleep(1.0)
            with self.client.get(f"/api/v1/reservations/{reservation_id}", name="/reservations/[id]",
                                 headers=self.headers, catch_response=True, timeout=TIMEOUT) as response:
                if _outcome(response, (200,)) == "200":
                    status = response.json()["status"]
        return status
