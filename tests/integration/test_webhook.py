"""The payment gateway's webhook: HMAC-signed, fresh, and each event applied once."""
import json
import time

import pytest

from app.services import payments
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import payments_of, status_of


@pytest.fixture
def pending(api, admin, user):
    ids = api.catalog(admin)
    return reserve(api, user, hold(api, user, ids["showtime"], seat_ids(api, ids["showtime"])[:1]).json["id"]).json


def _send(client, app, event, *, timestamp=None, key=None, tamper=False):
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    sig = payments.signature(key or app.extensions["marquee"].settings.webhook_secret, timestamp, body)
    if tamper:
        body = body.replace(b"succeeded", b"failed")
    return client.post("/api/v1/payments/webhook", data=body, content_type="application/json",
                       headers={"Marquee-Signature": f"t={timestamp},v1={sig}"})


def _event(reservation, kind="charge.succeeded", event_id="evt_1"):
    return {"id": event_id, "type": kind, "data": {"reservation_id": reservation["id"], "reference": "ch_ext_1",
                                                   "amount_cents": reservation["total_cents"], "currency": "EUR"}}


def test_a_signed_event_is_applied_once_and_its_replay_ignored(client, app, pending):
    r = _send(client, app, _event(pending))
    assert r.status_code == 200 and r.json["outcome"] == "confirmed"
    assert status_of(app, pending["id"]) == "confirmed"
    again = _send(client, app, _event(pending))
    assert again.status_code == 200 and again.json["outcome"] == "ignored_replay"
    assert payments_of(app, pending["id"]) == [("charge", "succeeded")]


def test_a_failed_charge_event_fails_the_reservation(client, app, pending):
    assert _send(client, app, _event(pending, "charge.failed")).json["outcome"] == "payment_failed"
    assert status_of(app, pending["id"]) == "payment_failed"


def test_bad_signatures_and_stale_timestamps_are_refused(client, app, pending):
    assert _send(client, app, _event(pending), key=b"not-the-secret").json["code"] == "invalid_signature"
    assert _send(client, app, _event(pending), tamper=True).json["code"] == "invalid_signature"
    stale = _send(client, app, _event(pending), timestamp=int(time.time()) - 3600)
    assert stale.status_code == 400 and stale.json["code"] == "stale_timestamp"
    bare = client.post("/api/v1/payments/webhook", json=_event(pending))
    assert bare.status_code == 400 and bare.json["code"] == "invalid_signature"
    assert status_of(app, pending["id"]) == "pending_payment"


def test_the_signature_is_checked_before_the_body(client):
    r = client.post("/api/v1/payments/webhook", json={"nonsense": True})
    assert r.status_code == 400 and r.json["code"] == "invalid_signature"


def test_a_garbled_non_ascii_signature_is_refused_not_an_error(client):
    body = b'{"id": "evt_x", "type": "charge.succeeded", "data": {}}'
    r = client.post("/api/v1/payments/webhook", data=body, content_type="application/json",
                    headers={"Marquee-Signature": f"t={int(time.time())},v1=\u00e9\u00e9"})
    assert r.status_code == 400 and r.json["code"] == "invalid_signature"
