"""Live seat map benchmark: many watchers of one showtime, a hold every 10 ms.

    .venv/bin/python -m loadtests.bench_live [--base http://127.0.0.1:8000] [--watchers 10000]
        [--seconds 10] [--hold-every 0.01] [--sample 10] [--poll-clients 1000]

Against a running stack (``make up``), loopback only, bounded in count and time. In one run:

1. ``--watchers`` clients open ``GET /api/v1/showtimes/{id}/seats/events?since=<version>``
   on ``--base`` (the proxy; ``--base http://127.0.0.1:8004`` goes to the live process
   directly) and keep reading;
2. another process makes a hold every ``--hold-every`` seconds (signed-in demo customers,
   one seat each, each hold released half a second later) for ``--seconds``;
3. it prints the delay from each hold's 201 to each watcher receiving the change (p50, p99,
   max), measured on one watcher in ``--sample`` (every watcher reads every byte, only the
   sampled ones parse the events: parsing a million events a second in Python on this
   machine would measure the benchmark, not Marquee), the live process's and the proxy's
   peak resident memory, and the app instances' CPU meanwhile;
4. then ``--poll-clients`` clients poll the seat map once a second for the same time, and
   it prints the app instances' CPU for that too.

The proxy spends two file descriptors per stream (the client's and the live process's),
and this machine's hard limit is 20,000 per process: through the proxy at most about
9,900 watchers can be open at once (10,000 reach the live process directly).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import time
from array import array
from urllib.parse import urlsplit

import psutil
import requests

from loadtests.bench_catalog import require_loopback
from loadtests.bench_holds import _apart
from loadtests.servers import cpu_seconds

DEMO_PASSWORD = "marquee-demo"
HOLDERS = 60  # demo customers making the holds (each holds one seat at a time)


def _process_on_port(port: int) -> psutil.Process | None:
    """The process listening on ``port`` (the proxy, the live process...)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def _app_instances() -> list[psutil.Process]:
    """The gunicorn masters of the three app instances and their workers."""
    found = []
    for port in (8001, 8002, 8003):
        master = _process_on_port(port)
        if master is not None:
            found += [master, *master.children(recursive=True)]
    return found


def _showtime(base: str) -> tuple[int, str, list[int]]:
    """A showtime at least two hours away with enough free seats, its version and free seats."""
    from datetime import datetime, timedelta, timezone

    after = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
    for show in requests.get(base + "/api/v1/showtimes", params={"starts_after": after, "page_size": 50}, timeout=10).json():
        seat_map = requests.get(f"{base}/api/v1/showtimes/{show['id']}/seats", timeout=10).json()
        free = _apart([s for s in seat_map["seats"]
                       if s["status"] == "available" and s["category"] in ("standard", "premium")])
        if len(free) >= HOLDERS:
            return show["id"], seat_map["version"], free
    raise SystemExit("no future showtime with free seats: run `make up` first")


# --- the holds (a process of its own, so the watchers' loop does not slow it) -----------

def _sign_in(base: str) -> list[str]:
    """Access tokens of the demo customers who make the holds (ones other benchmarks do not use)."""
    from concurrent.futures import ThreadPoolExecutor

    def login(n: int) -> str:
        r = requests.post(base + "/api/v1/auth/login", timeout=30,
                          json={"email": f"customer{n}@demo.marquee.test", "password": DEMO_PASSWORD})
        r.raise_for_status()
        return r.json()["access_token"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(login, range(1001 - HOLDERS, 1001)))


def _holds(base: str, tokens: list[str], showtime: int, seats: list[int], every: float, seconds: float,
           start_at: float, out) -> None:
    """One hold every ``every`` s, each of one seat (``seats`` are three apart, so the orphan
    rule never refuses one), released half a second later; sends [(seat id, time of the 201)]."""
    from concurrent.futures import ThreadPoolExecutor

    free_seats = seats[:HOLDERS]
    made: list[tuple[int, float]] = []
    failures: dict[str, int] = {}

    def cycle(i: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tokens[i]}"}
        r = session.post(f"{base}/api/v1/showtimes/{showtime}/holds", json={"seat_ids": [free_seats[i]]},
                         headers=headers, timeout=30)
        if r.status_code != 201:
            code = f"{r.status_code} {r.json().get('code') if r.headers.get('content-type', '').endswith('json') else ''}"
            failures[code] = failures.get(code, 0) + 1
            return
        made.append((free_seats[i], time.time()))
        time.sleep(0.5)
        session.delete(f"{base}/api/v1/holds/{r.json()['id']}", headers=headers, timeout=30)

    while time.time() < start_at:
        time.sleep(0.01)
    busy: dict[int, object] = {}
    with ThreadPoolExecutor(HOLDERS) as pool:
        deadline, next_at, n = time.time() + seconds, time.time(), 0
        while time.time() < deadline:
            free_slots = [i for i in range(HOLDERS) if i not in busy or busy[i].done()]
            if free_slots:
                i = free_slots[n % len(free_slots)]
                busy[i] = pool.submit(cycle, i)
                n += 1
            next_at += every
            time.sleep(max(0.0, next_at - time.time()))
    out.send({"holds": made, "failures": failures, "asked": n})


