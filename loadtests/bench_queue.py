"""Waiting-room queue benchmark: the queue's Redis scripts alone, no HTTP, no database.

    .venv/bin/python -m loadtests.bench_queue [--redis redis://127.0.0.1:6379/0] [--customers 100000]
        [--processes 6] [--pipeline 500]

Against Redis on loopback, under a key prefix of its own (``mqbench:wr:``) whose keys it
deletes at the end (by SCAN, never FLUSHALL), bounded by ``--customers``. ``WaitingRoomStore``
runs the scripts the app instances and the scheduler run; each case is a showtime's room
of its own:

1. joins before the opening (the pre-queue: a random score each): one connection, one join
   per round trip (an app instance's request does one); one connection, ``--pipeline`` joins
   per round trip; ``--processes`` processes pipelining at once (a fleet of app instances);
2. joins after the opening (each takes the next number), ``--processes`` pipelining;
3. the opening of the pre-queue room (its ``--customers`` get their numbers);
4. admissions, every customer of both rooms, in the largest steps the scheduler's script
   takes (two seconds' worth at the highest rate, 60,000 a minute: 2,000 a step; each
   step is run as if two seconds had passed), and the step's time for 100 to 2,000;
5. Redis's own CPU (``INFO CPU``, user + system, deltas over each case: the server is
   shared, anything else running meanwhile is counted too), the scripts' own execution
   time (``INFO commandstats``, EVALSHA: without the I/O around it) and memory
   (``used_memory`` deltas) per waiting and per admitted customer.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import statistics
import time

from dotenv import load_dotenv

from app.adapters.redis_store import RedisStore
from app.adapters.waiting_room_store import WaitingRoomStore, new_entry_id, room_key
from loadtests.bench_catalog import require_loopback

PREFIX = "mqbench:wr:"
RATE = 60000  # admissions a minute: the highest a room takes (services.waiting_room.LIMITS)
STEP = 2000  # the most one admission step admits: two seconds' worth at RATE
DAY_MS = 86_400_000
SCORES = secrets.SystemRandom()  # as the store draws them


def store_at(url: str) -> WaitingRoomStore:
    return WaitingRoomStore(RedisStore(url, PREFIX))


def redis_now_ms(rooms: WaitingRoomStore) -> int:
    seconds, micros = rooms.store.client.time()
    return seconds * 1000 + micros // 1000


def open_room(rooms: WaitingRoomStore, showtime: int, *, opened: bool) -> None:
    """A room admitting up to RATE a minute with no limit on active sessions, open now or
    in a day."""
    now = redis_now_ms(rooms)
    opens_at = now - 1000 if opened else now + DAY_MS
    rooms.configure(showtime, opens_at, "bench", RATE, 10_000_000, 3_600_000, now + 2 * DAY_MS)


def redis_cpu(rooms: WaitingRoomStore) -> float:
    info = rooms.store.client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def redis_memory(rooms: WaitingRoomStore) -> int:
    return rooms.store.client.info("memory")["used_memory"]


def script_time(rooms: WaitingRoomStore) -> tuple[int, int]:
    """(calls, microseconds) of every EVALSHA so far: the scripts' own execution, no I/O."""
    stats = rooms.store.client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def script_us(rooms: WaitingRoomStore, before: tuple[int, int]) -> float:
    calls, usec = script_time(rooms)
    return (usec - before[1]) / max(1, calls - before[0])


def join_batch(rooms: WaitingRoomStore, showtime: int, users: range, pipeline: int) -> None:
    """Join ``users``, ``pipeline`` joins per round trip (1: one call each, as the API does)."""
    if pipeline <= 1:
        for user in users:
            rooms.join(showtime, user)
        return
    keys = rooms.keys(showtime)
    script = rooms._join  # the store's join script, queued on a pipeline (the API calls it one at a time)
    for start in range(users.start, users.stop, pipeline):
        pipe = rooms.store.client.pipeline(transaction=False)
        for user in range(start, min(start + pipeline, users.stop)):
            script(keys=keys, args=[user, new_entry_id(showtime), SCORES.random()], client=pipe)
        pipe.execute()


def _joiner(url: str, showtime: int, users: range, pipeline: int, ready, go, out) -> None:
    rooms = store_at(url)
    rooms.store.client.ping()  # connected before the start
    ready.wait()
    go.wait()
    started = time.perf_counter()
    join_batch(rooms, showtime, users, pipeline)
    out.put(time.perf_counter() - started)


