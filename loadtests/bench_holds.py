"""Hold benchmark: what the booking logic costs next to the framework itself.

    .venv/bin/python -m loadtests.bench_holds [--base http://127.0.0.1:8000] [--seconds 5] [--concurrency 16]

Against a running stack (``make up``: demo data, demo customers), loopback only,
bounded in time. In one run, against the same app instance, it prints:
  - GET /health requests/s (the framework's floor);
  - successful hold-and-release cycles/s (POST a 1-seat hold, DELETE it; each
    client thread is a different demo customer on its own seat, so every cycle
    succeeds) and their ratio to the health rate;
  - the raw rate of the hold + release Lua scripts called from Python directly,
    the ceiling the HTTP path is measured against;
  - best available: hold-and-release cycles/s with ``{"quantity": 1}`` instead of a
    seat id, against the explicit ones (goal: 80% or more);
  - the best-available script's own time on a 320-seat room and a 5,000-seat room,
    half full (goals: p99 under 1 ms and under 5 ms): its execution in Redis (SLOWLOG,
    threshold at 0 for the run, then put back) and the call from Python (loopback round
    trip and arguments included).
"""
from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta, timezone

import requests

from loadtests.bench_catalog import bench_parser, percentile_ms, require_loopback, run_case, run_threads

DEMO_PASSWORD = "marquee-demo"


def _tokens(base: str, count: int) -> list[str]:
    tokens = []
    for n in range(1, count + 1):
        r = requests.post(base + "/api/v1/auth/login", timeout=10,
                          json={"email": f"customer{n}@demo.marquee.test", "password": DEMO_PASSWORD})
        r.raise_for_status()
        tokens.append(r.json()["access_token"])
    return tokens


def _showtime(base: str) -> dict:
    after = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
    shows = requests.get(base + "/api/v1/showtimes", params={"starts_after": after, "page_size": 50}, timeout=5).json()
    for show in shows:
        seats = requests.get(f"{base}/api/v1/showtimes/{show['id']}/seats", timeout=5).json()["seats"]
        free = _apart([s for s in seats if s["status"] == "available" and s["category"] not in ("wheelchair", "companion")])
        if len(free) >= 16:
            return {"id": show["id"], "free": free}
    raise SystemExit("no future showtime with free seats: run `make up` first")


def _apart(free: list[dict]) -> list[int]:
    """Free seats that clients can hold and release in any order without ever leaving a
    seat alone (the orphan rule would refuse those holds): three apart in each run, and
    never one seat short of a run's end."""
    from app.services.seat_choice import SeatPlace, runs

    places = [SeatPlace(s["id"], s["x"], s["y"], s["category"]) for s in free]
    chosen = []
    for run in runs(places, {p.id for p in places}):
        chosen += [seat.id for i, seat in enumerate(run) if i % 3 == 0 and len(run) - 1 - i != 1]
    return chosen


def hold_cycles(base: str, tokens: list[str], showtime: dict, seconds: float, *, best: bool = False) -> dict:
    counts, errors = [0] * len(tokens), [0] * len(tokens)
    deadline = time.monotonic() + seconds

    def worker(i):
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tokens[i]}"}
        body = {"quantity": 1} if best else {"seat_ids": [showtime["free"][i]]}
        while time.monotonic() < deadline:
            h = session.post(f"{base}/api/v1/showtimes/{showtime['id']}/holds", json=body,
                             headers=headers, timeout=10)
            if h.status_code != 201:
                errors[i] += 1
                continue
            d = session.delete(f"{base}/api/v1/holds/{h.json()['id']}", headers=headers, timeout=10)
            if d.status_code == 204:
                counts[i] += 1
            else:
                errors[i] += 1

    elapsed = run_threads(worker, len(tokens))
    return {"cycles": sum(counts), "rate": sum(counts) / elapsed, "errors": sum(errors)}


def raw_lua(seconds: float, threads: int) -> float:
    """hold + release through the Lua scripts, from Python, no HTTP."""
    from dotenv import load_dotenv

    load_dotenv(override=False)
    from app.adapters.redis_store import RedisStore
    from app.adapters.seat_store import Room, SeatStore

    store = SeatStore(RedisStore(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), "mqbench:"))
    counts = [0] * threads
    deadline = time.monotonic() + seconds
    expires = datetime.now(timezone.utc) + timedelta(minutes=6)
    room = Room((n, n, 1, "standard") for n in range(1, threads + 1))
    store.sync(1, room, [], 3600)  # a showtime with nothing booked, known to Redis

    def worker(i):
        while time.monotonic() < deadline:
            hold_id, result = store.hold(1, room, 1000 + i, [i + 1], 360_000, expires)
            assert result.held
            store.release(store.get_hold(hold_id))
            counts[i] += 1

    elapsed = run_threads(worker, threads)  # before counting: the threads fill counts
    store.store.delete_prefixed()
    return sum(counts) / elapsed


