"""Prometheus metrics of the live process, in a registry of its own (``GET /metrics``).

Counters are added to once per change (not once per watcher); the gauges (watchers,
showtimes followed, connections, Redis readers) are read from the live objects at scrape
time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:  # pragma: no cover
    from live.server import LiveServer

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _StateCollector:
    def __init__(self, server: "LiveServer") -> None:
        self.server = server

    def collect(self):
        followers = self.server.followers.by_showtime.values()
        for name, text, value in (
            ("marquee_live_watchers", "Streams receiving changes", sum(len(f.watchers) for f in followers)),
            ("marquee_live_showtimes_followed", "Showtimes whose change stream is being read", len(followers)),
            ("marquee_live_redis_readers", "Change stream readers running (one per followed showtime)",
             sum(1 for f in followers if f.reader is not None and not f.reader.done())),
            ("marquee_live_connections", "Open client connections", len(self.server.connections)),
            ("marquee_live_reservation_streams", "Reservation streams awaiting a payment's outcome",
             self.server.reservations.count),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            yield gauge


class LiveMetrics:
    def __init__(self, server: "LiveServer") -> None:
        self.registry = CollectorRegistry()
        self.events_sent = Counter("marquee_live_events_sent", "Seat changes written to watchers (one per watcher)",
                                   registry=self.registry)
        self.clients_cut = Counter("marquee_live_clients_cut",
                                   "Watchers cut off for leaving more than LIVE_CLIENT_BUFFER_BYTES unread",
                                   registry=self.registry)
        self.snapshots = Counter("marquee_live_snapshots", "Seat map snapshots computed (shared by the streams "
                                 "that start at the same moment)", registry=self.registry)
        self.resets = Counter("marquee_live_resets", "Streams answered with event: reset (version too old)",
                              registry=self.registry)
        self.redis_errors = Counter("marquee_live_redis_errors", "Failed reads of a change stream",
                                    registry=self.registry)
        self.queue_events_sent = Counter("marquee_live_queue_events_sent", "Waiting-room statuses written to "
                                         "watchers as event: queue (one per watcher)", registry=self.registry)
        self.reservation_events_sent = Counter("marquee_live_reservation_events_sent",
                                               "Reservation states written to their streams", registry=self.registry)
        self.queue_status_served = Counter("marquee_live_queue_status_served", "Queue status requests answered "
                                           "(200, or 404 without a waiting room)", registry=self.registry)
        self.queue_status_reads = Counter("marquee_live_queue_status_reads", "Redis reads of a queue status (one "
                                          "per showtime a second at most, whatever the requests)",
                                          registry=self.registry)
        self.fanout = Histogram("marquee_live_fanout_seconds", "Time to write one change to all of a showtime's "
                                "watchers", buckets=_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(server))

    def delivered(self, watchers: int, seconds: float) -> None:
        self.events_sent.inc(watchers)
        self.fanout.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
