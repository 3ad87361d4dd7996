"""Tracing off (the default) costs nothing: no tracing SDK loaded, no span made, no exporter file,
no trace context in outbox rows, no traceparent made up. Each case runs in a fresh
interpreter (the tracer provider is a process global); the same script with TRACING=on
is the control that shows what "off" leaves out."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = r"""
import json, sys
from app.web import create_app
from app.adapters import tracing
from app.models import OutboxEvent
from opentelemetry import trace
from proxy.tracing import setup as proxy_setup

app = create_app()
client = app.test_client()
seen = {}

@app.get("/_probe")
def probe():
    seen["recording"] = trace.get_current_span().is_recording()
    seen["outbox"] = OutboxEvent(topic="t", aggregate_id="a", payload={}).trace_context
    return "ok"

client.get("/_probe")
with tracing.child_span(None, "relay") as headers:
    seen["relay_headers"] = headers
    seen["relay_recording"] = trace.get_current_span().is_recording()
proxy = proxy_setup()
seen["proxy_tracer"] = proxy is not None
if proxy is not None:
    proxy.end(proxy.start("GET", b"/x", []), pool="p", backend="b", status=200, tries=1, error="")
    proxy.shutdown()
tracing.shutdown()
# (redis-py imports the SDK's metrics on its own when it is installed: not ours)
seen["sdk_loaded"] = "opentelemetry.sdk.trace" in sys.modules
seen["provider"] = type(trace.get_tracer_provider()).__name__
print(json.dumps(seen))
"""


def run(tmp_path, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACING"))}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**clean, "TRACES_DIR": str(tmp_path / "traces"), **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_off_by_default_makes_no_span_and_no_file(tmp_path):
    seen = run(tmp_path)
    assert seen == {"recording": False, "outbox": None, "relay_headers": {}, "relay_recording": False,
                    "proxy_tracer": False, "sdk_loaded": False, "provider": "ProxyTracerProvider"}
    assert not (tmp_path / "traces").exists()


@pytest.mark.parametrize("switch", [{"TRACING": "off"}, {"TRACING": "on", "OTEL_SDK_DISABLED": "true"}])
def test_switched_off_explicitly(tmp_path, switch):
    seen = run(tmp_path, **switch)
    assert seen["recording"] is False and seen["sdk_loaded"] is False and seen["outbox"] is None
    assert not (tmp_path / "traces").exists()


def test_on_the_same_script_writes_spans(tmp_path):
    seen = run(tmp_path, TRACING="on")
    assert seen["recording"] is True and seen["relay_recording"] is True and seen["proxy_tracer"] is True
    assert seen["sdk_loaded"] is True and seen["provider"] == "TracerProvider"
    assert seen["outbox"]["traceparent"].startswith("00-")
    assert seen["relay_headers"]["traceparent"].startswith("00-")
    files = sorted(p.name.split(".")[0] for p in (tmp_path / "traces").iterdir())
    assert files == ["marquee-app", "marquee-proxy"]
    spans = [json.loads(line) for p in (tmp_path / "traces").iterdir() for line in p.read_text().splitlines()]
    assert {s["name"] for s in spans} >= {"GET /_probe", "relay", "GET p"}
