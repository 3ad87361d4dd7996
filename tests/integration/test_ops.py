"""Operations: health, readiness, metrics, JSON logs with request ids, docs offline."""
import json
import time
from dataclasses import replace

import pytest
import requests

from app.config import Settings
from app.web import create_app


def test_health_is_200(client):
    assert client.get("/health").json == {"status": "ok"}


def test_ready_is_200_while_postgresql_and_redis_answer(client):
    r = client.get("/ready")
    assert r.status_code == 200 and r.json["checks"] == {"postgresql": "ok", "redis": "ok"}


def _app_with(**changes):
    settings = replace(Settings.from_env(), **changes)
    return create_app(settings)


def test_ready_names_redis_when_redis_is_unreachable():
    app = _app_with(redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    r = app.test_client().get("/ready")
    assert r.status_code == 503 and r.json["failed"] == ["redis"]
    assert r.content_type == "application/problem+json"


def test_ready_names_postgresql_when_it_is_unreachable():
    app = _app_with(database_url="postgresql+psycopg2://postgres@127.0.0.1:1/marquee_test")
    r = app.test_client().get("/ready")
    assert r.status_code == 503 and r.json["failed"] == ["postgresql"]


def test_an_unreachable_redis_is_503_not_500_for_authenticated_calls(api, admin):
    app = _app_with(redis_url="redis://127.0.0.1:1/0")
    r = app.test_client().get("/api/v1/users/me", headers={"Authorization": f"Bearer {admin}"})
    # The token cannot be checked against revocations: fail closed, clearly.
    assert r.status_code in (401, 503)
    assert r.status_code != 500


def test_metrics_count_requests_per_route_across_workers(live_server):
    for _ in range(3):
        requests.get(live_server + "/api/v1/movies")
    body = requests.get(live_server + "/metrics").text
    line = next(li for li in body.splitlines()
                if li.startswith('marquee_http_requests_total{') and 'route="/api/v1/movies"' in li
                and 'method="GET"' in li and 'status="200"' in li)
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert "marquee_http_request_duration_seconds_bucket" in body


def test_logs_are_json_and_carry_the_request_id(live_server, live_server_log):
    requests.get(live_server + "/api/v1/movies", headers={"X-Request-ID": "trace-me-42"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in live_server_log.read_text().splitlines():
            if "trace-me-42" in line:
                record = json.loads(line)
                assert record["request_id"] == "trace-me-42"
                assert record["route"] == "/api/v1/movies" and record["status"] == 200
                assert "ts" in record and "level" in record
                return
        time.sleep(0.1)
    raise AssertionError("no JSON log line carried the request id")


def test_docs_render_with_assets_served_locally(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "/openapi.json" in page
    assert "/docs/assets/swagger-ui-bundle.js" in page and "//cdn" not in page and "https://" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        r = client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200 and len(r.get_data()) > 1000, asset


def test_every_operation_is_documented_with_a_summary_and_its_errors(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in {"get", "post", "patch", "delete", "put"}:
                continue
            assert op.get("summary"), (method, path)
            assert any(code.startswith(("4", "5")) or code == "default" for code in op["responses"]), (method, path)
            customer_path = any(p in path for p in ("/holds", "/reservations", "/waitlist", "/reviews", "/queue", "/users/me"))
            public_read = method == "get" and (not customer_path or path.endswith(("/reviews", "/queue/status"))
                                               or path.endswith(("/qr.png", "/qr.svg")))
            signed_callback = path == "/api/v1/payments/webhook"  # an HMAC header, not a bearer token
            if not public_read and not signed_callback and "/auth/" not in path:
                assert op.get("security") == [{"bearerAuth": []}], (method, path)
                assert "401" in op["responses"], (method, path)
                if not customer_path:  # catalog writes are admin-only
                    assert "403" in op["responses"], (method, path)


def _cors_app(origins: str):
    settings = replace(Settings.from_env(), cors_origins=tuple(origins.split(",")))
    application = create_app(settings)
    application.config["TESTING"] = True
    return application.test_client()


def test_cors_answers_a_preflight_from_an_allowed_origin_only():
    client = _cors_app("https://app.example,https://admin.example")
    preflight = client.options("/api/v1/showtimes/1/holds", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key, Admission-Token"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key", "admission-token"} <= allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    stranger = client.options("/api/v1/showtimes/1/holds", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in stranger.headers


def test_cors_exposes_the_headers_a_client_reads_on_answers_and_errors():
    client = _cors_app("https://app.example")
    r = client.get("/api/v1/cities", headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-pagination", "etag", "location", "x-request-id", "idempotent-replayed", "retry-after"} <= exposed
    assert "Origin" in r.headers.get("Vary", "")
    missing = client.get("/api/v1/cities/999", headers={"Origin": "https://app.example"})
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in client.get("/api/v1/cities",
                                                           headers={"Origin": "https://evil.example"}).headers


def test_without_cors_origins_no_cors_headers_at_all(client):
    r = client.get("/api/v1/cities", headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and not any(name.startswith("Access-Control-") for name, _ in r.headers)


def test_a_pooled_connection_the_server_ended_is_replaced_before_use(app):
    """Every pooled connection's session is ended by the server (``pg_terminate_backend``,
    as a restart does) while idle: the next transactions each get a working connection,
    without a ping before every transaction (``db.replace_closed_connections``)."""
    import threading

    import psycopg2
    from sqlalchemy import text

    from app import db

    engine = app.extensions["marquee"].engine
    assert not engine.pool._pre_ping
    pids: set[int] = set()
    barrier = threading.Barrier(3)

    def hold_one() -> None:  # three connections in the pool at once
        with engine.connect() as connection:
            pids.add(connection.execute(text("SELECT pg_backend_pid()")).scalar())
            barrier.wait(5)

    threads = [threading.Thread(target=hold_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(pids) == 3
    url = engine.url
    other = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    other.autocommit = True
    try:  # a connection of its own, outside the pool
        cursor = other.cursor()
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid", (sorted(pids),))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (sorted(pids),))
            if not cursor.fetchone()[0]:
                break
            time.sleep(0.02)
    finally:
        other.close()
    seen = set()
    for _ in range(4):
        with app.app_context():
            with db.unit_of_work():
                seen.add(db.session.execute(text("SELECT pg_backend_pid()")).scalar())
            db.session.remove()
    assert seen and not seen & pids


def test_the_pool_s_check_takes_descriptors_above_1023(app):
    """The live process holds thousands of sockets, so its database connections get
    descriptors past select()'s limit: the checkout's check must take them (it raised
    "filedescriptor out of range in select()" when it used select)."""
    import os
    import resource

    from sqlalchemy import text

    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
        pytest.skip("this process may not open 1,200 descriptors")
    engine = app.extensions["marquee"].engine
    engine.dispose()
    filler = [os.open(os.devnull, os.O_RDONLY)]
    while filler[-1] < 1100:  # every lower descriptor taken: the pool's next connection's is above
        filler.append(os.open(os.devnull, os.O_RDONLY))
    try:
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection.fileno() > 1023
        with engine.connect() as connection:  # a checkout of that pooled connection
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        for fd in filler:
            os.close(fd)
        app.extensions["marquee"].engine.dispose()


_OWN_TRANSACTION = "SELECT now() = statement_timestamp() AS own"  # true for a statement that began its transaction


def test_a_statement_alone_is_its_own_transaction_and_leaves_the_pool_as_it_was(app):
    """``db.alone``: one statement, one round trip (no BEGIN before it: PostgreSQL starts
    the transaction with the statement itself, so its start and the statement's are one
    instant), and every pooled connection it used is back to transactions afterwards: the
    next statements on it share one transaction again."""
    import threading

    from sqlalchemy import text

    from app import db

    engine = app.extensions["marquee"].engine
    engine.dispose()
    barrier, answers = threading.Barrier(3), []

    def alone_at_once() -> None:  # three pooled connections through db.alone, each held at once
        with app.app_context():
            barrier.wait(5)
            answers.append(db.alone(text(_OWN_TRANSACTION + ", pg_sleep(0.2)"))[0].own)

    threads = [threading.Thread(target=alone_at_once) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == [True, True, True] and engine.pool.checkedin() == 3
    with app.app_context():
        assert db.alone(text("CREATE TEMP TABLE IF NOT EXISTS alone_check (n int)")) == []  # no rows: []
    connections = [engine.connect() for _ in range(3)]  # all three pooled connections at once
    try:
        for connection in connections:
            first = connection.execute(text("SELECT txid_current()")).scalar()
            assert not connection.execute(text(_OWN_TRANSACTION)).scalar()  # after a BEGIN
            assert connection.execute(text("SELECT txid_current()")).scalar() == first  # one transaction
    finally:
        for connection in connections:
            connection.close()
    engine.dispose()


def test_a_statement_alone_that_fails_raises_and_the_connection_goes_back_to_transactions(app):
    from sqlalchemy import text
    from sqlalchemy.exc import DataError

    from app import db

    engine = app.extensions["marquee"].engine
    engine.dispose()
    with app.app_context():
        with pytest.raises(DataError):
            db.alone(text("SELECT 1 / 0"))
        assert engine.pool.checkedin() == 1
        with engine.connect() as connection:  # the one connection there is: the one that failed
            assert connection.connection.dbapi_connection.autocommit is False
            assert not connection.execute(text(_OWN_TRANSACTION)).scalar()
    engine.dispose()
