"""Fixtures for the proxy tests: real gunicorn backends (``backend_app``), a fake live
process serving event streams (``sse_backend``) and the real proxy process (``python -m
proxy``), all on loopback, all stopped whatever happens."""
from __future__ import annotations

import json
import os
import resource
import runpy
import signal
import socket
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
import requests

from proxy.config import ProxyConfig
from tests.helpers import free_port, stop_process, wait_until  # noqa: F401 - tests import it from here
from tests.proxy.sse_backend import SseBackend

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {f.name: f.default for f in fields(ProxyConfig)}  # the proxy's default settings


def exchange(port: int, raw: bytes, timeout: float = 5, half_close: bool = False) -> bytes:
    """Send raw bytes (then, with ``half_close``, shut our side), read until the proxy
    closes or ``timeout`` passes without a byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def gunicorn_limits() -> list[str]:
    """gunicorn.conf.py's request limits, as flags: a test backend takes what the app's
    gunicorn takes, so a test can tell the proxy's limits agree with it."""
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    return ["--limit-request-line", str(settings["limit_request_line"]),
            "--limit-request-fields", str(settings["limit_request_fields"]),
            "--limit-request-field_size", str(settings["limit_request_field_size"])]


def request_at_limit(what: str, path: bytes, over: int = 0, headers: tuple = ()) -> bytes:
    """A raw GET exactly at one of the proxy's default limits, or ``over`` bytes (fields)
    past it: ``what`` is "target" (max_request_line), "header" (one field filling
    max_header_bytes, each field counted as name + value + 4) or "fields" (max_headers)."""
    head = [(b"Host", b"t"), (b"Connection", b"close"), *headers]
    target = path
    if what == "target":
        target = path + b"?q=" + b"x" * (LIMITS["max_request_line"] - len(path) - 3 + over)
    elif what == "header":
        used = sum(len(name) + len(value) + 4 for name, value in head)
        head.append((b"X-Pad", b"x" * (LIMITS["max_header_bytes"] - used - len(b"X-Pad") - 4 + over)))
    else:
        head += [(b"X-H%d" % i, b"1") for i in range(LIMITS["max_headers"] - len(head) + over)]
    return b"GET %s HTTP/1.1\r\n%s\r\n" % (target, b"".join(n + b": " + v + b"\r\n" for n, v in head))


class Backend:
    """One gunicorn serving ``backend_app`` (with the app's request limits), in a process
    group of its own so that a kill takes the master and its worker together."""

    def __init__(self, name: str, port: int, receipts: Path, log_dir: Path) -> None:
        self.name, self.port, self.receipts, self.log_dir = name, port, receipts, log_dir
        self.address = f"127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Backend":
        env = {**os.environ, "BACKEND_NAME": self.name, "RECEIPTS": str(self.receipts)}
        log = open(self.log_dir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gunicorn"), "-b", self.address, "-w", "1",
             "-k", "gthread", "--threads", "32", "--keep-alive", "5", "--graceful-timeout", "2",
             *gunicorn_limits(), "tests.proxy.backend_app:app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def up():
            try:
                return requests.get(f"http://{self.address}/health", timeout=1).ok
            except requests.RequestException:
                assert self.proc.poll() is None, f"backend {self.name} exited"
                return False

        wait_until(up, 20, 0.1, f"backend {self.name}")
        return self

    def kill(self) -> None:
        """SIGKILL to the whole backend, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.wait_gone()
            self.start()

    def wait_gone(self) -> None:
        """Until the port is free again (after a kill, the group may take a moment)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def free():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) != 0

        wait_until(free, 10, 0.05, f"port {self.port} to be free")

    def set_health(self, ok: bool) -> None:
        requests.post(f"http://{self.address}/health?ok={int(ok)}", timeout=2)


