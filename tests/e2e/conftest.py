"""Fixtures of the end-to-end tests: the real proxy in front of the session's app instance,
or routed as the stack routes (with the real live process), and the real scheduler and
worker."""
import os
import subprocess
import sys
import tomllib
import uuid
import warnings

import pytest

from app.adapters.broker import Topology, connect
from app.config import Settings
from tests.conftest import ROOT, TEST_ENV
from tests.helpers import stop_process
from tests.live.conftest import LiveProcess, wait_until
from tests.proxy.conftest import Proxy, write_pools


@pytest.fixture(scope="module")
def proxy(live_server, tmp_path_factory):
    """The proxy with its default limits in front of the session's app instance (one per module)."""
    proxy = Proxy(live_server.removeprefix("http://"), tmp_path_factory.mktemp("proxy"))
    try:
        yield proxy
    finally:
        proxy.stop()


RETRY_DELAYS_MS = (50, 100, 200)


@pytest.fixture(scope="module")
def live_process(tmp_path_factory):
    process = LiveProcess(tmp_path_factory.mktemp("live") / "live.log", {"heartbeat_seconds": 2}, {}).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def routed(live_server, live_process, tmp_path_factory):
    """The proxy with the stack's routes: the app pool is the session's gunicorn, the live
    pool the live process."""
    stack = tomllib.loads((ROOT / "scripts" / "proxy.toml").read_text())
    routes = [(route["path"], route["pool"]) for route in stack["routes"]]
    folder = tmp_path_factory.mktemp("routed")
    config = write_pools(folder / "proxy.toml", live_server.removeprefix("http://"), f"127.0.0.1:{live_process.port}",
                         routes=routes)
    proxy = Proxy("", folder, config_file=config)
    try:
        yield proxy
    finally:
        proxy.stop()


class Background:
    """The scheduler's and the worker's logs, shown when what they should do does not happen."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def until(self, predicate, timeout: float, what: str) -> None:
        try:
            wait_until(predicate, timeout, 0.1, what)
        except AssertionError as exc:
            logs = "".join((self.folder / f"{m}.log").read_text()[-1500:] for m in ("worker.scheduler", "worker.consumer"))
            raise AssertionError(f"{exc}\n{logs}") from None


@pytest.fixture
def background(tmp_path):
    """``python -m worker.scheduler`` and ``python -m worker.consumer`` with queues of this
    test alone; stopped, and their queues removed, afterwards."""
    prefix = f"mqtest.{uuid.uuid4().hex[:8]}."
    env = {**os.environ, **TEST_ENV, "AMQP_PREFIX": prefix, "RETRY_DELAYS_MS": ",".join(map(str, RETRY_DELAYS_MS)),
           "RELAY_INTERVAL_SECONDS": "0.2", "LOG_LEVEL": "INFO"}
    started = []
    try:
        for module in ("worker.scheduler", "worker.consumer"):
            log = open(tmp_path / f"{module}.log", "wb")
            started.append((module, subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log,
                                                     stderr=subprocess.STDOUT), log))
        yield Background(tmp_path)
    finally:
        for _, proc, _ in started:
            proc.terminate()  # both stop at once
        for module, proc, log in started:
            # One of them once took the whole 20 s to stop (CI's time, not a failure): a slow
            # one is asked for its threads' stacks at 5 s, and they are shown as a warning.
            took = stop_process(proc, timeout=20, dump_after=5)
            log.close()
            if took > 5:
                warnings.warn(f"{module} took {took:.1f} s to stop on SIGTERM (its threads' stacks at 5 s are in "
                              f"its log):\n{(tmp_path / f'{module}.log').read_text()[-8000:]}", stacklevel=1)
        connection = connect(Settings.from_env().amqp_url)
        try:
            Topology(prefix, RETRY_DELAYS_MS).delete(connection.channel())
        finally:
            connection.close()
