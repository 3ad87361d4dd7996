"""The proxy and W3C trace context (proxy/tracing.py): off, it passes ``traceparent`` and
``tracestate`` through as it found them and writes nothing; on, the backend gets the proxy
span's ``traceparent`` (continuing a valid incoming one, a new trace for a malformed one or
none) and ``tracestate`` unchanged, and the span is written with its pool, backend and status."""
from __future__ import annotations

import json
import os
import re
from unittest import mock

import requests

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
VALID = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
W3C = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def seen_by_backend(proxy, headers: dict) -> dict:
    r = requests.get(proxy.url + "/whoami", headers=headers, timeout=5)
    assert r.status_code == 200
    return r.json()["headers"]


def test_off_passes_trace_headers_through_untouched(live_backends, start_proxy, tmp_path):
    with mock.patch.dict(os.environ, {"TRACING": "off", "TRACES_DIR": str(tmp_path / "traces")}):
        proxy = start_proxy(live_backends.spec())
    for sent in ({"traceparent": VALID, "tracestate": "vendor=1"}, {"traceparent": "garbage"}):
        got = seen_by_backend(proxy, sent)
        assert {k: got.get(k) for k in sent} == sent
    assert "traceparent" not in seen_by_backend(proxy, {})
    proxy.stop()
    assert not (tmp_path / "traces").exists()


def test_on_the_backend_gets_the_proxy_span_as_parent(live_backends, start_proxy, tmp_path):
    folder = tmp_path / "traces"
    with mock.patch.dict(os.environ, {"TRACING": "on", "TRACES_DIR": str(folder), "OTEL_BSP_SCHEDULE_DELAY": "100"}):
        proxy = start_proxy(live_backends.spec())
    continued = seen_by_backend(proxy, {"traceparent": VALID, "tracestate": "vendor=1"})
    trace_id, span_id = W3C.match(continued["traceparent"]).groups()
    assert trace_id == CALLER_TRACE and span_id != CALLER_SPAN
    assert continued["tracestate"] == "vendor=1"
    fresh = [W3C.match(seen_by_backend(proxy, headers)["traceparent"]).group(1)
             for headers in ({"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-1"}, {"traceparent": "garbage"}, {})]
    assert CALLER_TRACE not in fresh and len(set(fresh)) == 3
    proxy.stop()  # exports what is left
    spans = [json.loads(line) for path in folder.glob("marquee-proxy.*.jsonl") for line in path.read_text().splitlines()]
    assert len(spans) == 4
    first = next(s for s in spans if s["context"]["span_id"] == "0x" + span_id)
    assert first["parent_id"] == "0x" + CALLER_SPAN and first["kind"] == "SpanKind.SERVER"
    assert first["attributes"]["http.response.status_code"] == 200
    assert first["attributes"]["marquee.backend"] and first["name"] == "GET " + first["attributes"]["marquee.pool"]
    assert sorted(s["context"]["trace_id"][2:] for s in spans if s["parent_id"] is None) == sorted(fresh)
