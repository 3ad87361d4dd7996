"""The live process: server-sent events of seat changes, one Redis reader per showtime.

    python -m live          (settings: LIVE_* variables, see live/config.py; the services'
                             DATABASE_URL, REDIS_URL, REDIS_PREFIX... as for the app)

Serves ``GET /api/v1/showtimes/{id}/seats/events`` (API.md, "Live seat map", with the
waiting room's ``event: queue``), ``GET /api/v1/showtimes/{id}/queue/status`` (API.md,
"Waiting room for on-sales"; from Redis, at most one read a second per showtime),
``/health`` and Prometheus ``/metrics``. It reuses the services (``app.services.seats``) through
``app.bootstrap``, never the web app. Shaped like the proxy (after uvicorn's
``server.py``): shared state, start, the main loop, and a stop on SIGTERM/SIGINT that
ends every stream cleanly (clients resume from their last id) within a few seconds.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import resource
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import uvloop
from dotenv import load_dotenv

from app.adapters import tracing, waiting_room_store
from app.bootstrap import Marquee, bootstrap
from app.logging_setup import dump_stacks_on_sigusr1
from live.config import LiveConfigError, LiveSettings
from live.connection import Connection
from live.followers import Followers
from live.metrics import LiveMetrics
from live.queue_status import QueueStatuses
from live.reservations import Reservations

log = logging.getLogger("live")
_DRAIN_SECONDS = 5.0  # at a stop, ended streams get this long to flush their last bytes


class LiveServer:
    def __init__(self, deps: Marquee, settings: LiveSettings) -> None:
        self.deps = deps
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.metrics = LiveMetrics(self)
        self.executor = ThreadPoolExecutor(settings.threads, thread_name_prefix="live-services")
        self.followers = Followers(deps, settings, self.metrics, self.executor)
        self.reservations = Reservations(deps, settings, self.metrics, self.followers.in_thread, self.spawn)
        self.queue_statuses = QueueStatuses(self.followers.redis, functools.partial(waiting_room_store.room_key,
                                                                                    deps.redis), self.metrics)
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False
        self.port = settings.port
        self._listener: asyncio.AbstractServer | None = None
        self._stopped = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._listener = await self.loop.create_server(
            lambda: Connection(self), self.settings.host, self.settings.port, backlog=4096, reuse_address=True)
        self.port = self._listener.sockets[0].getsockname()[1]
        self.spawn(self.followers.expire_forever())
        self.spawn(self.followers.heartbeat_forever())
        self.spawn(self.reservations.listen_forever())
        self.spawn(self.reservations.recheck_forever())
        log.info("live listening", extra={"event": "start", "listen": f"{self.settings.host}:{self.port}",
                                          "heartbeat_seconds": self.settings.heartbeat_seconds,
                                          "client_buffer_bytes": self.settings.client_buffer_bytes})

    async def serve_until_signalled(self) -> None:
        """Until SIGTERM or SIGINT, then ``shutdown``."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._stopped.set)
        await self._stopped.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        self.stopping = True
        log.info("stopping: ending every stream", extra={"event": "stop", "connections": len(self.connections)})
        if self._listener is not None:
            self._listener.close()
        for task in list(self.tasks):
            task.cancel()
        await self.followers.close()
        await self.reservations.close()
        for conn in list(self.connections):
            conn.end(reason="shutdown")
        deadline = time.monotonic() + _DRAIN_SECONDS
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.transport.abort()
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("stopped", extra={"event": "stopped"})

    # -- connections -----------------------------------------------------------------------
    def admit(self, conn: Connection) -> bool:
        if self.stopping or len(self.connections) >= self.settings.max_connections:
            return False
        self.connections.add(conn)
        return True

    def release(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())


async def run(settings: LiveSettings) -> None:
    server = LiveServer(bootstrap(), settings)
    await server.start()
    await server.serve_until_signalled()


def main() -> int:
    load_dotenv(override=False)
    try:
        settings = LiveSettings.from_env()
    except LiveConfigError as exc:
        print(f"live: {exc}", file=sys.stderr)
        return 2
    # each watcher is a file descriptor: allow as many as the hard limit does
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tracing.setup("marquee-live")  # its Redis and SQL calls (app.adapters.tracing)
    dump_stacks_on_sigusr1()
    uvloop.run(run(settings))
    tracing.shutdown()
    return 0
