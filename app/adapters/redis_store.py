"""One Redis client per process, and the key naming every adapter uses.

All keys start with ``REDIS_PREFIX`` (``mq:`` for the stack, another for the
tests), so a running stack and the test suite never touch each other's keys.
Keys about one showtime carry the hash tag ``{st:<id>}`` so that multi-key Lua
scripts stay legal on Redis Cluster.
"""
from __future__ import annotations

from importlib import resources

import redis


class RedisStore:
    PUSHED_RESET = b"\x00reset"  # a pushed state's message: load everything again (pushed.py)
    RESERVATIONS_CHANNEL = "reservations"  # ``announce_reservations``' (a pushed channel: told of resets too)

    def __init__(self, url: str, prefix: str, *, cluster: bool = False) -> None:
        """``cluster``: ``url`` names one node of a Redis Cluster (redis-py's cluster
        client routes each command, and each script by its first key, to the node of
        its slot). The seat store's scripts keep to one showtime's hash tag, so they
        run there unchanged (tests/integration/test_redis_cluster.py)."""
        self.prefix = prefix
        options = {"socket_timeout": 2, "socket_connect_timeout": 2, "health_check_interval": 30}
        if cluster:
            self.client = redis.RedisCluster.from_url(url, **options)
        else:
            self.client = redis.Redis.from_url(url, retry_on_timeout=True, **options)

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def showtime_key(self, showtime_id: int, *parts: object) -> str:
        """A key of one showtime, carrying its cluster hash tag."""
        return self.key("{st:%d}" % showtime_id, *parts)

    def pushed_channel(self, name: str) -> str:
        """The pub/sub channel of a state mirrored in every process (``app.adapters.pushed``).
        Channels are global to a Redis server, whatever the database, so the channel names
        the database too: two users of one prefix in two databases never hear each other."""
        database = self.client.get_connection_kwargs().get("db", 0) if hasattr(self.client, "get_connection_kwargs") else 0
        return self.key("pushed", f"db{database}", name)

    def announce_reservations(self, reservation_ids) -> None:
        """Tell whoever follows these reservations (the live process's reservation streams)
        that they changed: their ids on one pub/sub channel, after the change's commit. A
        hint to read them again, never the state itself (which PostgreSQL keeps)."""
        pipe = self.client.pipeline(transaction=False)
        for reservation_id in reservation_ids:
            pipe.publish(self.pushed_channel(self.RESERVATIONS_CHANNEL), str(reservation_id))
        pipe.execute()

    def script(self, name: str, *, prelude: str | None = None):
        """Load ``lua/<name>.lua`` once (after ``lua/<prelude>.lua``, its shared
        functions, when given); redis-py runs it by SHA with EVAL fallback."""
        lua = resources.files("app.adapters.lua")
        source = (lua.joinpath(f"{prelude}.lua").read_text() if prelude else "") + lua.joinpath(f"{name}.lua").read_text()
        return self.client.register_script(source)

    def delete_prefixed(self, pattern: str = "*") -> int:
        """Delete our own keys matching ``pattern`` (after the prefix), by SCAN.

        Used by tests and maintenance; never FLUSHDB/FLUSHALL. Every state mirrored
        in processes (``app.adapters.pushed``) is told to load again.
        """
        removed = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=self.prefix + pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += self.client.unlink(*batch)
                batch.clear()
        if batch:
            removed += self.client.unlink(*batch)
        # Processes mirroring some of these keys (pushed.py) must load them again; as every
        # writer of a pushed state does (``PushedState.delivered``), wait for one more answer
        # from Redis, so that the announcement is in every subscriber's socket on return (a
        # test's next read in this process found its mirror not yet told, and served a cache
        # entry from before the deletion).
        channels = self.client.pubsub_channels(self.pushed_channel("*"))
        for channel in channels:
            self.client.publish(channel, self.PUSHED_RESET)
        if channels:
            self.client.ping()
        return removed
