"""The outbox's retention: published rows past OUTBOX_RETENTION_DAYS are deleted by the
scheduler's ``purge_outbox`` job; rows not yet published, refund requests and webhook
events not yet fanned out are kept, whatever their age."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text, update

from app import db
from app.models import OutboxEvent, Reservation
from app.models.webhooks import WebhookFanout
from app.services import booking, outbox
from tests.helpers import advisory_lock_held
from tests.integration.booking_helpers import hold, reserve, seat_ids

WEEK_AGO = datetime.now(timezone.utc) - timedelta(days=8)


def _retain(app, monkeypatch, days: float) -> None:
    ext = app.extensions["marquee"]
    monkeypatch.setattr(ext, "settings", replace(ext.settings, outbox_retention_days=days))


@pytest.fixture
def retention(app, monkeypatch):
    """A retention of one day (the default is seven), restored afterwards."""
    _retain(app, monkeypatch, 1.0)


def _rows(app, *specs) -> list[int]:
    """Outbox rows of (topic, published_at) each."""
    with app.app_context():
        rows = [OutboxEvent(topic=topic, aggregate_id="test:purge", payload={"n": n}, published_at=published)
                for n, (topic, published) in enumerate(specs)]
        db.session.add_all(rows)
        db.session.commit()
        ids = [row.id for row in rows]
        db.session.remove()
    return ids


def _left(app) -> list[int]:
    with app.app_context():
        ids = db.session.scalars(select(OutboxEvent.id).order_by(OutboxEvent.id)).all()
        db.session.remove()
    return list(ids)


def _purge(app, **kw):
    with app.app_context():
        try:
            return outbox.purge_published(**kw)
        finally:
            db.session.remove()


def test_only_published_rows_past_the_retention_go_and_the_two_kept_kinds_stay(app, retention):
    recent = datetime.now(timezone.utc) - timedelta(hours=1)
    old_charge, old_email, young, unpublished, refund, lone_event, fanned_event = _rows(
        app, ("payments.charge", WEEK_AGO), ("notifications.email", WEEK_AGO), ("payments.charge", recent),
        ("payments.charge", None), ("payments.refund", WEEK_AGO), ("webhooks.event", WEEK_AGO),
        ("webhooks.event", WEEK_AGO))
    with app.app_context():
        db.session.add(WebhookFanout(outbox_id=fanned_event))
        db.session.commit()
        db.session.remove()
    assert _purge(app) == 3
    assert _left(app) == [young, unpublished, refund, lone_event]
    assert {old_charge, old_email, fanned_event}.isdisjoint(_left(app))
    assert _purge(app) == 0  # nothing more to do


def test_a_retention_of_zero_keeps_every_row(app, monkeypatch):
    _retain(app, monkeypatch, 0.0)
    ids = _rows(app, ("payments.charge", WEEK_AGO - timedelta(days=3650)))
    assert _purge(app) == 0 and _left(app) == ids


def test_a_run_deletes_in_batches_until_none_is_left_and_stops_at_its_limit(app, retention):
    ids = _rows(app, *[("reviews.submit", WEEK_AGO)] * 25)
    assert _purge(app, batch=10, max_batches=2) == 20  # two batches; the next run goes on
    assert _left(app) == ids[20:]
    assert _purge(app, batch=10) == 5 and _left(app) == []


def test_while_one_scheduler_purges_another_skips(app, retention):
    _rows(app, ("reviews.submit", WEEK_AGO))
    with advisory_lock_held(app, outbox.PURGE_LOCK):
        assert _purge(app) is None
    assert _purge(app) == 1


def test_after_a_purge_a_repeated_late_charge_still_asks_for_one_refund(api, app, user, show, retention):
    """A charge that arrives after its reservation expired is refunded, once: booking reads
    the refund request's outbox row to know. Every other row of the reservation is purged
    (their week is over); a second notice of the same charge asks for no second refund."""
    reservation = reserve(api, user, hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1])
                          .json["id"], "tok_visa").json
    payment = {"kind": "charge", "status": "succeeded", "amount_cents": reservation["total_cents"],
               "currency": "EUR", "gateway_ref": "ch_late", "idempotency_key": f"reservation-{reservation['id']}"}
    with app.app_context():
        db.session.execute(update(Reservation).where(Reservation.id == reservation["id"])
                           .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        db.session.commit()
        booking.expire_unpaid_reservations()
        assert booking.confirm_payment(reservation["id"], payment=payment) == "refund"
        db.session.execute(text("UPDATE outbox SET published_at = :at"), {"at": WEEK_AGO})
        db.session.commit()
        db.session.remove()
    assert _purge(app) >= 1
    with app.app_context():
        topics = db.session.scalars(select(OutboxEvent.topic)).all()
        assert topics == ["payments.refund"]
        assert booking.confirm_payment(reservation["id"], payment=payment) == "refund"
        refunds = db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                    .where(OutboxEvent.topic == "payments.refund"))
        db.session.remove()
    assert refunds == 1


def test_the_retention_must_be_a_number_of_zero_or_more(monkeypatch):
    from app.config import Settings

    monkeypatch.setenv("OUTBOX_RETENTION_DAYS", "-1")
    with pytest.raises(ValueError, match="OUTBOX_RETENTION_DAYS"):
        Settings.from_env()
    monkeypatch.setenv("OUTBOX_RETENTION_DAYS", "2.5")
    assert Settings.from_env().outbox_retention_days == 2.5
