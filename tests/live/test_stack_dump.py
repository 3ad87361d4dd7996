"""``kill -USR1 <pid>`` on the live process logs its threads' stacks (one ``thread stacks``
record: ``app.logging_setup.dump_stacks_on_sigusr1``) and the process goes on serving."""
from __future__ import annotations

import signal

import requests

from tests.helpers import logged_stacks, wait_until


def test_sigusr1_logs_the_stacks_and_the_live_process_goes_on(start_live):
    live = start_live()
    live.proc.send_signal(signal.SIGUSR1)
    threads = wait_until(lambda: logged_stacks(live.log_path), 10, 0.05, "the live process's stacks in its log")
    main = next(t for t in threads if t["thread"] == "MainThread")
    assert any("live/server.py" in line for line in main["stack"])
    assert live.proc.poll() is None
    assert requests.get(live.url + "/health", timeout=5).status_code == 200