def joins(url: str, showtime: int, customers: int, processes: int, pipeline: int) -> dict:
    """Join ``customers`` from ``processes`` processes at once: joins/s, Redis CPU and memory."""
    rooms = store_at(url)
    context = multiprocessing.get_context("fork")
    ready, go, out = context.Barrier(processes + 1), context.Event(), context.Queue()
    share = -(-customers // processes)
    workers = [context.Process(target=_joiner, args=(url, showtime, range(1 + i * share, 1 + min(customers, (i + 1) * share)),
                                                     pipeline, ready, go, out)) for i in range(processes)]
    for worker in workers:
        worker.start()
    ready.wait()
    cpu, memory, scripts = redis_cpu(rooms), redis_memory(rooms), script_time(rooms)
    started = time.perf_counter()
    go.set()
    times = [out.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    cpu = redis_cpu(rooms) - cpu
    return {"customers": customers, "seconds": elapsed, "rate": customers / elapsed, "slowest": max(times),
            "cpu": cpu, "cpu_per_join_us": cpu / customers * 1e6, "script_us": script_us(rooms, scripts),
            "memory": redis_memory(rooms) - memory}


def admit_everyone(rooms: WaitingRoomStore, showtime: int) -> dict:
    """Admission steps of STEP until every number is admitted, each as if two seconds had
    passed since the last: the steps' times, admissions/s, Redis CPU and memory."""
    client, key = rooms.store.client, room_key(rooms.store, showtime)
    cpu, memory, scripts = redis_cpu(rooms), redis_memory(rooms), script_time(rooms)
    admitted, steps, waiting = 0, [], True
    while waiting:
        client.hset(key, "tick_ms", redis_now_ms(rooms) - STEP * 60_000 // RATE)
        started = time.perf_counter()
        tick = rooms.tick(showtime)
        steps.append(time.perf_counter() - started)
        if tick.admitted == 0:
            raise SystemExit(f"admission stalled after {admitted}: {tick}")
        admitted += tick.admitted
        waiting = tick.serving < tick.last
    cpu = redis_cpu(rooms) - cpu
    return {"admitted": admitted, "steps": len(steps), "seconds": sum(steps), "rate": admitted / sum(steps),
            "step_p50_ms": statistics.median(steps) * 1000, "step_max_ms": max(steps) * 1000,
            "cpu": cpu, "cpu_per_admission_us": cpu / admitted * 1e6,
            "script_per_admission_us": script_us(rooms, scripts) * len(steps) / admitted,
            "memory": redis_memory(rooms) - memory}


def step_times(rooms: WaitingRoomStore, showtime: int, sizes=(100, 500, 1000, 2000), runs: int = 5) -> dict:
    """The admission step's time (the call, loopback included) by how many it admits (a
    step may admit one or two more: the milliseconds between setting its clock and running it)."""
    client, key = rooms.store.client, room_key(rooms.store, showtime)
    join_batch(rooms, showtime, range(1, 1 + runs * (sum(sizes) + len(sizes))), 500)
    times = {}
    for size in sizes:
        taken = []
        for _ in range(runs):
            client.hset(key, "tick_ms", redis_now_ms(rooms) - size * 60_000 // RATE)
            started = time.perf_counter()
            tick = rooms.tick(showtime)
            taken.append(time.perf_counter() - started)
            if tick.admitted < size:
                raise SystemExit(f"a step of {size} admitted {tick.admitted}: {tick}")
        times[size] = statistics.median(taken) * 1000
    return times


def main() -> None:
    load_dotenv(override=False)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--pipeline", type=int, default=500)
    args = parser.parse_args()
    require_loopback(args.redis)
    rooms = store_at(args.redis)
    if rooms.store.delete_prefixed():
        print(f"(deleted the keys a previous run left under {PREFIX})")
    n = args.customers
    try:
        for showtime, opened in ((1, False), (2, False), (3, False), (4, True), (5, True)):
            open_room(rooms, showtime, opened=opened)
        single = joins(args.redis, 1, n, 1, 1)
        pipelined = joins(args.redis, 2, n, 1, args.pipeline)
        fleet = joins(args.redis, 3, n, args.processes, args.pipeline)
        after = joins(args.redis, 4, n, args.processes, args.pipeline)
        memory_waiting = fleet["memory"] / n
        rooms.store.client.hset(room_key(rooms.store, 3), "opens_at", redis_now_ms(rooms) - 1)
        started = time.perf_counter()
        rooms.entry("3.0000000000000000")  # any read opens a room whose time has come
        opening_ms = (time.perf_counter() - started) * 1000
        shuffled = admit_everyone(rooms, 3)
        numbered = admit_everyone(rooms, 4)
        steps = step_times(rooms, 5)
        stats = rooms.stats(3)
        assert stats.admitted == n and stats.active == n, stats
    finally:
        removed = rooms.store.delete_prefixed()
    print(f"Redis {args.redis}, {n:,} customers a case; {args.processes} processes pipelining {args.pipeline} a round trip")
    print(f"(keys deleted afterwards: {removed:,})")
    for name, case in (("joins before the opening, 1 connection, 1 a round trip", single),
                       (f"joins before the opening, 1 connection, pipelined {args.pipeline}", pipelined),
                       (f"joins before the opening, {args.processes} processes pipelined", fleet),
                       (f"joins after the opening, {args.processes} processes pipelined", after)):
        print(f"  {name:62s} {case['rate']:9,.0f} joins/s  ({case['seconds']:.1f} s; Redis CPU "
              f"{case['cpu']:.1f} s, {case['cpu_per_join_us']:.1f} us a join: {1e6 / case['cpu_per_join_us']:,.0f} "
              f"joins per Redis CPU-second; the script itself {case['script_us']:.1f} us)")
    print(f"  Redis memory per waiting customer (pre-queue): {memory_waiting:.0f} bytes; "
          f"with a number (after the opening): {after['memory'] / n:.0f} bytes")
    print(f"  the opening of {n:,} shuffled customers: {opening_ms:.1f} ms (one step)")
    for name, case in (("admissions, shuffled pre-queue numbers", shuffled), ("admissions, numbers given at joining", numbered)):
        print(f"  {name:62s} {case['rate']:9,.0f} admissions/s  ({case['admitted']:,} in {case['steps']} steps of "
              f"{STEP:,}: step p50 {case['step_p50_ms']:.1f} ms, max {case['step_max_ms']:.1f} ms; Redis CPU "
              f"{case['cpu_per_admission_us']:.1f} us an admission, the script {case['script_per_admission_us']:.1f} us; "
              f"memory {case['memory'] / case['admitted']:+.0f} "
              f"bytes an admitted customer)")
    print("  admission step time by size (median of 5): "
          + ", ".join(f"{size:,}: {ms:.1f} ms" for size, ms in steps.items()))


if __name__ == "__main__":
    main()