class BackendSet(list):
    def __init__(self, tmp: Path, count: int = 3) -> None:
        super().__init__()
        self.receipts = tmp / "receipts.jsonl"
        self.receipts.touch()
        for i in range(count):
            self.append(Backend(f"b{i + 1}", free_port(), self.receipts, tmp))

    def received(self) -> list[dict]:
        return [json.loads(line) for line in self.receipts.read_text().splitlines() if line]

    def spec(self) -> str:
        return ",".join(b.address for b in self)

    def stop(self) -> None:
        for backend in self:
            backend.kill()


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """Three running backends, shared by a module; a test that kills one restarts it."""
    group = BackendSet(tmp_path_factory.mktemp("backends"))
    try:
        for backend in group:
            backend.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def live_backends(backends):
    """The module's backends, all running and healthy at the start of the test."""
    for backend in backends:
        backend.ensure_running()
        backend.set_health(True)
    yield backends
    for backend in backends:
        backend.ensure_running()


class Proxy:
    """``python -m proxy`` with PROXY_* settings (fast health checks unless overridden)."""

    DEFAULTS = {"health_interval": 0.2, "health_timeout": 0.5, "health_rise": 2,
                "health_fall": 2, "slow_start": 0, "drain_timeout": 10}

    def __init__(self, backends: str, log_dir: Path, config_file: Path | None = None,
                 open_files: int | None = None, **settings) -> None:
        """``open_files``: the process's file descriptor limit (soft and hard), if not the inherited one."""
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
        for key, value in {**self.DEFAULTS, **settings, "port": self.port,
                           "admin_port": self.admin_port}.items():
            env["PROXY_" + key.upper()] = str(value)
        if backends:
            env["PROXY_BACKENDS"] = backends
        args = [sys.executable, "-m", "proxy"]
        if config_file is not None:
            args += ["--config", str(config_file)]
        self.log_path = log_dir / f"proxy-{self.port}.log"
        log = open(self.log_path, "ab")
        limit = None if open_files is None else (
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files)))
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit)
        log.close()

        def up():
            assert self.proc.poll() is None, "proxy exited: " + self.log_path.read_text()[-2000:]
            try:
                return requests.get(self.admin + "/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(up, 15, 0.05, "the proxy")

    def status(self) -> dict:
        return requests.get(self.admin + "/status", timeout=5).json()

    def backend_status(self, address: str) -> dict:
        return next(b for b in self.status()["backends"] if b["name"] == address)

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def rss_peak_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_process(self.proc, timeout=15)


@pytest.fixture
def start_proxy(tmp_path):
    """Start proxies for one test; every one is stopped afterwards."""
    started: list[Proxy] = []

    def start(backends: str, **settings) -> Proxy:
        proxy = Proxy(backends, tmp_path, **settings)
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture
def live_backend():
    """A fake live process (server-sent events), for one test."""
    backend = SseBackend().start()
    try:
        yield backend
    finally:
        backend.stop()


EVENTS = "/api/v1/showtimes/*/seats/events"


def write_pools(path: Path, app: str, live: str, routes=((EVENTS, "live"),), app_pool: dict | None = None,
                live_pool: dict | None = None, **top) -> Path:
    """A config file with two pools, ``app`` (the default) and ``live``, and ``routes``
    ((path, pool) in order); ``top`` are top-level settings, which both pools inherit."""
    def settings(values: dict) -> list[str]:
        return [f"{key} = {json.dumps(value)}" for key, value in values.items()]

    lines = ['default_pool = "app"', *settings(top),
             "[pools.app]", *settings({"backends": [b for b in app.split(",") if b], **(app_pool or {})}),
             "[pools.live]", *settings({"backends": [b for b in live.split(",") if b], **(live_pool or {})})]
    for pattern, pool in routes:
        lines += ["[[routes]]", *settings({"path": pattern, "pool": pool})]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_events(url: str, timeout: float = 10) -> tuple[requests.Response, list[tuple[float, bytes]], str]:
    """A whole event stream: the response, each event (or heartbeat) with the wall-clock
    time it arrived, and how the stream ended: "end" (its last chunk) or "cut"."""
    events: list[tuple[float, bytes]] = []
    with requests.get(url, stream=True, timeout=timeout, headers={"Accept": "text/event-stream"}) as response:
        buffer = b""
        try:
            for piece in response.iter_content(chunk_size=None):
                buffer += piece
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    events.append((time.time(), event))
        except requests.exceptions.ChunkedEncodingError:
            return response, events, "cut"
    return response, events, "end"
