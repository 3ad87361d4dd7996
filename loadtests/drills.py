"""Fault drills against the running stack (``make up``), each under a running rush.

    .venv/bin/python -m loadtests.drills [all | app | redis | rabbitmq | worker | scheduler ...]
                                         [--threads 16] [--seconds 40]

Each drill: a rush on a fresh 300-seat showtime (customers read the seat map, hold seats,
reserve and pay or release; others browse the movies) runs for ``--seconds``; the fault
comes 8 s in; then the drill waits for the system to recover, runs the invariant audit,
and prints a verdict with the errors clients saw (reads and writes apart; a 409 is a
correct answer, not an error) and how long recovery took.

  app        SIGKILL one app instance (master and workers); supervisord starts it again
  redis      stop Redis (every key is lost: it keeps nothing on disk), start it 5 s later
  rabbitmq   stop RabbitMQ for 20 s
  worker     SIGKILL the worker; supervisord starts it again
  scheduler  start a second scheduler, then SIGKILL the supervised one

Loopback only; bounded in time; whatever happens, every server it stopped is started
again (``scripts/services.sh``) and every process it started is stopped.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
from dotenv import dotenv_values

from loadtests.audit import audit
from loadtests.bench_catalog import require_loopback
from loadtests.run import pick_showtime, sign_in
from loadtests.servers import stop_process

ROOT = Path(__file__).resolve().parent.parent
HOST = "http://127.0.0.1:8000"
ADMIN = "http://127.0.0.1:8090"
CTL = [str(ROOT / ".venv" / "bin" / "supervisorctl"), "-c", str(ROOT / "scripts" / "supervisord.conf")]


def ctl(*args: str) -> str:
    return subprocess.run([*CTL, *args], capture_output=True, text=True, timeout=60).stdout.strip()


def supervised_pid(name: str) -> int:
    return int(ctl("pid", name))


def wait_for(predicate, timeout: float, step: float = 0.25) -> float | None:
    """Seconds until ``predicate()`` held, or None if it did not within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except (requests.RequestException, ValueError, subprocess.SubprocessError):
            pass
        time.sleep(step)
    return None


def _answered(outcome) -> bool:
    """A status that is an answer, not an error: success, or a 409 (the seat was taken)."""
    return isinstance(outcome, int) and (outcome < 400 or outcome == 409)


