"""Readiness: whether the engines every request needs answer now."""
from __future__ import annotations

import logging

from sqlalchemy import text

from app import db
from app.bootstrap import marquee

log = logging.getLogger(__name__)


def unavailable_dependencies() -> list[str]:
    """The names of those that did not answer (``postgresql``, ``redis``); empty when ready."""
    failed = []
    try:
        with db.unit_of_work():
            db.session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness: postgresql failed", exc_info=True)
        failed.append("postgresql")
    try:
        marquee().redis.client.ping()
    except Exception:  # noqa: BLE001
        log.warning("readiness: redis failed", exc_info=True)
        failed.append("redis")
    return failed
