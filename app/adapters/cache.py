"""Read-through cache of hot catalog reads, invalidated by generation counters.

Each cached value lives under a key that includes the current generation of
every namespace it depends on (``movies``, ``showtimes``, ``res:<showtime>``...).
A write replaces the generations of what it changes *after* its commit, so the
next read computes a key nobody has filled yet and goes to PostgreSQL: a read
right after a write never sees the old value. Old entries age out by TTL.
Each process mirrors the generations (``PushedState``: every new generation is
published with its write), so a hot read costs no generation round trip.

Generations are random tokens, never counters: after Redis loses its keys
(restart, flush) a counter would start again at the same values and old
entries, here or in a process's memory, would look fresh again.

The cache never decides anything: with Redis unreachable, reads go straight to
PostgreSQL.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import redis

from app.adapters.pushed import PushedState
from app.adapters.redis_store import RedisStore

log = logging.getLogger(__name__)


class Cache:
    LOCAL_ENTRIES = 512

    def __init__(self, store: RedisStore, ttl_seconds: int) -> None:
        self.store = store
        self.ttl = ttl_seconds
        # The generations, mirrored in this process and pushed by Redis on every
        # invalidation (pushed.py): a cached read asks Redis nothing it need not.
        self.generations = PushedState(store, "generations", lambda _client: {}, self._fetch_generation)
        # Parsed values by cache key, in this process. A key embeds the current
        # generations, so a hit here is exactly as fresh as a hit in Redis.
        self._local: OrderedDict[tuple, Any] = OrderedDict()
        self._local_lock = threading.Lock()

    def _gen_key(self, namespace: str) -> str:
        return self.store.key("gen", namespace)

    def get_or_compute(
        self, namespaces: Iterable[str], name: str, params: Any, compute: Callable[[], Any],
        *, local: bool = False,
    ) -> Any:
        """Return the cached JSON-able value, or compute, store and return it.

        ``local=True`` also keeps the parsed value in this process (read-only for
        callers: it is shared), saving the Redis GET and the parse on hot paths.
        """
        if not local:
            return json.loads(self.get_or_compute_json(namespaces, name, params, compute))
        try:
            generations = self._generations(list(namespaces))
        except redis.RedisError:
            log.warning("cache unavailable, reading through", exc_info=True)
            return compute()
        # In this process the key is the tuple itself: no JSON, no digest on a hit.
        local_key = (name, params if isinstance(params, (int, str)) else _canonical(params), *generations)
        with self._local_lock:
            if local_key in self._local:
                self._local.move_to_end(local_key)
                return self._local[local_key]
        value = json.loads(self._get_or_fill(self._digest_key(name, params, generations), compute))
        with self._local_lock:
            self._local[local_key] = value
            while len(self._local) > self.LOCAL_ENTRIES:
                self._local.popitem(last=False)
        return value

    def _key(self, namespaces: list[str], name: str, params: Any) -> str:
        return self._digest_key(name, params, self._generations(namespaces))

    def _digest_key(self, name: str, params: Any, generations: list[str]) -> str:
        digest = hashlib.sha256(_canonical([params, generations]).encode()).hexdigest()[:32]
        return self.store.key("cache", name, digest)

    def _fetch_generation(self, client: redis.Redis, namespace: str) -> str | None:
        raw = client.get(self._gen_key(namespace))
        return raw.decode() if raw is not None else None

    def _generations(self, namespaces: list[str]) -> list[str]:
        mirrored = self.generations.lookup(namespaces)
        if mirrored is not None and None not in mirrored:
            return mirrored
        keys = [self._gen_key(ns) for ns in namespaces]
        gens = self.store.client.mget(keys)
        if any(g is None for g in gens):
            pipe = self.store.client.pipeline(transaction=False)
            for key, gen in zip(keys, gens, strict=True):
                if gen is None:
                    pipe.set(key, uuid.uuid4().hex, nx=True)
            pipe.mget(keys)
            gens = pipe.execute()[-1]
        return [g.decode() for g in gens]

    def _get_or_fill(self, key: str, compute: Callable[[], Any]) -> bytes:
        try:
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

    def get_or_compute_json(
        self, namespaces: Iterable[str], name: str, params: Any, compute: Callable[[], Any]
    ) -> bytes:
        """The same, as the serialized JSON itself: big cached bodies go out as stored."""
        try:
            key = self._key(list(namespaces), name, params)
        except redis.RedisError:
            log.warning("cache unavailable, reading through", exc_info=True)
            return _encode(compute())
        return self._get_or_fill(key, compute)

    def invalidate(self, *namespaces: str) -> None:
        """New generations for these namespaces; call after the write's commit."""
        if not namespaces:
            return
        pipe = self.store.client.pipeline(transaction=True)
        generations = {ns: uuid.uuid4().hex for ns in namespaces}
        for ns, generation in generations.items():
            pipe.set(self._gen_key(ns), generation)
            self.generations.publish(pipe, ns, generation)
        try:
            pipe.execute()
            self.generations.delivered()
            for ns, generation in generations.items():
                self.generations.learn(ns, generation)
        except redis.RedisError:
            # The write has committed; failing the request now would lie to the
            # client. A missed bump can serve stale data until the TTL: make it loud.
            log.error("cache invalidation failed for %s", namespaces, exc_info=True)


def _canonical(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _encode(value: Any) -> bytes:
    return json.dumps(value, default=str, separators=(",", ":")).encode()
