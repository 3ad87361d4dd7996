"""A real Redis Cluster on loopback for the tests: three masters from the machine's own
``redis-server`` (cluster mode, nothing persisted), joined with ``redis-cli --cluster
create``; stopped and removed afterwards whatever happens."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.helpers import free_port, stop_process

MASTERS = 3


@contextmanager
def redis_cluster():
    """Yields ``redis://127.0.0.1:<port>`` of one node; the cluster has three masters."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        raise RuntimeError("redis-server and redis-cli are needed (Debian package redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="marquee-cluster-"))
    ports = _free_ports(2 * MASTERS)  # a client port and a cluster bus port for each node
    bus_ports, ports = ports[MASTERS:], ports[:MASTERS]
    procs: list[subprocess.Popen] = []
    try:
        for port, bus_port in zip(ports, bus_ports, strict=True):
            node = folder / str(port)
            node.mkdir()
            procs.append(subprocess.Popen(
                [server, "--port", str(port), "--cluster-port", str(bus_port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node / "nodes.conf"), "--cluster-node-timeout", "2000",
                 "--save", "", "--appendonly", "no", "--dir", str(node), "--logfile", str(node / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            _wait_for(lambda port=port: redis.Redis(port=port, socket_timeout=1).ping())
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        _wait_for(lambda: all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok" for p in ports))
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            stop_process(proc, timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (the bus port is given explicitly: port + 10000, the
    default, may be past 65535 or taken)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the Redis cluster did not come up in time")
        time.sleep(0.1)
