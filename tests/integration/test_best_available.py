"""Best available through the API (API.md): Marquee picks the seats and holds them in
one step; 409 not_enough_seats when no placement exists, never a partial hold."""
from tests.integration.booking_helpers import seat_ids, showtime_room, statuses

LAYOUT = {"rows": [{"label": r, "seats": ["standard"] * 4 + [None] + ["premium"] * 4} for r in "ABCD"]}


def _show(api, admin):
    ids = api.catalog(admin)
    r = api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": LAYOUT}, admin)
    assert r.status_code == 200, r.json
    return ids


def _best(api, token, showtime, **body):
    return api.post(f"/api/v1/showtimes/{showtime}/holds", body, token)


def test_best_available_holds_a_party_side_by_side_nearest_the_focal_point(api, admin, user):
    ids = _show(api, admin)
    labels = {s["id"]: s["label"] for s in api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"]}
    r = _best(api, user, ids["showtime"], quantity=2)
    assert r.status_code == 201, r.json
    # focal point: x 5 (the aisle between 1..9), y 3 (two thirds back of 4 rows): row C, by the aisle
    assert sorted(labels[s] for s in r.json["seat_ids"]) in (["C3", "C4"], ["C5", "C6"])
    assert all(statuses(api, ids["showtime"])[s] == "held" for s in r.json["seat_ids"])
    assert api.get(f"/api/v1/holds/{r.json['id']}", user).json["seat_ids"] == r.json["seat_ids"]


def test_best_available_keeps_to_a_category(api, admin, user):
    ids = _show(api, admin)
    categories = {s["id"]: s["category"] for s in api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"]}
    r = _best(api, user, ids["showtime"], quantity=3, category="premium")
    assert r.status_code == 201 and {categories[s] for s in r.json["seat_ids"]} == {"premium"}


def test_no_placement_is_409_not_enough_seats_and_holds_nothing(api, admin, user):
    ids = _show(api, admin)
    r = _best(api, user, ids["showtime"], quantity=5, category="premium")  # rows of 4 premium: 2+3 split
    assert r.status_code == 201 and len(r.json["seat_ids"]) == 5  # rule 3: parts over neighbouring rows
    assert api.delete(f"/api/v1/holds/{r.json['id']}", user).status_code == 204
    before = statuses(api, ids["showtime"])
    r = _best(api, user, ids["showtime"], quantity=3, category="vip")
    assert r.status_code == 422 and "category" in r.json["errors"]
    assert statuses(api, ids["showtime"]) == before  # nothing held


def test_a_party_with_no_placement_is_409_not_enough_seats(api, admin, user, show):
    # the helper's screen: A1 A2 (gap) A3 / B1 B2 (gap) B3: no three side by side anywhere
    before = statuses(api, show["showtime"])
    r = _best(api, user, show["showtime"], quantity=5)
    assert r.status_code == 409 and r.json["code"] == "not_enough_seats"
    assert statuses(api, show["showtime"]) == before  # nothing held
    assert api.get("/api/v1/holds", user).json == []
    r = _best(api, user, show["showtime"], quantity=4)  # two and two, in neighbouring rows
    assert r.status_code == 201 and len(r.json["seat_ids"]) == 4


def test_a_hold_names_seats_or_asks_for_a_quantity_not_both(api, admin, user):
    ids = _show(api, admin)
    seat = seat_ids(api, ids["showtime"])[0]
    for body in ({"seat_ids": [seat], "quantity": 1}, {}, {"seat_ids": [seat], "category": "standard"},
                 {"quantity": 0}, {"quantity": 11}):
        r = _best(api, user, ids["showtime"], **body)
        assert r.status_code == 422 and r.json["code"] == "validation_error", (body, r.json)


def test_two_hundred_parties_rush_best_available_until_the_room_is_full(live_server, api, admin, app):
    """Real threads against a real gunicorn: parties of 1 to 6 ask for the best available
    (a smaller party when theirs no longer fits) until the room is full: no seat held
    twice, every hold whole, every seat of the room held."""
    import concurrent.futures
    import random
    import threading

    import requests

    from tests.integration.test_booking_races import _customers

    ids = api.catalog(admin)
    layout = {"rows": [{"label": r, "seats": ["standard"] * 6 + [None] + ["standard"] * 6} for r in "ABCDE"]}
    assert api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": layout}, admin).status_code == 200
    room = {s["id"] for s in api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"]}
    tokens = _customers(live_server, 200)
    parties = [random.Random(i).randint(1, 6) for i in range(len(tokens))]
    barrier = threading.Barrier(len(tokens))

    def party(i):
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tokens[i]}"}
        barrier.wait()
        for size in range(parties[i], 0, -1):
            r = session.post(f"{live_server}/api/v1/showtimes/{ids['showtime']}/holds", json={"quantity": size},
                             headers=headers, timeout=30)
            if r.status_code == 201:
                return size, r.json()["seat_ids"]
            assert r.status_code == 409 and r.json()["code"] == "not_enough_seats", r.text
        return 0, []

    with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
        results = list(pool.map(party, range(len(tokens))))
    held = [seat for _, seats in results for seat in seats]
    assert len(held) == len(set(held)), "a seat was held twice"
    assert all(len(seats) == size for size, seats in results), "a partial hold"
    assert set(held) == room  # every seat of the room is held
    owners = app.extensions["marquee"].seats.owners(ids["showtime"], showtime_room(app, ids["showtime"]))
    assert len(set(owners.values())) == sum(1 for size, _ in results if size)  # one owner per hold