@dataclass
class Load:
    """A rush on one showtime plus browsing, from threads; what clients saw, by kind."""

    showtime: int
    tokens: list[str]
    threads: int
    stop: threading.Event = field(default_factory=threading.Event)
    seen: Counter = field(default_factory=Counter)
    errors: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = 0.0

    def note(self, kind: str, outcome) -> None:
        with self.lock:
            self.seen[(kind, outcome)] += 1
            if not _answered(outcome):
                self.errors.append((round(time.monotonic() - self.started, 1), kind, outcome))

    def call(self, session, kind: str, method: str, path: str, **kw):
        try:
            response = session.request(method, HOST + path, timeout=15, **kw)
        except requests.RequestException as exc:
            self.note(kind, type(exc).__name__)
            return None
        self.note(kind, response.status_code)
        return response

    def customer(self, token: str) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        seats_path = f"/api/v1/showtimes/{self.showtime}/seats"
        while not self.stop.is_set():
            response = self.call(session, "read", "GET", seats_path)
            if response is None or response.status_code != 200:
                time.sleep(0.2)
                continue
            free = [s["id"] for s in response.json()["seats"] if s["status"] == "available"]
            if not free:
                time.sleep(0.5)
                continue
            held = self.call(session, "write", "POST", f"/api/v1/showtimes/{self.showtime}/holds",
                             json={"seat_ids": random.sample(free, min(len(free), random.choice([1, 1, 2])))})
            if held is None or held.status_code != 201:
                continue
            hold_id = held.json()["id"]
            if random.random() < 0.3:
                self.call(session, "write", "POST", "/api/v1/reservations",
                          json={"hold_id": hold_id, "payment_token": "tok_visa"})
            else:
                self.call(session, "write", "DELETE", f"/api/v1/holds/{hold_id}")
            time.sleep(random.uniform(0.05, 0.3))

    def browser(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            self.call(session, "read", "GET", "/api/v1/movies")
            time.sleep(random.uniform(0.05, 0.2))

    def run(self) -> list[threading.Thread]:
        self.started = time.monotonic()
        threads = [threading.Thread(target=self.customer, args=(self.tokens[i % len(self.tokens)],), daemon=True)
                   for i in range(self.threads)]
        threads += [threading.Thread(target=self.browser, daemon=True) for _ in range(max(2, self.threads // 4))]
        for thread in threads:
            thread.start()
        return threads

    def summary(self) -> str:
        parts = []
        for kind in ("read", "write"):
            total, bad = 0, Counter()
            for (k, outcome), n in self.seen.items():
                if k == kind:
                    total += n
                    if not _answered(outcome):
                        bad[outcome] += n
            parts.append(f"{kind}s {total}, errors {sum(bad.values())}" + (f" {dict(bad)}" if bad else ""))
        conflicts = sum(n for (_, outcome), n in self.seen.items() if outcome == 409)
        return "; ".join(parts) + f"; correct 409s {conflicts}"


# -- the faults ------------------------------------------------------------------------------
def backend_state(name: str) -> str:
    status = requests.get(ADMIN + "/status", timeout=5).json()
    return next(b["state"] for b in status["backends"] if b["name"] == name)


def drill_app(load: Load) -> tuple[str, float | None]:
    victim, address = "app:app2", "127.0.0.1:8002"
    pid = supervised_pid(victim)
    os.killpg(pid, signal.SIGKILL)  # supervisord made it a process group leader: master and workers
    killed = time.monotonic()
    wait_for(lambda: backend_state(address) == "down", 20)
    back = wait_for(lambda: backend_state(address) == "up" and supervised_pid(victim) != pid, 60)
    return (f"killed {victim} (pid {pid}, its process group); supervisord restarted it",
            None if back is None else time.monotonic() - killed)


def drill_redis(load: Load) -> tuple[str, float | None]:
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=30)
    stopped = time.monotonic()
    time.sleep(5)
    subprocess.run([str(ROOT / "scripts" / "services.sh")], capture_output=True, timeout=180)
    healthy = wait_for(lambda: requests.get(HOST + "/ready", timeout=5).status_code == 200, 60)
    seat_map = f"{HOST}/api/v1/showtimes/{load.showtime}/seats"
    served = wait_for(lambda: requests.get(seat_map, timeout=5).status_code == 200, 60)
    return ("Redis stopped (all keys lost) and started again 5 s later",
            None if healthy is None or served is None else time.monotonic() - stopped)


def drill_rabbitmq(load: Load) -> tuple[str, float | None]:
    subprocess.run(["rabbitmqctl", "stop_app"], capture_output=True, timeout=120)
    stopped = time.monotonic()
    try:
        time.sleep(20)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)
    drained = wait_for(lambda: _pipeline_drained(), 120, 1)
    return ("RabbitMQ stopped for 20 s", None if drained is None else time.monotonic() - stopped)


def drill_worker(load: Load) -> tuple[str, float | None]:
    pid = supervised_pid("worker")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    restarted = wait_for(lambda: supervised_pid("worker") not in (0, pid), 60)
    drained = wait_for(lambda: _pipeline_drained(), 120, 1)
    return (f"SIGKILL to the worker (pid {pid}); supervisord restarted it",
            None if restarted is None or drained is None else time.monotonic() - killed)


def drill_scheduler(load: Load) -> tuple[str, float | None]:
    env = {**os.environ, **{k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}}
    log = open(ROOT / "var" / "log" / "scheduler-drill.log", "ab")
    second = subprocess.Popen([sys.executable, "-m", "worker.scheduler"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        time.sleep(5)  # both running: one acts, one skips
        pid = supervised_pid("scheduler")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        before = _job_runs()
        acted = wait_for(lambda: _job_runs() > before, 60, 0.5)
        drained = wait_for(lambda: _pipeline_drained(), 120, 1)
        return (f"second scheduler started (pid {second.pid}); SIGKILL to the supervised one (pid {pid})",
                None if acted is None or drained is None else time.monotonic() - killed)
    finally:
        stop_process(second, timeout=30)
        log.close()


def _job_runs() -> float:
    """Expiry job runs that acted, any scheduler (from the operators' metrics)."""
    for line in requests.get(HOST + "/metrics", timeout=10).text.splitlines():
        if line.startswith('marquee_scheduler_job_runs_total{job="expire_unpaid_reservations",outcome="acted"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _pipeline_drained() -> bool:
    """No unpublished outbox row, no pending reservation, no message waiting."""
    metrics = {}
    for line in requests.get(HOST + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            metrics[key] = float(value)
    queued = sum(v for k, v in metrics.items() if k.startswith("marquee_queue_messages{") and ".dead" not in k)
    return (metrics.get("marquee_outbox_unpublished", 1) == 0 and queued == 0
            and metrics.get('marquee_reservations{status="pending_payment"}', 1) == 0
            and metrics.get("marquee_broker_up", 0) == 1)


DRILLS = {"app": drill_app, "redis": drill_redis, "rabbitmq": drill_rabbitmq, "worker": drill_worker,
          "scheduler": drill_scheduler}


def run_drill(name: str, threads: int, seconds: float) -> bool:
    tokens = sign_in(HOST, threads)  # afresh each drill: a series outlasts an access token
    showtime, _ = pick_showtime(HOST)
    print(f"\n== drill {name}: showtime {showtime}, {threads} customers + browsers, {seconds:g} s")
    load = Load(showtime, tokens, threads)
    workers = load.run()
    outcome = "not run"
    recovery = None
    try:
        time.sleep(8)
        fault_at = time.monotonic() - load.started
        outcome, recovery = DRILLS[name](load)
        time.sleep(max(0.0, seconds - (time.monotonic() - load.started)))
    finally:
        load.stop.set()
        for worker in workers:
            worker.join(30)
        subprocess.run([str(ROOT / "scripts" / "services.sh")], capture_output=True, timeout=300)
        subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)
    print(f"  fault at {fault_at:.1f} s: {outcome}")
    print(f"  clients saw: {load.summary()}")
    if load.errors:
        print(f"  errors (s after start, kind, what): {load.errors[:12]}{' ...' if len(load.errors) > 12 else ''}")
    print(f"  recovery: {'%.1f s' % recovery if recovery is not None else 'NOT RECOVERED in time'}")
    ok = audit(showtime, settle=120, out=lambda line: print("  " + line))
    read_errors = sum(1 for _, kind, _ in load.errors if kind == "read")
    verdict = ok and recovery is not None and (name != "app" or read_errors == 0)
    print(f"  verdict: {'PASS' if verdict else 'FAIL'}")
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drills", nargs="*", default=["all"], choices=["all", *DRILLS])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    require_loopback(HOST)
    names = list(DRILLS) if "all" in args.drills else args.drills
    results = {name: run_drill(name, args.threads, args.seconds) for name in names}
    print("\n" + "  ".join(f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in results.items()))
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