# --- the watchers ---------------------------------------------------------------------

class Watcher(asyncio.Protocol):
    """One client of the event stream. Every watcher reads everything; sampled ones note
    when each event (by version) arrived, and the reference one what it said."""

    def __init__(self, run: "Run", sampled: bool, reference: bool) -> None:
        self.run, self.sampled, self.reference = run, sampled, reference
        self.buffer = b""
        self.headers_done = False
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        self.run.bytes += len(data)
        if not self.headers_done:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 200"):
                self.run.refused += 1
                self.transport.close()
                return
            self.headers_done = True
            self.run.open += 1
            data, self.buffer = self.buffer[end + 4:], b""
        if not self.sampled:
            return
        now = time.time()
        self.buffer += data
        events = self.buffer.split(b"\n\n")
        self.buffer = events.pop()
        for event in events:
            start = event.find(b"id: ")  # after the chunk framing, if any (a message is one chunk)
            if start < 0:
                continue  # a heartbeat comment
            event = event[start:]
            version = event[4:event.index(b"\n")].decode()
            self.run.arrivals.setdefault(version, array("d")).append(now)
            if self.reference:
                data_line = event[event.index(b"data: ") + 6:]
                self.run.changes[version] = [(c["id"], c["status"]) for c in json.loads(data_line)["seats"]]

    def connection_lost(self, exc) -> None:
        if self.headers_done:
            self.run.open -= 1
            if not self.run.stopping:
                self.run.lost += 1


class Run:
    def __init__(self, base: str, showtime: int, version: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port or 80
        self.request = (f"GET /api/v1/showtimes/{showtime}/seats/events?since={version} HTTP/1.1\r\n"
                        f"Host: {self.host}:{self.port}\r\nAccept: text/event-stream\r\n\r\n").encode()
        self.open = self.refused = self.lost = self.bytes = 0
        self.stopping = False
        self.arrivals: dict[str, array] = {}
        self.changes: dict[str, list[tuple[int, str]]] = {}


async def _watch(run: Run, watchers: int, sample: int, seconds: float, ready: asyncio.Event,
                 stop_at: list[float]) -> list:
    loop = asyncio.get_running_loop()
    transports = []
    for i in range(watchers):
        try:
            transport, _ = await loop.create_connection(lambda i=i: Watcher(run, i % sample == 0, i == 0),
                                                        run.host, run.port)
        except OSError as exc:
            print(f"  watcher {i}: {exc}; going on with {i}")
            break
        transports.append(transport)
        if i % 500 == 499:
            await asyncio.sleep(0.05)  # let the proxy and the live process accept
    deadline = time.time() + 30
    while run.open + run.refused < len(transports) and time.time() < deadline:
        await asyncio.sleep(0.1)
    ready.set()
    while not stop_at or time.time() < stop_at[0]:
        await asyncio.sleep(0.1)
    run.stopping = True
    for transport in transports:
        transport.close()
    return transports


def _peak_rss(processes: dict[str, psutil.Process | None], peaks: dict[str, int]) -> None:
    for name, p in processes.items():
        if p is not None:
            try:
                peaks[name] = max(peaks.get(name, 0), p.memory_info().rss)
            except psutil.NoSuchProcess:
                pass


def watch_and_hold(args) -> dict:
    showtime, version, free = _showtime(args.api)
    run = Run(args.base, showtime, version)
    processes = {"live": _process_on_port(8004), "proxy": _process_on_port(8000)}
    peaks: dict[str, int] = {}
    apps = _app_instances()
    # spawned, not forked: a forked child shares the event loop's epoll instance, and its
    # exit would unregister the watchers' sockets from it
    spawn = multiprocessing.get_context("spawn")
    receiver, sender = spawn.Pipe(duplex=False)
    result: dict = {"showtime": showtime}
    tokens = _sign_in(args.api)

    async def main():
        ready, stop_at = asyncio.Event(), []
        watching = asyncio.create_task(_watch(run, args.watchers, args.sample, args.seconds, ready, stop_at))
        await ready.wait()
        result["open"] = run.open
        start = time.time() + 1.0
        holder = spawn.Process(target=_holds, args=(args.api, tokens, showtime, free, args.hold_every,
                                                    args.seconds, start, sender), daemon=True)
        holder.start()
        cpu_before = cpu_seconds(apps)
        deadline = start + args.seconds + 60
        while not receiver.poll() and time.time() < deadline:  # the holds
            _peak_rss(processes, peaks)
            await asyncio.sleep(0.5)
        for _ in range(6):  # then stragglers
            _peak_rss(processes, peaks)
            await asyncio.sleep(0.5)
        result["app_cpu"] = (cpu_seconds(apps) - cpu_before) / (time.time() - start)
        stop_at.append(time.time())
        await watching
        holder.join(timeout=60)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    made = receiver.recv() if receiver.poll(5) else {"holds": [], "failures": {}, "asked": 0}
    result.update(made=len(made["holds"]), failures=made["failures"], asked=made["asked"],
                  lost=run.lost, refused=run.refused, bytes=run.bytes, peaks=peaks)
    result["delays"] = _delays(run, made["holds"])
    return result


def _delays(run: Run, holds: list[tuple[int, float]]) -> list[float]:
    """For each hold, the k-th `held` change of its seat on the stream is that hold's."""
    seen: dict[int, int] = {}
    version_of: dict[tuple[int, int], str] = {}
    for version in sorted(run.changes, key=lambda v: tuple(int(p) for p in v.split("-"))):
        for seat, status in run.changes[version]:
            if status == "held":
                seen[seat] = seen.get(seat, 0) + 1
                version_of[(seat, seen[seat])] = version
    made: dict[int, int] = {}
    delays: list[float] = []
    for seat, at in sorted(holds, key=lambda h: h[1]):
        made[seat] = made.get(seat, 0) + 1
        version = version_of.get((seat, made[seat]))
        if version is not None:
            delays.extend(max(0.0, arrived - at) for arrived in run.arrivals.get(version, ()))
    return delays


class Poller(asyncio.Protocol):
    """One client reading the seat map once a second on a keep-alive connection."""

    def __init__(self, request: bytes, counts: list[int]) -> None:
        self.request, self.counts = request, counts
        self.buffer = b""
        self.waiting = 0  # body bytes still to come
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def ask(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self.buffer and not self.waiting:
            self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.waiting:
            taken = min(self.waiting, len(data))
            self.waiting -= taken
            data = data[taken:]
            if not self.waiting:
                self.counts[0] += 1
            if not data:
                return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head, rest = self.buffer[:end].lower(), self.buffer[end + 4:]
        length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]) if b"content-length:" in head else 0
        self.buffer = b""
        self.waiting = max(0, length - len(rest))
        if not self.waiting:
            self.counts[0] += 1


