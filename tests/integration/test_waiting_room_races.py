"""The waiting room's invariants under load (DESIGN.md invariant 10): a fair order at the
opening, numbers by arrival after it, admissions in number order, never more than
``max_active`` customers shopping at once, whatever the customers and the schedulers do.
The queue lives in Redis only: customers here are user ids, with no account behind them."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from app.adapters.waiting_room_store import active_key
from app.services import waiting_room

EARLY = range(1, 501)
LATE = range(501, 1001)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def configure(app, showtime_id, opens_at, *, admit_per_minute=60000, max_active=100, session_seconds=300):
    with app.app_context():
        waiting_room.configure(showtime_id, opens_at, admit_per_minute, max_active, session_seconds, actor=None)


def open_now(app, showtime_id, **settings):
    """Open the queue at once: an opening time just past (allowed until it has opened)."""
    configure(app, showtime_id, _now() - timedelta(seconds=1), **settings)


def join_all(app, showtime_id, users) -> dict[int, dict]:
    with app.app_context():
        return {user: waiting_room.join(user, showtime_id)[0] for user in users}


def numbers_of(app, entries: dict[int, dict]) -> dict[int, int | None]:
    with app.app_context():
        return {user: waiting_room.get_entry(user, e["id"])["number"] for user, e in entries.items()}


def admit(app) -> int:
    with app.app_context():
        admitted = waiting_room.admit_all()
    assert admitted is not None, "no other scheduler runs here: the step must act"
    return admitted


def spearman(xs: list[int], ys: list[int]) -> float:
    """Rank correlation of two lists of distinct values (1: same order, 0: unrelated)."""
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0] * len(values)
        for rank, i in enumerate(order):
            out[i] = rank
        return out

    rx, ry, n = ranks(xs), ranks(ys), len(xs)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True)) / (n * (n * n - 1))


@pytest.fixture
def numbered(app, show):
    """500 customers joined before the opening and 500 after it, one at a time in user id
    order: (showtime id, entries by user, numbers by user)."""
    showtime_id = show["showtime"]
    configure(app, showtime_id, _now() + timedelta(hours=1))
    entries = join_all(app, showtime_id, EARLY)
    assert {e["status"] for e in entries.values()} == {"pre_queue"}
    assert {e["number"] for e in entries.values()} == {None}
    open_now(app, showtime_id)
    entries |= join_all(app, showtime_id, LATE)
    return showtime_id, entries, numbers_of(app, entries)


def test_early_joiners_get_the_first_numbers_in_a_fair_random_order(numbered):
    _, _, numbers = numbered
    early = [numbers[u] for u in EARLY]
    assert sorted(early) == list(range(1, 501)), "a permutation of 1..500: none twice, none lost"
    assert early != sorted(early)
    # not their join order, nor close to it: for a uniform shuffle the rank correlation with
    # the join order is about 0 (standard deviation 1/sqrt(499), so 0.25 is 5.6 of them)
    assert abs(spearman(list(EARLY), early)) < 0.25


def test_after_the_opening_numbers_follow_arrival(numbered):
    _, _, numbers = numbered
    assert [numbers[u] for u in LATE] == list(range(501, 1001))


def test_admissions_follow_the_numbers_step_by_step(app, numbered):
    """Every step admits the next numbers: what has been admitted is always exactly
    1..serving_number less the numbers whose holders left while waiting."""
    showtime_id, entries, numbers = numbered
    max_active = 60
    open_now(app, showtime_id, max_active=max_active)
    by_number = {n: u for u, n in numbers.items()}
    rng = random.Random(14)
    left_waiting = {n for n in range(1, 1001) if n > 100 and rng.random() < 0.1}
    with app.app_context():
        for n in sorted(left_waiting):
            waiting_room.leave(by_number[n], entries[by_number[n]]["id"])
    store = app.extensions["marquee"].waiting_rooms
    active = active_key(store.store, showtime_id)
    ever, ended, steps = set(), set(), 0
    while not ever | left_waiting >= set(range(1, 1001)):
        steps += 1
        assert steps < 500, "the admission steps made no progress"
        admit(app)
        now_active = {numbers[int(u)] for u in store.store.client.zrange(active, 0, -1)}
        serving = store.stats(showtime_id).serving_number
        newly = now_active - ever - ended
        assert not now_active & ended, "an ended session came back"
        assert len(now_active) <= max_active
        assert not newly or min(newly) > max(ever, default=0), "admitted out of number order"
        ever |= newly
        assert ever == set(range(1, serving + 1)) - left_waiting
        for n in rng.sample(sorted(now_active), k=len(now_active) // 2):
            with app.app_context():
                if rng.random() < 0.5:
                    waiting_room.session_done(showtime_id, by_number[n])
                else:
                    waiting_room.leave(by_number[n], entries[by_number[n]]["id"])
            ended.add(n)
    assert steps > 1000 // max_active, "admissions came in several steps"
    stats = store.stats(showtime_id)
    assert (stats.admitted, stats.waiting, stats.serving_number) == (1000 - len(left_waiting), 0, 1000)


def test_joins_from_many_threads_get_unique_gap_free_numbers(app, show):
    """After the opening, 24 threads join at once (each customer twice, from two threads):
    one entry per customer, and the numbers are exactly 1..N."""
    showtime_id = show["showtime"]
    open_now(app, showtime_id)
    users = list(range(1, 1201))
    barrier = threading.Barrier(24)
    got: list[tuple[int, dict]] = []
    failures = []

    def customer(batch):
        try:
            barrier.wait()
            with app.app_context():
                for user in batch:
                    got.append((user, waiting_room.join(user, showtime_id)[0]))
        except Exception as exc:  # reported below: a thread's failure must fail the test
            failures.append(exc)

    batches = [users[i::12] for i in range(12)] * 2
    threads = [threading.Thread(target=customer, args=(batch,)) for batch in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert len(got) == 2 * len(users)
    ids, numbers = {}, {}
    for user, entry in got:
        assert ids.setdefault(user, entry["id"]) == entry["id"], "one entry per customer"
        assert numbers.setdefault(user, entry["number"]) == entry["number"]
    assert sorted(numbers.values()) == list(range(1, len(users) + 1))
    stats = app.extensions["marquee"].waiting_rooms.stats(showtime_id)
    assert (stats.joined, stats.last_number, stats.waiting) == (len(users), len(users), len(users))


class Shoppers:
    """The admitted customers: each shops a moment, then ends their session as a
    reservation does (``session_done``) or by leaving; while ``holding`` is set nobody finishes (the
    sessions pile up to max_active). Every admission is seen (a session outlives the poll
    many times over), so the admission order can be checked."""

    def __init__(self, app, showtime_id, entries, numbers, session_seconds):
        self.app, self.showtime_id, self.entries, self.numbers = app, showtime_id, entries, numbers
        store = app.extensions["marquee"].waiting_rooms.store
        self.client, self.active = store.client, active_key(store, showtime_id)
        self.session_ms = session_seconds * 1000
        self.admitted_at: dict[int, int] = {}  # number -> when (Redis ms)
        self.out_of_order: list[tuple[int, int]] = []
        self.failures: list[Exception] = []
        self.holding, self.stop = threading.Event(), threading.Event()
        self._rng = random.Random(10)

    def run(self):
        due: dict[int, float] = {}
        try:
            with self.app.app_context():
                while not self.stop.is_set():
                    seen = self.client.zrange(self.active, 0, -1, withscores=True)
                    self._admitted([(int(u), int(score)) for u, score in seen], due)
                    now = time.monotonic()
                    for user in [u for u, at in due.items() if at <= now and not self.holding.is_set()]:
                        del due[user]
                        if self._rng.random() < 0.5:
                            waiting_room.session_done(self.showtime_id, user)
                        else:
                            waiting_room.leave(user, self.entries[user]["id"])
                    time.sleep(0.005)
        except Exception as exc:  # reported by the test: a thread's failure must fail it
            self.failures.append(exc)

    def _admitted(self, seen, due):
        new = [(self.numbers[u], u, score) for u, score in seen if self.numbers[u] not in self.admitted_at]
        if new and min(n for n, _, _ in new) < max(self.admitted_at, default=0):
            self.out_of_order.append((min(n for n, _, _ in new), max(self.admitted_at)))
        for number, user, until_ms in new:
            self.admitted_at[number] = until_ms - self.session_ms
            due[user] = time.monotonic() + self._rng.uniform(0.02, 0.2)


class Sampler:
    """The active sessions' count (ZCARD), read as often as Redis answers."""

    def __init__(self, client, key):
        self.client, self.key = client, key
        self.highest = self.samples = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.highest = max(self.highest, self.client.zcard(self.key))
            self.samples += 1


