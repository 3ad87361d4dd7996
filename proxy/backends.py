"""Backends, their keep-alive pools, and the two ways of choosing one within a backend
pool (``Balancer``, one per pool; ``proxy.pools`` routes a request to a pool).

A backend is *up* (in rotation), *down* (failed its checks or was ejected after a
connect error or timeout) or *draining* (an operator took it out: no new requests, the
ones in flight finish). A backend that comes back up ramps from a tenth of its weight to
all of it over ``slow_start`` seconds, so a cold instance is not handed a full share at once.
A backend with ``max_connections_per_backend`` requests in flight is passed over until one ends.

Settings are read from ``config``: a pool's ``PoolConfig``, or the flat ``ProxyConfig``
(both carry the same names).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from proxy.config import BackendSpec, PoolConfig, ProxyConfig

if TYPE_CHECKING:  # pragma: no cover
    from proxy.upstream import UpstreamProtocol

UP, DOWN, DRAINING = "up", "down", "draining"
_LATENCY_SAMPLES = 2048


class Backend:
    def __init__(self, spec: BackendSpec, config: PoolConfig | ProxyConfig, pool: str = "default") -> None:
        self.spec = spec
        self.name = spec.name
        self.pool = pool  # the name of the backend pool it belongs to
        self.host, self.port, self.weight = spec.host, spec.port, spec.weight
        self.config = config
        self.state = UP  # optimistic at start: the first health check follows at once
        self.draining = False
        self.removed = False  # dropped by a reload; goes once its last request ends
        self.up_since = 0.0  # 0: no ramp (a backend present from the start)
        # counters, shown on the status page and exported as metrics
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.ejections = 0
        self.connects = 0  # upstream connections opened (pool reuse keeps this low)
        self.open_connections = 0  # upstream connections open now, pooled ones included
        self.connecting = 0  # upstream connections being opened (each holds a descriptor already)
        self.check_passes = 0  # consecutive
        self.check_failures = 0  # consecutive
        self.passive_failures = 0  # consecutive connect errors or timeouts
        self.last_check_error = ""
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        # keep-alive pool: idle upstream connections, newest last
        self.idle: deque[tuple[float, "UpstreamProtocol"]] = deque()
        self._rr_current = 0.0  # smooth weighted round-robin state

    # -- selection ------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.state == UP and not self.draining and not self.removed

    @property
    def in_service(self) -> bool:
        """Not drained nor removed (it may be down): what panic mode uses."""
        return not self.draining and not self.removed

    def effective_weight(self, now: float) -> float:
        if not self.up_since or self.config.slow_start <= 0:
            return float(self.weight)
        ramp = (now - self.up_since) / self.config.slow_start
        if ramp >= 1:
            self.up_since = 0.0
            return float(self.weight)
        return self.weight * max(0.1, ramp)

    # -- health ---------------------------------------------------------------------
    def check_passed(self) -> bool:
        """Record a passing active check; True when this brings the backend back."""
        self.check_failures = 0
        self.check_passes += 1
        self.last_check_error = ""
        if self.state == DOWN and self.check_passes >= self.config.health_rise:
            self.state = UP
            self.passive_failures = 0
            self.up_since = time.monotonic()
            return True
        return False

    def check_failed(self, error: str) -> bool:
        """Record a failing active check; True when this takes the backend out."""
        self.check_passes = 0
        self.check_failures += 1
        self.last_check_error = error
        if self.state == UP and self.check_failures >= self.config.health_fall:
            self._go_down()
            return True
        return False

    def request_failed(self) -> bool:
        """A connect error or timeout seen by a request; True when it ejects the backend."""
        self.failures += 1
        self.passive_failures += 1
        if self.state == UP and self.passive_failures >= self.config.passive_failures:
            self.check_passes = 0
            self._go_down()
            return True
        return False

    def request_succeeded(self) -> None:
        self.passive_failures = 0

    def retire(self) -> None:
        """Dropped by a reload: no new requests; it goes once its last one ends."""
        self.removed = True
        self.close_idle()

    def _go_down(self) -> None:
        self.state = DOWN
        self.ejections += 1
        self.close_idle()

    # -- pool -----------------------------------------------------------------------
    def take_idle(self, now: float) -> "UpstreamProtocol | None":
        while self.idle:
            since, conn = self.idle.pop()
            if conn.reusable and now - since < self.config.pool_idle_timeout:
                return conn
            conn.close()
        return None

    def put_idle(self, conn: "UpstreamProtocol", now: float) -> None:
        if conn.reusable and self.available and len(self.idle) < self.config.pool_size:
            self.idle.append((now, conn))
        else:
            conn.close()

    def forget(self, conn: "UpstreamProtocol") -> None:
        """A pooled connection closed by the backend leaves the pool at once."""
        for i, (_, pooled) in enumerate(self.idle):
            if pooled is conn:
                del self.idle[i]
                return

    def close_idle(self, older_than: float | None = None) -> None:
        now = time.monotonic()
        keep = deque()
        while self.idle:
            since, conn = self.idle.popleft()
            if older_than is not None and now - since < older_than:
                keep.append((since, conn))
            else:
                conn.close()
        self.idle = keep

    # -- reporting ------------------------------------------------------------------
    def percentiles(self) -> dict:
        samples = sorted(self.latencies)
        if not samples:
            return {"p50": None, "p90": None, "p99": None}

        def at(q: float) -> float:
            return round(samples[min(len(samples) - 1, int(q * len(samples)))] * 1000, 2)

        return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99)}

    def status(self) -> dict:
        return {
            "name": self.name,
            "pool": self.pool,
            "weight": self.weight,
            "effective_weight": round(self.effective_weight(time.monotonic()), 2),
            "state": DRAINING if self.draining else self.state,
            "healthy": self.state == UP,
            "draining": self.draining,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "failures": self.failures,
            "ejections": self.ejections,
            "connections_opened": self.connects,
            "open_connections": self.open_connections,
            "idle_connections": len(self.idle),
            "last_check_error": self.last_check_error or None,
            "latency_ms": self.percentiles(),
        }


class Balancer:
    """One backend pool: its current backends and the strategy that picks among them."""

    def __init__(self, config: PoolConfig | ProxyConfig, name: str = "default") -> None:
        self.name = name
        self.config = config
        self.strategy = config.strategy
        self.backends: list[Backend] = [Backend(spec, config, name) for spec in config.backends]
        self._tie = 0  # rotates the start of least-connections' scan, breaking ties in turn

    def by_name(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name), None)

    def _serving(self) -> tuple[list[Backend], bool]:
        """The backends a request may go to, and whether the pool panics: as Envoy does,
        when too few backends pass their checks, the checks are more likely failing from
        overload (a slow /health) than the backends being dead, and sending everything to
        the few left would finish them off, so all in service are used; connect errors
        still move a request on, and when every one refuses: 503."""
        backends = self.backends
        for b in backends:
            if b.state != UP or b.draining or b.removed:
                break
        else:  # all of them up, the usual case: no list to build, and no panic (the threshold is at most 1)
            return backends, False
        in_service = [b for b in backends if b.in_service]
        healthy = [b for b in in_service if b.state == UP]
        panic = bool(in_service) and len(healthy) < self.config.panic_threshold * len(in_service)
        return (in_service if panic else healthy), panic

    @property
    def panicking(self) -> bool:
        return self._serving()[1]

    def choose(self, exclude: Iterable[Backend] = ()) -> Backend | None:
        """A backend among those serving, with room (``max_connections_per_backend``) and
        not in ``exclude``; None when there is none. One pass, no list built."""
        serving = self._serving()[0]
        if not serving:
            return None
        limit = self.config.max_connections_per_backend
        if self.strategy == "least_connections":
            return self._least_connections(serving, exclude, limit)
        return self._round_robin(serving, exclude, limit)

    def _round_robin(self, serving: list[Backend], exclude, limit: int) -> Backend | None:
        # nginx's smooth weighted round-robin: even spread, weights honoured
        total = 0.0
        best = None
        for backend in serving:
            if (limit and backend.in_flight >= limit) or backend in exclude:
                continue
            weight = backend.effective_weight(time.monotonic()) if backend.up_since else backend.weight
            backend._rr_current += weight
            total += weight
            if best is None or backend._rr_current > best._rr_current:
                best = backend
        if best is not None:
            best._rr_current -= total
        return best

    def _least_connections(self, serving: list[Backend], exclude, limit: int) -> Backend | None:
        # the scan starts one further each time: ties go to each backend in turn
        n = len(serving)
        start = self._tie % n
        self._tie += 1
        best, best_score = None, 0.0
        for i in range(start, start + n):
            backend = serving[i % n]
            if (limit and backend.in_flight >= limit) or backend in exclude:
                continue
            weight = backend.effective_weight(time.monotonic()) if backend.up_since else backend.weight
            score = (backend.in_flight + 1) / weight
            if best is None or score < best_score:
                best, best_score = backend, score
        return best

    def reload(self, config: PoolConfig | ProxyConfig) -> dict:
        """Adopt a new backend list: kept backends keep their state, idle connections and counters;
        new ones join (ramping up); removed ones take no new requests and go once idle."""
        current = {b.name: b for b in self.backends}
        wanted = {spec.name: spec for spec in config.backends}
        added, removed, kept = [], [], []
        backends = []
        for name, spec in wanted.items():
            backend = current.get(name)
            if backend is None:
                backend = Backend(spec, config, self.name)
                backend.up_since = time.monotonic()
                added.append(name)
            else:
                backend.weight = spec.weight
                backend.spec = spec
                kept.append(name)
            backend.config = config
            backends.append(backend)
        for name, backend in current.items():
            if name not in wanted:
                backend.retire()
                removed.append(name)
        self.backends = backends
        self.config = config
        self.strategy = config.strategy
        return {"added": added, "removed": removed, "kept": kept}

    def retire(self) -> list[str]:
        """The whole pool leaves (a reload dropped it): its backends go once idle."""
        for backend in self.backends:
            backend.retire()
        return [b.name for b in self.backends]

    def status(self) -> dict:
        return {**self.config.describe(), "panic": self.panicking}
