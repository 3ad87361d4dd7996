"""What traces cost: bench_holds' hold-and-release cycles with tracing off, sampled at
10% and at 100%, alternated in one run.

    .venv/bin/python -m loadtests.bench_tracing [--database marquee_bench_tracing]
        [--redis-url redis://127.0.0.1:6379/0] [--seconds 5] [--concurrency 16] [--rounds 3]

Starts three gunicorns of its own (2 workers x 8 threads each, as an app instance of the
stack) on one scratch database (created, migrated and seeded with the demo data, 16
customers) and its own Redis key prefix: one with TRACING off, one with TRACING=on and
``parentbased_traceidratio`` at 0.1, one at 1.0 (JSON lines into a scratch folder: the
development exporter, a file write per span batch), and a second one with tracing off,
whose distance from the first is the run's noise. Then ``--rounds`` times, each in turn:
``/health`` and hold-and-release cycles (loadtests/bench_holds.py) over ``--concurrency``
keep-alive connections. Prints the medians, and the app's CPU time per cycle (its workers'
user + system time over the cycles, from /proc): on a shared machine rates swing with
the neighbours' load, CPU per cycle much less; each case against the untraced one.
The servers are stopped, the Redis keys and the spans removed and the database dropped at
the end, whatever happens.
"""
from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import redis

from loadtests.bench_catalog import bench_parser
from loadtests.bench_holds import _showtime, _tokens, hold_cycles
from loadtests.client import getter, run_clients
from loadtests.servers import cpu_seconds, drop_database, free_port, start_gunicorn, stop_process

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "tracing off": {"TRACING": "off"},
    "sampled 10%": {"TRACING": "on", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "sampled 100%": {"TRACING": "on", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.0"},
    # a second untraced instance: how far two identical ones differ here (the noise floor)
    "off (control)": {"TRACING": "off"},
}


def workers_cpu_seconds(master: int) -> float:
    """CPU time (user + system) used so far by the workers of the gunicorn ``master``:
    per cycle, the cost that other load on the machine does not blur the way it blurs rates."""
    return cpu_seconds(psutil.Process(master).children())


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="marquee_bench_tracing", help="scratch database (dropped at the end)")
    parser.add_argument("--postgres", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--baseline", type=Path, help="a copy of the code from before traces (e.g. `git archive "
                        "<commit> | tar -x -C DIR`): served as a fifth case, what tracing off is measured against")
    args = parser.parse_args()
    cases = dict(CASES)
    if args.baseline:
        cases["before traces"] = {"TRACING": "off"}
    prefix = "mqbenchtrace:"
    spans = Path(tempfile.mkdtemp(prefix="bench_tracing-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACING"))}
    env.update({"DATABASE_URL": f"{args.postgres}/{args.database}", "REDIS_URL": args.redis_url,
                "REDIS_PREFIX": prefix, "AMQP_PREFIX": "mqbenchtrace.", "JWT_SECRET_KEY": secrets.token_urlsafe(40),
                "ADMIN_EMAIL": "", "ADMIN_PASSWORD": "", "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "2",
                "TRACES_DIR": str(spans), "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024",
                "ARGON2_PARALLELISM": "1"})
    subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_database.py"), args.database], check=True,
                   env=env, capture_output=True)
    store = redis.Redis.from_url(args.redis_url)
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        subprocess.run([str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "seed-demo", "--customers",
                        str(args.concurrency)], cwd=ROOT, env=env, check=True, capture_output=True)
        for name, settings in cases.items():
            port = free_port()
            proc = start_gunicorn({**env, **settings}, port, Path(spans.parent / f"bench_tracing-{port}.log"),
                                  root=args.baseline if name == "before traces" else ROOT)
            servers[name] = (proc, f"http://127.0.0.1:{port}")
        first = next(iter(servers.values()))[1]
        tokens, showtime = _tokens(first, args.concurrency), _showtime(first)
        runs: dict[str, list] = {name: [] for name in cases}
        for _ in range(args.rounds):  # alternated: a noisy neighbour spreads over every case
            for name, (proc, base) in servers.items():
                health = run_clients(base, getter(lambda: "/health"), args.concurrency, args.seconds)
                used = workers_cpu_seconds(proc.pid)
                cycles = hold_cycles(base, tokens, showtime, args.seconds)
                used = workers_cpu_seconds(proc.pid) - used
                runs[name].append((health, cycles, used * 1000 / max(1, len(cycles.latencies))))
        for proc, _base in servers.values():
            stop_process(proc)  # their last spans are written as they stop
        written = sum(len(p.read_text().splitlines()) for p in spans.glob("*.jsonl"))
        print(f"gunicorn 2 workers x 8 threads each, {args.concurrency} keep-alive connections, {args.seconds:.0f}s "
              f"per case, {args.rounds} rounds alternated (medians); {written} spans written by the traced ones")
        for n in range(args.rounds):
            print(f"  round {n + 1}: " + "; ".join(f"{name} {runs[name][n][1].rate:.0f}/s {runs[name][n][2]:.2f} ms"
                                                     for name in cases) + " (cycles, CPU per cycle)")
        print(f"{'case':14} {'/health req/s':>14} {'cycles/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'CPU ms/cycle':>13} {'vs off':>7} {'errors':>7}")
        base_cpu = None
        for name, tallies in runs.items():
            cpu = statistics.median(t[2] for t in tallies)
            base_cpu = base_cpu or cpu
            print(f"{name:14} {statistics.median(t[0].rate for t in tallies):14.0f} "
                  f"{statistics.median(t[1].rate for t in tallies):9.0f} "
                  f"{statistics.median(t[1].percentile_ms(50) for t in tallies):7.1f} "
                  f"{statistics.median(t[1].percentile_ms(99) for t in tallies):7.1f} {cpu:13.2f} "
                  f"{cpu / base_cpu - 1:+7.0%} {sum(t[0].errors + t[1].errors for t in tallies):7d}")
    finally:
        for proc, _base in servers.values():
            stop_process(proc)
        keys = list(store.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            store.delete(*keys[start:start + 500])
        shutil.rmtree(spans, ignore_errors=True)
        drop_database(env["DATABASE_URL"], args.database)


if __name__ == "__main__":
    main()
