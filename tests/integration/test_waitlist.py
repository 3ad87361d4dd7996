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


def _labels(api, showtime_id, seat_ids) -> list[str]:
    labels = {s["id"]: s["label"] for s in api.get(f"/api/v1/showtimes/{showtime_id}/seats").json["seats"]}
    return sorted(labels[s] for s in seat_ids)


def _cancel(api, buyer) -> None:
    token, res = buyer
    assert api.post(f"/api/v1/reservations/{res['id']}/cancel", token=token).status_code == 202


def _join(api, showtime_id, email, seats) -> tuple[str, dict]:
    """A new customer waiting for ``seats`` seats: (token, entry)."""
    token = api.make_user(email)
    r = api.post(f"/api/v1/showtimes/{showtime_id}/waitlist", {"seats": seats}, token)
    assert r.status_code == 201, r.json
    return token, r.json


def _offer(api, showtime_id, waiter) -> tuple[str, list[str]]:
    """A waiter's entry status and the labels of the seats offered ([] without an offer)."""
    token, entry = waiter
    now = api.get(f"/api/v1/waitlist/{entry['id']}", token).json
    if now["status"] != "offered":
        return now["status"], []
    return "offered", _labels(api, showtime_id, api.get(f"/api/v1/holds/{now['offer_hold_id']}", token).json["seat_ids"])


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


def test_a_lapsed_offer_moves_on_to_the_next_pair_that_fits(api, app, sold_out):
    ids, buyers = sold_out
    late = _join(api, ids["showtime"], "late@example.com", 2)
    next_pair = _join(api, ids["showtime"], "next@example.com", 2)
    _cancel(api, buyers["big"])  # A1, A2, A3, B1 come free
    assert _offer(api, ids["showtime"], late) == ("offered", ["A1", "A2"])  # side by side
    # A3 and B1 are two free seats, but apart: no placement for a pair, so no offer yet.
    assert _offer(api, ids["showtime"], next_pair) == ("waiting", [])
    # The first offer lapses: its hold expires unused, and its seats go to the next pair.
    store = app.extensions["marquee"].seats
    store.release(store.get_hold(api.get(f"/api/v1/waitlist/{late[1]['id']}", late[0]).json["offer_hold_id"]))
    with app.app_context():
        db.session.execute(update(WaitlistEntry).where(WaitlistEntry.id == late[1]["id"])
                           .values(offer_expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        db.session.commit()
        waitlist.offer_everywhere()
    assert _offer(api, ids["showtime"], late) == ("lapsed", [])
    assert _offer(api, ids["showtime"], next_pair) == ("offered", ["A1", "A2"])


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


# --- offers choose seats by the best-available rules (seat_choice) --------------

def test_an_offer_gets_the_best_available_seats(api, admin):
    """Side by side, nearest the focal point, stranding no seat: what a customer asking
    for the best two seats would get, not merely the first two side by side."""
    ids = api.catalog(admin)
    layout = {"rows": [{"label": r, "seats": ["standard"] * 4} for r in "AB"], "focal_point": {"x": 3, "y": 2}}
    assert api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": layout}, admin).status_code == 200
    seats = seat_ids(api, ids["showtime"])  # A1..A4, B1..B4
    big, other = api.make_user("big@buyers.example"), api.make_user("other@buyers.example")
    big_res = reserve(api, big, hold(api, big, ids["showtime"], seats[:2] + seats[4:]).json["id"]).json
    reserve(api, other, hold(api, other, ids["showtime"], seats[2:4]).json["id"])
    pair = _join(api, ids["showtime"], "pair@example.com", 2)
    _cancel(api, (big, big_res))  # A1, A2 and the whole of row B come free
    # B2+B3 is as near the focal point (B3) but would strand B1 and B4; A1+A2 is further.
    assert _offer(api, ids["showtime"], pair) == ("offered", ["B3", "B4"])
    assert [statuses(api, ids["showtime"])[s] for s in seats[4:6]] == ["available", "available"]


def test_a_pair_behind_a_party_that_does_not_fit_gets_the_offer(api, sold_out):
    ids, buyers = sold_out
    trio = _join(api, ids["showtime"], "trio@example.com", 3)
    pair = _join(api, ids["showtime"], "pair@example.com", 2)
    _cancel(api, buyers["big"])  # A1 A2 (gap) A3 / B1: four free, never three side by side
    assert _offer(api, ids["showtime"], trio) == ("waiting", [])
    assert _offer(api, ids["showtime"], pair) == ("offered", ["A1", "A2"])


def test_a_party_with_no_placement_keeps_its_place_until_one_comes_free(api, sold_out):
    ids, buyers = sold_out
    four = _join(api, ids["showtime"], "four@example.com", 4)
    pair = _join(api, ids["showtime"], "pair@example.com", 2)
    _cancel(api, buyers["big"])  # A1 A2 A3 B1 free: four seats, but not two and two in neighbouring rows
    assert _offer(api, ids["showtime"], pair) == ("offered", ["A1", "A2"])
    _cancel(api, buyers["one"])  # B2: with B1, two side by side in row B; A1 A2 are the pair's
    assert api.get(f"/api/v1/waitlist/{four[1]['id']}", four[0]).json["position"] == 1
    assert api.delete(f"/api/v1/waitlist/{pair[1]['id']}", pair[0]).status_code == 204  # gives A1 A2 back
    assert _offer(api, ids["showtime"], four) == ("offered", ["A1", "A2", "B1", "B2"])


def test_a_pass_asks_the_chooser_once_per_party_size_without_a_placement(api, sold_out, monkeypatch):
    """A long waitlist of parties that do not fit costs one script run per size, and
    their places hold: none of them is offered seats, the pair behind them is."""
    ids, buyers = sold_out
    trios = [_join(api, ids["showtime"], f"trio{i}@example.com", 3) for i in range(3)]
    pair = _join(api, ids["showtime"], "pair@example.com", 2)
    asked: list[int] = []
    take_best = waitlist.seats.take_best

    def counted(user_id, showtime_id, quantity, *args, **kwargs):
        asked.append(quantity)
        return take_best(user_id, showtime_id, quantity, *args, **kwargs)

    monkeypatch.setattr(waitlist.seats, "take_best", counted)
    _cancel(api, buyers["big"])  # four free, never three side by side
    assert asked == [3, 2]
    assert [api.get(f"/api/v1/waitlist/{entry['id']}", token).json["position"] for token, entry in trios] == [1, 2, 3]
    assert _offer(api, ids["showtime"], pair)[0] == "offered"
