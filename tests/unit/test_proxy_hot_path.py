"""The proxy's per-request shortcuts, without sockets: a ``Deadline`` moved on every request
fires when it should, and the request statistics export exactly what prometheus_client's
Counter and Histogram would."""
from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.http import named_in_connection
from proxy.metrics import _BUCKETS, RequestStats
from proxy.timers import Deadline


class FakeLoop:
    """call_at and time, with a clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[FakeHandle] = []
        self.armed = 0  # timers created

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback):
        handle = FakeHandle(when, callback)
        self.timers.append(handle)
        self.armed += 1
        return handle

    def advance(self, seconds: float) -> None:
        """Move the clock, firing due timers in order (as the loop does, early ones included)."""
        target = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if not t.cancelled and t.when <= target), key=lambda t: t.when)
            if not due:
                break
            handle = due[0]
            self.timers.remove(handle)
            self.now = max(self.now, handle.when)
            handle.callback()
        self.now = target


class FakeHandle:
    def __init__(self, when, callback) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


def _deadline():
    loop, fired = FakeLoop(), []
    return loop, Deadline(loop, lambda: fired.append(loop.now)), fired


def test_a_deadline_fires_once_when_it_passes():
    loop, deadline, fired = _deadline()
    deadline.set(loop.now + 10)
    loop.advance(9.9)
    assert fired == []
    loop.advance(0.2)
    assert fired == [110.0]
    loop.advance(100)
    assert fired == [110.0]


def test_a_deadline_moved_later_keeps_its_timer_and_fires_at_the_new_time():
    loop, deadline, fired = _deadline()
    deadline.set(loop.now + 10)
    for _ in range(50):  # a keep-alive connection's requests: each pushes the deadline on
        loop.advance(1)
        deadline.set(loop.now + 10)
    assert loop.armed == 1 + 5  # the first timer, then one re-arm each time an early one fired
    loop.advance(9.9)
    assert fired == []
    loop.advance(0.2)
    assert fired == [160.0]


def test_a_deadline_moved_sooner_fires_at_the_sooner_time():
    loop, deadline, fired = _deadline()
    deadline.set(loop.now + 75)  # idle
    loop.advance(1)
    deadline.set(loop.now + 2)  # a head started: its own, shorter limit
    loop.advance(2.1)
    assert fired == [103.0]


def test_a_cleared_deadline_does_not_fire_and_a_cancelled_one_leaves_no_timer():
    loop, deadline, fired = _deadline()
    deadline.set(loop.now + 1)
    deadline.clear()
    loop.advance(5)
    assert fired == []
    deadline.set(loop.now + 1)
    deadline.cancel()
    assert all(t.cancelled for t in loop.timers)
    loop.advance(5)
    assert fired == []


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition's lines, sorted, without the ``_created`` series (which the plain
    counters do not keep)."""
    return sorted(line for line in generate_latest(registry).decode().splitlines() if "_created" not in line)


def test_request_stats_export_what_prometheus_clients_counter_and_histogram_would():
    reference = CollectorRegistry()
    requests = Counter("marquee_proxy_requests", "Requests answered, by pool, backend and status",
                       ["pool", "backend", "status"], registry=reference)
    duration = Histogram("marquee_proxy_request_duration_seconds",
                         "Time from request head to the end of the response (of a stream: its life)",
                         ["pool", "backend"], buckets=_BUCKETS, registry=reference)
    ours = CollectorRegistry()
    stats = RequestStats()
    ours.register(stats)
    rng = random.Random(15)
    # every bound exactly (a bound belongs to its own bucket), past the last one, and at random
    samples = [*_BUCKETS, 0.0, 31.0, *(rng.random() * rng.choice((0.01, 1, 40)) for _ in range(2000))]
    for seconds in samples:
        pool, backend, status = rng.choice((("app", "127.0.0.1:8001", 200), ("app", "127.0.0.1:8002", 503),
                                            ("live", "127.0.0.1:8004", 200), ("-", "-", 503)))
        requests.labels(pool, backend, str(status)).inc()
        duration.labels(pool, backend).observe(seconds)
        stats.observe(pool, backend, status, seconds)
    assert _exposition(ours) == _exposition(reference)


def test_headers_named_in_connection_are_found_past_a_plain_keep_alive():
    """A plain ``Connection: keep-alive`` (most responses) is skipped cheaply, never at the
    cost of a second Connection field that names a header."""
    assert named_in_connection([(b"Connection", b"keep-alive"), (b"Server", b"x")]) == frozenset()
    assert named_in_connection([(b"connection", b" Close ")]) == frozenset()
    assert named_in_connection([(b"Connection", b"keep-alive"), (b"Connection", b"X-Secret")]) == {b"x-secret"}
    assert named_in_connection([(b"CONNECTION", b"Keep-Alive, X-Secret")]) == {b"x-secret"}