def poll(args, showtime: int) -> dict:
    """``--poll-clients`` clients reading the seat map once a second each (asyncio,
    keep-alive connections through ``--api``), for the same time."""
    apps = _app_instances()
    parts = urlsplit(args.api)
    request = (f"GET /api/v1/showtimes/{showtime}/seats HTTP/1.1\r\nHost: {parts.hostname}\r\n\r\n").encode()
    counts = [0]

    async def main() -> float:
        loop = asyncio.get_running_loop()
        pollers = []
        for _ in range(args.poll_clients):
            _, poller = await loop.create_connection(lambda: Poller(request, counts), parts.hostname, parts.port)
            pollers.append(poller)
        started = time.time()
        while time.time() < started + args.seconds:
            tick = time.time()
            for i, poller in enumerate(pollers):  # spread over the second
                loop.call_later(i / len(pollers), poller.ask)
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - tick)))
        elapsed = time.time() - started
        for poller in pollers:
            poller.transport.close()
        return elapsed

    before = cpu_seconds(apps)
    try:
        import uvloop

        elapsed = uvloop.run(main())
    except ImportError:
        elapsed = asyncio.run(main())
    return {"rate": counts[0] / elapsed, "app_cpu": (cpu_seconds(apps) - before) / elapsed}


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="http://127.0.0.1:8000", help="where the watchers connect")
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="where holds and polls go")
    parser.add_argument("--watchers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hold-every", type=float, default=0.01)
    parser.add_argument("--sample", type=int, default=10)
    parser.add_argument("--poll-clients", type=int, default=1000)
    args = parser.parse_args()
    require_loopback(args.base)
    require_loopback(args.api)
    watched = watch_and_hold(args)
    delays = watched["delays"]
    mb = {name: rss / 2**20 for name, rss in watched["peaks"].items()}
    print(f"showtime {watched['showtime']}: {watched['open']} watchers open through {args.base} "
          f"({watched['refused']} refused, {watched['lost']} cut or lost), {watched['bytes'] / 2**20:.0f} MiB read")
    print(f"holds: {watched['made']} made of {watched['asked']} asked in {args.seconds:.0f} s "
          f"(one every {1000 * args.hold_every:.0f} ms; refused: {watched['failures'] or 'none'})")
    print(f"delay from a hold's 201 to a watcher receiving it ({len(delays)} deliveries to 1 watcher in {args.sample}): "
          f"p50 {_ms(delays, 50):.0f} ms  p99 {_ms(delays, 99):.0f} ms  max {_ms(delays, 100):.0f} ms "
          f"(goal: p99 under 1,000 ms)")
    if delays:
        print(f"  mean {1000 * statistics.fmean(delays):.0f} ms")
    print(f"peak resident memory: live {mb.get('live', 0):.0f} MiB (goal < 500), proxy {mb.get('proxy', 0):.0f} MiB "
          f"(goal < 300)")
    print(f"app instances' CPU with the watchers (and the holds): {watched['app_cpu']:.2f} cores")
    if args.poll_clients:
        polled = poll(args, watched["showtime"])
        print(f"app instances' CPU with {args.poll_clients} clients polling the seat map every second: "
              f"{polled['app_cpu']:.2f} cores, {polled['rate']:.0f} maps/s served (asked: {args.poll_clients}/s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