def busiest_window(times_ms: list[int], window_ms: int) -> int:
    """The most admissions within any ``window_ms``."""
    times, most, first = sorted(times_ms), 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window_ms:
            first += 1
        most = max(most, last - first + 1)
    return most


@pytest.mark.slow
def test_max_active_holds_with_two_schedulers_one_killed_mid_sale(app, show, broker, tmp_path):
    """Two real schedulers (python -m worker.scheduler); customers join from threads, the
    admitted ones end their sessions at random, or all hold on until the sessions fill
    max_active; one scheduler is killed (SIGKILL) mid-sale and started again. The active
    sessions never outnumber max_active; admissions go on after the kill, in number
    order; both schedulers run the step every second, yet admissions never go faster
    than the rate (the time since the last step is credited, whoever runs it)."""
    from tests.conftest import ROOT, TEST_ENV
    from tests.helpers import stop_process, wait_until

    showtime_id, customers, max_active, rate, session_seconds = show["showtime"], 220, 20, 600, 30
    store = app.extensions["marquee"].waiting_rooms.store
    client, active = store.client, active_key(store, showtime_id)
    runs_key = store.key("ops:scheduler", "waiting_room_admissions")
    env = {**os.environ, **TEST_ENV, "AMQP_PREFIX": broker.prefix, "LOG_LEVEL": "INFO"}
    procs: list[tuple[subprocess.Popen, object]] = []
    entries: dict[int, dict] = {}
    numbers: dict[int, int] = {}
    sampler, shoppers = Sampler(client, active), Shoppers(app, showtime_id, entries, numbers, session_seconds)
    threads: list[threading.Thread] = []

    def start(name):
        log_path = tmp_path / f"{name}.log"
        log = open(log_path, "ab")
        procs.append((subprocess.Popen([sys.executable, "-m", "worker.scheduler"], cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT), log))
        wait_until(lambda: b"scheduler started" in log_path.read_bytes(), 20, 0.05, f"{name} to start")
        return procs[-1][0]

    def runs() -> int:
        fields = client.hgetall(runs_key)
        return int(fields.get(b"acted", 0)) + int(fields.get(b"skipped", 0))

    def admitted() -> int:
        return app.extensions["marquee"].waiting_rooms.stats(showtime_id).admitted

    def runs_a_second(since: tuple[float, int]) -> float:
        return (runs() - since[1]) / (time.monotonic() - since[0])

    def fill_and_hold():
        """Customers hold on until max_active sessions are live and three more steps have run."""
        shoppers.holding.set()
        wait_until(lambda: client.zcard(active) >= max_active, 10, 0.01, "max_active sessions")
        full_at = runs()
        wait_until(lambda: runs() >= full_at + 3, 10, 0.05, "steps with every session taken")
        shoppers.holding.clear()

    def joiner(users):
        try:
            with app.app_context():
                for user in users:
                    entry = waiting_room.join(user, showtime_id)[0]
                    entries[user], numbers[user] = entry, entry["number"]
                    time.sleep(0.02)
        except Exception as exc:  # reported by the test
            shoppers.failures.append(exc)

    try:
        first, _ = start("first"), start("second")
        both_since = (time.monotonic(), runs())
        shoppers.holding.set()
        open_now(app, showtime_id, admit_per_minute=rate, max_active=max_active, session_seconds=session_seconds)
        threads = [threading.Thread(target=joiner, args=(range(i, customers + 1, 4),)) for i in range(1, 5)]
        threads += [threading.Thread(target=sampler.run), threading.Thread(target=shoppers.run)]
        for t in threads:
            t.start()
        fill_and_hold()
        wait_until(lambda: admitted() >= 110, 20, 0.05, "110 admissions")
        runs_with_two = [runs_a_second(both_since)]
        first.kill()
        first.wait()
        at_kill = admitted()
        wait_until(lambda: admitted() >= at_kill + 20, 10, 0.05, "admissions after the kill")
        start("restarted")
        both_since = (time.monotonic(), runs())
        fill_and_hold()
        wait_until(lambda: len(shoppers.admitted_at) == customers and client.zcard(active) == 0, 30, 0.05,
                   "every customer admitted and done")
        runs_with_two.append(runs_a_second(both_since))
    except AssertionError as failed:
        logs = "\n".join(p.read_text()[-1500:] for p in sorted(tmp_path.glob("*.log")))
        raise AssertionError(f"{failed}\n{logs}") from None
    finally:
        sampler.stop.set()
        shoppers.stop.set()
        for t in threads:
            t.join(30)
        for proc, log in procs:
            stop_process(proc)
            log.close()
    assert not shoppers.failures, shoppers.failures
    assert sampler.samples > 1000 and sampler.highest <= max_active, \
        f"{sampler.highest} sessions at once in {sampler.samples} samples, over max_active {max_active}"
    assert not shoppers.out_of_order, f"admitted out of number order: {shoppers.out_of_order[:5]}"
    assert sorted(shoppers.admitted_at) == list(range(1, customers + 1)) and admitted() == customers
    assert min(runs_with_two) > 1.5, f"{runs_with_two} runs a second: both schedulers ran the step every second"
    most, allowed = busiest_window(list(shoppers.admitted_at.values()), 8000), rate / 60 * (8 + 2) + 1
    assert most <= allowed, f"{most} admitted within 8 s where the rate allows {allowed:.0f}: time credited twice"
