"""Search benchmark: latency per query over 20,000 generated movies.

    .venv/bin/python -m loadtests.bench_search [--movies 20000] [--queries 300] [--no-http] [--explain]

Creates a scratch database (``marquee_bench_search`` on the server of DATABASE_URL),
migrates it (scripts/ensure_database.py), fills it with ``--movies`` plausible movies
(titles, genres and descriptions, some with accents) and a few hundred theaters and
cities, then times ``--queries`` varied queries (exact words, typos, prefixes,
accented and unaccented spellings, several words) one after another, each kind:

  - through the service (``app.services.search``: the SQL and the Python around it);
  - through HTTP against a gunicorn of its own (2 workers, on a free loopback port),
    over one keep-alive connection (loadtests/client.py), so that each figure is one
    request's latency, not a queue's.

and prints p50, p95, p99 and max per case. ``--explain`` prints EXPLAIN ANALYZE of a
typical search and suggestion. The gunicorn is stopped and the database dropped at
the end, whatever happens. Goal (issue 17): suggestions p99 under 30 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2.extras import execute_values
from sqlalchemy.engine import make_url

from loadtests.servers import drop_database, free_port, start_gunicorn, stop_process

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "marquee_bench_search"

ADJECTIVES = ["Silent", "Last", "Broken", "Golden", "Dark", "Little", "Lost", "Crimson", "Hidden", "Wild",
              "Eternal", "Frozen", "Burning", "Secret", "Final", "Electric", "Midnight", "Hollow", "Savage",
              "Gentle", "Naïve", "Fiancée", "Éternel", "Dernière", "Señorita", "Über", "Rêveuse", "Sombre",
              "Bitter", "Distant", "Quiet", "Restless", "Scarlet", "Silver", "Tender", "Violent", "Wandering",
              "Forgotten", "Impossible", "Invisible", "Northern", "Perfect", "Radiant", "Sacred", "Stolen", "Velvet"]
NOUNS = ["River", "Empire", "Garden", "Shadow", "Kingdom", "Horizon", "Storm", "Mirror", "Harbor", "Promise",
         "Highway", "Orchard", "Station", "Summer", "Winter", "Voyage", "Symphony", "Machine", "Frontier",
         "Godfather", "Detective", "Stranger", "Café", "Château", "Noël", "Mañana", "Crème", "Déjà Vu", "Forêt",
         "Été", "Piñata", "Jalapeño", "Smörgåsbord", "Zoë", "Amélie", "Cœur", "Ångström", "Lighthouse", "Orchestra",
         "Carnival", "Cathedral", "Compass", "Daughter", "Emperor", "Falcon", "Fortress", "Glacier", "Hunter",
         "Island", "Journey", "Labyrinth", "Lantern", "Meadow", "Monsoon", "Nightingale", "Pilgrim", "Prophet",
         "Quarry", "Rebellion", "Sanctuary", "Serpent", "Sparrow", "Tempest", "Tide", "Valley", "Witness", "Ballad",
         "Bridge", "Canyon", "Dynasty", "Echo", "Ferry", "Gambit", "Heist", "Inferno", "Jubilee", "Kite", "Legacy"]
NAMES = ["Anna", "Marco", "Léa", "José", "Chloé", "Björn", "Zoë", "Renée", "Hélène", "Sam", "Oliver", "Maya",
         "François", "Inès", "Jürgen", "Noémie", "Ramón", "Elena", "Hugo", "Ines"]
GENRES = ["drama", "comedy", "thriller", "horror", "romance", "action", "adventure", "animation", "documentary",
          "crime", "mystery", "fantasy", "science fiction", "western", "musical", "family", "war", "history"]
VERBS = ["searches for", "escapes from", "returns to", "falls for", "betrays", "rebuilds", "discovers", "defends",
         "loses", "inherits", "investigates", "remembers", "haunts", "rescues", "confronts"]
PLACES = ["a small town", "the old harbor", "Paris", "a frozen island", "the family vineyard", "São Paulo",
          "the abandoned café", "a desert highway", "Montréal", "the mountains", "a crumbling château", "Zürich"]
CITIES = [("Paris", "France"), ("Lyon", "France"), ("Montréal", "Canada"), ("São Paulo", "Brasil"),
          ("Zürich", "Switzerland"), ("Köln", "Germany"), ("Málaga", "Spain"), ("Kraków", "Poland"),
          ("Reykjavík", "Iceland"), ("Besançon", "France"), ("London", "United Kingdom"), ("Berlin", "Germany")]


def _title(rng: random.Random) -> str:
    pattern = rng.randrange(6)
    adjective, noun, other = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(NOUNS)
    if pattern == 0:
        return f"The {adjective} {noun}"
    if pattern == 1:
        return f"{noun} of the {other}"
    if pattern == 2:
        return f"{rng.choice(NAMES)}'s {noun}"
    if pattern == 3:
        return f"{adjective} {noun} {rng.choice(['II', 'III', 'Returns', 'Reborn'])}"
    if pattern == 4:
        return f"A {noun} in {rng.choice(PLACES).removeprefix('the ').removeprefix('a ').title()}"
    return f"{noun}"


def _description(rng: random.Random) -> str:
    sentences = [f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(PLACES)}"
                 f" after the {rng.choice(ADJECTIVES).lower()} {rng.choice(NOUNS).lower()}."
                 for _ in range(rng.randint(1, 3))]
    return " ".join(sentences)


def generate_catalog(url, movies: int, rng: random.Random) -> list[str]:
    """Insert the cities, theaters and movies; the titles, for making queries."""
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                            dbname=DATABASE)
    titles = [f"{_title(rng)}" for _ in range(movies)]
    try:
        with conn, conn.cursor() as cur:
            execute_values(cur, "INSERT INTO cities (name, country, timezone) VALUES %s RETURNING id",
                           [(name, country, "UTC") for name, country in CITIES]
                           + [(f"{rng.choice(NAMES)}ville {i}", "Nowhere", "UTC") for i in range(48)])
            city_ids = [row[0] for row in cur.fetchall()]
            execute_values(cur, "INSERT INTO theaters (city_id, name, address) VALUES %s",
                           [(rng.choice(city_ids), f"{rng.choice(['Cinéma', 'Pathé', 'Odeon', 'Rex', 'Studio'])}"
                             f" {rng.choice(NOUNS)} {i}", f"{rng.randint(1, 200)} Rue {rng.choice(NAMES)}")
                            for i in range(300)])
            execute_values(cur, "INSERT INTO movies (title, duration_minutes, description, genres, release_date)"
                                " VALUES %s",
                           [(title, rng.randint(70, 200), _description(rng), rng.sample(GENRES, rng.randint(1, 3)),
                             f"{rng.randint(1950, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
                            for title in titles], page_size=1000)
            cur.execute("ANALYZE")
    finally:
        conn.close()
    return titles


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    return rng.choice([word[:i] + word[i + 1:], word[:i] + word[i + 1] + word[i] + word[i + 2:]])


def _unaccented(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def make_queries(titles: list[str], count: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """``count`` search queries and ``count`` suggestion prefixes, varied."""
    words = sorted({w.strip("'s") for t in titles for w in t.split() if len(w) > 2})
    searches, prefixes = [], []
    for i in range(count):
        title, word = rng.choice(titles), rng.choice(words)
        searches.append([word.lower(), _typo(word.lower(), rng), _unaccented(title), title.lower(),
                         f"{word} {rng.choice(GENRES)}", rng.choice(GENRES), rng.choice(CITIES)[0].lower(),
                         _typo(_unaccented(title).lower(), rng)][i % 8])
        prefix_word = rng.choice(title.split())
        prefixes.append([prefix_word[:rng.randint(1, 3)], prefix_word[:rng.randint(3, 7)],
                         _unaccented(prefix_word[:rng.randint(2, 6)]).lower(), title[:rng.randint(5, 14)],
                         _typo(prefix_word, rng)[:6]][i % 5])
    return searches, prefixes


def _summary(name: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    return (f"{name:<28} n={len(ordered):<4} p50 {at(50):6.2f} ms  p95 {at(95):6.2f} ms  "
            f"p99 {at(99):6.2f} ms  max {ordered[-1] * 1000:6.2f} ms")


def bench_service(searches: list[str], prefixes: list[str], explain: bool) -> list[str]:
    from app import db
    from app.services import search
    from app.web import create_app

    app = create_app()
    lines = []
    with app.app_context():
        cases = [("service search (page 1)", lambda q: search.search(q, page=1, page_size=10), searches),
                 ("service suggest (10)", lambda q: search.suggest(q, limit=10), prefixes)]
        for name, call, queries in cases:
            for q in queries[:20]:  # warm the caches and the connection
                call(q)
                db.session.rollback()
            latencies = []
            for q in queries:
                started = time.perf_counter()
                call(q)
                db.session.rollback()
                latencies.append(time.perf_counter() - started)
            lines.append(_summary(name, latencies))
        if explain:
            _explain(db, search)
    return lines


def _explain(db, search) -> None:
    """The plans of the service's statements over movies."""
    from sqlalchemy import text

    for title, sql, q in [("search", search._HITS["movie"], "godfathr"),
                          ("suggest: completions", search._COMPLETIONS["movie"], "godf"),
                          ("suggest: one or two letters", search._SHORT_COMPLETIONS["movie"], "go"),
                          ("suggest: close names", search._CLOSE_NAMES["movie"], "godfathr")]:
        plan = db.session.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql), {"q": q, "limit": 10}).scalars().all()
        print(f"\n-- {title}, q={q!r}:\n" + "\n".join(plan))
        db.session.rollback()


