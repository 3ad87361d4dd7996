"""Traces across every process (app/adapters/tracing.py, proxy/tracing.py): the real proxy, a
gunicorn, the scheduler's outbox relay, the worker and an SMTP sink, all with TRACING=on and
JSON-lines spans in a folder of this module's, read back the way a newcomer would."""
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import requests

from tests.conftest import ROOT, start_app_instance
from tests.helpers import free_port, stop_process, wait_until
from tests.proxy.conftest import Proxy


class Traced:
    def __init__(self, folder: Path, proxy: Proxy, mail: Path) -> None:
        self.folder, self.proxy, self.mail = folder, proxy, mail

    def spans(self) -> list[dict]:
        spans = []
        for path in sorted(self.folder.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():  # a line being written is completed by the next read
                    try:
                        spans.append(json.loads(line))
                    except ValueError:
                        pass
        return spans

    def trace(self, trace_id: str) -> list[dict]:
        return [s for s in self.spans() if s["context"]["trace_id"] == trace_id]


def service(span: dict) -> str:
    return span["resource"]["attributes"]["service.name"]


def proxy_span(traced: Traced, path: str) -> dict:
    """The proxy's span of the (only) request to ``path``, once exported."""
    def find():
        return next((s for s in traced.spans() if service(s) == "marquee-proxy"
                     and s["attributes"].get("url.path") == path), None)
    return wait_until(find, 15, 0.1, f"the proxy's span of {path}")


@pytest.fixture(scope="module")
def traced(live_server, tmp_path_factory):
    """Tracing on for the processes this module starts (gunicorn, proxy, and through
    ``background`` the scheduler and the worker), spans in a folder of its own; mail to a
    real SMTP sink. ``live_server`` first: the session's own gunicorn stays untraced."""
    folder = tmp_path_factory.mktemp("traces")
    mail = folder.parent / (folder.name + "-mail")
    smtp_port, app_port = free_port(), free_port()
    settings = {"TRACING": "on", "TRACES_DIR": str(folder), "OTEL_BSP_SCHEDULE_DELAY": "100",
                "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port)}
    started, proxy = [], None
    with mock.patch.dict(os.environ, settings):
        try:
            sink_log = open(folder.parent / (folder.name + "-smtp.log"), "wb")
            started.append(subprocess.Popen([sys.executable, "-m", "worker.smtp_sink", "--port", str(smtp_port),
                                             "--dir", str(mail)], cwd=ROOT, stdout=sink_log,
                                            stderr=subprocess.STDOUT))
            sink_log.close()
            started.append(start_app_instance(app_port, folder.parent / (folder.name + "-gunicorn.log"),
                                              tmp_path_factory.mktemp("prometheus")))
            proxy = Proxy(f"127.0.0.1:{app_port}", folder.parent)
            yield Traced(folder, proxy, mail)
        finally:
            if proxy is not None:
                proxy.stop()
            for proc in reversed(started):
                stop_process(proc)


def test_a_checkout_is_one_trace_from_the_proxy_to_the_email(traced, background, api, user, show):
    seat = api.get(f"/api/v1/showtimes/{show['showtime']}/seats").json["seats"][0]["id"]
    auth = {"Authorization": f"Bearer {user}"}
    held = requests.post(f"{traced.proxy.url}/api/v1/showtimes/{show['showtime']}/holds",
                         json={"seat_ids": [seat]}, headers=auth, timeout=10)
    assert held.status_code == 201, held.text
    paid = requests.post(f"{traced.proxy.url}/api/v1/reservations",
                         json={"hold_id": held.json()["id"], "payment_token": "tok_visa"}, headers=auth, timeout=10)
    assert paid.status_code in (201, 202), paid.text
    background.until(lambda: traced.mail.is_dir() and any(traced.mail.iterdir()), 30, "the confirmation email")

    root = proxy_span(traced, "/api/v1/reservations")
    trace_id = root["context"]["trace_id"]

    def whole():
        spans = traced.trace(trace_id)
        ids = {s["context"]["span_id"] for s in spans}
        emailed = any(s["name"] == "process notifications.email" for s in spans)
        return spans if emailed and all(s["parent_id"] in ids for s in spans if s["parent_id"]) else None

    try:
        spans = wait_until(whole, 15, 0.2, "the whole trace")
    except AssertionError:
        spans = traced.trace(trace_id)
    by_id = {s["context"]["span_id"]: s for s in spans}
    # every span has its parent in the trace, except the proxy's root span
    roots = [s for s in spans if s["parent_id"] is None]
    assert roots == [root]
    assert root["name"] == f"POST {root['attributes']['marquee.pool']}"
    orphans = [(service(s), s["name"]) for s in spans if s["parent_id"] is not None and s["parent_id"] not in by_id]
    assert orphans == []
    services = {service(s) for s in spans}
    assert {"marquee-proxy", "marquee-app", "marquee-scheduler", "marquee-worker"} <= services
    assert any(s["attributes"].get("db.system") == "postgresql" and service(s) == "marquee-app" for s in spans)
    assert any(s["attributes"].get("db.system") == "postgresql" and service(s) == "marquee-worker" for s in spans)
    assert root["attributes"]["http.response.status_code"] == paid.status_code
    assert root["attributes"]["marquee.backend"]

    def ancestry(span):
        chain = []
        while span is not None:
            chain.append((service(span), span["name"]))
            span = by_id.get(span["parent_id"])
        return chain

    # the email's handling descends from the request through the relay, twice: the charge's
    # message, whose handling wrote the email's outbox row, and the email's own message
    email = next(s for s in spans if s["name"] == "process notifications.email")
    chain = ancestry(email)
    assert chain[0] == ("marquee-worker", "process notifications.email")
    assert chain[1] == ("marquee-scheduler", "publish notifications.email")
    assert ("marquee-worker", "process payments.charge") in chain
    assert ("marquee-scheduler", "publish payments.charge") in chain
    assert chain[-1] == (service(root), root["name"])
    # and the mail went out inside it
    assert any(s["name"] == "smtp send" and s["parent_id"] == email["context"]["span_id"] for s in spans)
    # the scheduler's jobs and polls, run meanwhile, left no one-statement traces
    stray = [(service(s), s["name"]) for s in traced.spans() if s["kind"] == "SpanKind.CLIENT" and not s["parent_id"]]
    assert stray == []
    assert any(name == "marquee-app" and span_name.startswith("POST") for name, span_name in chain), chain


def test_an_incoming_traceparent_is_continued_and_a_malformed_one_is_not(traced):
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = requests.get(f"{traced.proxy.url}/api/v1/movies", timeout=10,
                     headers={"traceparent": f"00-{caller_trace}-{caller_span}-01", "tracestate": "vendor=1"})
    assert r.status_code == 200
    continued = proxy_span(traced, "/api/v1/movies")
    assert continued["context"]["trace_id"] == "0x" + caller_trace
    assert continued["parent_id"] == "0x" + caller_span
    # the app's span is the proxy's child: the proxy forwarded its own traceparent
    app_span = wait_until(lambda: next((s for s in traced.trace(continued["context"]["trace_id"])
                                        if service(s) == "marquee-app" and s["kind"] == "SpanKind.SERVER"), None),
                          15, 0.1, "the app's span")
    assert app_span["parent_id"] == continued["context"]["span_id"]

    malformed = f"00-{caller_trace.upper()}-{caller_span}-zz"
    r = requests.get(f"{traced.proxy.url}/api/v1/cities", timeout=10, headers={"traceparent": malformed})
    assert r.status_code == 200
    fresh = proxy_span(traced, "/api/v1/cities")
    assert fresh["parent_id"] is None
    assert fresh["context"]["trace_id"] not in ("0x" + caller_trace, "0x" + "0" * 32)
    app_span = wait_until(lambda: next((s for s in traced.trace(fresh["context"]["trace_id"])
                                        if service(s) == "marquee-app"), None), 15, 0.1, "the app's span")
    assert app_span["context"]["trace_id"] == fresh["context"]["trace_id"]
