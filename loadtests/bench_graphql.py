"""GraphQL against REST for one page view: fifty showtimes with their movie, theater,
city and seat map.

    .venv/bin/python -m loadtests.bench_graphql [--database marquee_bench_graphql]
        [--redis-url redis://127.0.0.1:6379/11] [--amqp-prefix mqbenchgql.] [--seconds 5]
        [--concurrency 8] [--rounds 3] [--keep-database]

Starts its own gunicorn (2 workers x 8 threads, as an app instance of the stack) on a
scratch database (created and migrated if missing, its catalog tables emptied first) and
its own Redis key prefix, seeds one city, theater, a 200-seat screen, ten movies and fifty
showtimes, then alternates two cases ``--rounds`` times (medians), with the asyncio
client of loadtests/client.py over ``--concurrency`` keep-alive connections:
  - GraphQL: one POST /graphql asking for the fifty showtimes with everything;
  - REST: GET /api/v1/showtimes?page_size=50, then each showtime's seat map, one after
    the other on the connection (51 requests).
Then the same without the seat maps (GraphQL without ``seatMap``; REST the list only).
Prints ms per page view, page views/s and HTTP requests/s of each. The server is
stopped, the Redis keys removed and the database dropped (unless ``--keep-database``)
at the end, whatever happens.
"""
from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
import requests

from loadtests.bench_catalog import bench_parser
from loadtests.client import Connection, Tally, run_clients
from loadtests.servers import drop_database, free_port, start_gunicorn, stop_process

ROOT = Path(__file__).resolve().parent.parent
SHOWTIMES = 50
SEAT_MAP = "seatMap { version seats { id label row number category priceCents status x y } }"
QUERY = """{ showtimes(pageSize: %d) { items {
  id startsAt startsAtLocal seatsAvailable
  movie { id title durationMinutes rating } theater { id name } city { id name timezone }
  %s } } }""" % (SHOWTIMES, SEAT_MAP)
LIST_QUERY = QUERY.replace(SEAT_MAP, "")
ADMIN = ("bench-admin@example.test", "bench-" + secrets.token_urlsafe(12))


