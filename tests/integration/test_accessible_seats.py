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


def test_best_available_seats_an_accessible_party_around_the_space(api, admin, user):
    """`accessible: k`: k wheelchair spaces, the rest beside them (the companion seat first)."""
    ids, seats = _room(api, admin)
    r = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds", {"quantity": 2, "accessible": 1}, user)
    assert r.status_code == 201, r.json
    assert set(r.json["seat_ids"]) in ({seats["A1"], seats["A2"]}, {seats["A6"], seats["A7"]})
    other = api.make_user("second-chair@test.example")
    r2 = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds", {"quantity": 3, "accessible": 1}, other)
    assert r2.status_code == 201, r2.json  # the other space, its companion and the seat beside it
    assert len({seats["A1"], seats["A7"]} & set(r2.json["seat_ids"])) == 1 and seats["A4"] not in r2.json["seat_ids"]
    third = api.make_user("third-chair@test.example")
    r3 = api.post(f"/api/v1/showtimes/{ids['showtime']}/holds", {"quantity": 1, "accessible": 1}, third)
    assert r3.status_code == 409 and r3.json["code"] == "not_enough_seats"  # both spaces are taken


def test_an_accessible_best_available_request_is_checked(api, admin, user):
    ids, _ = _room(api, admin)
    url = f"/api/v1/showtimes/{ids['showtime']}/holds"
    for body in ({"quantity": 2, "accessible": 3}, {"quantity": 2, "accessible": -1},
                 {"quantity": 2, "accessible": "yes"}, {"seat_ids": [1], "accessible": 2}):
        r = api.post(url, body, user)
        assert r.status_code == 422 and "accessible" in r.json["errors"], (body, r.json)
