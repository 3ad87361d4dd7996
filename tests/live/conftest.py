"""Fixtures for the live process's tests: the real process (``python -m live``) on a free
loopback port, stopped whatever happens; an event-stream reader on a plain socket (so a
test controls when it reads, and can stop reading); and the showtime's change stream
written the way the seat store writes it (one entry per change, ``seats`` = JSON)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests

from tests.helpers import free_port, stop_process, wait_until  # noqa: F401 - tests import it from here

ROOT = Path(__file__).resolve().parents[2]


class LiveProcess:
    """``python -m live`` with the suite's database and Redis, on its own port."""

    def __init__(self, log_path: Path, settings: dict, env: dict) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, "LIVE_HOST": "127.0.0.1", "LIVE_PORT": str(self.port), "LOG_LEVEL": "INFO",
                    **{f"LIVE_{name.upper()}": str(value) for name, value in settings.items()}, **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LiveProcess":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "python"), "-m", "live"], cwd=ROOT,
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def up():
            assert self.proc.poll() is None, "live exited: " + self.log_path.read_text()[-3000:]
            try:
                return requests.get(self.url + "/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 20, 0.05, "the live process")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)

    def metrics(self) -> dict[str, float]:
        """Unlabelled samples of ``/metrics`` by name."""
        text = requests.get(self.url + "/metrics", timeout=5).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def stream(self, showtime_id: int, **kw) -> "EventStream":
        return EventStream(self.port, showtime_id, **kw)

    def reservation_stream(self, reservation_id: int, token: str | None, **kw) -> "EventStream":
        """``GET /api/v1/reservations/{id}/events`` with the access token (if any)."""
        return EventStream(self.port, 0, target=f"/api/v1/reservations/{reservation_id}/events",
                           authorization=None if token is None else f"Bearer {token}", **kw)


@pytest.fixture
def start_live(tmp_path):
    """Starts live processes (``start_live(heartbeat_seconds=1, ...)``: LIVE_* settings;
    ``env``: other variables); every one is stopped at the end."""
    started: list[LiveProcess] = []

    def start(env: dict | None = None, **settings) -> LiveProcess:
        process = LiveProcess(tmp_path / f"live{len(started)}.log", settings, env or {}).start()
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@dataclass
class Event:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comment: bool = False  # a comment line only (a heartbeat)

    @property
    def json(self):
        return json.loads(self.data)


@dataclass
class EventStream:
    """A GET of the events path on a plain socket, read only when asked."""

    port: int
    showtime_id: int
    since: str | None = None
    last_event_id: str | None = None
    rcvbuf: int | None = None  # a small receive buffer, for a client that does not read
    http10: bool = False
    target: str | None = None  # another path than the showtime's events (a reservation's)
    authorization: str | None = None
    status: int = 0
    headers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        if self.rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", self.port))
        target = self.target or f"/api/v1/showtimes/{self.showtime_id}/seats/events"
        if self.since is not None:
            target += f"?since={self.since}"
        head = f"GET {target} HTTP/{'1.0' if self.http10 else '1.1'}\r\nHost: live\r\nAccept: text/event-stream\r\n"
        if self.last_event_id is not None:
            head += f"Last-Event-ID: {self.last_event_id}\r\n"
        if self.authorization is not None:
            head += f"Authorization: {self.authorization}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.raw = b""  # bytes read, not yet de-chunked
        self.body = b""  # the body, not yet cut into messages
        self.ended = False  # the server ended the body
        self.chunked = False

    def read_head(self) -> "EventStream":
        while b"\r\n\r\n" not in self.raw:
            self._recv()
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        return self

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.raw += data

    def _dechunk(self) -> None:
        if not self.chunked:
            self.body, self.raw = self.body + self.raw, b""
            return
        while b"\r\n" in self.raw:
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line, 16)
            if size == 0:
                self.ended = True
                self.raw = b""
                return
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.raw = rest[size + 2:]

    def next(self, timeout: float = 5, heartbeats: bool = False) -> Event:
        """The next message (heartbeats skipped unless asked for); ``EOFError`` when the
        stream ended, ``TimeoutError`` when none came in time."""
        if not self.status:
            self.read_head()
        deadline = time.monotonic() + timeout
        while True:
            self._dechunk()
            while b"\n\n" in self.body:
                text, self.body = self.body.split(b"\n\n", 1)
                event = _parse(text.decode())
                if heartbeats or not event.comment:
                    return event
            if self.ended:
                raise EOFError("the stream ended")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no event in time")
            self.sock.settimeout(left)
            try:
                self._recv()
            except TimeoutError:
                raise TimeoutError("no event in time") from None

    def changes(self, count: int, timeout: float = 10) -> list[Event]:
        return [self.next(timeout) for _ in range(count)]

    def close(self) -> None:
        self.sock.close()


def _parse(text: str) -> Event:
    event = Event(comment=True)
    for line in text.split("\n"):
        if line.startswith(":"):
            continue
        event.comment = False
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            event.data = f"{event.data}\n{value}" if event.data else value
        elif name in ("event", "id"):
            setattr(event, name, value)
    return event


class ChangeStream:
    """A showtime's change stream, written as the seat store writes it."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client, self.key = client, key

    def add(self, *seats: tuple[int, str]) -> str:
        """One change (``(seat id, status)`` pairs); its version."""
        payload = json.dumps([{"id": seat_id, "status": status} for seat_id, status in seats])
        return self.client.xadd(self.key, {"seats": payload}).decode()


@pytest.fixture
def catalog(api, admin) -> dict:
    """A city, theater, screen (6 seats), movie and showtime; their ids."""
    return api.catalog(admin)


@pytest.fixture
def showtime(catalog) -> int:
    return catalog["showtime"]


@pytest.fixture
def changes(app, showtime) -> ChangeStream:
    """The showtime's change stream (the seat store's key)."""
    deps = app.extensions["marquee"]
    return ChangeStream(deps.redis.client, deps.seats.events_key(showtime))
