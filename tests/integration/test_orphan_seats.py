"""The orphan rule (API.md): with orphan_seats = "prevent" (the default) a hold by seat
that would leave a free seat alone in its run is refused (409 orphan_seat naming it),
unless every placement in that run would; checked in the same atomic step as the take."""
import concurrent.futures
import threading

import requests

from tests.integration.booking_helpers import statuses

ROW = {"rows": [{"label": "A", "seats": ["standard"] * 5}]}  # A1..A5, side by side


def _room(api, admin, **showtime):
    ids = api.catalog(admin)
    assert api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": ROW}, admin).status_code == 200
    if showtime:
        assert api.patch(f"/api/v1/showtimes/{ids['showtime']}", showtime, admin).status_code == 200
    seats = {s["label"]: s["id"] for s in api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"]}
    return ids, seats


def _hold(api, token, showtime, *ids):
    return api.post(f"/api/v1/showtimes/{showtime}/holds", {"seat_ids": list(ids)}, token)


def test_a_hold_that_strands_a_seat_is_409_orphan_seat_and_holds_nothing(api, admin, user):
    ids, seats = _room(api, admin)
    assert api.get(f"/api/v1/showtimes/{ids['showtime']}").json["orphan_seats"] == "prevent"
    r = _hold(api, user, ids["showtime"], seats["A2"], seats["A3"])  # would leave A1 alone
    assert r.status_code == 409 and r.json["code"] == "orphan_seat" and r.json["seat_ids"] == [seats["A1"]]
    assert set(statuses(api, ids["showtime"]).values()) == {"available"}
    assert _hold(api, user, ids["showtime"], seats["A1"], seats["A2"]).status_code == 201  # leaves A3-A5


def test_a_hold_is_allowed_when_every_placement_in_its_run_would_strand_one(api, admin, user):
    ids, seats = _room(api, admin)
    other = api.make_user("first@test.example")
    assert _hold(api, other, ids["showtime"], seats["A5"]).status_code == 201  # A1-A4 left: a run of 4
    r = _hold(api, user, ids["showtime"], seats["A1"], seats["A2"], seats["A3"])  # 3 of 4: one must be left
    assert r.status_code == 201, r.json


def test_with_orphan_seats_allow_no_check_is_made(api, admin, user):
    ids, seats = _room(api, admin, orphan_seats="allow")
    assert _hold(api, user, ids["showtime"], seats["A2"], seats["A3"]).status_code == 201


NINE = {"rows": [{"label": "A", "seats": ["standard"] * 9}]}


def test_two_parallel_holds_cannot_together_strand_a_seat(live_server, api, admin):
    """In a row of nine, A3-A4 alone is fine and A6-A7 alone is fine, but both would leave A5
    alone, and whichever comes second takes from a run of five (no exemption): of two
    customers racing for them, exactly one wins, every time (real threads, a real gunicorn)."""
    from tests.integration.test_booking_races import _customers

    tokens = _customers(live_server, 2)
    ids = api.catalog(admin)
    assert api.patch(f"/api/v1/screens/{ids['screen']}", {"layout": NINE}, admin).status_code == 200
    seats = {s["label"]: s["id"] for s in api.get(f"/api/v1/showtimes/{ids['showtime']}/seats").json["seats"]}
    for _ in range(8):  # each round starts from a free row: the winner releases its hold
        barrier = threading.Barrier(2)

        def take(i, wanted, showtime=ids["showtime"], barrier=barrier):
            barrier.wait()
            return requests.post(f"{live_server}/api/v1/showtimes/{showtime}/holds", timeout=30,
                                 json={"seat_ids": wanted}, headers={"Authorization": f"Bearer {tokens[i]}"})

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(take, [0, 1], [[seats["A3"], seats["A4"]], [seats["A6"], seats["A7"]]]))
        codes = sorted(r.status_code for r in answers)
        assert codes == [201, 409], [r.text for r in answers]
        loser = next(r for r in answers if r.status_code == 409)
        assert loser.json()["code"] == "orphan_seat" and loser.json()["seat_ids"] == [seats["A5"]]
        assert statuses(api, ids["showtime"])[seats["A5"]] == "available"
        for token, r in zip(tokens, answers, strict=True):
            if r.status_code == 201:
                requests.delete(f"{live_server}/api/v1/holds/{r.json()['id']}", timeout=10,
                                headers={"Authorization": f"Bearer {token}"})
