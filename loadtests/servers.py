"""Processes the benchmarks start for themselves: a free loopback port, a gunicorn
instance of the app on it (answering ``/health`` before it is handed back), and a
stop that always ends the process (SIGTERM, then SIGKILL); and the CPU time the
stack's processes spend, by role, for benchmarks that report CPU per operation."""
from __future__ import annotations

import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_gunicorn(env: dict[str, str], port: int, log_path: Path, *, seconds: float = 30,
                   root: Path = ROOT) -> subprocess.Popen:
    """gunicorn with the project's config on 127.0.0.1:``port``, its output in ``log_path``;
    returned once ``/health`` answers 200 (stopped, and SystemExit, if it does not).
    ``root``: another copy of the code to serve (an older commit, to compare against)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", str(root / "gunicorn.conf.py"),
                                 "wsgi:app"], cwd=root, env={**env, "BIND": f"127.0.0.1:{port}"},
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    stop_process(proc)
    raise SystemExit("gunicorn did not start: " + log_path.read_text()[-2000:])


def drop_database(database_url: str, name: str) -> None:
    """Drop a benchmark's scratch database on the server of ``database_url`` (FORCE: the
    benchmark's own pooled connections end too)."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                            dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


# What a process of the stack is, by its command line (``make up``'s processes and the
# servers they use); the first that matches names it.
ROLES = (("app", "gunicorn"), ("worker", "worker.consumer"), ("scheduler", "worker.scheduler"),
         ("live", "-m live"), ("proxy", "-m proxy"), ("postgresql", "postgres"), ("redis", "redis-server"),
         ("rabbitmq", "beam.smp"))


def cpu_seconds(processes) -> float:
    """User + system CPU seconds the processes (``psutil.Process`` or pids) have used so
    far; one that has ended counts nothing."""
    total = 0.0
    for process in processes:
        try:
            total += _busy((process if isinstance(process, psutil.Process) else psutil.Process(process)).cpu_times())
        except psutil.NoSuchProcess:
            pass
    return total


def _busy(times) -> float:
    return times.user + times.system


def cpu_by_role() -> dict[tuple[int, float], tuple[str, float]]:
    """Each stack process's user + system CPU seconds so far, by (pid, start time): a
    snapshot for ``cpu_spent``. Processes of no role (the benchmark itself) are left out."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline", "create_time", "cpu_times"]):
        line = " ".join(proc.info["cmdline"] or ())
        role = next((name for name, mark in ROLES if mark in line), None)
        if role is not None and proc.info["cpu_times"] is not None:
            found[(proc.info["pid"], proc.info["create_time"])] = (role, _busy(proc.info["cpu_times"]))
    return found


def cpu_spent(before: dict, after: dict) -> Counter:
    """CPU seconds each role spent between two ``cpu_by_role`` snapshots (a process
    started meanwhile counts from zero; one that ended is lost)."""
    spent: Counter = Counter()
    for key, (role, seconds) in after.items():
        spent[role] += seconds - before.get(key, (role, 0.0))[1]
    return spent
