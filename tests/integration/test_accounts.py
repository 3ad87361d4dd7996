"""The user's own account: profile edits, the export of everything held on them, and
erasure (no personal data left in any table; the accounts' records kept, anonymised)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from app import db
from app.models import OutboxEvent, Payment, Reservation, Review, Ticket, WaitlistEntry
from tests.helpers import PASSWORD
from tests.integration.booking_helpers import hold, reserve, seat_ids, statuses
from tests.integration.broker_helpers import relay, status_of, work_until

ME = "/api/v1/users/me"
EMAIL, NAME, PHONE = "zebulon@test.example", "Zebulon Quirrelwhistle", "+33612345678"


@pytest.fixture
def zebulon(api):
    """A customer with a name and an address found nowhere else."""
    r = api.post("/api/v1/auth/register", {"email": EMAIL, "password": PASSWORD, "name": NAME})
    assert r.status_code == 201
    return api.login(EMAIL)["access_token"]


# --- profile ----------------------------------------------------------------------

def test_the_name_changes_without_a_password(api, user):
    r = api.patch(ME, {"name": "  Ada King "}, user)
    assert r.status_code == 200 and r.json["name"] == "Ada King" and r.json["email"] == "user@test.example"
    assert api.get(ME, user).json["name"] == "Ada King"


def test_the_email_changes_with_the_current_password(api, user, other):
    missing = api.patch(ME, {"email": "new@test.example"}, user)
    assert missing.status_code == 422 and "current_password" in missing.json["errors"]
    wrong = api.patch(ME, {"email": "new@test.example", "current_password": "nope"}, user)
    assert (wrong.status_code, wrong.json["code"]) == (403, "wrong_password")
    taken = api.patch(ME, {"email": "Other@Test.example", "current_password": PASSWORD}, user)
    assert (taken.status_code, taken.json["code"]) == (409, "email_taken")
    r = api.patch(ME, {"email": "New@Test.example", "current_password": PASSWORD}, user)
    assert r.status_code == 200 and r.json["email"] == "new@test.example"
    api.login("new@test.example")
    assert api.post("/api/v1/auth/login", {"email": "user@test.example", "password": PASSWORD}).status_code == 401


def test_a_profile_edit_refuses_bad_input(api, user):
    assert api.patch(ME, {}, user).status_code == 422
    assert api.patch(ME, {"role": "admin", "name": "X"}, user).status_code == 422
    assert api.patch(ME, {"name": ""}, user).status_code == 422
    assert api.patch(ME, {"email": "not an address", "current_password": PASSWORD}, user).status_code == 422
    assert api.patch(ME, {"name": "X"}).status_code == 401
    assert api.client.patch(ME, data="name=X", headers={"Authorization": f"Bearer {user}"}).status_code == 415


# --- export -----------------------------------------------------------------------

def _prefer_sms(api, token):
    return api.call("PUT", f"{ME}/notifications", token, json={
        "email": True, "sms": True, "push": False, "reminders": True, "reminder_minutes": 60, "phone": PHONE})


def test_the_export_holds_the_callers_objects_and_none_of_anothers(api, app, user, other, show):
    seats = seat_ids(api, show["showtime"])
    mine = reserve(api, user, hold(api, user, show["showtime"], seats[:1]).json["id"]).json
    theirs = reserve(api, other, hold(api, other, show["showtime"], seats[1:2]).json["id"]).json
    my_hold = hold(api, user, show["showtime"], seats[2:3]).json
    assert _prefer_sms(api, user).status_code == 200
    r = api.get(f"{ME}/export", user)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    data = r.json["data"]
    assert data["profile"]["email"] == "user@test.example" and "password_hash" not in data["profile"]
    assert [x["id"] for x in data["reservations"]] == [mine["id"]]
    assert {x["reservation_id"] for x in data["reservation_seats"]} == {mine["id"]}
    assert [x["id"] for x in data["holds"]] == [my_hold["id"]]
    assert [x["phone"] for x in data["notification_preferences"]] == [PHONE]
    dumped = json.dumps(r.json)
    assert "other@test.example" not in dumped and f'"reservation_id": {theirs["id"]}' not in dumped
    assert api.get(f"{ME}/export").status_code == 401
    assert api.get(f"{ME}/export?format=csv", user).status_code == 400


# --- erasure ----------------------------------------------------------------------

def _text_columns(app) -> list[tuple[str, str, str]]:
    with app.app_context():
        rows = db.session.execute(text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'json', 'jsonb', "
            "'character', 'ARRAY')")).all()
        db.session.rollback()
    return [tuple(r) for r in rows]


def _where_found(app, needles) -> list[str]:
    """Every (table.column) whose text holds one of ``needles``, case-insensitively."""
    found = []
    with app.app_context():
        for table, column, _type in _text_columns(app):
            for needle in needles:
                hit = db.session.scalar(text(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS text) ILIKE :needle'),  # noqa: S608 (names from information_schema)
                    {"needle": f"%{needle}%"})
                if hit:
                    found.append(f"{table}.{column}: {needle}")
        db.session.rollback()
    return found


def _scalar(app, query):
    with app.app_context():
        value = db.session.scalar(query)
        db.session.rollback()
        return value


def test_erasure_leaves_no_personal_data_and_keeps_the_accounts(api, app, admin, other, zebulon, show,
                                                               broker, smtp):
    seats = seat_ids(api, show["showtime"])
    # a paid reservation, with its tickets and its confirmation email
    paid = reserve(api, zebulon, hold(api, zebulon, show["showtime"], seats[:1]).json["id"]).json
    relay(app, broker)
    work_until(app, lambda c: status_of(app, paid["id"]) == "confirmed")
    relay(app, broker)
    work_until(app, lambda c: smtp.messages)
    # a reservation awaiting payment (its charge not yet sent), and the rest sold: a waitlist entry
    unpaid = reserve(api, zebulon, hold(api, zebulon, show["showtime"], seats[1:2]).json["id"]).json
    assert hold(api, other, show["showtime"], seats[2:]).status_code == 201
    entry = api.post(f"/api/v1/showtimes/{show['showtime']}/waitlist", {"seats": 1}, zebulon)
    assert entry.status_code == 201
    # a live hold on another showtime
    later = api.showtime(admin, show["movie"], show["screen"],
                         starts_at=(datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0))
    held = hold(api, zebulon, later["id"], seat_ids(api, later["id"])[:2]).json
    # a review, and another still waiting in the outbox; a reset token in the outbox
    user_id = api.get(ME, zebulon).json["id"]
    with app.app_context():
        db.session.add(Review(user_id=user_id, movie_id=show["movie"], rating=5, text=f"{NAME} loved it"))
        db.session.add(OutboxEvent(topic="reviews.submit", aggregate_id=f"movie:{show['movie']}", payload={
            "user_id": user_id, "movie_id": show["movie"], "rating": 4, "text": f"Signed {NAME}, {PHONE}"}))
        db.session.commit()
    assert api.post("/api/v1/auth/password-reset", {"email": EMAIL}).status_code == 202
    # the phone the SMS reminders go to
    assert _prefer_sms(api, zebulon).status_code == 200
    laptop = api.login(EMAIL)
    assert _where_found(app, [EMAIL, NAME, PHONE])  # the search finds what is there
    payments_before = _scalar(app, select(func.sum(Payment.amount_cents)))

    r = api.delete(ME, zebulon, json={"password": PASSWORD})
    assert r.status_code == 204

    assert _where_found(app, [EMAIL, NAME, PHONE]) == []
    # the accounts: payments, the confirmed reservation and its tickets, kept and linked
    assert _scalar(app, select(func.sum(Payment.amount_cents))) == payments_before
    assert status_of(app, paid["id"]) == "confirmed"
    assert _scalar(app, select(func.count()).select_from(Ticket).where(Ticket.reservation_id == paid["id"])) == 1
    assert _scalar(app, select(Reservation.user_id).where(Reservation.id == paid["id"])) == user_id
    # holds released, waitlist left, the unpaid reservation cancelled (its seat free again)
    assert status_of(app, unpaid["id"]) == "cancelled"
    assert _scalar(app, select(WaitlistEntry.status).where(WaitlistEntry.id == entry.json["id"])) == "left"
    assert all(statuses(api, later["id"])[s] == "available" for s in held["seat_ids"])
    assert _scalar(app, select(Review.text).where(Review.user_id == user_id)) == ""
    # every session over; the address free to register again
    for token in (zebulon, laptop["access_token"]):
        assert api.get(ME, token).status_code == 401
    assert api.post("/api/v1/auth/refresh", token=laptop["refresh_token"]).status_code == 401
    assert api.post("/api/v1/auth/login", {"email": EMAIL, "password": PASSWORD}).status_code == 401
    again = api.post("/api/v1/auth/register", {"email": EMAIL, "password": PASSWORD, "name": NAME})
    assert again.status_code == 201 and again.json["id"] != user_id
    assert api.get(ME, api.login(EMAIL)["access_token"]).json["id"] == again.json["id"]


def test_erasure_needs_the_password(api, user):
    wrong = api.delete(ME, user, json={"password": "nope"})
    assert (wrong.status_code, wrong.json["code"]) == (403, "wrong_password")
    assert api.delete(ME, user).status_code == 422  # no body
    assert api.delete(ME, user, json={}).status_code == 422
    assert api.get(ME, user).status_code == 200


def test_the_last_admin_cannot_erase_itself(api, admin):
    r = api.delete(ME, admin, json={"password": PASSWORD})
    assert (r.status_code, r.json["code"]) == (409, "last_admin")
    assert api.get(ME, admin).status_code == 200
    api.make_user("second-admin@test.example", role="admin")
    assert api.delete(ME, admin, json={"password": PASSWORD}).status_code == 204


def test_two_admins_erasing_themselves_at_once_leave_one(api, app, admin):
    """Real threads: each is not the last admin when it starts; one of them must stay."""
    import concurrent.futures

    second = api.make_user("second-admin@test.example", role="admin")

    def erase(token):
        with app.test_client() as c:
            return c.delete(ME, json={"password": PASSWORD}, headers={"Authorization": f"Bearer {token}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(erase, [admin, second])) == [204, 409]
    with app.app_context():
        admins = db.session.scalar(text("SELECT count(*) FROM users WHERE role = 'admin' AND erased_at IS NULL"))
        db.session.rollback()
    assert admins == 1