def bench_http(port: int, searches: list[str], prefixes: list[str]) -> list[str]:
    from urllib.parse import quote

    from loadtests.client import Connection

    async def timed(paths: list[str]) -> list[float]:
        latencies = []
        async with Connection("127.0.0.1", port) as conn:
            for path in paths[:20]:
                await conn.request("GET", path)
            for path in paths:
                started = time.perf_counter()
                response = await conn.request("GET", path)
                latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    raise RuntimeError(f"{path}: {response.status} {response.body[:300]!r}")
        return latencies

    lines = []
    for name, paths in [("HTTP GET /search", [f"/api/v1/search?q={quote(q)}" for q in searches]),
                        ("HTTP GET /search/suggest", [f"/api/v1/search/suggest?q={quote(q)}" for q in prefixes])]:
        lines.append(_summary(name, asyncio.run(timed(paths))))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movies", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--no-http", action="store_true", help="time the service only")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()

    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env", override=False)
    url = make_url(os.environ.get("DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/marquee"))
    bench_url = url.set(database=DATABASE).render_as_string(hide_password=False)
    # The app (in this process and the gunicorn) sees the scratch database, and no
    # Redis key or queue of anything else (search touches neither).
    env = {**os.environ, "DATABASE_URL": bench_url, "REDIS_PREFIX": "mqbenchsearch:", "AMQP_PREFIX": "mqbenchsearch.",
           "JWT_SECRET_KEY": "bench-" + secrets.token_urlsafe(40), "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "2"}
    os.environ.update(env)
    rng = random.Random(17)
    try:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_database.py"), DATABASE], check=True,
                       env=env, capture_output=True)
        started = time.monotonic()
        titles = generate_catalog(url, args.movies, rng)
        print(f"{args.movies} movies, 300 theaters, 60 cities generated in {time.monotonic() - started:.1f} s")
        searches, prefixes = make_queries(titles, args.queries, rng)
        lines = bench_service(searches, prefixes, args.explain)
        if not args.no_http:
            with tempfile.TemporaryDirectory() as metrics_dir:
                port = free_port()
                proc = start_gunicorn({**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}, port,
                                      Path(metrics_dir) / "gunicorn.log")
                try:
                    lines += bench_http(port, searches, prefixes)
                finally:
                    stop_process(proc)
        print("\n".join(lines))
    finally:
        drop_database(bench_url, DATABASE)


if __name__ == "__main__":
    main()
