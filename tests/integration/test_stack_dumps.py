"""The worker's and the scheduler's answers to signals, as processes: ``kill -USR1 <pid>``
logs every thread's stack (``app.logging_setup.dump_stacks_on_sigusr1``) and the process
goes on; SIGTERM stops the worker whichever of its threads the kernel hands it to. The live
process's stacks: tests/live/test_stack_dump.py."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_ENV
from tests.helpers import logged_stacks, stop_process, wait_until


def _start(module: str, prefix: str, log_path: Path, ready: str) -> subprocess.Popen:
    env = {**os.environ, **TEST_ENV, "AMQP_PREFIX": prefix, "LOG_LEVEL": "INFO", "RELAY_INTERVAL_SECONDS": "0.2"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    wait_until(lambda: ready in log_path.read_text(), 30, 0.05, f"{module} to start")
    return proc


@pytest.mark.parametrize("module, ready, thread, frame", [
    ("worker.scheduler", "scheduler started", "outbox-relay", "in _relay_until"),
    ("worker.consumer", '"consuming"', "payments.charge-0", "in _consume"),
])
def test_sigusr1_logs_every_threads_stack_and_the_process_goes_on(module, ready, thread, frame, broker, tmp_path):
    log_path = tmp_path / f"{module}.log"
    proc = _start(module, broker.prefix, log_path, ready)
    try:
        proc.send_signal(signal.SIGUSR1)
        threads = wait_until(lambda: logged_stacks(log_path), 10, 0.05, f"{module}'s stacks in its log")
        by_name = {t["thread"]: "".join(t["stack"]) for t in threads}
        assert "MainThread" in by_name and len(by_name) >= 2  # every thread, not only the main one
        assert frame in by_name[thread], by_name.get(thread)
        assert proc.poll() is None  # still running
    finally:
        stop_process(proc, timeout=20)
    assert proc.returncode == 0  # and it still stops cleanly when asked


def test_the_worker_stops_on_a_sigterm_the_kernel_hands_to_one_of_its_other_threads(broker, tmp_path):
    """Python runs a signal's handler in the main thread, which only learns of a signal that
    another thread received when it next runs Python: the worker's main thread, waiting for
    the consuming threads in a join without a timeout, slept through it (a worker then
    stopped only at SIGKILL). kill() aimed at another thread's id hands the signal to that
    thread, as the kernel may choose to for a signal sent to the process."""
    log_path = tmp_path / "worker.consumer.log"
    proc = _start("worker.consumer", broker.prefix, log_path, '"consuming"')
    try:
        other = next(int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task") if int(tid) != proc.pid)
        os.kill(other, signal.SIGTERM)
        proc.wait(10)
    finally:
        stop_process(proc, timeout=5)
    assert proc.returncode == 0
    assert "stopping after the messages in hand" in log_path.read_text()