def _post(base: str, path: str, body: dict, token: str) -> dict:
    r = requests.post(base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return r.json()


def seed(base: str) -> None:
    """One city, theater, 200-seat screen, ten movies and fifty showtimes."""
    token = requests.post(base + "/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]},
                          timeout=10).json()["access_token"]
    city = _post(base, "/api/v1/cities", {"name": "Paris", "timezone": "Europe/Paris"}, token)
    theater = _post(base, "/api/v1/theaters", {"name": "Opera", "city_id": city["id"], "address": "1 Rue X"}, token)
    rows = [{"label": chr(65 + r), "seats": ["standard"] * 9 + [None] + ["premium"] * 11} for r in range(10)]
    screen = _post(base, f"/api/v1/theaters/{theater['id']}/screens", {"name": "One", "layout": {"rows": rows}},
                   token)
    movies = [_post(base, "/api/v1/movies", {"title": f"Movie {i}", "duration_minutes": 100, "genres": ["drama"]},
                    token) for i in range(10)]
    start = datetime.now(timezone.utc).replace(microsecond=0, second=0) + timedelta(days=1)
    for i in range(SHOWTIMES):
        _post(base, "/api/v1/showtimes", {
            "movie_id": movies[i % 10]["id"], "screen_id": screen["id"],
            "starts_at": (start + timedelta(hours=2 * i)).isoformat(),
            "prices": {"standard": 1000, "premium": 1500}, "currency": "EUR"}, token)


def graphql_page_view(query: str = QUERY) -> tuple:
    body = {"query": query}

    async def client(conn: Connection, _i: int, tally: Tally, deadline: float) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await conn.request("POST", "/graphql", body=body)
            tally.latencies.append(time.perf_counter() - started)
            tally.errors += response.status != 200 or b'"errors"' in response.body
    return client, 1


def rest_page_view(seat_maps: bool = True) -> tuple:
    async def client(conn: Connection, _i: int, tally: Tally, deadline: float) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            listed = await conn.request("GET", f"/api/v1/showtimes?page_size={SHOWTIMES}")
            ok = listed.status == 200
            for showtime in listed.json() if ok and seat_maps else []:
                seat_map = await conn.request("GET", f"/api/v1/showtimes/{showtime['id']}/seats")
                ok &= seat_map.status == 200
            tally.latencies.append(time.perf_counter() - started)
            tally.errors += not ok
    return client, 1 + SHOWTIMES if seat_maps else 1


def main() -> None:
    parser = bench_parser(__doc__)
    parser.set_defaults(concurrency=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="marquee_bench_graphql", help="scratch database (emptied, then dropped)")
    parser.add_argument("--keep-database", action="store_true", help="leave the scratch database for a look")
    parser.add_argument("--postgres", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--amqp-prefix", default="mqbenchgql.")
    args = parser.parse_args()
    prefix = "mqbenchgql:"
    env = {**os.environ, "DATABASE_URL": f"{args.postgres}/{args.database}", "REDIS_URL": args.redis_url,
           "REDIS_PREFIX": prefix, "AMQP_PREFIX": args.amqp_prefix, "JWT_SECRET_KEY": secrets.token_urlsafe(40),
           "ADMIN_EMAIL": ADMIN[0], "ADMIN_PASSWORD": ADMIN[1], "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "2"}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_database.py"), args.database], check=True,
                   env=env, capture_output=True)
    subprocess.run([sys.executable, "-c", "import sqlalchemy as sa, sys; e = sa.create_engine(sys.argv[1]);\n"
                    "with e.begin() as c: c.execute(sa.text('TRUNCATE showtimes, seats, screens, theaters, cities, "
                    "movies, users RESTART IDENTITY CASCADE'))", env["DATABASE_URL"]], check=True)
    subprocess.run([str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "bootstrap-admin"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    store = redis.Redis.from_url(args.redis_url)
    port = free_port()
    log_path = Path(f"/tmp/bench_graphql-{port}.log")
    proc = start_gunicorn(env, port, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        seed(base)
        warm = requests.post(base + "/graphql", json={"query": QUERY}, timeout=30).json()
        assert "errors" not in warm and len(warm["data"]["showtimes"]["items"]) == SHOWTIMES, warm
        cases = {"GraphQL: 1 POST /graphql": graphql_page_view(), "REST: list + 50 seat maps": rest_page_view(),
                 "GraphQL, no seat maps": graphql_page_view(LIST_QUERY),
                 "REST, the list only": rest_page_view(seat_maps=False)}
        runs: dict[str, list[Tally]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (client, _requests) in cases.items():
                runs[name].append(run_clients(base, client, args.concurrency, args.seconds))
        print(f"gunicorn 2 workers x 8 threads on {args.database}; {args.concurrency} keep-alive connections, "
              f"{args.seconds:.0f}s per case, {args.rounds} rounds alternated (medians); a page view = "
              f"{SHOWTIMES} showtimes with movie, theater, city and the 200-seat map")
        print(f"{'case':30} {'ms/view':>8} {'p95 ms':>8} {'views/s':>8} {'req/s':>8} {'errors':>7}")
        for name, tallies in runs.items():
            per_view = cases[name][1]
            views = statistics.median(t.rate for t in tallies)
            print(f"{name:30} {statistics.median(t.mean_ms for t in tallies):8.1f} "
                  f"{statistics.median(t.percentile_ms(95) for t in tallies):8.1f} {views:8.1f} "
                  f"{views * per_view:8.1f} {sum(t.errors for t in tallies):7d}")
    finally:
        stop_process(proc)
        keys = list(store.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            store.delete(*keys[start:start + 500])
        if not args.keep_database:
            drop_database(env["DATABASE_URL"], args.database)


if __name__ == "__main__":
    main()
