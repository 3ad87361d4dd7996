"""Tickets: one a seat once confirmed, signed codes, QR images, check-in at the door."""
import pytest
from sqlalchemy import func, select

from app import db
from app.models import Ticket
from app.services import booking, tickets
from tests.integration.booking_helpers import hold, reserve, seat_ids


@pytest.fixture
def confirmed(api, app, admin, user):
    """A confirmed reservation of two seats."""
    ids = api.catalog(admin)
    seats = seat_ids(api, ids["showtime"])[:2]
    res = reserve(api, user, hold(api, user, ids["showtime"], seats).json["id"]).json
    with app.app_context():
        assert booking.confirm_payment(res["id"]) == "confirmed"
    return res


def test_no_tickets_before_confirmation(api, admin, user):
    ids = api.catalog(admin)
    res = reserve(api, user, hold(api, user, ids["showtime"], seat_ids(api, ids["showtime"])[:1]).json["id"]).json
    r = api.get(f"/api/v1/reservations/{res['id']}/tickets", user)
    assert r.status_code == 409 and r.json["code"] == "not_confirmed"


def test_one_ticket_a_seat_only_for_the_owner(api, app, user, confirmed):
    r = api.get(f"/api/v1/reservations/{confirmed['id']}/tickets", user)
    assert r.status_code == 200
    assert [t["seat_label"] for t in r.json] == ["A1", "A2"]
    assert len({t["code"] for t in r.json}) == 2 and all(len(t["code"]) > 40 for t in r.json)
    assert all(t["status"] == "valid" and t["qr_url"].endswith("/qr.png") for t in r.json)
    other = api.make_user("other@test.example")
    assert api.get(f"/api/v1/reservations/{confirmed['id']}/tickets", other).status_code == 404
    with app.app_context():  # a repeated confirmation issues nothing more
        assert booking.confirm_payment(confirmed["id"]) == "already_confirmed"
        assert db.session.scalar(select(func.count()).select_from(Ticket)) == 2


def test_codes_verify_offline_and_forgeries_do_not(app, user, confirmed, api):
    code = api.get(f"/api/v1/reservations/{confirmed['id']}/tickets", user).json[0]["code"]
    with app.app_context():
        reservation_id, showtime_id, seat_id = tickets.verify_code(code)
        assert reservation_id == confirmed["id"]
        head, signature = code.rsplit(".", 1)
        raw = tickets._unb64(signature)
        forged = tickets._b64(bytes([raw[0] ^ 1]) + raw[1:])  # always a different signature
        assert tickets.verify_code(f"{head}.{forged}") is None
        version, kid, _payload = head.split(".")
        assert tickets.verify_code(f"{version}.{kid}.{tickets._b64(b'1:1:1:1:1')}.{signature}") is None
        assert tickets.verify_code("garbage") is None


def test_qr_images_encode_the_code(api, client, user, confirmed):
    ticket = api.get(f"/api/v1/reservations/{confirmed['id']}/tickets", user).json[0]
    png = client.get(ticket["qr_url"])
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    svg = client.get(ticket["qr_svg_url"])
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    assert client.get("/api/v1/tickets/forged.code/qr.png").status_code == 404


def test_check_in_admits_once(api, admin, user, confirmed):
    code = api.get(f"/api/v1/reservations/{confirmed['id']}/tickets", user).json[0]["code"]
    assert api.post("/api/v1/checkin", {"code": code}, user).status_code == 403
    first = api.post("/api/v1/checkin", {"code": code}, admin)
    assert first.status_code == 200 and first.json["status"] == "admitted" and first.json["seat_label"] == "A1"
    second = api.post("/api/v1/checkin", {"code": code}, admin)
    assert second.status_code == 409 and second.json["code"] == "already_checked_in"
    assert second.json["checked_in_at"] == first.json["checked_in_at"]


def test_forged_and_cancelled_tickets_are_refused(api, admin, user, confirmed):
    codes = [t["code"] for t in api.get(f"/api/v1/reservations/{confirmed['id']}/tickets", user).json]
    head, signature = codes[0].rsplit(".", 1)
    forged = api.post("/api/v1/checkin", {"code": f"{head}.{'A' * len(signature)}"}, admin)
    assert forged.status_code == 422 and forged.json["code"] == "invalid_ticket"
    assert api.post(f"/api/v1/reservations/{confirmed['id']}/cancel", token=user).status_code == 202
    r = api.post("/api/v1/checkin", {"code": codes[1]}, admin)
    assert r.status_code == 409 and r.json["code"] == "ticket_cancelled"
    after = api.get(f"/api/v1/reservations/{confirmed['id']}/tickets", user)
    assert after.status_code == 409 and "cancelled" in after.json["detail"]


def test_concurrent_scans_admit_exactly_once(live_server, api, admin, user, confirmed):
    import concurrent.futures
    import threading

    import requests

    code = api.get(f"/api/v1/reservations/{confirmed['id']}/tickets", user).json[0]["code"]
    barrier = threading.Barrier(8)

    def scan(_):
        barrier.wait()
        return requests.post(live_server + "/api/v1/checkin", json={"code": code},
                             headers={"Authorization": f"Bearer {admin}"}, timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(scan, range(8)))
    assert codes == [200] + [409] * 7


def test_garbled_non_ascii_codes_are_refused_not_errors(client, api, admin):
    """Found by Schemathesis: hmac.compare_digest raises on non-ASCII strings."""
    garbled = "\u00e2\u00f5\u00f0.jH\u00a3"
    assert client.get(f"/api/v1/tickets/{garbled}/qr.png").status_code == 404
    assert client.get(f"/api/v1/tickets/{garbled}/qr.svg").status_code == 404
    r = api.post("/api/v1/checkin", {"code": garbled}, admin)
    assert r.status_code == 422 and r.json["code"] == "invalid_ticket"
