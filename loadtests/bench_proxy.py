"""Proxy benchmark: Marquee's proxy against nginx, in front of the same three app instances.

    make up    # the three app instances on 127.0.0.1:8001-8003
    .venv/bin/python -m loadtests.bench_proxy [--seconds 10] [--connections 64] [--rounds 3]
                                              [--path /health,/api/v1/movies] [--idle 10000]

One run measures, with the same load generator (wrk from Debian when installed, else a
Python keep-alive generator, and it says which):
  - direct to one instance;
  - through Marquee's proxy (``python -m proxy``, one process) with round_robin and with
    least_connections;
  - through nginx (Debian's, ``worker_processes 1``, upstream keepalive, the same
    strategies, an access log like ours), when installed; it says so when absent;
and prints, for each path, requests/s, p50 and p99 latency, the ratios to nginx, and the CPU
time the proxy spent per 1,000 requests (user + system, from /proc/<pid>/stat before and
after the measured load; nginx's is its master's and worker's together). ``--rounds``
repeats every case and reports the median of each. A strategy's proxies (Marquee's, and
nginx) run side by side and are loaded back to back, path by path, each first in every other
round; the ratios to nginx are the median (and range) of the rounds' ratios of such pairs,
which the host's drift between rounds does not move as it moves the medians of rates taken
a minute apart. Then it opens ``--idle`` keep-alive
client connections to the proxy (each sends one request, then stays open and idle) and
prints the proxy's resident memory with all of them held.

Loopback only; every server it starts is stopped when it ends, whatever happens.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from loadtests.bench_catalog import percentile_ms, require_loopback
from loadtests.servers import cpu_seconds, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent


def wait_http(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the servers under test ---------------------------------------------------------------
class MarqueeProxy:
    root = ROOT  # where ``python -m proxy`` finds the package (--proxy-dir)
    label = "marquee"

    def __init__(self, backends: list[str], strategy: str, workdir: Path) -> None:
        self.port, self.admin_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        env.update(PROXY_BACKENDS=",".join(backends), PROXY_STRATEGY=strategy,
                   PROXY_PORT=str(self.port), PROXY_ADMIN_PORT=str(self.admin_port),
                   PROXY_MAX_CONNECTIONS="30000")
        self.log = open(workdir / f"{self.label}-{strategy}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "proxy"], cwd=self.root, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.name = f"{self.label} {strategy}"
        wait_http(f"http://127.0.0.1:{self.admin_port}/health")

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class BeforeProxy(MarqueeProxy):
    """Another copy of the proxy (--compare-dir: e.g. ``git archive HEAD proxy | tar -x -C DIR``),
    measured in the same rounds: a change's effect without the machine's drift between runs."""
    root = ROOT
    label = "before"


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 30000;
events {{ worker_connections 30000; }}
http {{
  log_format json escape=json '{{"ts":"$time_iso8601","request_id":"$request_id","client":"$remote_addr",'
    '"method":"$request_method","path":"$request_uri","status":$status,"backend":"$upstream_addr",'
    '"bytes":$body_bytes_sent,"duration_ms":$request_time}}';
  access_log {dir}/access.log json;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  upstream marquee {{
    {strategy}
    {servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=2048;
    location / {{
      proxy_pass http://marquee;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Request-ID $request_id;
      add_header X-Request-ID $request_id;
      proxy_next_upstream error timeout;
    }}
  }}
}}
"""


class Nginx:
    def __init__(self, backends: list[str], strategy: str, workdir: Path) -> None:
        self.port = free_port()
        folder = workdir / f"nginx-{strategy}"
        folder.mkdir(exist_ok=True)
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(
            dir=folder, port=self.port, servers="\n    ".join(f"server {b};" for b in backends),
            strategy="least_conn;" if strategy == "least_connections" else ""))
        self.proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.name = f"nginx {strategy}"
        wait_http(f"http://127.0.0.1:{self.port}/health")

    def pids(self) -> list[int]:
        """The master and its worker: all of nginx's CPU counts."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [self.proc.pid, *map(int, children)]

    def stop(self) -> None:
        stop_process(self.proc)


# -- load generators ------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def load_wrk(url: str, seconds: float, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": _ms(latency["50"]), "p99": _ms(latency["99"]), "errors": errors,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def load_python(url: str, seconds: float, connections: int) -> dict:
    """Fallback generator: threads with keep-alive sessions (slower than wrk: it shares the
    cores with the servers and spends more of them per request)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker():
        nonlocal errors
        session, local, bad = requests.Session(), [], 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                bad += session.get(url, timeout=10).status_code != 200
            except requests.RequestException:
                bad += 1
            local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)
            errors += bad

    threads = [threading.Thread(target=worker) for _ in range(min(connections, 32))]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {"rps": len(latencies) / (time.monotonic() - started), "requests": len(latencies),
            "p50": percentile_ms(latencies, 50),
            "p99": percentile_ms(latencies, 99), "errors": errors, "socket_errors": ""}


