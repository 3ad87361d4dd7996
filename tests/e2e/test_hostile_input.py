"""Hostile input through the real proxy to a real app instance (gunicorn, the test
database): however deep, long or strange a request is, the answer is the documented
4xx as a problem document with a ``code``, and nothing is written (no user, no
reservation, no outbox message, no seat held in Redis).

The limits of the layers, outermost first (each one's partner agrees, see
proxy/config.py and gunicorn.conf.py): the proxy refuses targets past 8000 bytes (414),
header fields past 32 KiB in all or past 100 of them (431) and bodies past 10 MiB (413);
gunicorn's own limits are above those, so no client reaches them through the proxy; the
app refuses bodies past MAX_CONTENT_LENGTH (1 MiB, 413) and JSON nested deeper than
MAX_JSON_DEPTH (32, 400 json_too_deep)."""
from __future__ import annotations

import json
import runpy

import pytest
import requests
from sqlalchemy import text

from app import db
from tests.proxy.conftest import LIMITS, ROOT, exchange, request_at_limit

WATCHED_TABLES = ("users", "reservations", "reservation_seats", "outbox", "payments", "waitlist_entries")
MAX_CONTENT_LENGTH = 1024 * 1024  # app/config.py's default, which the live server runs with
SIGN_UP = {"email": "hostile@test.example", "password": "correct horse battery", "name": "Hostile"}


@pytest.fixture
def stage(api, admin, user, app):
    """A showtime, a signed-in customer, and what must stay unchanged."""
    ids = api.catalog(admin)
    return {"showtime": ids["showtime"], "user": user, "before": _written(app)}


def _written(app) -> dict:
    with app.app_context():
        rows = {t: db.session.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in WATCHED_TABLES}
        store = app.extensions["marquee"].redis
        keys = sum(1 for _ in store.client.scan_iter(match=store.prefix + "{st:*}:*", count=1000))
    return {**rows, "seat_store_keys": keys}


