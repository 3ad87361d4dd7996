"""Prometheus metrics of the proxy, in a registry of its own (served on the admin port).

The requests counter and the latency histogram are plain integers a request
(``RequestStats``), turned into Prometheus series at scrape time: prometheus_client's own
Counter and Histogram take a lock per update and walk the buckets in Python, which cost
about a twentieth of what proxying a small request costs. Gauges that describe the current
state (backend health, in-flight requests, pooled connections, client connections) are
read from the live objects at scrape time, which costs nothing per request.
Every series of a backend carries its ``pool`` (``-`` for requests no pool took up).
"""
from __future__ import annotations

import time
from bisect import bisect_left
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:  # pragma: no cover
    from proxy.server import ProxyServer

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _StateCollector:
    def __init__(self, server: "ProxyServer") -> None:
        self.server = server

    def collect(self):
        by_backend = ["pool", "backend"]
        up = GaugeMetricFamily("marquee_proxy_backend_up", "1 when the backend is in rotation",
                               labels=by_backend)
        draining = GaugeMetricFamily("marquee_proxy_backend_draining",
                                     "1 while an operator drains the backend", labels=by_backend)
        in_flight = GaugeMetricFamily("marquee_proxy_backend_in_flight",
                                      "Requests now at the backend (streams included)", labels=by_backend)
        weight = GaugeMetricFamily("marquee_proxy_backend_effective_weight",
                                   "Weight now used (ramps up after a return)", labels=by_backend)
        idle = GaugeMetricFamily("marquee_proxy_backend_idle_connections",
                                 "Keep-alive connections pooled to the backend", labels=by_backend)
        now = time.monotonic()
        for backend in self.server.balancer.backends:
            labels = [backend.pool, backend.name]
            up.add_metric(labels, 1 if backend.available else 0)
            draining.add_metric(labels, 1 if backend.draining else 0)
            in_flight.add_metric(labels, backend.in_flight)
            weight.add_metric(labels, backend.effective_weight(now))
            idle.add_metric(labels, len(backend.idle))
        panic = GaugeMetricFamily("marquee_proxy_panic",
                                  "1 while too few of the pool's backends pass their checks and all are used",
                                  labels=["pool"])
        for name, pool in self.server.balancer.pools.items():
            panic.add_metric([name], 1 if pool.panicking else 0)
        yield panic
        clients = GaugeMetricFamily("marquee_proxy_client_connections", "Open client connections")
        clients.add_metric([], len(self.server.connections))
        yield from (up, draining, in_flight, weight, idle, clients)


class _Series:
    """One (pool, backend)'s requests by status, and their durations in the buckets."""

    __slots__ = ("statuses", "buckets", "sum")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(_BUCKETS) + 1)  # per bound, then past the last one
        self.sum = 0.0


class RequestStats:
    """Requests answered by (pool, backend, status), and their durations by (pool, backend)
    in the histogram's buckets (``le``: a duration goes in the first bucket whose bound is
    at least it, as Prometheus counts them), as plain numbers: one look-up a request."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], _Series] = {}

    def observe(self, pool: str, backend: str, status: int, seconds: float) -> None:
        series = self.series.get((pool, backend))
        if series is None:
            series = self.series[(pool, backend)] = _Series()
        statuses = series.statuses
        statuses[status] = statuses.get(status, 0) + 1
        series.buckets[bisect_left(_BUCKETS, seconds)] += 1
        series.sum += seconds

    def collect(self):
        requests = CounterMetricFamily("marquee_proxy_requests", "Requests answered, by pool, backend and status",
                                       labels=["pool", "backend", "status"])
        for (pool, backend), series in self.series.items():
            for status, count in series.statuses.items():
                requests.add_metric([pool, backend, str(status)], count)
        duration = HistogramMetricFamily(
            "marquee_proxy_request_duration_seconds",
            "Time from request head to the end of the response (of a stream: its life)", labels=["pool", "backend"])
        for key, series in self.series.items():
            cumulative, total = [], 0
            for bound, count in zip((*map(floatToGoString, _BUCKETS), "+Inf"), series.buckets, strict=True):
                total += count
                cumulative.append((bound, total))
            duration.add_metric(list(key), cumulative, series.sum)
        yield requests
        yield duration


class ProxyMetrics:
    def __init__(self, server: "ProxyServer") -> None:
        self.registry = CollectorRegistry()
        self.stats = RequestStats()
        self.registry.register(self.stats)
        self.retries = Counter("marquee_proxy_retries", "Requests sent again after a backend failed",
                               ["pool", "backend"], registry=self.registry)
        self.ejections = Counter("marquee_proxy_ejections",
                                 "Backends taken out of rotation, by cause", ["pool", "backend", "cause"],
                                 registry=self.registry)
        self.refusals = Counter("marquee_proxy_refused_requests",
                                "Requests the proxy answered itself (400, 408, 413, 414, 431, 501, 503...)",
                                ["status"], registry=self.registry)
        self.registry.register(_StateCollector(server))
        self.observe = self.stats.observe  # per request: pool, backend, status, seconds

    def retry(self, pool: str, backend: str) -> None:
        self.retries.labels(pool, backend).inc()

    def ejected(self, pool: str, backend: str, cause: str) -> None:
        self.ejections.labels(pool, backend, cause).inc()

    def refused(self, status: int) -> None:
        self.refusals.labels(str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
