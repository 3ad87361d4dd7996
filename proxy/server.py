"""The proxy process: shared state, startup, the main loop and a graceful stop (after
uvicorn's ``server.py``: the first SIGTERM drains, a second one forces).

    python -m proxy [--config FILE]

SIGTERM/SIGINT: stop accepting, close idle connections, let in-flight requests finish
within ``drain_timeout``, then exit. SIGHUP: re-read the backend list.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import resource
import signal
import sys
import time
from datetime import datetime, timezone

from proxy import config as config_module
from proxy.admin import AdminServer
from proxy.backends import Backend, Balancer
from proxy.client import ClientProtocol
from proxy.config import ConfigError, ProxyConfig
from proxy.cycle import Cycle
from proxy.health import HealthChecker
from proxy.metrics import ProxyMetrics

log = logging.getLogger("proxy")
_PLAIN_PATH = re.compile(r"[!#-\[\]-~]*")  # printable ASCII without " and \\


class AccessLog:
    """One JSON line a request, in the shape of the other logs (level, logger, message,
    ts), written in batches: the ``logging`` machinery per request cost more CPU than
    proxying it. Lines go out within ``interval`` seconds, and at exit."""

    def __init__(self, loop, stream=None, interval: float = 0.1, batch: int = 512) -> None:
        self.loop = loop
        self.stream = stream or sys.stderr
        self.interval, self.batch = interval, batch
        self.lines: list[str] = []
        self._timer = None
        self._second = 0
        self._prefix = ""

    def write(self, cycle: Cycle, backend: str, seconds: float) -> None:
        # only the path and the error may need escaping: the rest were validated or are ours
        path = cycle.target.decode("latin-1")
        path = f'"{path}"' if _PLAIN_PATH.fullmatch(path) else json.dumps(path)
        self.lines.append(
            '{"level": "INFO", "logger": "proxy.access", "message": "request", '
            f'"request_id": "{cycle.request_id.decode()}", "client": "{cycle.client.peer_ip.decode()}", '
            f'"method": "{cycle.method}", "path": {path}, '
            f'"status": {cycle.status}, "backend": "{backend}", "tries": {cycle.tries}, '
            f'"bytes": {cycle.bytes_out}, "duration_ms": {seconds * 1000:.2f}, '
            f'"error": {json.dumps(cycle.error) if cycle.error else "null"}, "ts": "{self._now()}"}}')
        if len(self.lines) >= self.batch:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.interval, self.flush)

    def _now(self) -> str:
        """ISO 8601 UTC with microseconds; the part up to the second is made once a second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{int((now - second) * 1e6):06d}+00:00"

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.lines:
            lines, self.lines = self.lines, []
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or full log: requests go on
                pass


