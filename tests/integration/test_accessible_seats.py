"""Accessible seating (API.md): wheelchair spaces need "accessible": true; a companion
seat goes only with the wheelchair space beside it, in the same hold; best available
keeps to other seats; all of them open to everyone ACCESSIBLE_RELEASE_MINUTES before the show."""
from dataclasses import replace

LAYOUT = {"rows": [{"label": "A", "seats": ["wheelchair", "companion", "standard", "standard", "standard",
                                             "companion", "wheelchair"]}]}


def _room(api, admin):
    ids = api.catalog(admin)
    prices = {"standard": 1000, "premium": 1500, "wheelchair": 1000, "companion": 1000}
    assert api.patch(f"/api/v1/showtimes/{ids['showtime']}", {"prices": prices, "orphan_seats": "allow"},
                     admin).status_code == 200  # prices first: the screen's new categories need them
    assert api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": LAYOUT}, admin).status_code == 200
    seats = {s["label"]: s["id"] for s in api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"]}
    return ids, seats


def _hold(api, token, showtime, seat_ids, **more):
    return api.post(f"/api/v1/showtimes/{showtime}/holds", {"seat_ids": seat_ids, **more}, token)


def test_a_wheelchair_space_needs_accessible(api, admin, user):
    ids, seats = _room(api, admin)
    r = _hold(api, user, ids["showtime"], [seats["A1"]])
    assert r.status_code == 409 and r.json["code"] == "accessible_seat" and r.json["seat_ids"] == [seats["A1"]]
    assert _hold(api, user, ids["showtime"], [seats["A1"]], accessible=True).status_code == 201


def test_a_companion_seat_goes_only_with_the_wheelchair_space_beside_it(api, admin, user):
    ids, seats = _room(api, admin)
    r = _hold(api, user, ids["showtime"], [seats["A2"], seats["A3"]], accessible=True)
    assert r.status_code == 409 and r.json["code"] == "accessible_seat" and r.json["seat_ids"] == [seats["A2"]]
    r = _hold(api, user, ids["showtime"], [seats["A6"], seats["A1"]], accessible=True)  # not beside it
    assert r.status_code == 409 and r.json["seat_ids"] == [seats["A6"]]
    r = _hold(api, user, ids["showtime"], [seats["A1"], seats["A2"], seats["A3"]], accessible=True)
    assert r.status_code == 201, r.json


def test_best_available_keeps_away_from_accessible_seats(api, admin, user):
    ids, seats = _room(api, admin)
    r = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds", {"quantity": 3}, user)
    assert r.status_code == 201 and set(r.json["seat_ids"]) == {seats["A3"], seats["A4"], seats["A5"]}
    other = api.make_user("other-party@test.example")
    r = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds", {"quantity": 1}, other)
    assert r.status_code == 409 and r.json["code"] == "not_enough_seats"


def test_accessible_seats_open_to_everyone_near_the_show(api, app, admin, user):
    ids, seats = _room(api, admin)
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, accessible_release_minutes=60 * 24 * 7)  # the show is within the window
    try:
        assert _hold(api, user, ids["showtime"], [seats["A2"]]).status_code == 201
        other = api.make_user("late@test.example")
        r = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds", {"quantity": 1}, other)
        assert r.status_code == 201  # best available may now seat anyone there
    finally:
        ext.settings = original
