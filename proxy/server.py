"""The proxy process: shared state, startup, the main loop and a graceful stop (after
uvicorn's ``server.py``: the first SIGTERM drains, a second one forces).

    python -m proxy [--config FILE]

SIGTERM/SIGINT: stop accepting, close idle connections, end streams, let in-flight
requests finish within ``drain_timeout``, then exit. SIGHUP: re-read pools and routes.
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
from dataclasses import replace
from datetime import datetime, timezone

from proxy import config as config_module
from proxy.admin import AdminServer
from proxy.backends import Backend
from proxy.client import ClientProtocol
from proxy.config import ConfigError, ProxyConfig
from proxy.cycle import Cycle
from proxy.health import HealthChecker
from proxy.metrics import ProxyMetrics
from proxy.pools import Router
from proxy.tracing import setup as setup_tracing

log = logging.getLogger("proxy")
_PLAIN_PATH = re.compile(r"[!#-\[\]-~]*")  # printable ASCII without " and \\


# One access log line; "ts" is ISO 8601 UTC with microseconds
_ACCESS_LINE = (
    '{"level": "INFO", "logger": "proxy.access", "message": "request", "request_id": "%s", "client": "%s", '
    '"method": "%s", "path": %s, "status": %d, "backend": "%s", "tries": %d, "bytes": %d, "duration_ms": %.2f, '
    '"error": %s, "ts": "%s.%06d+00:00"}')


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
        now = time.time()
        second = int(now)
        if second != self._second:  # the part of the time up to the second is made once a second
            self._second = second
            self._prefix = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        self.lines.append(_ACCESS_LINE % (
            cycle.request_id.decode(), cycle.client.peer_ip.decode(), cycle.method, path, cycle.status, backend,
            cycle.tries, cycle.bytes_out, seconds * 1000, json.dumps(cycle.error) if cycle.error else "null",
            self._prefix, (now - second) * 1e6))
        if len(self.lines) >= self.batch:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.interval, self.flush)

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
        self.balancer = Router(config)  # routes to pools, each pool's Balancer to a backend
        self.metrics = ProxyMetrics(self)
        self.health = HealthChecker(self)
        self.admin = AdminServer(self)
        self.log = log
        self.access_log = AccessLog(self.loop)
        self.tracer = setup_tracing()  # None unless traces are asked for (proxy/tracing.py)
        self.connections: set[ClientProtocol] = set()
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False
        self.started = time.time()
        self.totals = {"requests": 0, "errors": 0, "refused": 0, "connections": 0}
        self.descriptors = descriptor_budget()
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
            "admin": f"{config.admin_host}:{self.admin_port}", "max_connections": config.max_connections,
            "pools": {name: [b.name for b in pool.backends] for name, pool in self.balancer.pools.items()},
            "routes": [route.describe() for route in self.balancer.routes]})
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
            conn.close_if_idle()  # streams too: they would never end by themselves
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
        if self.tracer is not None:
            self.tracer.shutdown()  # exports what is left
        log.info("stopped", extra={"event": "stop", "left": len(self.connections)})

    # -- connections and requests ----------------------------------------------------
    def admit(self, conn: ClientProtocol) -> bool:
        if self.stopping or len(self.connections) >= self.config.max_connections or not self.has_room():
            self.totals["refused"] += 1
            self.metrics.refused(503)
            return False
        self.connections.add(conn)
        self.totals["connections"] += 1
        return True

    def release(self, conn: ClientProtocol) -> None:
        self.connections.discard(conn)

    def has_room(self) -> bool:
        """Whether one more connection, client or upstream, fits in the file descriptors:
        past them, an accept that fails would close the listener (uvloop), and a connect
        that fails would be taken for the backend's fault. Clients past it get 503."""
        used = len(self.connections)  # asked on every request: a plain loop, no list built
        for pool in self.balancer.pools.values():
            for backend in pool.backends:
                used += backend.open_connections + backend.connecting
        return used < self.descriptors

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
        pool = cycle.pool.name if cycle.pool is not None else "-"
        self.metrics.observe(pool, backend, status, seconds)
        if cycle.span is not None:
            self.tracer.end(cycle.span, pool=pool, backend=backend, status=status, tries=cycle.tries,
                            error=cycle.error)
        if self.config.access_log:
            self.access_log.write(cycle, backend, seconds)

    def log_refusal(self, conn: ClientProtocol, status: int, detail: str) -> None:
        self.totals["refused"] += 1
        log.info("request refused", extra={"event": "refused", "status": status,
                                           "client": conn.peer_ip.decode(), "detail": detail})

    def ejected(self, backend: Backend, cause: str) -> None:
        self.metrics.ejected(backend.pool, backend.name, cause)
        log.warning("backend out of rotation", extra={
            "event": "backend_down", "pool": backend.pool, "backend": backend.name, "cause": cause,
            "detail": backend.last_check_error or None})

    async def _sweep_pools(self) -> None:
        """Close pooled upstream connections idle past their pool's ``pool_idle_timeout``."""
        while not self.stopping:
            await asyncio.sleep(1)
            for backend in self.balancer.backends:
                backend.close_idle(older_than=backend.config.pool_idle_timeout)

    # -- operations ------------------------------------------------------------------
    def reload(self) -> dict:
        """Re-read pools and routes (a file that does not load changes nothing); requests
        in progress are untouched."""
        fresh = config_module.load(self.config.source or None)
        self.config = self.config.with_routing(fresh)
        changes = self.balancer.reload(self.config)
        self.health.sync()
        log.info("pools and routes reloaded", extra={"event": "reload", **changes})
        return {"backends": [b.name for b in self.balancer.backends], **changes,
                "routes": [route.describe() for route in self.balancer.routes]}

    def _reload_on_signal(self) -> None:
        try:
            self.reload()
        except ConfigError as exc:
            log.error("reload failed; keeping the current pools and routes",
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
            "strategy": self.balancer.default.strategy,  # the default pool's (each pool's is in pools)
            "panic": self.balancer.panicking,  # in any pool
            **self.balancer.status(),
            "uptime_s": round(time.time() - self.started, 1),
            "stopping": self.stopping,
            "client_connections": len(self.connections),
            "max_connections": self.config.max_connections,
            "file_descriptors": self.descriptors,  # for client and upstream connections together
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


_FD_RESERVE = 64  # listeners, admin requests, logs, health checks under way


def descriptor_budget() -> int:
    """The file descriptors client and upstream connections may hold together."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - _FD_RESERVE


def fit_file_limit(config: ProxyConfig) -> ProxyConfig:
    """Each client connection is a file descriptor, and one more while its request is at a
    backend (a stream holds both for its whole life), and pooled connections are some more:
    raise the limit to cover ``max_connections`` twice over (as root, the hard limit too).
    Where it cannot be, ``ProxyServer.has_room`` keeps to what there is, and
    ``max_connections`` is lowered to at most one descriptor each."""
    needed = 2 * config.max_connections + sum(len(pool.backends) * pool.pool_size for pool in config.pools)
    needed += _FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < max(needed, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(needed, hard), max(needed, hard)))
        except (ValueError, OSError):  # not allowed past the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft >= needed:
        return config
    fitting = min(config.max_connections, max(1, descriptor_budget()))
    log.warning("file descriptor limit below what max_connections may need: past it, the proxy answers 503",
                extra={"event": "fd_limit", "limit": soft, "needed": needed, "max_connections": fitting,
                       "streams_at_most": descriptor_budget() // 2})
    return replace(config, max_connections=fitting)


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
    config = fit_file_limit(config)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in requirements.txt
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    return 0
