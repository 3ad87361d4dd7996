"""Catalog read benchmark: what browsing costs, cached and uncached.

    .venv/bin/python -m loadtests.bench_catalog [--base http://127.0.0.1:8000] [--seconds 5] [--concurrency 16]
                                                [--rounds 3]

Runs against a running stack (``make up``), loopback only, for a bounded time per
case, and prints requests/s with p50/p95/p99 latency for:
  - GET /health                     (the framework's floor)
  - GET /api/v1/movies              (cached list: a Redis hit)
  - GET /api/v1/showtimes/{id}/seats (cached seat map of the 320-seat screen)
  - GET /api/v1/movies?q=<unique>   (a cache miss every time: PostgreSQL)
The load comes from one asyncio client over ``--concurrency`` keep-alive connections
(loadtests/client.py), on the same two cores as the server; the cases are alternated
``--rounds`` times and the medians printed, each also as a share of /health's rate.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from urllib.parse import urlparse

import requests

from loadtests.client import getter, run_clients

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def require_loopback(url: str) -> None:
    """Load only ever goes to this machine."""
    if urlparse(url).hostname not in LOOPBACK:
        raise SystemExit("loopback targets only")


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every time-bounded benchmark takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    return parser


def percentile_ms(sorted_seconds: list[float], p: float) -> float:
    if not sorted_seconds:
        return 0.0
    return sorted_seconds[min(len(sorted_seconds) - 1, int(p / 100 * len(sorted_seconds)))] * 1000


def run_threads(target, count: int) -> float:
    """Run ``target(i)`` in ``count`` threads at once; the seconds they took."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="every case in turn, this many times (medians)")
    args = parser.parse_args()
    require_loopback(args.base)
    shows = requests.get(args.base + "/api/v1/showtimes", params={"page_size": 1}, timeout=5).json()
    if not shows:
        raise SystemExit("no showtimes: run `make up` (it seeds demo data) first")
    seat_map = f"/api/v1/showtimes/{shows[0]['id']}/seats"
    cases = [
        ("GET /health", lambda: "/health"),
        ("GET /api/v1/movies (cached)", lambda: "/api/v1/movies"),
        ("GET seat map (cached, 320 seats)", lambda: seat_map),
        ("GET /api/v1/movies?q=<unique> (miss)", lambda: f"/api/v1/movies?q={uuid.uuid4().hex[:8]}"),
    ]
    runs: dict[str, list] = {name: [] for name, _ in cases}
    for _ in range(args.rounds):  # alternated: a noisy neighbour spreads over every case
        for name, path_fn in cases:
            runs[name].append(run_clients(args.base, getter(path_fn), args.concurrency, args.seconds))
    health = statistics.median(t.rate for t in runs["GET /health"])
    print(f"target {args.base}, {args.concurrency} keep-alive connections (one asyncio client), "
          f"{args.seconds:.0f}s per case, {args.rounds} rounds alternated (medians)")
    print(f"{'case':40} {'req/s':>8} {'/health':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, tallies in runs.items():
        rate = statistics.median(t.rate for t in tallies)
        p50, p95, p99 = (statistics.median(t.percentile_ms(p) for t in tallies) for p in (50, 95, 99))
        print(f"{name:40} {rate:8.0f} {rate / health:8.1%} {p50:8.1f} {p95:8.1f} {p99:8.1f} "
              f"{sum(t.errors for t in tallies):7d}")


if __name__ == "__main__":
    main()
