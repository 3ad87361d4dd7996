"""The invariant audit passes on a sound state and names each kind of violation."""
from __future__ import annotations

from sqlalchemy import update

from app import db
from app.models import Reservation
from loadtests.audit import audit
from tests.integration.booking_helpers import hold, reserve, seat_ids, showtime_room


def _run(showtime=None) -> tuple[bool, str]:
    lines: list[str] = []
    ok = audit(showtime, settle=0, out=lines.append)
    return ok, "\n".join(lines)


def test_a_sound_state_passes_and_each_violation_is_named(api, app, admin, user):
    show = api.catalog(admin)
    showtime = show["showtime"]
    seat = seat_ids(api, showtime)[0]
    held = hold(api, user, showtime, [seat]).json["id"]
    ok, report = _run(showtime)
    assert ok, report
    assert "PASS  no seat stuck in Redis" in report and "1 taken seats" in report

    # a seat owned in Redis by a hold that no longer exists
    seats = app.extensions["marquee"].seats
    room = showtime_room(app, showtime)
    assert seats.sync(showtime, room, [(seat_ids(api, showtime)[1], "h:gone", 60_000)], 3600) == 1
    ok, report = _run(showtime)
    assert not ok and "FAIL  no seat stuck in Redis" in report

    assert seats.free_owner(showtime, room, [seat_ids(api, showtime)[1]], "h:gone") == 1
    res = reserve(api, user, held).json
    ok, report = _run(showtime)  # the charge is in the outbox, not yet published
    assert not ok and "FAIL  outbox all published" in report

    # a reservation marked confirmed with no charge and no tickets
    with app.app_context():
        db.session.execute(update(Reservation).where(Reservation.id == res["id"])
                           .values(status="confirmed"))
        db.session.commit()
    ok, report = _run(showtime)
    assert "FAIL  confirmed: one charge, one ticket a seat" in report
    assert "FAIL  every due email sent" not in report  # confirmed_at unset: no email due yet
