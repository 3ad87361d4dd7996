"""The waitlist: only for sold-out shows, first fitting entry first, lapses move on."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from app import db
from app.models import WaitlistEntry
from app.services import booking, waitlist
from tests.integration.booking_helpers import hold, reserve, seat_ids, statuses


@pytest.fixture
def sold_out(api, admin):
    """A 6-seat showtime with every seat reserved: 4 by one buyer, 1 each by two others."""
    ids = api.catalog(admin)
    seats = seat_ids(api, ids["showtime"])
    buyers = {}
    for name, chunk in (("big", seats[:4]), ("one", seats[4:5]), ("two", seats[5:6])):
        token = api.make_user(f"{name}@buyers.example")
        buyers[name] = (token, reserve(api, token, hold(api, token, ids["showtime"], chunk).json["id"]).json)
    return ids, buyers


def test_joining_is_for_sold_out_shows_only(api, admin, user):
    ids = api.catalog(admin)
    r = api.post(f"/api/v1/showtimes/{ids['showtime']}/waitlist", {"seats": 2}, user)
    assert r.status_code == 409 and r.json["code"] == "seats_available"


def test_positions_and_one_entry_per_user(api, sold_out):
    ids, _ = sold_out
    first, second = api.make_user("w1@example.com"), api.make_user("w2@example.com")
    path = f"/api/v1/showtimes/{ids['showtime']}/waitlist"
    a = api.post(path, {"seats": 2}, first)
    b = api.post(path, {"seats": 1}, second)
    assert (a.status_code, a.json["position"], b.json["position"]) == (201, 1, 2)
    again = api.post(path, {"seats": 1}, first)
    assert again.status_code == 409 and again.json["code"] == "already_waiting"
    assert api.get(f"/api/v1/waitlist/{a.json['id']}", second).status_code == 404  # not theirs
    assert api.delete(f"/api/v1/waitlist/{a.json['id']}", first).status_code == 204
    assert api.get(f"/api/v1/waitlist/{b.json['id']}", second).json["position"] == 1


def test_freed_seats_go_to_the_first_entry_that_fits(api, app, sold_out):
    ids, buyers = sold_out
    path = f"/api/v1/showtimes/{ids['showtime']}/waitlist"
    pair, single = api.make_user("pair@example.com"), api.make_user("single@example.com")
    pair_entry = api.post(path, {"seats": 2}, pair).json
    single_entry = api.post(path, {"seats": 1}, single).json
    token, res = buyers["one"]
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", token=token).status_code == 202
    # One seat freed: the pair does not fit, the single does, and gets an exclusive hold.
    offer = api.get(f"/api/v1/waitlist/{single_entry['id']}", single).json
    assert offer["status"] == "offered" and offer["offer_hold_id"]
    assert api.get(f"/api/v1/waitlist/{pair_entry['id']}", pair).json["status"] == "waiting"
    stranger = api.make_user("stranger@example.com")
    freed_seat = res["seats"][0]["id"]
    assert hold(api, stranger, ids["showtime"], [freed_seat]).status_code == 409
    taken = reserve(api, single, offer["offer_hold_id"])
    assert taken.status_code == 202 and [s["id"] for s in taken.json["seats"]] == [freed_seat]
    with app.app_context():
        waitlist.make_offers(ids["showtime"])
    assert api.get(f"/api/v1/waitlist/{single_entry['id']}", single).json["status"] == "accepted"


def test_a_lapsed_offer_moves_on_with_adjacent_seats(api, app, sold_out):
    ids, buyers = sold_out
    path = f"/api/v1/showtimes/{ids['showtime']}/waitlist"
    late, next_pair = api.make_user("late@example.com"), api.make_user("next@example.com")
    late_entry = api.post(path, {"seats": 2}, late).json
    next_entry = api.post(path, {"seats": 2}, next_pair).json
    token, res = buyers["big"]  # A1, A2, A3, B1 come free
    api.post(f"/api/v1/reservations/{res['id']}/cancel", token=token)
    offer = api.get(f"/api/v1/waitlist/{late_entry['id']}", late).json
    labels = {s["id"]: s["label"] for s in api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"]}
    held = app.extensions["marquee"].seats.get_hold(offer["offer_hold_id"]).seat_ids
    assert [labels[s] for s in held] == ["A1", "A2"]  # side by side
    second_offer = api.get(f"/api/v1/waitlist/{next_entry['id']}", next_pair).json
    assert second_offer["status"] == "offered"  # two more seats were free for the next pair
    # The first offer lapses: its hold expires unused.
    store = app.extensions["marquee"].seats
    store.release(store.get_hold(offer["offer_hold_id"]))
    with app.app_context():
        db.session.execute(update(WaitlistEntry).where(WaitlistEntry.id == late_entry["id"])
                           .values(offer_expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        db.session.commit()
        waitlist.offer_everywhere()
    assert api.get(f"/api/v1/waitlist/{late_entry['id']}", late).json["status"] == "lapsed"
    assert statuses(api, ids["showtime"])[held[0]] == "available"  # back for anyone


def test_an_expired_reservation_offers_its_seats_to_the_waitlist(api, app, sold_out):
    ids, buyers = sold_out
    waiter = api.make_user("waiter@example.com")
    entry = api.post(f"/api/v1/showtimes/{ids['showtime']}/waitlist", {"seats": 1}, waiter).json
    with app.app_context():
        booking.expire_unpaid_reservations(now=datetime.now(timezone.utc) + timedelta(hours=1))
    assert api.get(f"/api/v1/waitlist/{entry['id']}", waiter).json["status"] == "offered"


def test_cancelling_a_confirmed_reservation_of_a_sold_out_show_offers_its_seats(api, app, sold_out):
    ids, buyers = sold_out
    token, res = buyers["two"]
    with app.app_context():
        assert booking.confirm_payment(res["id"]) == "confirmed"
    waiter = api.make_user("patient@example.com")
    entry = api.post(f"/api/v1/showtimes/{ids['showtime']}/waitlist", {"seats": 1}, waiter).json
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", token=token).status_code == 202
    offer = api.get(f"/api/v1/waitlist/{entry['id']}", waiter).json
    assert offer["status"] == "offered"
    assert app.extensions["marquee"].seats.get_hold(offer["offer_hold_id"]).seat_ids == [res["seats"][0]["id"]]
