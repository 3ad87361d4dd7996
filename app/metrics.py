"""Prometheus instruments for HTTP traffic."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "marquee_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
LATENCY = Histogram(
    "marquee_http_request_duration_seconds",
    "Time to handle an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HOLDS = Counter(
    "marquee_holds_total",
    "Seat hold attempts by outcome: held, conflict (a seat was taken), already_holding, not_enough_seats, orphan_seat, not_admitted",
    ["outcome"],
)
