"""Read-through cache of hot catalog reads, invalidated by generation counters.

Each cached value lives under a key that includes the current generation of
every namespace it depends on (``movies``, ``showtimes``, ``screen:<id>``...).
A write bumps the generations of what it changes *after* its commit, so the
next read computes a key nobody has filled yet and goes to PostgreSQL: a read
right after a write never sees the old value. Old entries age out by TTL.

The cache never decides anything: with Redis unreachable, reads go straight to
PostgreSQL.
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Callable, Iterable

import redis

from app.adapters.redis_store import RedisStore

log = logging.getLogger(__name__)


class Cache:
    def __init__(self, store: RedisStore, ttl_seconds: int) -> None:
        self.store = store
        self.ttl = ttl_seconds

    def _gen_key(self, namespace: str) -> str:
        return self.store.key("gen", namespace)

    def get_or_compute(
        self, namespaces: Iterable[str], name: str, params: Any, compute: Callable[[], Any]
    ) -> Any:
        """Return the cached JSON-able value, or compute, store and return it."""
        return json.loads(self.get_or_compute_json(namespaces, name, params, compute))

    def get_or_compute_json(
        self, namespaces: Iterable[str], name: str, params: Any, compute: Callable[[], Any]
    ) -> bytes:
        """The same, as the serialized JSON itself: big cached bodies go out as stored."""
        namespaces = list(namespaces)
        try:
            gens = self.store.client.mget([self._gen_key(ns) for ns in namespaces])
            generations = [(g or b"0").decode() for g in gens]
            digest = hashlib.sha256(
                json.dumps([params, generations], default=str, sort_keys=True).encode()
            ).hexdigest()[:32]
            key = self.store.key("cache", name, digest)
            raw = self.store.client.get(key)
            if raw is not None:
                return raw
        except redis.RedisError:
            log.warning("cache unavailable, reading through", exc_info=True)
            return _encode(compute())
        raw = _encode(compute())
        try:
            self.store.client.set(key, raw, ex=self.ttl)
        except redis.RedisError:
            log.warning("cache write failed", exc_info=True)
        return raw

    def invalidate(self, *namespaces: str) -> None:
        """Bump generations; call after the write's commit."""
        if not namespaces:
            return
        pipe = self.store.client.pipeline(transaction=False)
        for ns in namespaces:
            pipe.incr(self._gen_key(ns))
        try:
            pipe.execute()
        except redis.RedisError:
            # The write has committed; failing the request now would lie to the
            # client. A missed bump can serve stale data until the TTL: make it loud.
            log.error("cache invalidation failed for %s", namespaces, exc_info=True)


def _encode(value: Any) -> bytes:
    return json.dumps(value, default=str, separators=(",", ":")).encode()
