"""The audit log is append-only in the database itself, and an entry commits or rolls
back with the write it describes."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app import db
from app.models import AuditEntry
from app.services import audit


def _count() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEntry))


def test_update_delete_and_truncate_of_the_audit_log_fail_in_the_database(app):
    with app.app_context():
        with db.unit_of_work():
            audit.record("theater.update", actor_id=1, object_type="theater", object_id=7,
                         before={"name": "Old"}, after={"name": "New"})
        for statement in ("UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log",
                          "TRUNCATE audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                db.session.execute(text(statement))
            db.session.rollback()
        entry = db.session.scalars(select(AuditEntry)).one()
        assert (entry.action, entry.object_id, entry.before, entry.after) == (
            "theater.update", "7", {"name": "Old"}, {"name": "New"})
        db.session.remove()


def test_an_entry_rolls_back_with_its_write(app):
    with app.app_context():
        with pytest.raises(RuntimeError), db.unit_of_work():
            audit.record("movie.create", actor_id=1, object_type="movie", object_id=1)
            raise RuntimeError("the write failed")
        assert _count() == 0
        audit.record_event("auth.login_failed", actor_id=None, ip="203.0.113.9", email="x@example.com")
        assert _count() == 1
        entries, total = audit.list_entries(action="auth.")
        assert total == 1 and entries[0].after == {"email": "x@example.com"}
        db.session.remove()
