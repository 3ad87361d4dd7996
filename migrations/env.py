"""Alembic's environment: the database from DATABASE_URL (or ``sqlalchemy.url``
set by the caller), the models' metadata for autogenerate. No Flask."""
import logging
import os
from logging.config import fileConfig

from alembic import context
from dotenv import load_dotenv
from sqlalchemy import create_engine

import app.models  # noqa: F401 - registers every table on the metadata
from app.db import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    load_dotenv(override=False)
    return os.environ.get("DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/marquee")


def run_migrations_offline():
    context.configure(url=database_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def skip_empty(_context, _revision, directives):
        # `alembic revision --autogenerate` with no schema change writes no file.
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    engine = create_engine(database_url())
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=Base.metadata,
                              process_revision_directives=skip_empty)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
