"""The backend pools and the routes between them: a request's path picks a pool (the first
route that matches, else the default pool), the pool's ``Balancer`` picks a backend.

Each pool keeps its own backends, strategy, health-check settings and limits; a reload
adopts new pools and routes at once, and a pool it drops lets its requests in flight finish.
"""
from __future__ import annotations

from proxy.backends import Backend, Balancer
from proxy.config import ProxyConfig
from proxy.routes import path_segments


class Router:
    def __init__(self, config: ProxyConfig) -> None:
        self.pools: dict[str, Balancer] = {pool.name: Balancer(pool, pool.name) for pool in config.pools}
        self._adopt_routes(config)

    def _adopt_routes(self, config: ProxyConfig) -> None:
        self.routes = config.routes
        self.default = self.pools[config.default_pool]
        self._table = [(route, self.pools[route.pool]) for route in config.routes]

    def route(self, target: bytes) -> Balancer:
        """The pool for a request target (its query string plays no part)."""
        if self._table:
            segments = path_segments(target)
            for route, pool in self._table:
                if route.matches(segments):
                    return pool
        return self.default

    @property
    def backends(self) -> list[Backend]:
        return [backend for pool in self.pools.values() for backend in pool.backends]

    def by_name(self, name: str) -> Backend | None:
        """A backend by address (a backend belongs to one pool)."""
        return next((b for b in self.backends if b.name == name), None)

    @property
    def panicking(self) -> bool:
        return any(pool.panicking for pool in self.pools.values())

    def reload(self, config: ProxyConfig) -> dict:
        """Adopt ``config``'s pools and routes; each kept pool adopts its backend list as
        ``Balancer.reload`` says. What changed, by pool and over all of them."""
        changes: dict[str, dict] = {}
        pools: dict[str, Balancer] = {}
        for pool_config in config.pools:
            pool = self.pools.get(pool_config.name)
            if pool is None:
                pool = Balancer(pool_config, pool_config.name)
                changes[pool.name] = {"added": [b.name for b in pool.backends], "removed": [], "kept": []}
            else:
                changes[pool.name] = pool.reload(pool_config)
            pools[pool.name] = pool
        for name, pool in self.pools.items():
            if name not in pools:
                changes[name] = {"added": [], "removed": pool.retire(), "kept": []}
        self.pools = pools
        self._adopt_routes(config)
        totals = {key: [name for change in changes.values() for name in change[key]]
                  for key in ("added", "removed", "kept")}
        return {**totals, "pools": changes}

    def status(self) -> dict:
        return {"default_pool": self.default.name,
                "pools": [pool.status() for pool in self.pools.values()],
                "routes": [route.describe() for route in self.routes]}