def _assert_problem(response: requests.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"] == "application/problem+json", response.text[:500]
    body = response.json()
    assert body["status"] == status and body["code"] and body["title"] and body["detail"], body
    if code:
        assert body["code"] == code, body
    return body


def _post(proxy, path, data: bytes | str, token=None, content_type: str | None = "application/json",
          headers=None) -> requests.Response:
    sent = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    if token:
        sent["Authorization"] = f"Bearer {token}"
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return requests.post(proxy.url + path, data=data, headers=sent, timeout=30)


def _holds(stage) -> str:
    return f"/api/v1/showtimes/{stage['showtime']}/holds"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- nesting ----------------------------------------------------------------------

@pytest.mark.parametrize("depth", [10, 100, 1_000, 10_000, 100_000])
def test_any_nesting_depth_is_a_4xx_on_register_and_on_holds(proxy, stage, app, depth):
    expected = (422, "validation_error") if depth <= 32 else (400, "json_too_deep")
    register = _post(proxy, "/api/v1/auth/register", '{"email": "d@test.example", "password": "correct horse '
                     'battery", "name": ' + _nested(depth) + "}")
    _assert_problem(register, *expected)
    hold = _post(proxy, _holds(stage), '{"seat_ids": ' + _nested(depth) + "}", stage["user"])
    _assert_problem(hold, *expected)
    assert _written(app) == stage["before"]


# --- JSON that is not what is expected ----------------------------------------------

@pytest.mark.parametrize("body", ["null", "42", '"a string"', "[1, 2]", "true"])
def test_every_json_type_but_an_object_is_422(proxy, stage, app, body):
    _assert_problem(_post(proxy, "/api/v1/auth/register", body), 422, "validation_error")
    _assert_problem(_post(proxy, _holds(stage), body, stage["user"]), 422, "validation_error")
    assert _written(app) == stage["before"]


@pytest.mark.parametrize("number, expected", [
    (str(2**64 + 1), (422, "validation_error")),
    ("-" + str(2**64), (422, "validation_error")),
    ("1" + "0" * 5000, (422, "validation_error")),
    ("1e999", (422, "validation_error")),
    ("NaN", (400, "malformed_json")),
    ("Infinity", (400, "malformed_json")),
    ("-Infinity", (400, "malformed_json")),
])
def test_numbers_json_or_postgresql_cannot_carry(proxy, stage, app, number, expected):
    hold = _assert_problem(_post(proxy, _holds(stage), '{"seat_ids": [%s]}' % number, stage["user"]), *expected)
    if expected[0] == 422:
        assert list(hold["errors"]) == ["seat_ids.0"]
    body = '{"email": "n@test.example", "password": "correct horse battery", "name": %s}' % number
    _assert_problem(_post(proxy, "/api/v1/auth/register", body), *expected)
    assert _written(app) == stage["before"]


@pytest.mark.parametrize("name", ['"nul \\u0000 inside"', '"lone \\ud800 surrogate"', '"\\udfff"',
                                  '"' + "x" * 1000 + '"'])
def test_text_postgresql_cannot_store_or_too_long_is_422(proxy, stage, app, name):
    body = '{"email": "t@test.example", "password": "correct horse battery", "name": %s}' % name
    problem = _assert_problem(_post(proxy, "/api/v1/auth/register", body), 422, "validation_error")
    assert "name" in problem["errors"]
    assert _written(app) == stage["before"]


def test_a_megabyte_of_text_is_413_past_the_limit_and_422_within_it(proxy, stage, app):
    envelope = '{"email": "m@test.example", "password": "correct horse battery", "name": "%s"}'
    at_limit = envelope % ("x" * (MAX_CONTENT_LENGTH - len(envelope) + 2))
    assert len(at_limit) == MAX_CONTENT_LENGTH
    _assert_problem(_post(proxy, "/api/v1/auth/register", at_limit), 422, "validation_error")
    past = envelope % ("x" * (MAX_CONTENT_LENGTH - len(envelope) + 3))
    _assert_problem(_post(proxy, "/api/v1/auth/register", past), 413, "payload_too_large")
    _assert_problem(_post(proxy, _holds(stage), '{"seat_ids": [1], "x": "%s"}' % ("y" * MAX_CONTENT_LENGTH),
                          stage["user"]), 413, "payload_too_large")
    assert _written(app) == stage["before"]


def test_a_body_past_the_proxys_limit_is_its_413(proxy, stage, app):
    too_big = b'{"name": "' + b"x" * LIMITS["max_body_bytes"] + b'"}'
    _assert_problem(_post(proxy, "/api/v1/auth/register", too_big), 413)
    assert _written(app) == stage["before"]


# --- media types --------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz", None,
    "application/xml", "application/json;charset=latin-1", "application/json; charset=utf-16", "text/json",
])
def test_every_content_type_but_json_is_415(proxy, stage, app, content_type):
    _assert_problem(_post(proxy, "/api/v1/auth/register", json.dumps(SIGN_UP), content_type=content_type),
                    415, "unsupported_media_type")
    _assert_problem(_post(proxy, _holds(stage), '{"seat_ids": [1]}', stage["user"], content_type=content_type),
                    415, "unsupported_media_type")
    assert _written(app) == stage["before"]


def test_bytes_that_are_not_utf8_json_are_400_malformed(proxy, stage, app):
    for body in (b'{"name": "\xb7\xff"}', b"\xef\xbb\xbf{}", b"{'name': 1}", b'{"seat_ids": [1,'):
        _assert_problem(_post(proxy, _holds(stage), body, stage["user"]), 400, "malformed_json")
    assert _written(app) == stage["before"]


# --- each layer's limits, at and one byte past ----------------------------------------

