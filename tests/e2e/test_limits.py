"""The layers' limits agree (proxy/config.py and gunicorn.conf.py, "Limits"): through the
real proxy to a real app instance, a request right at one of the proxy's limits reaches
the app and gets its JSON answer, and one byte (or field) past gets the proxy's problem
document. gunicorn's own refusals, HTML pages, never reach a client."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.proxy.conftest import exchange, request_at_limit, wait_until

REFUSED = {"target": (414, "uri_too_long"), "header": (431, "headers_too_large"),
           "fields": (431, "headers_too_large")}


def _answer(raw: bytes) -> tuple[int, dict, object]:
    """Status, headers and JSON body of a whole response (gunicorn's HTML fails here)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    assert "json" in headers.get("content-type", ""), raw[:500]
    return int(lines[0].split(" ", 2)[1]), headers, json.loads(body)


def _app_saw(log_path, request_id: str) -> bool:
    return any(json.loads(line).get("request_id") == request_id
               for line in log_path.read_text().splitlines() if line.startswith("{"))


@pytest.mark.parametrize("what", sorted(REFUSED))
def test_a_request_at_the_proxys_limit_gets_the_apps_json_and_one_past_the_proxys_problem(
        what, proxy, live_server_log):
    request_id = "limit-" + uuid.uuid4().hex
    at = exchange(proxy.port, request_at_limit(what, b"/api/v1/movies",
                                               headers=((b"X-Request-ID", request_id.encode()),)))
    status, headers, _ = _answer(at)  # the app's JSON, whatever it says
    assert status < 500 and status not in (414, 431), at[:500]
    assert headers["x-request-id"] == request_id
    wait_until(lambda: _app_saw(live_server_log, request_id), 5, what="the app's log line")

    past = exchange(proxy.port, request_at_limit(what, b"/api/v1/movies", over=1))
    status, headers, body = _answer(past)
    assert (status, body["code"]) == REFUSED[what]
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == status and body["request_id"] == headers["x-request-id"]
