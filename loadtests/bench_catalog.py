"""Catalog read benchmark: what browsing costs, cached and uncached.

    .venv/bin/python -m loadtests.bench_catalog [--base http://127.0.0.1:8000] [--seconds 5] [--concurrency 16]

Runs against a running stack (``make up``), loopback only, for a bounded time per
case, and prints requests/s with p50/p95/p99 latency for:
  - GET /health                     (the framework's floor)
  - GET /api/v1/movies              (cached list: a Redis hit)
  - GET /api/v1/showtimes/{id}/seats (cached seat map of the 320-seat screen)
  - GET /api/v1/movies?q=<unique>   (a cache miss every time: PostgreSQL)
The load generator is Python threads with keep-alive sessions, on the same two
cores as the server: figures are lower bounds, useful to compare the cases.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from urllib.parse import urlparse

import requests

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


def run_case(base: str, path_fn, seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(_i):
        nonlocal errors
        session = requests.Session()
        local, local_errors = [], 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok = session.get(base + path_fn(), timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            local.append(time.perf_counter() - started)
            local_errors += not ok
        with lock:
            latencies.extend(local)
            errors += local_errors

    elapsed = run_threads(worker, concurrency)
    latencies.sort()

    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "errors": errors,
            "p50": percentile_ms(latencies, 50), "p95": percentile_ms(latencies, 95),
            "p99": percentile_ms(latencies, 99),
            "mean": statistics.fmean(latencies) * 1000 if latencies else 0.0}


def main() -> None:
    args = bench_parser(__doc__).parse_args()
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
    print(f"target {args.base}, {args.concurrency} client threads, {args.seconds:.0f}s per case")
    print(f"{'case':40} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, path_fn in cases:
        r = run_case(args.base, path_fn, args.seconds, args.concurrency)
        print(f"{name:40} {r['rps']:8.0f} {r['p50']:8.1f} {r['p95']:8.1f} {r['p99']:8.1f} {r['errors']:7d}")


if __name__ == "__main__":
    main()
