"""The live process's settings: read from LIVE_* variables, refused when unusable (the
process then exits at once, saying which)."""
from __future__ import annotations

import os
import subprocess

import pytest

from live.config import LiveConfigError, LiveSettings
from tests.live.conftest import ROOT


def test_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("LIVE_PORT", "9104")
    monkeypatch.setenv("LIVE_HEARTBEAT_SECONDS", "2.5")
    monkeypatch.setenv("LIVE_CLIENT_BUFFER_BYTES", "65536")
    monkeypatch.setenv("LIVE_LINGER_SECONDS", "0.5")
    settings = LiveSettings.from_env()
    assert (settings.port, settings.heartbeat_seconds, settings.client_buffer_bytes, settings.linger_seconds) == (
        9104, 2.5, 65536, 0.5)
    monkeypatch.delenv("LIVE_PORT")
    assert LiveSettings.from_env().port == 8004 and LiveSettings.from_env().host == "127.0.0.1"


@pytest.mark.parametrize("name, value", [("LIVE_HEARTBEAT_SECONDS", "16"), ("LIVE_HEARTBEAT_SECONDS", "0"),
                                         ("LIVE_CLIENT_BUFFER_BYTES", "lots"), ("LIVE_PORT", "70000")])
def test_an_unusable_setting_is_refused_by_name(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(LiveConfigError, match=name):
        LiveSettings.from_env()


def test_the_process_exits_at_once_on_an_unusable_setting():
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "live"], cwd=ROOT, capture_output=True,
                          env={**os.environ, "LIVE_HEARTBEAT_SECONDS": "60"}, timeout=30)
    assert done.returncode == 2 and b"LIVE_HEARTBEAT_SECONDS" in done.stderr
