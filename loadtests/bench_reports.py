"""Reports benchmark: a year of sales, about a million tickets.

    .venv/bin/python -m loadtests.bench_reports [--reservations-per-showtime 12] [--runs 5]

Creates a scratch database (``marquee_bench_reports`` on the server of DATABASE_URL),
migrates it (scripts/ensure_database.py) and generates, set-based (``INSERT ... SELECT
generate_series``, not the API): 4 cities in 4 time zones, 20 theaters of 2 screens
(200 seats each), 50 movies, 3 showtimes a day on every screen for a year (43,800),
``--reservations-per-showtime`` reservations of 2 seats each (12: 525,600 reservations,
1,051,200 tickets), each with its successful charge; one in ten cancelled with its
refund (80 %). The rows are loaded with the triggers off, then ``sales_daily`` is built by
migration 0019's own backfill statements (the triggers and they say the same).

Then it times, through the app in this process (the Flask test client: view, service,
SQL, serialization), as an admin over the whole year: the sales report for each
``group_by`` (JSON, first page, which aggregates the whole year), the same as CSV
(every row), and occupancy (JSON page of 100, and the year as CSV), ``--runs`` times
each, and prints the median and max. It checks that the report's totals equal the
payments table. The database is dropped at the end, whatever happens.
Goal (issue 16): a year grouped by day under 500 ms.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

from loadtests.servers import drop_database

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "marquee_bench_reports"
YEAR_START = "2025-01-01"

GENERATE = """
SET session_replication_role = replica;  -- bulk load: no triggers; sales_daily is built after
INSERT INTO cities (name, country, timezone)
VALUES ('Paris', 'France', 'Europe/Paris'), ('New York', 'USA', 'America/New_York'),
       ('Bogota', 'Colombia', 'America/Bogota'), ('Tokyo', 'Japan', 'Asia/Tokyo');
INSERT INTO theaters (city_id, name, address)
SELECT (SELECT id FROM cities ORDER BY id OFFSET (g % 4) LIMIT 1), 'Theater ' || g, g || ' Main Street'
  FROM generate_series(1, 20) g;
INSERT INTO screens (theater_id, name, layout, seat_count)
SELECT t.id, 'Screen ' || s, '{"rows": []}', 200 FROM theaters t, generate_series(1, 2) s;
INSERT INTO seats (screen_id, row_label, number, label, category, row_index, col_index)
SELECT sc.id, chr(65 + (n - 1) / 20), (n - 1) % 20 + 1, chr(65 + (n - 1) / 20) || ((n - 1) % 20 + 1),
       'standard', (n - 1) / 20, (n - 1) % 20
  FROM screens sc, generate_series(1, 200) n;
INSERT INTO movies (title, duration_minutes) SELECT 'Movie ' || g, 110 FROM generate_series(1, 50) g;
INSERT INTO users (email, name, password_hash, role)
SELECT 'bench' || g || '@example.com', 'Bench ' || g, 'x', 'user' FROM generate_series(1, 1000) g;
INSERT INTO showtimes (movie_id, screen_id, starts_at, ends_at, prices, currency)
SELECT (SELECT min(id) FROM movies) + (d * 3 + slot + sc.id) % 50, sc.id,
       (DATE '{START}' + d) + make_interval(hours => 10 + slot * 5),
       (DATE '{START}' + d) + make_interval(hours => 10 + slot * 5, mins => 120),
       '{"standard": 1000}', 'EUR'
  FROM screens sc, generate_series(0, 364) d, generate_series(0, 2) slot;
-- sold 0 to 14 days before the show; one in ten cancelled a day after
CREATE TEMP TABLE facts AS
SELECT st.id AS showtime_id, st.screen_id, k, st.starts_at,
       st.starts_at - make_interval(mins => ((st.id * 7919 + k * 104729) % (14 * 24 * 60))::int) AS sold_at,
       ((st.id + k) % 10 = 0) AS cancelled,
       (SELECT min(id) FROM users) + (st.id * 31 + k) % 1000 AS user_id
  FROM showtimes st, generate_series(1, {PER}) k;
INSERT INTO reservations (user_id, showtime_id, status, total_cents, currency, hold_id, expires_at, created_at,
                          confirmed_at, cancelled_at, discount_cents, refund_cents)
SELECT user_id, showtime_id, CASE WHEN cancelled THEN 'cancelled' ELSE 'confirmed' END,
       2000 - CASE WHEN k % 5 = 0 THEN 200 ELSE 0 END, 'EUR', 'bench-' || showtime_id || '-' || k,
       sold_at + interval '10 minutes', sold_at, sold_at,
       CASE WHEN cancelled THEN greatest(sold_at + interval '1 minute',
                                         least(sold_at + interval '1 day', starts_at - interval '2 hours')) END,
       CASE WHEN k % 5 = 0 THEN 200 ELSE 0 END,
       CASE WHEN cancelled THEN (2000 - CASE WHEN k % 5 = 0 THEN 200 ELSE 0 END) * 8 / 10 END
  FROM facts ORDER BY sold_at;
INSERT INTO reservation_seats (reservation_id, showtime_id, seat_id, label, category, price_cents, released_at)
SELECT r.id, r.showtime_id, se.id, se.label, 'standard', 1000, r.cancelled_at
  FROM reservations r
  JOIN showtimes st ON st.id = r.showtime_id
  JOIN LATERAL (SELECT split_part(r.hold_id, '-', 3)::int AS k) kk ON true
  JOIN seats se ON se.screen_id = st.screen_id AND se.row_index * 20 + se.col_index IN (kk.k * 2 - 2, kk.k * 2 - 1);
