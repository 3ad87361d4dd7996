"""Run a Locust scenario headless against the running stack, then the invariant audit.

    .venv/bin/python -m loadtests.run {browse,rush,mixed} [--users N] [--spawn-rate R]
        [--run-time 90s] [--host http://127.0.0.1:8000] [--compare-direct http://127.0.0.1:8001]
        [--seats best|pick] [--map watch|poll]
    .venv/bin/python -m loadtests.run onsale [--early 2000] [--late 1000] [--admit-per-minute 600]
        [--max-active 50] [--session-seconds 120] [--wait stream|poll] [--streams shared|each]
        (see loadtests/onsale.py)

- picks, for rush and mixed, the soonest showtime on a 300+ seat screen with every seat
  free (the demo data has one a screen a day), and names it;
- signs in as many demo customers as there are users beforehand (customers who open the
  page before the sale starts), so the run measures the on-sale and not argon2;
- runs Locust with its HTML report and CSVs in ``var/loadtests/<scenario>*``;
- prints requests/s and p50/p95/p99 per route, correct refusals, errors (5xx, timeouts,
  surprises) and, for the rush, seats sold against seats available;
- rush and mixed customers hold by best available (``--seats best``, the default) or name
  seats they chose on the map (``--seats pick``); the rush reports its hold attempts and
  how many were refused (409), by problem code, and the sold-out time: from the first hold
  attempt until a seat-map poll (every 0.5 s) found no seat a customer could hold;
- rush customers follow the seat map on its event stream (``--map watch``, the default) or
  read it again before every try (``--map poll``);
- runs the audit (``loadtests.audit``) and exits non-zero if it fails or if any request
  failed.

``--compare-direct URL`` (browse) runs the same load a second time against one app
instance, directly, and prints both.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from dotenv import dotenv_values

from app.services.demo import DEMO_EMAIL, DEMO_PASSWORD
from app.services.seat_choice import COMPANION, WHEELCHAIR
from loadtests.bench_catalog import require_loopback

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "loadtests"
CLASSES = {"browse": ["Browser"], "rush": ["RushCustomer"], "mixed": ["Browser", "RushCustomer", "CatalogAdmin"],
           "onsale": ["OnsaleCustomer"]}


def pick_showtime(host: str) -> tuple[int, int]:
    """The soonest showtime, at least two hours away, on a 300+ seat screen, all seats free,
    with no waiting room (the demo's on-sale has one; the onsale scenario turns one on)."""
    soon = datetime.now(timezone.utc) + timedelta(hours=2)
    for day in range(0, 8):
        date = (datetime.now(timezone.utc) + timedelta(days=day)).date().isoformat()
        shows = requests.get(f"{host}/api/v1/showtimes", params={"date": date, "page_size": 100}, timeout=10).json()
        for show in sorted(shows, key=lambda s: s["starts_at"]):
            if datetime.fromisoformat(show["starts_at"].replace("Z", "+00:00")) < soon:
                continue
            seats = requests.get(f"{host}/api/v1/showtimes/{show['id']}/seats", timeout=10).json()["seats"]
            if len(seats) < 300 or any(s["status"] != "available" for s in seats):
                continue
            if requests.get(f"{host}/api/v1/showtimes/{show['id']}/queue/status", timeout=10).status_code == 404:
                return show["id"], len(seats)
    raise SystemExit("no untouched 300-seat showtime in the coming week: run `make up` to top them up")


def sign_in(host: str, count: int) -> list[str]:
    """Access tokens of demo customers 1..count (parallel logins, before the load starts)."""
    def login(n: int) -> str:
        for _ in range(3):
            response = requests.post(f"{host}/api/v1/auth/login", timeout=60,
                                     json={"email": DEMO_EMAIL.format(n=n), "password": DEMO_PASSWORD})
            if response.status_code == 200:
                return response.json()["access_token"]
            time.sleep(1)
        raise SystemExit(f"cannot sign in customer{n}: {response.status_code} {response.text[:200]}")

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(login, range(1, count + 1)))
    print(f"signed in {count} demo customers in {time.monotonic() - started:.0f} s")
    return tokens


