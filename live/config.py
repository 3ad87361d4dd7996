"""The live process's settings, read once from ``LIVE_*`` environment variables.

``app.config.Settings`` (database, Redis, log level) is the services' and comes with
``app.bootstrap``; what only this process needs is here, each with a default that runs
on a developer's machine:

- ``LIVE_HOST`` / ``LIVE_PORT`` (127.0.0.1:8004): where it listens.
- ``LIVE_HEARTBEAT_SECONDS`` (15): a comment line goes to every stream this often, so idle
  streams stay open through proxies; API.md promises one at least every 15 s, so more is
  refused.
- ``LIVE_CLIENT_BUFFER_BYTES`` (1 MiB): the most a client may leave unread. A watcher whose
  unsent bytes pass it when an event or a heartbeat is written is cut off (its stream
  closed; it resumes later from its last id), so a client that does not read costs at most
  this much memory, never an unbounded queue.
- ``LIVE_LINGER_SECONDS`` (10): a showtime stays followed this long after its last
  watcher leaves, so a client that reconnects finds its follower still there.
- ``LIVE_EXPIRE_SECONDS`` (1): how often holds whose time is up are freed on each followed
  showtime (``seats.expire_due``), which is what makes expiries appear on the streams.
- ``LIVE_READ_BLOCK_MS`` (1000): how long one XREAD waits for a change before the follower
  looks whether it should stop lingering.
- ``LIVE_MAX_CONNECTIONS`` (20000): connections past this are answered 503 and closed.
- ``LIVE_THREADS`` (4): threads for the synchronous services (snapshots, expiry, lookups).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

MAX_HEARTBEAT_SECONDS = 15.0  # API.md: "a comment line at least every 15 s"


class LiveConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


def _number(name: str, default: float, kind: type = int):
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise LiveConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise LiveConfigError(f"{name} must be positive")
    return value


@dataclass(frozen=True)
class LiveSettings:
    host: str = "127.0.0.1"
    port: int = 8004
    heartbeat_seconds: float = 15.0
    client_buffer_bytes: int = 1024 * 1024
    linger_seconds: float = 10.0
    expire_seconds: float = 1.0
    read_block_ms: int = 1000
    read_count: int = 1000  # entries one XREAD (or one catch-up read) takes at most
    max_connections: int = 20000
    threads: int = 4
    # Requests are tiny GETs: a head past these is refused, a slow one dropped.
    max_head_bytes: int = 16 * 1024
    head_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls) -> "LiveSettings":
        settings = cls(
            host=os.environ.get("LIVE_HOST") or cls.host,
            port=_number("LIVE_PORT", cls.port),
            heartbeat_seconds=_number("LIVE_HEARTBEAT_SECONDS", cls.heartbeat_seconds, float),
            client_buffer_bytes=_number("LIVE_CLIENT_BUFFER_BYTES", cls.client_buffer_bytes),
            linger_seconds=_number("LIVE_LINGER_SECONDS", cls.linger_seconds, float),
            expire_seconds=_number("LIVE_EXPIRE_SECONDS", cls.expire_seconds, float),
            read_block_ms=_number("LIVE_READ_BLOCK_MS", cls.read_block_ms),
            max_connections=_number("LIVE_MAX_CONNECTIONS", cls.max_connections),
            threads=_number("LIVE_THREADS", cls.threads),
        )
        if settings.heartbeat_seconds > MAX_HEARTBEAT_SECONDS:
            raise LiveConfigError(f"LIVE_HEARTBEAT_SECONDS must be at most {MAX_HEARTBEAT_SECONDS:g} (API.md)")
        if settings.port > 65535:
            raise LiveConfigError("LIVE_PORT must be a TCP port")
        return settings
