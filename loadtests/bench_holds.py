"""Hold benchmark: what the booking logic costs next to the framework itself.

    .venv/bin/python -m loadtests.bench_holds [--base http://127.0.0.1:8000] [--seconds 5] [--concurrency 16]
                                              [--rounds 3] [--skip-scripts]

Against a running stack (``make up``: demo data, demo customers), loopback only,
bounded in time. The HTTP load comes from one asyncio client over ``--concurrency``
keep-alive connections (loadtests/client.py: cheap enough to measure the server, not
itself), the cases alternated ``--rounds`` times, medians reported. Against the same
app instance, it prints:
  - GET /health requests/s (the framework's floor);
  - successful hold-and-release cycles/s (POST a 1-seat hold, DELETE it; each
    connection is a different demo customer on its own seat, so every cycle
    succeeds) and their requests' ratio to the health rate (goal: 70% or more);
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
import statistics
import time
from datetime import datetime, timedelta, timezone

import requests

from loadtests.bench_catalog import bench_parser, percentile_ms, require_loopback, run_threads
from loadtests.client import Connection, Tally, getter, run_clients

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
    for page in range(1, 11):  # past the showtimes that earlier runs (bench_pipeline's too) filled
        shows = requests.get(base + "/api/v1/showtimes", timeout=5,
                             params={"starts_after": after, "page_size": 50, "page": page}).json()
        for show in shows:
            seats = requests.get(f"{base}/api/v1/showtimes/{show['id']}/seats", timeout=5).json()["seats"]
            free = _apart([s for s in seats if s["status"] == "available"
                           and s["category"] not in ("wheelchair", "companion")])
            if len(free) >= 16:
                return {"id": show["id"], "free": free}
        if len(shows) < 50:
            break
    raise SystemExit("no future showtime with 16 free seats apart: run `make up` first")


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


def hold_cycles(base: str, tokens: list[str], showtime: dict, seconds: float, *, best: bool = False) -> Tally:
    """Hold-and-release cycles, one customer per keep-alive connection; a latency per cycle."""
    async def customer(conn: Connection, i: int, tally: Tally, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {tokens[i]}"}
        body = {"quantity": 1} if best else {"seat_ids": [showtime["free"][i]]}
        while time.monotonic() < deadline:
            started = time.perf_counter()
            held = await conn.request("POST", f"/api/v1/showtimes/{showtime['id']}/holds", headers, body)
            if held.status != 201:
                tally.errors += 1
                continue
            released = await conn.request("DELETE", f"/api/v1/holds/{held.json()['id']}", headers)
            if released.status == 204:
                tally.latencies.append(time.perf_counter() - started)
            else:
                tally.errors += 1

    return run_clients(base, customer, len(tokens), seconds)


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
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="the three cases in turn, this many times")
    parser.add_argument("--skip-scripts", action="store_true", help="only the HTTP cases")
    args = parser.parse_args()
    require_loopback(args.base)
    tokens = _tokens(args.base, args.concurrency)
    showtime = _showtime(args.base)
    rounds = []
    for _ in range(args.rounds):  # alternated: a noisy neighbour spreads over every case
        rounds.append({"health": run_clients(args.base, getter(lambda: "/health"), args.concurrency, args.seconds),
                       "explicit": hold_cycles(args.base, tokens, showtime, args.seconds),
                       "best": hold_cycles(args.base, tokens, showtime, args.seconds, best=True)})

    def median(fn):
        return statistics.median(fn(r) for r in rounds)

    health = median(lambda r: r["health"].rate)
    explicit, best = median(lambda r: r["explicit"].rate), median(lambda r: r["best"].rate)
    print(f"target {args.base}, {args.concurrency} keep-alive connections (one asyncio client), "
          f"{args.seconds:.0f}s per case, {args.rounds} rounds alternated (medians), showtime {showtime['id']}")
    for n, r in enumerate(rounds, 1):
        print(f"  round {n}: /health {r['health'].rate:6.0f} req/s; hold + release {r['explicit'].rate:5.0f} cycles/s "
              f"(requests / health {2 * r['explicit'].rate / r['health'].rate:5.1%}); best available "
              f"{r['best'].rate:5.0f} cycles/s; errors {r['health'].errors}/{r['explicit'].errors}/{r['best'].errors}")
    print(f"GET /health                      {health:8.0f} req/s   (p50 {median(lambda r: r['health'].percentile_ms(50)):.1f} ms, "
          f"p99 {median(lambda r: r['health'].percentile_ms(99)):.1f} ms)")
    p50, p99 = (median(lambda r, p=p: r["explicit"].percentile_ms(p)) for p in (50, 99))
    print(f"hold + release cycles            {explicit:8.0f} cycles/s ({2 * explicit:.0f} req/s; "
          f"cycle p50 {p50:.1f} ms, p99 {p99:.1f} ms)")
    print(f"ratio requests / health          {median(lambda r: 2 * r['explicit'].rate / r['health'].rate):8.1%}   (goal: 70% or more)")
    print(f"ratio cycles / health            {median(lambda r: r['explicit'].rate / r['health'].rate):8.1%}")
    print(f"best available + release         {best:8.0f} cycles/s: "
          f"{median(lambda r: r['best'].rate / r['explicit'].rate):.0%} of explicit holds (goal: 80% or more)")
    if args.skip_scripts:
        return
    lua = raw_lua(args.seconds, 4)
    small, large = script_times(320), script_times(5000)
    print(f"raw Lua hold + release (Python)  {lua:8.0f} cycles/s  (4 threads, no HTTP)")
    for seats, figures, goal in ((320, small, 1), (5000, large, 5)):
        print(f"best-available script, {seats:4d} seats  execution p50 {figures['script'][0]:.2f} ms  "
              f"p99 {figures['script'][1]:.2f} ms (SLOWLOG, {figures['count']} calls; goal: p99 < {goal} ms); "
              f"call from Python p50 {figures['call'][0]:.2f} ms  p99 {figures['call'][1]:.2f} ms")


if __name__ == "__main__":
    main()