def _raw_answer(raw: bytes) -> tuple[int, dict, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    assert headers.get("content-type") == "application/problem+json", raw[:500]
    problem = json.loads(body)
    assert problem["code"] and problem["status"] == int(lines[0].split(" ", 2)[1]), problem
    return problem["status"], headers, problem


def test_a_query_value_at_the_proxys_limit_gets_the_apps_problem_and_one_past_the_proxys(proxy, stage, app):
    status, _, problem = _raw_answer(exchange(proxy.port, request_at_limit("target", b"/api/v1/movies")))
    assert (status, problem["code"]) == (422, "validation_error") and "q" in problem["errors"]
    status, _, problem = _raw_answer(exchange(proxy.port, request_at_limit("target", b"/api/v1/movies", over=1)))
    assert (status, problem["code"]) == (414, "uri_too_long")
    assert _written(app) == stage["before"]


def test_a_request_line_at_gunicorns_limit_never_reaches_it(proxy, stage):
    gunicorn = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["limit_request_line"]
    target = b"/api/v1/movies?q=" + b"x" * (gunicorn - len(b"GET  HTTP/1.1") - len(b"/api/v1/movies?q="))
    assert len(b"GET " + target + b" HTTP/1.1") == gunicorn
    raw = exchange(proxy.port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % target)
    status, _, problem = _raw_answer(raw)
    assert (status, problem["code"]) == (414, "uri_too_long")  # the proxy's, not gunicorn's HTML


def _request_with_header(name: bytes, over: int) -> bytes:
    """A GET of /api/v1/users/me whose header ``name`` fills the proxy's header budget
    (each field counted as name + value + 4), ``over`` bytes past it."""
    head = [(b"Host", b"t"), (b"Connection", b"close")]
    used = sum(len(n) + len(v) + 4 for n, v in head)
    value = b"Bearer " + b"x" * (LIMITS["max_header_bytes"] - used - len(name) - 4 - len(b"Bearer ") + over)
    head.append((name, value))
    return b"GET /api/v1/users/me HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in head) + b"\r\n"


def test_a_token_at_the_header_limit_is_401_and_one_byte_past_431(proxy, stage, app):
    status, headers, problem = _raw_answer(exchange(proxy.port, _request_with_header(b"Authorization", 0)))
    assert (status, problem["code"], problem["detail"]) == (401, "token_invalid", "Invalid token")
    status, _, problem = _raw_answer(exchange(proxy.port, _request_with_header(b"Authorization", 1)))
    assert (status, problem["code"]) == (431, "headers_too_large")
    assert _written(app) == stage["before"]


def test_an_idempotency_key_at_the_header_limit_is_422_and_one_byte_past_431(proxy, stage, app):
    def hold_request(over: int) -> bytes:
        body = b'{"seat_ids": [1]}'
        head = [(b"Host", b"t"), (b"Connection", b"close"), (b"Content-Type", b"application/json"),
                (b"Content-Length", str(len(body)).encode()), (b"Authorization", f"Bearer {stage['user']}".encode())]
        used = sum(len(n) + len(v) + 4 for n, v in head)
        key = b"k" * (LIMITS["max_header_bytes"] - used - len(b"Idempotency-Key") - 4 + over)
        head.append((b"Idempotency-Key", key))
        return (b"POST " + _holds(stage).encode() + b" HTTP/1.1\r\n"
                + b"".join(n + b": " + v + b"\r\n" for n, v in head) + b"\r\n" + body)

    status, _, problem = _raw_answer(exchange(proxy.port, hold_request(0)))
    assert (status, problem["code"]) == (422, "validation_error") and "Idempotency-Key" in problem["errors"]
    status, _, problem = _raw_answer(exchange(proxy.port, hold_request(1)))
    assert (status, problem["code"]) == (431, "headers_too_large")
    assert _written(app) == stage["before"]


def test_unknown_query_parameters_and_odd_ids_through_the_proxy(proxy, stage, app):
    r = requests.get(proxy.url + "/api/v1/showtimes?moive_id=1", timeout=10)
    assert _assert_problem(r, 400, "unknown_parameter")["parameters"] == ["moive_id"]
    for path in ("/api/v1/movies/-1", f"/api/v1/movies/{2**63}", "/api/v1/movies/1e3", "/api/v1/nothing"):
        assert _assert_problem(requests.get(proxy.url + path, timeout=10), 404, "not_found")["detail"] \
            == f"No resource at {path}"
    r = requests.put(proxy.url + "/api/v1/auth/login", json={}, timeout=10)
    assert _assert_problem(r, 405, "method_not_allowed") and "POST" in r.headers["Allow"]
    assert _written(app) == stage["before"]



def test_an_answer_given_before_the_body_was_read_reaches_the_client(proxy, stage, app):
    """401 before parsing, 413 past MAX_CONTENT_LENGTH: the app reads the rest of the body
    first, so its answer (not the proxy's 502) reaches the client, every time."""
    body = b'{"seat_ids": [1], "pad": "' + b"p" * (4 * 1024 * 1024) + b'"}'
    for _ in range(3):
        _assert_problem(_post(proxy, _holds(stage), body), 401, "token_missing")
        _assert_problem(_post(proxy, _holds(stage), body, stage["user"]), 413, "payload_too_large")
        _assert_problem(_post(proxy, "/api/v1/nowhere", body), 404, "not_found")
    assert _written(app) == stage["before"]