# -- idle keep-alive connections ----------------------------------------------------------------
async def hold_idle(port: int, count: int, batch: int = 250) -> list:
    """Open ``count`` connections, one request each, and keep them open."""
    writers = []
    request = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        await reader.readexactly(length)
        writers.append(writer)

    for start in range(0, count, batch):
        await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    return writers


def idle_connections(proxy: MarqueeProxy, count: int) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < count + 100:
        return {"skipped": f"file limit {hard} is below {count} connections"}
    before = rss_mib(proxy.proc.pid)

    async def run():
        started = time.monotonic()
        writers = await hold_idle(proxy.port, count)
        opened = time.monotonic() - started
        await asyncio.sleep(1)
        held = rss_mib(proxy.proc.pid)
        status = await asyncio.to_thread(
            lambda: requests.get(f"http://127.0.0.1:{proxy.admin_port}/status", timeout=10).json())
        probe_started = time.perf_counter()
        ok = await asyncio.to_thread(
            lambda: requests.get(f"http://127.0.0.1:{proxy.port}/health", timeout=10).status_code)
        probe_ms = (time.perf_counter() - probe_started) * 1000
        for writer in writers:
            writer.close()
        return {"connections": count, "open_seen_by_proxy": status["client_connections"],
                "rss_before_mib": round(before, 1), "rss_held_mib": round(held, 1),
                "opened_in_s": round(opened, 1), "request_while_held": ok,
                "request_while_held_ms": round(probe_ms, 1)}

    return asyncio.run(run())


# -- the run --------------------------------------------------------------------------------------
GOAL_THROUGHPUT, GOAL_P99 = 0.95, 1.2  # of nginx's, in the same run (issue 15)


