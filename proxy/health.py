"""Active health checks: ``GET <health_path>`` on a fresh connection to every backend,
every ``health_interval`` seconds. ``health_rise`` passes in a row bring a backend back
(it then ramps up), ``health_fall`` failures in a row take it out. All of these are the
backend's pool's: each pool is checked on its own terms, and one pool's backends going
down changes nothing in another's."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from proxy.backends import Backend
from proxy.http import OUT_OF_FILES

if TYPE_CHECKING:  # pragma: no cover
    from proxy.server import ProxyServer


class _Status:
    """Parser callbacks that only keep what a check needs."""

    def __init__(self) -> None:
        self.complete = False

    def on_message_complete(self) -> None:
        self.complete = True


async def probe(backend: Backend, path: str, timeout: float) -> str | None:
    """'' when the backend answers 2xx/3xx in time, else why not; None when the proxy
    could not check (out of file descriptors: no verdict on the backend)."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(backend.host, backend.port)
            writer.write(b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: marquee-proxy-health\r\n"
                         b"Connection: close\r\n\r\n" % (path.encode(), backend.name.encode()))
            state = _Status()
            parser = httptools.HttpResponseParser(state)
            while not state.complete:
                data = await reader.read(65536)
                if not data:
                    break
                parser.feed_data(data)
            if not state.complete:
                return "connection closed before a whole response"
            status = parser.get_status_code()
            return "" if 200 <= status < 400 else f"status {status}"
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except (OSError, httptools.HttpParserError) as exc:
        if getattr(exc, "errno", None) in OUT_OF_FILES:
            return None
        return f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()


class HealthChecker:
    def __init__(self, server: "ProxyServer") -> None:
        self.server = server
        self._tasks: dict[Backend, asyncio.Task] = {}  # by backend object: an address may change pools

    def sync(self) -> None:
        """One checking task per current backend (after start and after every reload)."""
        current = set(self.server.balancer.backends)
        for backend in list(self._tasks):
            if backend not in current:
                self._tasks.pop(backend).cancel()
        for backend in current - set(self._tasks):
            self._tasks[backend] = asyncio.ensure_future(self._watch(backend))

    async def _watch(self, backend: Backend) -> None:
        while True:
            config = backend.config  # its pool's settings, as of the last reload
            error = await probe(backend, config.health_path, config.health_timeout)
            if error:
                if backend.check_failed(error):
                    self.server.ejected(backend, "health check")
            elif error is not None and backend.check_passed():
                self.server.log.info("backend back in rotation",
                                     extra={"pool": backend.pool, "backend": backend.name, "event": "backend_up"})
            await asyncio.sleep(config.health_interval)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