def script_times(seat_count: int, runs: int = 300) -> dict:
    """The best-available script's own time on a room of ``seat_count`` seats (rows of 40
    with an aisle), half of them taken at random, for a party of 4 (then released): p50
    and p99 of the call from Python (loopback round trip included) and, from Redis's
    SLOWLOG with its threshold at 0 for the run, of the script's execution alone."""
    from dotenv import load_dotenv

    load_dotenv(override=False)
    from app.adapters.redis_store import RedisStore
    from app.adapters.seat_store import Room, SeatStore

    store = SeatStore(RedisStore(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), "mqbench:"))
    client, showtime = store.store.client, 2
    room = Room((n + 1, (n % 40) + 1 + (1 if n % 40 >= 20 else 0), n // 40 + 1, "standard") for n in range(seat_count))
    rng = random.Random(1)  # half the room taken, scattered: parties must be placed around them
    store.sync(showtime, room, [(sid, "r:1", 600_000) for sid in rng.sample(room.ids, seat_count // 2)], 3600)
    focal6 = (6 * 21, 6 * (1 + (seat_count // 40) * 2 // 3))
    expires = datetime.now(timezone.utc) + timedelta(minutes=6)
    classes = "s" * seat_count
    calls = []
    kept = client.config_get("slowlog-*")
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)  # everyone's commands are logged meanwhile
    client.slowlog_reset()
    try:
        for _ in range(runs):
            started = time.perf_counter()
            hold_id, result, _chosen = store.hold_best(showtime, room, 7, classes, 4, focal6, 360_000, expires)
            calls.append(time.perf_counter() - started)
            if result.held:
                store.release(store.get_hold(hold_id))
        entries = client.slowlog_get(100_000)
    finally:
        client.config_set("slowlog-log-slower-than", kept["slowlog-log-slower-than"])
        client.config_set("slowlog-max-len", kept["slowlog-max-len"])
        client.slowlog_reset()
        store.store.delete_prefixed()
    scripts = sorted(e["duration"] / 1e6 for e in entries  # microseconds, to seconds
                     if e["command"].startswith(b"EVALSHA " + store._hold_best.sha.encode()))
    calls.sort()
    return {"call": (percentile_ms(calls, 50), percentile_ms(calls, 99)),
            "script": (percentile_ms(scripts, 50), percentile_ms(scripts, 99)) if scripts else (0.0, 0.0),
            "count": len(scripts)}


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    require_loopback(args.base)
    tokens = _tokens(args.base, args.concurrency)
    showtime = _showtime(args.base)
    health = run_case(args.base, lambda: "/health", args.seconds, args.concurrency)
    cycles = hold_cycles(args.base, tokens, showtime, args.seconds)
    best = hold_cycles(args.base, tokens, showtime, args.seconds, best=True)
    lua = raw_lua(args.seconds, 4)
    small, large = script_times(320), script_times(5000)
    print(f"target {args.base}, {args.concurrency} client threads, {args.seconds:.0f}s per case, showtime {showtime['id']}")
    print(f"GET /health                      {health['rps']:8.0f} req/s   (p50 {health['p50']:.1f} ms, p99 {health['p99']:.1f} ms)")
    print(f"hold + release cycles            {cycles['rate']:8.0f} cycles/s ({2 * cycles['rate']:.0f} req/s, "
          f"{cycles['errors']} errors)")
    print(f"ratio cycles / health            {cycles['rate'] / health['rps']:8.1%}   (goal: 50% or more)")
    print(f"ratio requests / health          {2 * cycles['rate'] / health['rps']:8.1%}")
    print(f"raw Lua hold + release (Python)  {lua:8.0f} cycles/s  (4 threads, no HTTP)")
    print(f"best available + release         {best['rate']:8.0f} cycles/s ({best['errors']} errors): "
          f"{best['rate'] / cycles['rate']:.0%} of explicit holds (goal: 80% or more)")
    for seats, figures, goal in ((320, small, 1), (5000, large, 5)):
        print(f"best-available script, {seats:4d} seats  execution p50 {figures['script'][0]:.2f} ms  "
              f"p99 {figures['script'][1]:.2f} ms (SLOWLOG, {figures['count']} calls; goal: p99 < {goal} ms); "
              f"call from Python p50 {figures['call'][0]:.2f} ms  p99 {figures['call'][1]:.2f} ms")


if __name__ == "__main__":
    main()