def _paired(ours: list[dict], theirs: list[dict], key: str) -> str:
    """The median of the rounds' ratios ours / theirs, with their range: "0.97x (0.91-1.04)"."""
    ratios = sorted(a[key] / b[key] for a, b in zip(ours, theirs, strict=True) if b[key])
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003")
    parser.add_argument("--path", default="/health,/api/v1/movies",
                        help="comma-separated paths, each measured in every case (small, cheap endpoints)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--idle", type=int, default=10000, help="idle keep-alive connections (0: skip)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-direct", action="store_true", help="skip the case straight to one instance")
    parser.add_argument("--strategies", default="round_robin,least_connections")
    parser.add_argument("--proxy-dir", type=Path, default=ROOT, help="the directory holding the proxy package")
    parser.add_argument("--compare-dir", type=Path, help="another proxy package's directory, measured as 'before'")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    paths = [p.strip() for p in args.path.split(",") if p.strip()]
    for backend in backends:
        require_loopback(f"http://{backend}")
        for path in paths:
            wait_http(f"http://{backend}{path}", 5)
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    load = load_wrk if use_wrk else load_python
    generator = "wrk (2 threads)" if use_wrk else "Python threads (wrk not installed: apt-get install wrk)"
    print(f"load generator: {generator}; "
          f"{args.connections} connections, {args.seconds:g} s a case, {args.rounds} round(s); "
          f"GET {', '.join(paths)} on {', '.join(backends)}; {os.cpu_count()} cores shared by all")
    has_nginx = shutil.which("nginx") is not None
    if not has_nginx:
        print("nginx is not installed (apt-get install nginx): the nginx cases are skipped")

    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    MarqueeProxy.root = args.proxy_dir.resolve()
    if args.compare_dir:
        BeforeProxy.root = args.compare_dir.resolve()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    kinds = [MarqueeProxy, *([BeforeProxy] if args.compare_dir else []), *([Nginx] if has_nginx else [])]
    results: dict[tuple[str, str], list[dict]] = {}

    def measure(name: str, server, path: str, round_no: int) -> None:
        base = f"http://127.0.0.1:{server.port}" if server else f"http://{backends[0]}"
        require_loopback(base)
        cpu_before = cpu_seconds(server.pids()) if server else 0.0
        result = load(base + path, args.seconds, args.connections)
        cpu = cpu_seconds(server.pids()) - cpu_before if server else None
        result["cpu_ms_per_1k"] = cpu * 1e6 / result["requests"] if cpu is not None and result["requests"] else None
        results.setdefault((path, name), []).append(result)
        cpu_text = f"  cpu {result['cpu_ms_per_1k']:6.1f} ms/1k req" if result["cpu_ms_per_1k"] is not None else ""
        print(f"  round {round_no + 1}: {path:16s} {name:24s} {result['rps']:8.0f} req/s  "
              f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:7.2f} ms{cpu_text}  errors {result['errors']}"
              + (f"  socket errors: {result['socket_errors']}" if result["socket_errors"] else ""), flush=True)

    try:
        if not args.no_direct:
            for round_no in range(args.rounds):
                for path in paths:
                    measure("direct (one instance)", None, path, round_no)
        # A strategy's servers run side by side for all its rounds, warmed once, and are
        # measured back to back, path by path, in turns (ABBA: each leads every other round):
        # a ratio compares two loads seconds apart, so the host's drift (minutes long here)
        # mostly cancels out of it, where it did not out of medians taken a minute apart.
        for strategy in strategies:
            servers = []
            try:
                for kind in kinds:
                    servers.append(kind(backends, strategy, workdir))
                for server in servers:
                    for path in paths:
                        load(f"http://127.0.0.1:{server.port}{path}", 2, args.connections)  # pools, caches
                for round_no in range(args.rounds):
                    for path in paths:
                        for server in servers if round_no % 2 == 0 else servers[::-1]:
                            measure(server.name, server, path, round_no)
            finally:
                for server in servers:
                    server.stop()
        print(f"\nmedian of {args.rounds} round(s); cpu: the server's user + system CPU per 1,000 requests "
              f"(nginx: master and worker); vs nginx: the median (and range) of each round's ratio of two "
              f"loads run back to back; goals: throughput >= {GOAL_THROUGHPUT:.0%} of nginx's, "
              f"p99 <= {GOAL_P99}x nginx's")
        print(f"  {'path':16s} {'case':24s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'cpu ms/1k':>10s}"
              f"   vs nginx (same strategy)")
        summary = {}
        for key, runs in results.items():
            cpus = [r["cpu_ms_per_1k"] for r in runs if r["cpu_ms_per_1k"] is not None]
            summary[key] = {**{k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")},
                            "cpu": statistics.median(cpus) if cpus else None}
        for (path, name), row in summary.items():
            ratio = ""
            reference = results.get((path, "nginx " + name.split(" ", 1)[1]))
            if name.startswith(("marquee", "before")) and reference:
                ratio = "   " + ", ".join(
                    f"{label} {_paired(results[(path, name)], reference, key)}"
                    for label, key in (("throughput", "rps"), ("p99", "p99")))
            cpu_text = f"{row['cpu']:10.1f}" if row["cpu"] is not None else f"{'-':>10s}"
            print(f"  {path:16s} {name:24s} {row['rps']:8.0f} {row['p50']:8.2f} {row['p99']:8.2f} {cpu_text}{ratio}")
        for path in paths:
            for strategy in strategies:
                theirs = summary.get((path, f"nginx {strategy}"))
                for label in ("marquee", "before"):
                    ours = summary.get((path, f"{label} {strategy}"))
                    if ours and theirs and ours["cpu"] and theirs["cpu"]:
                        print(f"  {path} {label} {strategy}: {ours['cpu'] / theirs['cpu']:.2f}x nginx's CPU "
                              f"per request ({ours['cpu']:.0f} against {theirs['cpu']:.0f} µs)")

        if args.idle:
            proxy = MarqueeProxy(backends, "round_robin", workdir)
            try:
                idle = idle_connections(proxy, args.idle)
            finally:
                proxy.stop()
            print(f"\nidle keep-alive connections: {json.dumps(idle)}")
            if "rss_held_mib" in idle:
                print(f"  proxy resident memory with {args.idle} idle connections held: "
                      f"{idle['rss_held_mib']} MiB (goal < 300 MB)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