class ProxyServer:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.balancer = Balancer(config)
        self.metrics = ProxyMetrics(self)
        self.health = HealthChecker(self)
        self.admin = AdminServer(self)
        self.log = log
        self.access_log = AccessLog(self.loop)
        self.connections: set[ClientProtocol] = set()
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False
        self.started = time.time()
        self.totals = {"requests": 0, "errors": 0, "refused": 0, "connections": 0}
        self._listener: asyncio.AbstractServer | None = None
        self._admin_listener: asyncio.AbstractServer | None = None
        self._stopped = asyncio.Event()
        self._force = False

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        config = self.config
        self._listener = await self.loop.create_server(
            lambda: ClientProtocol(self), config.host, config.port,
            backlog=config.backlog, reuse_address=True)
        self._admin_listener = await asyncio.start_server(
            self.admin.handle, config.admin_host, config.admin_port, reuse_address=True)
        self.health.sync()
        self.port = self._listener.sockets[0].getsockname()[1]
        self.admin_port = self._admin_listener.sockets[0].getsockname()[1]
        log.info("proxy listening", extra={
            "event": "start", "listen": f"{config.host}:{self.port}",
            "admin": f"{config.admin_host}:{self.admin_port}", "strategy": config.strategy,
            "backends": [b.name for b in self.balancer.backends]})
        self.loop.create_task(self._sweep_pools())

    def install_signal_handlers(self) -> None:
        self.loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        self.loop.add_signal_handler(signal.SIGINT, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)

    def request_stop(self) -> None:
        if self.stopping:
            self._force = True  # a second signal: stop now
            log.warning("second stop signal: closing in-flight requests", extra={"event": "force"})
        self.stopping = True
        self._stopped.set()

    async def serve_until_stopped(self) -> None:
        await self._stopped.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        self.stopping = True
        log.info("stopping: no new connections; draining in-flight requests",
                 extra={"event": "drain", "connections": len(self.connections)})
        if self._listener is not None:
            self._listener.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = time.monotonic() + self.config.drain_timeout
        while self.connections and time.monotonic() < deadline and not self._force:
            for conn in list(self.connections):
                conn.close_if_idle()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        await self.health.stop()
        if self._admin_listener is not None:
            self._admin_listener.close()
        for backend in self.balancer.backends:
            backend.close_idle()
        self.access_log.flush()
        log.info("stopped", extra={"event": "stop", "left": len(self.connections)})

    # -- connections and requests ----------------------------------------------------
    def admit(self, conn: ClientProtocol) -> bool:
        if self.stopping or len(self.connections) >= self.config.max_connections:
            self.totals["refused"] += 1
            self.metrics.refused(503)
            return False
        self.connections.add(conn)
        self.totals["connections"] += 1
        return True

    def release(self, conn: ClientProtocol) -> None:
        self.connections.discard(conn)

    def spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def request_done(self, cycle: Cycle, seconds: float) -> None:
        backend = cycle.backend.name if cycle.backend is not None else "-"
        status = cycle.status
        self.totals["requests"] += 1
        if status >= 500 or cycle.error:
            self.totals["errors"] += 1
        self.metrics.observe(backend, status, seconds)
        if self.config.access_log:
            self.access_log.write(cycle, backend, seconds)

    def log_refusal(self, conn: ClientProtocol, status: int, detail: str) -> None:
        self.totals["refused"] += 1
        log.info("request refused", extra={"event": "refused", "status": status,
                                           "client": conn.peer_ip.decode(), "detail": detail})

    def ejected(self, backend: Backend, cause: str) -> None:
        self.metrics.ejected(backend.name, cause)
        log.warning("backend out of rotation", extra={
            "event": "backend_down", "backend": backend.name, "cause": cause,
            "detail": backend.last_check_error or None})

    async def _sweep_pools(self) -> None:
        """Close pooled upstream connections idle past ``pool_idle_timeout``."""
        while not self.stopping:
            await asyncio.sleep(1)
            for backend in self.balancer.backends:
                backend.close_idle(older_than=self.config.pool_idle_timeout)

    # -- operations ------------------------------------------------------------------
    def reload(self) -> dict:
        """Re-read the backend list; connections in progress are untouched."""
        fresh = config_module.load(self.config.source or None)
        self.config = self.config.with_backends(fresh.backends)
        changes = self.balancer.reload(self.config)
        self.health.sync()
        log.info("backends reloaded", extra={"event": "reload", **changes})
        return {"backends": [b.name for b in self.balancer.backends], **changes}

    def _reload_on_signal(self) -> None:
        try:
            self.reload()
        except ConfigError as exc:
            log.error("reload failed; keeping the current backends",
                      extra={"event": "reload_failed", "detail": str(exc)})

    def set_draining(self, backend: Backend, draining: bool) -> None:
        backend.draining = draining
        if draining:
            backend.close_idle()
        else:
            backend.up_since = time.monotonic()
        log.info("backend drain" if draining else "backend undrained",
                 extra={"event": "drain" if draining else "undrain", "backend": backend.name,
                        "in_flight": backend.in_flight})

    def status(self) -> dict:
        return {
            "strategy": self.balancer.strategy,
            "panic": self.balancer.panicking,
            "uptime_s": round(time.time() - self.started, 1),
            "stopping": self.stopping,
            "client_connections": len(self.connections),
            "totals": dict(self.totals),
            "backends": [b.status() for b in self.balancer.backends],
        }


def configure_logging(level: str) -> None:
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s",
                                       rename_fields={"levelname": "level", "name": "logger"},
                                       timestamp="ts"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def raise_file_limit() -> None:
    """Each client and upstream connection is a file descriptor: allow as many as we may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(config: ProxyConfig) -> None:
    server = ProxyServer(config)
    await server.start()
    server.install_signal_handlers()
    await server.serve_until_stopped()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="TOML file (default: $PROXY_CONFIG); PROXY_* variables override it")
    args = parser.parse_args(argv)
    try:
        config = config_module.load(args.config)
    except ConfigError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    raise_file_limit()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in requirements.txt
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    return 0