INSERT INTO payments (reservation_id, kind, status, amount_cents, currency, gateway_ref, idempotency_key, created_at)
SELECT id, 'charge', 'succeeded', total_cents, currency, 'ch_bench', 'reservation-' || id, confirmed_at
  FROM reservations;
INSERT INTO payments (reservation_id, kind, status, amount_cents, currency, gateway_ref, idempotency_key, created_at)
SELECT id, 'refund', 'succeeded', refund_cents, currency, 're_bench', 'refund-reservation-' || id, cancelled_at
  FROM reservations WHERE status = 'cancelled';
SET session_replication_role = origin;
"""


def _backfill_sql() -> str:
    """Migration 0019's backfills: the summaries from the payments and reservations there are."""
    path = ROOT / "migrations" / "versions" / "0019_refunds_reports.py"
    spec = importlib.util.spec_from_file_location("migration_0019", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BACKFILL + module.BACKFILL_THEATERS


def generate(url, per_showtime: int) -> None:
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                            dbname=DATABASE)
    try:
        with conn, conn.cursor() as cur:
            started = time.monotonic()
            cur.execute(GENERATE.replace("{START}", YEAR_START).replace("{PER}", str(int(per_showtime))))
            cur.execute("SELECT count(*) FROM reservation_seats")
            tickets = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM reservations")
            reservations = cur.fetchone()[0]
            print(f"generated {reservations:,} reservations, {tickets:,} tickets in "
                  f"{time.monotonic() - started:.1f} s")
            started = time.monotonic()
            cur.execute(_backfill_sql())
            cur.execute("SELECT count(*) FROM sales_daily")
            print(f"sales_daily: {cur.fetchone()[0]:,} rows built in {time.monotonic() - started:.1f} s")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()


def admin_token(client, url) -> str:
    body = {"email": "bench-admin@example.com", "password": "bench-password-1", "name": "Admin"}
    registered = client.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.json
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                            dbname=DATABASE)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE users SET role = 'admin' WHERE email = %s", (body["email"],))
    conn.close()
    login = client.post("/api/v1/auth/login", json={"email": body["email"], "password": body["password"]})
    assert login.status_code == 200, login.json
    return login.json["access_token"]


def timed(client, token, path, params, runs) -> tuple[list[float], object]:
    times, response = [], None
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path, query_string=params, headers={"Authorization": f"Bearer {token}"})
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.data[:300]
    return times, response


def bench(runs: int, url) -> None:
    from app.web import create_app

    app = create_app()
    client = app.test_client()
    token = admin_token(client, url)
    # the year of showtimes, the two weeks of sales before the first of them, and the
    # last evening's shows, on 1 January in Tokyo
    year = {"from": "2024-12-15", "to": "2026-01-01"}
    lines = [f"{'case':<34} {'median ms':>10} {'max ms':>10}  rows"]
    print(lines[0], flush=True)

    def line(name, times, rows):
        lines.append(f"{name:<34} {statistics.median(times):>10.1f} {max(times):>10.1f}  {rows}")
        print(lines[-1], flush=True)

    for group_by in ("day", "week", "month", "movie", "theater", "showtime"):
        times, r = timed(client, token, "/api/v1/reports/sales", {**year, "group_by": group_by}, runs)
        pages = json.loads(r.headers["X-Pagination"])
        line(f"sales {group_by} (json, page 1)", times, f"{pages['total']} groups")
        if group_by == "day":
            totals = r.json["totals"][0]
        times, r = timed(client, token, "/api/v1/reports/sales", {**year, "group_by": group_by, "format": "csv"},
                         runs)
        line(f"sales {group_by} (csv, all)", times, r.data.count(b"\n") - 1)
    times, r = timed(client, token, "/api/v1/reports/occupancy", {**year, "page_size": 100}, runs)
    line("occupancy (json, page of 100)", times, f"{json.loads(r.headers['X-Pagination'])['total']} showtimes")
    times, r = timed(client, token, "/api/v1/reports/occupancy", {**year, "format": "csv"}, runs)
    line("occupancy (csv, all)", times, r.data.count(b"\n") - 1)

    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                            dbname=DATABASE)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT sum(amount_cents) FILTER (WHERE kind = 'charge'), "  # every sale is in the range
                    "sum(amount_cents) FILTER (WHERE kind = 'refund') FROM payments WHERE status = 'succeeded'")
        gross, refunds = cur.fetchone()
        cur.execute("SELECT count(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id "
                    "WHERE r.status = 'confirmed'")
        tickets = cur.fetchone()[0]
    conn.close()
    assert (totals["gross_cents"], totals["refund_cents"], totals["tickets"]) == (gross, refunds, tickets), totals
    print(f"totals equal the payments table: gross {gross:,}, refunds {refunds:,}, tickets {tickets:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reservations-per-showtime", type=int, default=12)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env", override=False)
    url = make_url(os.environ.get("DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/marquee"))
    bench_url = url.set(database=DATABASE).render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": bench_url, "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10"),
           "REDIS_PREFIX": "mqbenchreports:",
           "AMQP_PREFIX": "mqbenchreports.", "JWT_SECRET_KEY": "bench-" + secrets.token_urlsafe(40),
           "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    try:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_database.py"), DATABASE], check=True,
                       env=env, capture_output=True)
        generate(url, args.reservations_per_showtime)
        bench(args.runs, url)
    finally:
        drop_database(bench_url, DATABASE)
        _forget_redis_keys(env["REDIS_URL"], env["REDIS_PREFIX"])


def _forget_redis_keys(url: str, prefix: str) -> None:
    """The sessions the benchmark's sign-ins left (they would live for the refresh token's 30 days)."""
    from app.adapters.redis_store import RedisStore

    store = RedisStore(url, prefix)
    try:
        store.delete_prefixed()
    finally:
        store.client.close()


if __name__ == "__main__":
    main()
