"""Create a PostgreSQL database if it does not exist, then apply migrations to it.

    python scripts/ensure_database.py NAME

The server and role come from DATABASE_URL (or .env); only the database name is
replaced, so the stack (``marquee``) and the tests (``marquee_test``) never share one.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg2
from dotenv import load_dotenv
from psycopg2 import sql
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent


def main(name: str) -> None:
    load_dotenv(ROOT / ".env", override=False)
    url = make_url(os.environ.get("DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/marquee"))
    conn = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"[setup] created database {name}")
    conn.close()

    sys.path.insert(0, str(ROOT))
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "migrations" / "alembic.ini"))
    # %% escapes for configparser (a password may hold a %)
    config.set_main_option("sqlalchemy.url",
                           url.set(database=name).render_as_string(hide_password=False).replace("%", "%%"))
    command.upgrade(config, "head")
    print(f"[setup] database {name} is at the latest migration")


if __name__ == "__main__":
    main(sys.argv[1])
