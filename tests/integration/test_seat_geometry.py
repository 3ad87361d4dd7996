"""Seat geometry (API.md, "Seat geometry and choosing seats"): every seat's x and y in the
screen and the seat map, and the screen's focal point (its own, or the default)."""


def test_seats_carry_x_and_y_and_the_screen_its_default_focal_point(api, show):
    # the helper's screen: A1 A2 (gap) A3 / B1 B2 (gap) B3
    seats = {s["label"]: s for s in api.get(f"/api/v1/showtimes/{show['showtime']}/seats").json["seats"]}
    assert (seats["A1"]["x"], seats["A1"]["y"]) == (1, 1)
    assert (seats["A3"]["x"], seats["A3"]["y"]) == (4, 1)  # the gap is counted
    assert (seats["B2"]["x"], seats["B2"]["y"]) == (2, 2)
    screen = api.get(f"/api/v1/screens/{show['screen']}").json
    assert {(s["label"], s["x"], s["y"]) for s in screen["seats"]} >= {("A3", 4, 1), ("B1", 1, 2)}
    # the middle of the widest row (x 1..4), two thirds of the way back (rows 1..2)
    expected = {"x": 2.5, "y": 1.6667}
    assert screen["focal_point"] == expected
    assert api.get(f"/api/v1/showtimes/{show['showtime']}/seats").json["focal_point"] == expected


def test_an_admin_sets_the_focal_point_and_the_seat_map_follows(api, admin, show):
    layout = {"rows": [{"label": "A", "seats": ["standard", "standard", None, "premium"]},
                       {"label": "B", "seats": ["standard", "standard", None, "premium"]}],
              "focal_point": {"x": 4, "y": 2}}
    r = api.patch(f"/api/v1/screens/{show['screen']}", {"layout": layout}, admin)
    assert r.status_code == 200, r.json
    assert r.json["focal_point"] == {"x": 4.0, "y": 2.0}
    assert api.get(f"/api/v1/showtimes/{show['showtime']}/seats").json["focal_point"] == {"x": 4.0, "y": 2.0}


def test_a_focal_point_outside_the_room_is_422_and_changes_nothing(api, admin, show):
    before = api.get(f"/api/v1/screens/{show['screen']}").json
    layout = {**before["layout"], "focal_point": {"x": 9, "y": 1}}
    r = api.patch(f"/api/v1/screens/{show['screen']}", {"layout": layout}, admin)
    assert r.status_code == 422 and r.json["code"] == "validation_error"
    assert any("focal_point" in m for msgs in r.json["errors"].values() for m in msgs)
    assert api.get(f"/api/v1/screens/{show['screen']}").json == before
