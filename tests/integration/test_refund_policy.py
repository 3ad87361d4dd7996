"""Refund policies per theater, end to end: the theater's policy (validated), the
cut-off it sets, the refund fixed at cancellation on the reservation, the refund the
real worker asks the gateway for, and the cancellation email that states it."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app import db
from app.models import OutboxEvent, Payment
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import payments_of, relay, status_of, work_until


def _policy(api, admin, theater_id, policy):
    r = api.patch(f"/api/v1/theaters/{theater_id}", {"refund_policy": policy}, admin)
    assert r.status_code == 200, r.json
    return r.json


def _paid(api, app, broker, user, showtime_id, seat_index=0):
    """A confirmed reservation of one seat, charged by the real worker."""
    seat = seat_ids(api, showtime_id)[seat_index]
    res = reserve(api, user, hold(api, user, showtime_id, [seat]).json["id"], "tok_visa").json
    relay(app, broker)
    work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")
    return res


def _refunds(app, reservation_id):
    with app.app_context():
        rows = db.session.execute(select(Payment.amount_cents, Payment.status).where(
            Payment.reservation_id == reservation_id, Payment.kind == "refund")).all()
        db.session.rollback()
        return [tuple(r) for r in rows]


@pytest.fixture
def asked(app, monkeypatch):
    """What the worker asked the (real, test) gateway to refund: amount per idempotency key."""
    gateway, seen = app.extensions["marquee"].gateway, {}
    real = gateway.refund

    def refund(**kwargs):
        seen[kwargs["idempotency_key"]] = kwargs["amount_cents"]
        return real(**kwargs)

    monkeypatch.setattr(gateway, "refund", refund)
    return seen


def _body(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def _cancellation_email(smtp):
    found = [m for m in smtp.messages if m["Subject"].startswith("Reservation cancelled")]
    return found[0] if found else None


def test_a_percent_fee_is_kept_the_worker_refunds_the_rest_and_the_email_says_both(
        api, app, admin, user, show, broker, smtp, asked):
    _policy(api, admin, show["theater"], {"cutoff_minutes": 60, "fee_percent": 10})
    res = _paid(api, app, broker, user, show["showtime"])  # A1, standard: 1000
    cancelled = api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user)
    assert cancelled.status_code == 202
    assert cancelled.json["refund_cents"] == 900 and cancelled.json["payment_status"] == "refund_pending"
    relay(app, broker)  # the refund and the email
    work_until(app, lambda c: _refunds(app, res["id"]) and _cancellation_email(smtp))
    assert _refunds(app, res["id"]) == [(900, "succeeded")]
    assert asked == {f"refund-reservation-{res['id']}": 900}
    text = _body(_cancellation_email(smtp))
    assert "A refund of 9.00 EUR is on its way" in text
    assert "cancellation fee of 1.00 EUR is kept" in text
    again = api.get(f"/api/v1/reservations/{res['id']}", user).json
    assert again["refund_cents"] == 900 and again["payment_status"] == "refunded"


def test_a_fixed_fee_adds_to_the_percent_and_is_fixed_at_cancellation(api, app, admin, user, show, broker):
    _policy(api, admin, show["theater"], {"cutoff_minutes": 0, "fee_percent": 10, "fee_cents": 100})
    res = _paid(api, app, broker, user, show["showtime"], seat_index=2)  # A3, premium: 1500
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user).json["refund_cents"] == 1250
    _policy(api, admin, show["theater"], None)  # a later change does not change a refund already fixed
    with app.app_context():
        event = db.session.scalar(select(OutboxEvent).where(OutboxEvent.topic == "payments.refund"))
        assert event.payload["amount_cents"] == 1250
        db.session.rollback()
    relay(app, broker)
    work_until(app, lambda c: _refunds(app, res["id"]))
    assert _refunds(app, res["id"]) == [(1250, "succeeded")]


def test_a_fixed_fee_alone(api, app, admin, user, show, broker):
    _policy(api, admin, show["theater"], {"cutoff_minutes": 30, "fee_cents": 250})
    res = _paid(api, app, broker, user, show["showtime"])
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user).json["refund_cents"] == 750
    relay(app, broker)
    work_until(app, lambda c: _refunds(app, res["id"]))
    assert _refunds(app, res["id"]) == [(750, "succeeded")]


def test_a_fee_of_the_whole_charge_refunds_nothing_and_asks_the_gateway_nothing(
        api, app, admin, user, show, broker, smtp, asked):
    _policy(api, admin, show["theater"], {"cutoff_minutes": 0, "fee_cents": 5000})
    res = _paid(api, app, broker, user, show["showtime"])
    out = api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user).json
    assert out["refund_cents"] == 0 and out["payment_status"] == "not_refunded"
    relay(app, broker)
    work_until(app, lambda c: _cancellation_email(smtp))
    with app.app_context():
        assert db.session.scalar(select(OutboxEvent).where(OutboxEvent.topic == "payments.refund")) is None
        db.session.rollback()
    assert payments_of(app, res["id"]) == [("charge", "succeeded")] and asked == {}
    assert "nothing is refunded" in _body(_cancellation_email(smtp))


def test_within_the_policy_cutoff_a_paid_reservation_cannot_be_cancelled(api, app, admin, user, show, broker):
    soon = api.showtime(admin, show["movie"], show["screen"],
                        starts_at=(datetime.now(timezone.utc) + timedelta(hours=2)).replace(microsecond=0))
    res = _paid(api, app, broker, user, soon["id"])
    _policy(api, admin, show["theater"], {"cutoff_minutes": 180})
    refused = api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user)
    assert refused.status_code == 409 and refused.json["code"] == "cancellation_closed"
    assert status_of(app, res["id"]) == "confirmed"
    _policy(api, admin, show["theater"], {"cutoff_minutes": 90})  # two hours away: still open
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user).json["refund_cents"] == 1000


def test_without_a_policy_the_site_cutoff_applies_and_the_refund_is_whole(api, app, admin, user, show, broker):
    soon = api.showtime(admin, show["movie"], show["screen"],
                        starts_at=(datetime.now(timezone.utc) + timedelta(minutes=50)).replace(microsecond=0))
    res = _paid(api, app, broker, user, soon["id"])
    refused = api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user)  # CANCELLATION_CUTOFF_MINUTES=60
    assert refused.status_code == 409 and refused.json["code"] == "cancellation_closed"
    later = _paid(api, app, broker, user, show["showtime"])
    assert api.post(f"/api/v1/reservations/{later['id']}/cancel", token=user).json["refund_cents"] == 1000


def test_an_unpaid_reservation_cancelled_refunds_0_and_a_charge_after_it_all(api, app, admin, user, show, broker):
    _policy(api, admin, show["theater"], {"cutoff_minutes": 0, "fee_percent": 50})
    seat = seat_ids(api, show["showtime"])[0]
    res = reserve(api, user, hold(api, user, show["showtime"], [seat]).json["id"], "tok_visa").json
    out = api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user).json
    assert out["refund_cents"] == 0 and out["payment_status"] == "not_charged"
    relay(app, broker)  # the charge was already on its way: it succeeds after the cancellation
    work_until(app, lambda c: payments_of(app, res["id"]) == [("charge", "succeeded")])
    relay(app, broker)  # the money is never kept: all of it, no fee
    work_until(app, lambda c: _refunds(app, res["id"]))
    assert _refunds(app, res["id"]) == [(1000, "succeeded")]
    assert api.get(f"/api/v1/reservations/{res['id']}", user).json["refund_cents"] == 1000


def test_the_policy_is_set_read_and_cleared_on_the_theater(api, admin, show):
    created = api.post("/api/v1/theaters", {"name": "Rex", "city_id": show["city"], "address": "1 Bd",
                                            "refund_policy": {"cutoff_minutes": 120, "fee_percent": 5}}, admin)
    assert created.status_code == 201, created.json
    assert created.json["refund_policy"] == {"cutoff_minutes": 120, "fee_percent": 5}
    assert api.get(f"/api/v1/theaters/{created.json['id']}").json["refund_policy"] == {
        "cutoff_minutes": 120, "fee_percent": 5}
    assert _policy(api, admin, created.json["id"], None)["refund_policy"] is None
    assert api.get(f"/api/v1/theaters/{show['theater']}").json["refund_policy"] is None


@pytest.mark.parametrize(("policy", "path"), [
    ({"cutoff_minutes": -1}, "refund_policy.cutoff_minutes"),
    ({"fee_percent": 10}, "refund_policy.cutoff_minutes"),
    ({"cutoff_minutes": 60, "fee_percent": 101}, "refund_policy.fee_percent"),
    ({"cutoff_minutes": 60, "fee_percent": -5}, "refund_policy.fee_percent"),
    ({"cutoff_minutes": 60, "fee_percent": 12.5}, "refund_policy.fee_percent"),
    ({"cutoff_minutes": 60, "fee_cents": -1}, "refund_policy.fee_cents"),
    ({"cutoff_minutes": 60, "fee_cents": "5"}, "refund_policy.fee_cents"),
    ({"cutoff_minutes": 60, "refund": 1}, "refund_policy.refund"),
    ({"cutoff_minutes": 10**20}, "refund_policy.cutoff_minutes"),
    ("strict", "refund_policy._schema"),
])
def test_an_invalid_policy_is_a_422_naming_the_field_and_changes_nothing(api, admin, show, policy, path):
    r = api.patch(f"/api/v1/theaters/{show['theater']}", {"refund_policy": policy, "name": "Changed"}, admin)
    assert r.status_code == 422 and r.json["code"] == "validation_error", r.json
    assert path in r.json["errors"], r.json["errors"]
    assert api.get(f"/api/v1/theaters/{show['theater']}").json["name"] == "Opera"


def test_only_an_admin_sets_a_policy(api, user, show):
    r = api.patch(f"/api/v1/theaters/{show['theater']}", {"refund_policy": {"cutoff_minutes": 0}}, user)
    assert r.status_code == 403