TOKEN_SECONDS = 900  # ACCESS_TOKEN_SECONDS's default


def cached_tokens(path: Path, count: int, needed_for: float = 300) -> list[str] | None:
    """The previous sign-ins when they will outlive this run by two minutes."""
    try:
        saved = json.loads(path.read_text())
        age = time.time() - saved["signed_at"]
        if age + needed_for + 120 < TOKEN_SECONDS and len(saved["tokens"]) >= count:
            print(f"reusing {count} sign-ins from {path.relative_to(ROOT)} ({age:.0f} s old)")
            return saved["tokens"][:count]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def save_tokens(path: Path, tokens: list[str]) -> None:
    path.write_text(json.dumps({"signed_at": time.time(), "tokens": tokens}))


def seconds_of(run_time: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(run_time[:-1]) * units[run_time[-1]] if run_time[-1] in units else float(run_time)


def admin_token(host: str) -> str:
    env = {**dotenv_values(ROOT / ".env"), **os.environ}
    response = requests.post(f"{host}/api/v1/auth/login", timeout=30,
                             json={"email": env.get("ADMIN_EMAIL"), "password": env.get("ADMIN_PASSWORD")})
    response.raise_for_status()
    return response.json()["access_token"]


def run_locust(scenario: str, host: str, users: int, spawn_rate: float, run_time: str, env: dict,
               label: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    prefix = OUT / label
    command = [str(ROOT / ".venv" / "bin" / "locust"), "-f", str(ROOT / "loadtests" / "locustfile.py"),
               "--headless", "-u", str(users), "-r", str(spawn_rate), "-t", run_time, "--host", host,
               "--html", f"{prefix}.html", "--csv", str(prefix), "--only-summary", "--stop-timeout", "30",
               "--exit-code-on-error", "0", *CLASSES[scenario]]
    print("$ " + " ".join(command[1:]))
    with open(f"{prefix}.log", "wb") as log:
        subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, check=False, stdout=log,
                       stderr=subprocess.STDOUT)
    if "Traceback" in Path(f"{prefix}.log").read_text(errors="replace"):
        print(f"  Locust reported exceptions: see {prefix}.log")
    return prefix


def summarize(prefix: Path) -> dict:
    """Per-route figures from Locust's stats CSV; refusals and errors apart."""
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    failures = list(csv.DictReader(open(f"{prefix}_failures.csv"))) if Path(f"{prefix}_failures.csv").exists() else []
    print(f"  {'request':48s} {'count':>7s} {'fail':>5s} {'req/s':>7s} {'p50':>6s} {'p95':>6s} {'p99':>6s}  ms")
    total = None
    for row in rows:
        if row["Name"] == "Aggregated":
            total = row
            continue
        print(f"  {row['Type'] + ' ' + row['Name']:48s} {row['Request Count']:>7s} {row['Failure Count']:>5s} "
              f"{float(row['Requests/s']):7.1f} {row['50%']:>6s} {row['95%']:>6s} {row['99%']:>6s}")
    if total:
        print(f"  {'all':48s} {total['Request Count']:>7s} {total['Failure Count']:>5s} "
              f"{float(total['Requests/s']):7.1f} {total['50%']:>6s} {total['95%']:>6s} {total['99%']:>6s}")
    refusals = sum(int(r["Request Count"]) for r in rows if " [409 " in r["Name"])
    errors = sum(int(r["Occurrences"]) for r in failures)
    server_errors = sum(int(r["Occurrences"]) for r in failures
                        if "unexpected 5" in r["Error"] or "HTTPError('5" in r["Error"])
    for failure in failures[:10]:
        print(f"  failure: {failure['Method']} {failure['Name']}: {failure['Error'][:150]} x{failure['Occurrences']}")
    print(f"  correct refusals (409): {refusals}; errors: {errors} (of which 5xx: {server_errors})")
    return {"rps": float(total["Requests/s"]) if total else 0.0, "errors": errors, "refusals": refusals,
            "server_errors": server_errors}


HOLDS = "/showtimes/[id]/holds"
REFUSAL_CODES = ("seats_unavailable", "not_enough_seats", "orphan_seat")
Attempt = tuple[float, str, int]  # a hold attempt: wall-clock time sent, outcome (201, the 409's code, failed), party


def hold_outcomes(prefix: Path) -> str:
    """Hold attempts and their outcomes, from the stats CSV: the locustfile names a refused
    hold after its problem's code (``... [409 not_enough_seats]``)."""
    rows = [r for r in csv.DictReader(open(f"{prefix}_stats.csv")) if r["Type"] == "POST" and r["Name"].startswith(HOLDS)]
    attempts = sum(int(r["Request Count"]) for r in rows)
    codes: dict[str, int] = {}
    for row in rows:
        refusal = re.search(r"\[409 (\w+)\]", row["Name"])
        if refusal:
            codes[refusal.group(1)] = codes.get(refusal.group(1), 0) + int(row["Request Count"])
    refused = sum(codes.values())
    failed = sum(int(r["Failure Count"]) for r in rows)
    others = {code: n for code, n in codes.items() if code not in REFUSAL_CODES}
    by_code = ", ".join(f"{code} {codes.get(code, 0):,}" for code in REFUSAL_CODES)
    other = f"other {sum(others.values()):,}" + (f" ({', '.join(f'{c} {n:,}' for c, n in others.items())})" if others else "")
    return (f"hold attempts: {attempts:,}; held (201): {attempts - refused - failed:,}; refused (409): {refused:,} "
            f"({100 * refused / max(attempts, 1):.1f}%): {by_code}, {other}; failed: {failed:,}")


@dataclass
class SeatCount:
    """One poll of the seat map: when it was sent and answered (wall clock), and its seats
    by status; ``free`` leaves out wheelchair spaces and companion seats, which the rush's
    customers never hold (best available keeps them for accessible parties)."""

    sent: float
    answered: float
    free: int
    accessible_free: int
    held: int
    booked: int


class SoldOutWatch(threading.Thread):
    """Polls the rush showtime's seat map every 0.5 s while Locust runs."""

    def __init__(self, host: str, showtime: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = f"{host}/api/v1/showtimes/{showtime}/seats", interval
        self.counts: list[SeatCount] = []
        self.done = threading.Event()

    def run(self) -> None:
        with requests.Session() as session:
            while not self.done.is_set():
                sent = time.time()
                try:
                    response = session.get(self.url, timeout=30)
                    if response.status_code == 200:
                        self.counts.append(self.count(sent, response.json()["seats"]))
                except (requests.RequestException, ValueError, KeyError):
                    pass  # a poll lost under load: the next one counts
                self.done.wait(max(0.0, sent + self.interval - time.time()))

    @staticmethod
    def count(sent: float, seats: list[dict]) -> SeatCount:
        free = [s for s in seats if s["status"] == "available"]
        accessible = sum(1 for s in free if s["category"] in (WHEELCHAIR, COMPANION))
        return SeatCount(sent, time.time(), len(free) - accessible, accessible,
                         sum(1 for s in seats if s["status"] == "held"), sum(1 for s in seats if s["status"] == "booked"))

    def stop(self) -> None:
        self.done.set()
        self.join(35)

    def report(self, holds: list[Attempt]) -> list[str]:
        """The sold-out time, what the seats were then, the refusals before and after it,
        whether seats came free again, and the end."""
        if not holds or not self.counts:
            return ["no sold-out time: " + ("no hold attempt was recorded" if self.counts else "no seat-map poll answered")]
        first_attempt = min(sent for sent, _, _ in holds)
        zero = next((i for i, c in enumerate(self.counts) if c.free == 0), None)
        if zero is None:
            return [f"not sold out during the run: {self.counts[-1].free} seats free at the last poll"]
        at, before = self.counts[zero], self.counts[zero - 1] if zero else None
        later = self.counts[zero + 1:]
        again = [c.free for c in later if c.free]
        end = self.counts[-1]
        return [
            f"sold out {at.answered - first_attempt:.1f} s after the first hold attempt (the first seat-map poll "
            f"with no seat free to hold: sent at {at.sent - first_attempt:.1f} s, answered at "
            f"{at.answered - first_attempt:.1f} s"
            + (f"; the poll before it, with {before.free} free, was sent at {before.sent - first_attempt:.1f} s)"
               if before else ")"),
            f"  then: {at.held} held (holds and reservations awaiting payment), {at.booked} booked (paid); "
            f"{at.accessible_free} wheelchair/companion seats free (kept for accessible parties)",
            "  hold attempts by when they were sent: "
            + refusals_between(holds, first_attempt, before.sent if before else first_attempt, at.answered),
            f"  afterwards seats came free again in {len(again)} of {len(later)} polls (at most {max(again, default=0)} "
            f"at once: failed payments, cancellations; abandoned holds only when their TTL ends)",
            f"  last poll ({end.sent - first_attempt:.0f} s): {end.free} free, {end.held} held, {end.booked} booked",
        ]


def refused_share(name: str, outcomes: list[str]) -> str:
    refused = sum(1 for o in outcomes if o not in ("201", "failed"))
    return f"{name} {len(outcomes):,} ({refused:,} refused, {100 * refused / max(len(outcomes), 1):.1f}%)"


def refusals_between(holds: list[Attempt], first: float, free_until: float, sold_out: float) -> str:
    """Attempts and 409s while a poll still found seats free, around the sell-out (between that
    poll and the one that found none), and after it (seats came back now and then)."""
    return "; ".join([
        refused_share(f"before {free_until - first:.1f} s", [o for t, o, _ in holds if t < free_until]),
        refused_share("in between", [o for t, o, _ in holds if free_until <= t < sold_out]),
        refused_share(f"from {sold_out - first:.1f} s", [o for t, o, _ in holds if t >= sold_out]),
    ])


def refusals_by_party(holds: list[Attempt]) -> str:
    return "; ".join(refused_share(f"{party} seat{'s' if party > 1 else ''}", [o for _, o, p in holds if p == party])
                     for party in sorted({p for _, _, p in holds}))


def hold_log(path: Path) -> list[Attempt]:
    """The locustfile's log of hold attempts."""
    try:
        return [(float(sent), str(outcome), int(party)) for sent, outcome, party in json.loads(path.read_text())["holds"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def run_rush(args: argparse.Namespace, env: dict, label: str, showtime: int) -> dict:
    """The rush with the seat map watched meanwhile; then its holds and its sold-out time."""
    rush_log = OUT / f"{label}_holds.json"
    rush_log.unlink(missing_ok=True)
    watch = SoldOutWatch(args.host, showtime)
    watch.start()
    try:
        prefix = run_locust("rush", args.host, args.users, args.spawn_rate, args.run_time,
                            {**env, "MARQUEE_RUSH_LOG": str(rush_log)}, label)
    finally:
        watch.stop()
    result = summarize(prefix)
    print("  " + hold_outcomes(prefix))
    holds = hold_log(rush_log)
    print("  hold attempts by party size: " + refusals_by_party(holds))
    for line in watch.report(holds):
        print("  " + line)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(CLASSES))
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--spawn-rate", type=float, help="users started a second (default 50; onsale 500)")
    parser.add_argument("--run-time", help="default 90s; onsale: 9m, a bound (it ends when every customer is done)")
    parser.add_argument("--host", default="http://127.0.0.1:8000")
    parser.add_argument("--compare-direct", help="browse only: run again against this instance")
    parser.add_argument("--settle", type=float, default=90, help="seconds the audit waits for work in flight")
    parser.add_argument("--seats", choices=["best", "pick"], default="best",
                        help="rush and mixed: hold by best available (quantity) or by seats picked on the map")
    parser.add_argument("--map", choices=["watch", "poll"], default="watch",
                        help="rush and mixed: follow the seat map's event stream, or poll the map before each try")
    onsale = parser.add_argument_group("onsale")
    onsale.add_argument("--early", type=int, default=2000, help="customers joining in the minute before the opening")
    onsale.add_argument("--late", type=int, default=1000, help="customers joining in the minute after it")
    onsale.add_argument("--admit-per-minute", type=int, default=600)
    onsale.add_argument("--max-active", type=int, default=50)
    onsale.add_argument("--session-seconds", type=int, default=120)
    onsale.add_argument("--wait", choices=["stream", "poll"], default="stream",
                        help="waiting customers follow event: queue on the seat events stream, or poll the status")
    onsale.add_argument("--streams", choices=["shared", "each"], default="shared",
                        help="one seat events stream per Locust process, fanned out to its customers, or one each")
    onsale.add_argument("--lead", type=float, help="seconds from Locust's start to the first arrivals")
    args = parser.parse_args()
    require_loopback(args.host)
    if args.scenario == "onsale":
        from loadtests.onsale import run_onsale

        sys.exit(run_onsale(args))
    args.spawn_rate = args.spawn_rate or 50
    args.run_time = args.run_time or "90s"
    env = {}
    showtime = None
    if args.scenario in ("rush", "mixed"):
        showtime, seats = pick_showtime(args.host)
        env["MARQUEE_SHOWTIME"] = str(showtime)
        env["MARQUEE_SEATS"] = args.seats
        env["MARQUEE_MAP"] = args.map
        print(f"rush showtime: {showtime} ({seats} seats, all free)")
    OUT.mkdir(parents=True, exist_ok=True)
    token_file = OUT / "tokens.json"
    count = min(args.users, 1000)
    tokens = cached_tokens(token_file, count, seconds_of(args.run_time) * 2)
    if tokens is None:
        tokens = sign_in(args.host, count)
        save_tokens(token_file, tokens)
    token_list = OUT / "tokens-run.json"
    token_list.write_text(json.dumps(tokens))
    env["MARQUEE_TOKENS"] = str(token_list)
    if args.scenario == "mixed":
        env["MARQUEE_ADMIN_TOKEN"] = admin_token(args.host)

    label = f"{args.scenario}-{args.seats}-{args.map}" if showtime else args.scenario
    seat_mode = f", seats: {args.seats}, map: {args.map}" if showtime else ""
    print(f"\n{args.scenario}: {args.users} users, spawn {args.spawn_rate}/s, {args.run_time}, {args.host}{seat_mode}")
    if args.scenario == "rush":
        result = run_rush(args, env, label, showtime)
    else:
        result = summarize(run_locust(args.scenario, args.host, args.users, args.spawn_rate, args.run_time, env, label))
    print(f"  report: var/loadtests/{label}.html, CSV: var/loadtests/{label}_*.csv")
    if args.compare_direct and args.scenario == "browse":
        require_loopback(args.compare_direct)
        print(f"\nbrowse direct to one instance ({args.compare_direct}):")
        direct = summarize(run_locust("browse", args.compare_direct, args.users, args.spawn_rate, args.run_time,
                                      env, "browse-direct"))
        print(f"\nbrowse through the proxy {result['rps']:.1f} req/s, direct to one instance "
              f"{direct['rps']:.1f} req/s ({result['rps'] / max(direct['rps'], 0.001):.2f}x)")

    print()
    from loadtests.audit import audit

    ok = audit(showtime, args.settle)
    sys.exit(0 if ok and result["errors"] == 0 else 1)


if __name__ == "__main__":
    main()
