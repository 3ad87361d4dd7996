"""Shared fixtures. The suite talks to the real PostgreSQL and Redis, in its own
database (``marquee_test``) and key prefix (``mqtest:``), so a running stack and
the tests never disturb each other."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent

# Test settings, fixed before the app is imported; .env (the stack's) never applies.
TEST_ENV = {
    "DATABASE_URL": os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/marquee_test"
    ),
    "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "REDIS_PREFIX": "mqtest:",
    "JWT_SECRET_KEY": "test-" + secrets.token_urlsafe(40),
    # Cheap hashing keeps the suite fast; production defaults are argon2id t=3, m=64 MiB.
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "1024",
    "ARGON2_PARALLELISM": "1",
    "LOG_LEVEL": "WARNING",
    "LOGIN_MAX_FAILURES_PER_ACCOUNT": "5",
    "LOGIN_MAX_FAILURES_PER_ADDRESS": "20",
    "AMQP_PREFIX": os.environ.get("TEST_AMQP_PREFIX", "mqtest."),  # a side suite beside `make test`
    # Every setting the stack's .env may carry is pinned here, so that a test
    # process (and the gunicorn it starts, which loads .env) never inherits one.
    "TICKET_SIGNING_KEY": "test-tickets-" + secrets.token_urlsafe(32),
    "TICKET_KEYS_ENCRYPTION_KEY": "test-ticket-keys-" + secrets.token_urlsafe(32),
    "PAYMENT_WEBHOOK_SECRET": "test-webhook-" + secrets.token_urlsafe(32),
    "MFA_ENCRYPTION_KEY": "test-mfa-" + secrets.token_urlsafe(32),
    "REQUIRE_STAFF_MFA": "",
    "ADMIN_EMAIL": "",
    "ADMIN_PASSWORD": "",
    # SMS and push sinks: never the stack's var/ (tests that read them swap in their own)
    "SMS_SINK_DIR": os.path.join(tempfile.gettempdir(), "marquee-test-sinks", "sms"),
    "PUSH_SINK_DIR": os.path.join(tempfile.gettempdir(), "marquee-test-sinks", "push"),
}
os.environ.update(TEST_ENV)

from app import db  # noqa: E402
from app.web import create_app  # noqa: E402
from tests.helpers import ApiClient, free_port, stop_process  # noqa: E402

TABLES = ["showtimes", "seats", "screens", "theaters", "cities", "movies", "users"]


@pytest.fixture(scope="session")
def app():
    """The Flask app, bound to the migrated test database."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ensure_database.py"), TEST_ENV["DATABASE_URL"].rsplit("/", 1)[1]],
        check=True, env={**os.environ, "DATABASE_URL": TEST_ENV["DATABASE_URL"]},
        capture_output=True,
    )
    application = create_app()
    application.config["TESTING"] = True
    return application


def _tables_in_db(app) -> list[str]:
    from sqlalchemy import text

    rows = db.session.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
    ).scalars()
    return list(rows)


@pytest.fixture(scope="session", autouse=True)
def no_queues_left_behind():
    """Backstop: whatever ran under the suite's default prefix is removed at the end."""
    yield
    from app.adapters.broker import Topology, connect
    from app.config import Settings

    settings = Settings.from_env()
    try:
        connection = connect(settings.amqp_url)
    except Exception:  # noqa: BLE001 - no broker, nothing to clean
        return
    try:
        Topology(TEST_ENV["AMQP_PREFIX"], settings.retry_delays_ms).delete(connection.channel())
    finally:
        connection.close()


@pytest.fixture(autouse=True)
def clean_state(app):
    """Every test starts with empty tables and none of the suite's Redis keys.

    DELETE, not TRUNCATE: a TRUNCATE of the schema's thirty-odd tables cost about 0.19 s
    a test (a new file for each table), a DELETE of what a test left a hundredth of
    that. Triggers are off for this transaction (``session_replication_role``): the
    foreign keys' (so the order does not matter), the summary tables' and the audit
    log's, which refuses DELETE to everyone else. The id sequences start again at 1,
    as TRUNCATE ... RESTART IDENTITY did."""
    from sqlalchemy import text

    with app.app_context():
        tables = _tables_in_db(app)
        if tables:
            db.session.execute(text("SET LOCAL session_replication_role = replica"))
            for table in tables:
                db.session.execute(text(f'DELETE FROM "{table}"'))
            db.session.execute(text(
                "SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'S' AND n.nspname = 'public'"))
            db.session.commit()
        app.extensions["marquee"].redis.delete_prefixed()
    yield


@pytest.fixture
def client(app):
    """A Flask test client (real PostgreSQL and Redis behind it)."""
    return app.test_client()


@pytest.fixture
def api(client):
    """The test client wrapped with JSON and token helpers."""
    return ApiClient(client)


@pytest.fixture
def admin(api, app):
    """An admin's access token."""
    return api.make_user("admin@test.example", role="admin")


@pytest.fixture
def user(api):
    """A customer's access token."""
    return api.make_user("user@test.example")


@pytest.fixture
def other(api):
    """A second customer's access token."""
    return api.make_user("other@test.example")


@pytest.fixture
def show(api, admin):
    """A showtime tomorrow in Paris on a 6-seat screen (A1, A2, A3 premium; B1, B2, B3 premium)."""
    return api.catalog(admin)


@pytest.fixture(scope="session")
def live_server_log(tmp_path_factory) -> Path:
    """Where the live server's JSON logs go."""
    return tmp_path_factory.mktemp("live") / "gunicorn.log"


def start_app_instance(port: int, log_path: Path, metrics_dir: Path) -> subprocess.Popen:
    """A real gunicorn (2 worker processes) serving the test database on ``port``;
    returns once it answers /health."""
    env = {**os.environ, **TEST_ENV, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2",
           "LOG_LEVEL": "INFO", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(base + "/health", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:  # not listening yet, or workers still importing
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError("gunicorn did not start: " + log_path.read_text()[-2000:])
        time.sleep(0.2)


@pytest.fixture(scope="session")
def live_server(app, live_server_log, tmp_path_factory):
    """A real gunicorn (2 worker processes x 8 threads) serving the test database."""
    port = free_port()
    proc = start_app_instance(port, live_server_log, tmp_path_factory.mktemp("prometheus"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
