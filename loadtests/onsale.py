"""The on-sale: customers for one 320-seat showtime behind its waiting room, through the proxy.

    .venv/bin/python -m loadtests.run onsale [--early 2000] [--late 1000] [--admit-per-minute 600]
        [--max-active 50] [--session-seconds 120] [--wait stream|poll] [--streams shared|each] [--run-time 9m]

``run.py onsale`` runs ``run_onsale`` here; Locust runs the customers (``OnsaleCustomer`` in
``locustfile.py``, one Locust user per customer). In order:

- customer1..N@demo.marquee.test (N = early + late) are made to exist (``flask seed-demo
  --customers N`` when the last cannot sign in: the seed adds the missing ones) and get a
  fresh access token: signed in once (argon2id: a few a second on this machine), then
  renewed by their refresh tokens before each run (``var/loadtests/onsale-sessions.json``);
  none of that is measured;
- the soonest showtime two hours away or more on a 300+ seat screen, every seat free and
  without a waiting room, gets one through the admin API (``PUT
  /showtimes/{id}/waiting-room``) opening ``--lead`` + 60 s later (``--lead``: Locust's
  start), at ``--admit-per-minute`` with ``--max-active`` and ``--session-seconds``;
- Locust runs every customer (``--early`` arrive at random in the minute before the
  opening, ``--late`` in the minute after) and stops when all are done (``--run-time``
  bounds it); meanwhile the CPU of the Locust process, the app instances, the live process
  and the proxy is sampled;
- the report is printed (and written to ``var/loadtests/onsale-summary.json``), then the
  audit runs; the exit status is 1 if the audit fails or a request failed.

What a customer does is ``OnsaleCustomer``'s docstring. How the customers wait
(``--wait``): the queue's public status comes from ``event: queue`` on the seat events
stream (``stream``; until the stream has carried one, and while it is down, the status is
polled, ``GET /showtimes/{id}/queue/status`` once a second) or from that poll alone
(``poll``). By default (``--streams shared``) one stream (and one poller) per Locust process
is shared by all its customers (``SaleWatch``): 3,000 streams parsed by one Python process
next to the stack on two cores would measure Locust, not Marquee. So the live process
serves one stream in such a run, not one per waiting customer; ``--streams each`` gives
every customer its own (for smaller runs, or to measure what they cost). The requests the
app instances serve for waiting customers are the ones each customer sends itself (join,
its entry for its number, its entry for its admission, leaving), counted by the instances
themselves.

The report: 5xx and timeouts; hold and reservation p50/p99 (every hold is an admitted
customer's); the share of hold attempts answered 409; admissions out of number order (from
each admitted entry's number and its admission time, ``admitted_until`` less the session);
how the early joiners' numbers follow their arrival (a shuffle: rank correlation near 0)
and the late ones' (arrival order: 1); seats bought and when the map first showed no seat
free after the opening; the app instances' requests on the queue's routes
(``marquee_http_requests_total`` deltas) per waiting customer and per waiting
customer-minute; the proxy's requests per pool; CPU; the room's figures (admin ``GET``).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import requests
from dotenv import dotenv_values
from prometheus_client.parser import text_string_to_metric_families

from app.services.demo import DEMO_EMAIL, DEMO_PASSWORD
from loadtests.bench_live import _app_instances, _process_on_port
from loadtests.run import OUT, ROOT, admin_token, pick_showtime, run_locust, summarize
from loadtests.servers import cpu_seconds

SESSIONS = OUT / "onsale-sessions.json"
APP_PORTS = (8001, 8002, 8003)
PROXY_ADMIN = "http://127.0.0.1:8090"
LIVE_PORT, PROXY_PORT = 8004, 8000


# --- before the run (not measured) ----------------------------------------------------

def ensure_customers(host: str, count: int) -> None:
    """customer1..count exist: the demo seed adds the missing ones (one shared hash, fast)."""
    response = requests.post(f"{host}/api/v1/auth/login", timeout=60,
                             json={"email": DEMO_EMAIL.format(n=count), "password": DEMO_PASSWORD})
    if response.status_code == 200:
        return
    print(f"customer{count} cannot sign in ({response.status_code}): seeding {count} demo customers")
    env = {**os.environ, **{k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}}
    subprocess.run([str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "seed-demo", "--customers", str(count)],
                   cwd=ROOT, env=env, check=True)


def fresh_tokens(host: str, count: int) -> list[str]:
    """Access tokens of customers 1..count, each renewed by its saved refresh token (a new
    pair: the refresh token is saved again) or, without one that works, signed in."""
    saved = json.loads(SESSIONS.read_text()) if SESSIONS.exists() else {}

    def renew(n: int) -> dict:
        refresh = saved.get(str(n))
        if refresh:
            response = requests.post(f"{host}/api/v1/auth/refresh", headers={"Authorization": f"Bearer {refresh}"},
                                     timeout=60)
            if response.status_code == 200:
                return response.json()
        for _ in range(5):
            response = requests.post(f"{host}/api/v1/auth/login", timeout=60,
                                     json={"email": DEMO_EMAIL.format(n=n), "password": DEMO_PASSWORD})
            if response.status_code == 200:
                return response.json()
            time.sleep(1)
        raise SystemExit(f"cannot sign in customer{n}: {response.status_code} {response.text[:200]}")

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        pairs = list(pool.map(renew, range(1, count + 1)))
    OUT.mkdir(parents=True, exist_ok=True)
    SESSIONS.write_text(json.dumps({str(n): pair["refresh_token"] for n, pair in enumerate(pairs, 1)}))
    print(f"{count} customers with fresh access tokens in {time.monotonic() - started:.0f} s")
    return [pair["access_token"] for pair in pairs]


def open_waiting_room(host: str, admin: str, showtime: int, opens_at: datetime, args: argparse.Namespace) -> dict:
    response = requests.put(f"{host}/api/v1/showtimes/{showtime}/waiting-room", timeout=30,
                            headers={"Authorization": f"Bearer {admin}"},
                            json={"opens_at": opens_at.isoformat(), "admit_per_minute": args.admit_per_minute,
                                  "max_active": args.max_active, "session_seconds": args.session_seconds})
    if response.status_code != 200:
        raise SystemExit(f"cannot turn the waiting room on: {response.status_code} {response.text[:300]}")
    return response.json()


# --- meanwhile ---------------------------------------------------------------------------

def app_requests() -> Counter:
    """Requests each app instance has handled, by (method, route), from their own metrics."""
    counts: Counter = Counter()
    for port in APP_PORTS:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "marquee_http_requests_total":
                    counts[(sample.labels["method"], sample.labels["route"])] += sample.value
    return counts


def proxy_requests() -> Counter:
    """Requests the proxy has relayed, by pool."""
    counts: Counter = Counter()
    for family in text_string_to_metric_families(requests.get(f"{PROXY_ADMIN}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "marquee_proxy_requests_total":
                counts[sample.labels["pool"]] += sample.value
    return counts


class CpuWatch(threading.Thread):
    """CPU seconds spent meanwhile by the Locust process (this process's child), the app
    instances, the live process and the proxy, sampled each second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.groups = {"app instances": _app_instances(), "live process": [_process_on_port(LIVE_PORT)],
                       "proxy": [_process_on_port(PROXY_PORT)]}
        self.start_cpu = {name: cpu_seconds([p for p in group if p]) for name, group in self.groups.items()}
        self.locust_cpu = 0.0
        self.locust_rss = 0
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(1.0):
            for child in psutil.Process().children(recursive=True):
                try:
                    if "locust" in " ".join(child.cmdline()):
                        times = child.cpu_times()
                        self.locust_cpu = max(self.locust_cpu, times.user + times.system)
                        self.locust_rss = max(self.locust_rss, child.memory_info().rss)
                except psutil.Error:
                    pass

    def stop(self) -> dict:
        self.done.set()
        self.join(5)
        elapsed = time.monotonic() - self.started
        used = {name: cpu_seconds([p for p in group if p]) - self.start_cpu[name] for name, group in self.groups.items()}
        used["Locust"] = self.locust_cpu
        return {"seconds": elapsed, "cpu": used, "locust_rss_mb": self.locust_rss / 2**20}


# --- the figures -------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def out_of_order(admitted: list[tuple[int, float]]) -> int:
    """Admissions of a number while a smaller number was admitted later."""
    later_for_smaller, count = float("-inf"), 0
    for _, at in sorted(admitted):
        if at < later_for_smaller:
            count += 1
        later_for_smaller = max(later_for_smaller, at)
    return count


def rank_correlation(pairs: list[tuple[float, float]]) -> float:
    """Spearman's: 1 when the second follows the first's order, near 0 for a shuffle."""
    if len(pairs) < 3:
        return float("nan")
    first = {v: r for r, v in enumerate(sorted(p[0] for p in pairs))}
    second = {v: r for r, v in enumerate(sorted(p[1] for p in pairs))}
    return statistics.correlation([first[a] for a, _ in pairs], [second[b] for _, b in pairs])


def admitted_at(record: dict, session_seconds: int) -> float:
    until = datetime.fromisoformat(record["admitted_until"].replace("Z", "+00:00")).timestamp()
    return until - session_seconds


def analyse(log: dict, opens_at: float, session_seconds: int) -> dict:
    """The figures of the customers' journeys (the Locust log)."""
    customers = [c for c in log["customers"] if c.get("joined")]
    watch = log["watch"] or {}
    holds = [h for c in customers for h in c["holds"]]
    refused = [h for h in holds if h[1].startswith("409")]
    reserves = [c["reserve"] for c in customers if c.get("reserve")]
    admitted = [c for c in customers if c.get("admitted_until")]
    numbers = [(c["number"], admitted_at(c, session_seconds)) for c in admitted]
    early = [(c["joined"], c["number"]) for c in customers if c["early"] and c.get("number")]
    late = [(c["joined"], c["number"]) for c in customers if not c["early"] and c.get("number")]
    waits = []
    for c in customers:
        ended = c.get("seen") or c.get("left") or c["end"]
        waits.append(max(0.0, ended - c["joined"]))
    history = watch.get("history") or []
    sold_out = next((t for t, free, _, _ in history if t >= opens_at and free == 0), None)
    refused_after = [h for h in refused if sold_out is not None and h[0] >= sold_out]
    noticed = [c["seen"] - admitted_at(c, session_seconds) for c in admitted  # by those who knew their number
               if c["number_at"] < admitted_at(c, session_seconds)]
    return {
        "customers": len(customers), "early": sum(1 for c in customers if c["early"]),
        "outcomes": Counter(c["outcome"] for c in customers).most_common(),
        "joins_ms": (percentile([c["join"][1] for c in customers], 50), percentile([c["join"][1] for c in customers], 99)),
        "holds": len(holds), "held": sum(1 for h in holds if h[1] == "201"), "refused": len(refused),
        "refused_after_sold_out": len(refused_after), "holds_after_sold_out":
            sum(1 for h in holds if sold_out is not None and h[0] >= sold_out),
        "refused_by_code": Counter(h[1] for h in holds if h[1] != "201").most_common(),
        "hold_ms": (percentile([h[2] for h in holds], 50), percentile([h[2] for h in holds], 99)),
        "reserves": len(reserves), "reserve_ms": (percentile([r[2] for r in reserves], 50),
                                                  percentile([r[2] for r in reserves], 99)),
        "admitted": len(admitted), "out_of_order": out_of_order(numbers),
        "admission_noticed_s": (percentile(noticed, 50), percentile(noticed, 99)),
        "early_rank_correlation": rank_correlation(early), "late_rank_correlation": rank_correlation(late),
        "seats_bought": sum(c["party"] for c in customers if c["outcome"] == "bought"),
        "sold_out_after_opening_s": None if sold_out is None else sold_out - opens_at,
        "waiting_customers": sum(1 for w in waits if w > 0), "waiting_minutes": sum(waits) / 60,
        "entry_gets": sum(c["entry_gets"] for c in customers),
        "leaves": sum(1 for c in customers if c.get("left")),
        "watch": {k: v for k, v in watch.items() if k not in ("history", "serving")},
    }


def timeouts(prefix: Path) -> int:
    """Failures that were timeouts (Locust's failures CSV)."""
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return 0
    return sum(int(row["Occurrences"]) for row in csv.DictReader(open(path)) if "timed out" in row["Error"].lower()
               or "timeout" in row["Error"].lower())


def queue_requests(before: Counter, after: Counter) -> dict[str, int]:
    """The app instances' requests on the queue's routes during the run, by method and route."""
    return {f"{method} {route}": int(after[(method, route)] - before[(method, route)])
            for method, route in sorted(after) if "queue" in route and after[(method, route)] > before[(method, route)]}


# --- the run -------------------------------------------------------------------------------

def run_onsale(args: argparse.Namespace) -> int:
    host, total = args.host, args.early + args.late
    ensure_customers(host, total)
    showtime, seats = pick_showtime(host)
    tokens = fresh_tokens(host, total)
    token_list = OUT / "onsale-tokens-run.json"
    token_list.write_text(json.dumps(tokens))
    admin = admin_token(host)
    spawn_rate = args.spawn_rate or 500
    lead = args.lead if args.lead is not None else total / spawn_rate + 10
    opens_at = (datetime.now(timezone.utc) + timedelta(seconds=lead + 60)).replace(microsecond=0)
    room = open_waiting_room(host, admin, showtime, opens_at, args)
    print(f"\nonsale: showtime {showtime} ({seats} seats, all free); waiting room opens at {opens_at:%H:%M:%S} UTC: "
          f"{room['admit_per_minute']} admissions a minute, max_active {room['max_active']}, session "
          f"{room['session_seconds']} s; {args.early} customers join in the minute before, {args.late} in the minute "
          f"after; waiting on the {args.wait} ({args.streams})")
    log_path = OUT / "onsale_journeys.json"
    log_path.unlink(missing_ok=True)
    env = {"MARQUEE_SHOWTIME": str(showtime), "MARQUEE_TOKENS": str(token_list),
           "MARQUEE_OPENS_AT": str(opens_at.timestamp()), "MARQUEE_EARLY": str(args.early), "MARQUEE_WAIT": args.wait,
           "MARQUEE_STREAMS": args.streams, "MARQUEE_ONSALE_LOG": str(log_path)}
    apps_before, proxy_before = app_requests(), proxy_requests()
    cpu = CpuWatch()
    cpu.start()
    prefix = run_locust("onsale", host, total, spawn_rate, args.run_time or "9m", env, "onsale")
    used = cpu.stop()
    apps_after, proxy_after = app_requests(), proxy_requests()
    stats = requests.get(f"{host}/api/v1/showtimes/{showtime}/waiting-room", timeout=30,
                         headers={"Authorization": f"Bearer {admin}"}).json().get("stats", {})
    result = {**summarize(prefix), "timeouts": timeouts(prefix)}
    figures = analyse(json.loads(log_path.read_text()), opens_at.timestamp(), args.session_seconds)
    queue = queue_requests(apps_before, apps_after)
    pools = {pool: int(proxy_after[pool] - proxy_before[pool]) for pool in sorted(proxy_after)}
    report(figures, queue, pools, used, stats, result)
    summary = {"showtime": showtime, "opens_at": opens_at.isoformat(), "settings": room, "args": vars(args),
               "figures": figures, "app_queue_requests": queue, "proxy_pools": pools, "cpu": used,
               "room_stats": stats, "locust": result}
    (OUT / "onsale-summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"  report: var/loadtests/onsale.html, CSV: var/loadtests/onsale_*.csv, journeys: {log_path.relative_to(ROOT)}\n")
    from loadtests.audit import audit

    ok = audit(showtime, args.settle)
    return 0 if ok and result["errors"] == 0 else 1


def report(f: dict, queue: dict, pools: dict, used: dict, stats: dict, result: dict) -> None:
    w = f["watch"]
    print(f"  customers: {f['customers']:,} joined ({f['early']:,} before the opening); join p50/p99 "
          f"{f['joins_ms'][0]:.0f}/{f['joins_ms'][1]:.0f} ms")
    print("  outcomes: " + "; ".join(f"{name} {n:,}" for name, n in f["outcomes"]))
    print(f"  errors: {result['errors']} (5xx: {result['server_errors']}, timeouts: {result['timeouts']}); status polls failed: "
          f"{w.get('poll_failures', 0)}; streams failed: {w.get('stream_failures', 0)}")
    print(f"  holds: {f['holds']:,} attempts, {f['held']:,} held, {f['refused']:,} answered 409 "
          f"({100 * f['refused'] / max(f['holds'], 1):.1f}%); not held by code: "
          + (", ".join(f"{code} {n}" for code, n in f["refused_by_code"]) or "none")
          + f"; p50/p99 {f['hold_ms'][0]:.0f}/{f['hold_ms'][1]:.0f} ms; after the map first showed no seat free: "
          f"{f['refused_after_sold_out']} of {f['holds_after_sold_out']} answered 409")
    print(f"  reservations: {f['reserves']:,}, p50/p99 {f['reserve_ms'][0]:.0f}/{f['reserve_ms'][1]:.0f} ms")
    print(f"  admitted: {f['admitted']:,}; out of number order: {f['out_of_order']}; a customer who knew its number "
          f"saw its admission p50/p99 {f['admission_noticed_s'][0]:.2f}/{f['admission_noticed_s'][1]:.2f} s after it")
    print(f"  numbers against arrival (rank correlation): before the opening {f['early_rank_correlation']:.3f} "
          f"(a shuffle: near 0), after it {f['late_rank_correlation']:.3f} (arrival order: 1)")
    sold_out = f["sold_out_after_opening_s"]
    print(f"  seats bought: {f['seats_bought']}; the map first showed no seat free "
          + ("never" if sold_out is None else f"{sold_out:.1f} s after the opening"))
    served = sum(queue.values())
    status = sum(n for route, n in queue.items() if route.endswith("/queue/status"))
    print(f"  app instances, queue routes: {served:,} requests ("
          + ", ".join(f"{route} {n:,}" for route, n in queue.items()) + f"); the public status: {status:,}")
    print(f"    for {f['waiting_customers']:,} waiting customers: {served / max(f['waiting_customers'], 1):.2f} a "
          f"customer (their join, {f['entry_gets']:,} entry reads, {f['leaves']:,} leaves"
          + (": the customers' own count" if served == f["customers"] + f["entry_gets"] + f["leaves"] else "")
          + f"), none repeated while waiting; over the {f['waiting_minutes']:,.0f} customer-minutes of waiting, "
          f"{served / max(f['waiting_minutes'], 1e-9):.2f} a customer-minute (a client reading its entry every 5 s "
          f"would send 12)")
    print(f"  waiting on: {w.get('wait')}, streams: {w.get('streams')} ({w.get('watches')} watching); event: queue "
          f"on the streams {w.get('queue_events', 0):,}, status polls {w.get('polls', 0):,}, seat map polls "
          f"{w.get('map_polls', 0):,}, streams opened {w.get('stream_opens', 0):,}")
    print("  proxy, requests by pool: " + ", ".join(f"{pool} {n:,}" for pool, n in pools.items()))
    print(f"  CPU over {used['seconds']:.0f} s: " + ", ".join(f"{name} {s:.0f} s" for name, s in used["cpu"].items())
          + f"; Locust peak memory {used['locust_rss_mb']:.0f} MB")
    print("  the room: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
