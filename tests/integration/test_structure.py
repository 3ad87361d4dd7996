"""The structure the rules rely on: one unit of work, processes that boot without the
web app, the seat-owner tokens read in one place, domain errors that know no HTTP."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app import db
from app.adapters.seat_store import SeatOwner
from app.api.problems import status_of
from app.models import City
from app.services import errors

ROOT = Path(__file__).resolve().parents[2]


def _cities(app) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(City.name)))


def test_a_unit_of_work_commits_once_at_its_end(app):
    with app.app_context(), db.unit_of_work():
        db.session.add(City(name="Lille", timezone="Europe/Paris"))
        db.session.flush()
        # not yet visible to anyone else: nothing is committed inside the block
        with app.extensions["marquee"].engine.connect() as other:
            assert other.execute(select(func.count()).select_from(City)).scalar() == 0
    assert _cities(app) == ["Lille"]


def test_any_error_in_a_unit_of_work_keeps_nothing(app):
    with app.app_context(), pytest.raises(errors.Conflict), db.unit_of_work():
        db.session.add(City(name="Lille", timezone="Europe/Paris"))
        db.session.flush()
        raise errors.Conflict("a rule said no after the first write")
    assert _cities(app) == []


def test_a_nested_unit_of_work_is_a_savepoint_and_only_the_outer_one_commits(app):
    with app.app_context(), db.unit_of_work():
        db.session.add(City(name="Lille", timezone="Europe/Paris"))
        try:
            with db.unit_of_work():
                db.session.add(City(name="Nice", timezone="Europe/Paris"))
                db.session.flush()
                raise errors.Invalid("the inner step fails")
        except errors.Invalid:
            pass  # the caller chose to go on without it
        db.session.add(City(name="Metz", timezone="Europe/Paris"))
    assert _cities(app) == ["Lille", "Metz"]


def test_the_worker_and_the_scheduler_boot_without_flask():
    """They build their dependencies with app.bootstrap: neither Flask nor the web app is
    imported (import-linter checks direct imports; this checks what really loads)."""
    code = ("import sys, worker.consumer, worker.scheduler, loadtests.audit; "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('flask', 'flask_smorest', 'werkzeug') "
            "or m.startswith(('app.api', 'app.web'))]; print(loaded); sys.exit(1 if loaded else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_seat_owner_tokens_are_made_and_read_in_one_place():
    hold = SeatOwner.hold("42.0123456789abcdef0123456789abcdef")
    assert SeatOwner.parse(hold.token) == hold and hold.hold_id == "42.0123456789abcdef0123456789abcdef"
    reservation = SeatOwner.reservation(7)
    assert SeatOwner.parse(reservation.token) == reservation and reservation.reservation_id == 7
    assert SeatOwner.parse("r:not-a-number") is None and SeatOwner.parse("x:1") is None


def test_domain_errors_take_the_status_of_their_kind():
    class Custom(errors.SeatsUnavailable):
        code = "custom"

    assert status_of(Custom()) == 409
    assert status_of(errors.InvalidTicket()) == 422
    assert status_of(errors.RefreshTokenReused()) == 401
    assert status_of(errors.BadRequest()) == 400
    assert not hasattr(errors.DomainError, "status")  # the rules know no HTTP
