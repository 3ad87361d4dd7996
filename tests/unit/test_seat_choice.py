"""The seat-choice rules (app/services/seat_choice.py) against plain models: random
layouts with gaps, random taken seats, random parties."""
from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.seat_choice import (
    SeatPlace,
    accessible_window_ok,
    best_available,
    default_focal_point,
    orphans_refused,
    runs,
    stranded_by,
)


@st.composite
def rooms(draw):
    """A layout of 1-5 rows of up to 9 positions (seat or gap), and which seats are free."""
    seats, next_id = [], 1
    for y in range(1, draw(st.integers(1, 5)) + 1):
        for x in range(1, draw(st.integers(1, 9)) + 1):
            if draw(st.booleans()) or draw(st.booleans()):  # three seats in four positions
                seats.append(SeatPlace(next_id, x, y, draw(st.sampled_from(["standard", "standard", "premium"]))))
                next_id += 1
    available = {s.id for s in seats if draw(st.integers(0, 3))}  # a quarter taken
    return seats, available


def alone(seats, available) -> set[int]:
    """Plain model: an available seat with no available seat at x-1 or x+1 of its row."""
    at = {(s.y, s.x): s.id for s in seats}
    return {s.id for s in seats if s.id in available
            and at.get((s.y, s.x - 1)) not in available and at.get((s.y, s.x + 1)) not in available}


@settings(max_examples=400, deadline=None)
@given(rooms(), st.data())
def test_the_orphan_check_agrees_with_a_plain_model(room, data):
    seats, available = room
    if not available:
        return
    taking = set(data.draw(st.lists(st.sampled_from(sorted(available)), min_size=1, max_size=4, unique=True)))
    expected = sorted(alone(seats, available - taking) - alone(seats, available))
    assert stranded_by(seats, available, taking) == expected


@settings(max_examples=400, deadline=None)
@given(rooms(), st.integers(1, 6), st.sampled_from([None, "standard", "premium"]))
def test_best_available_follows_the_rules_in_order(room, n, category):
    seats, available = room
    by_id = {s.id: s for s in seats}
    focal = default_focal_point(seats)
    found = best_available(seats, available, n, category=category, focal=focal)
    # every window of n side by side in one row, with what it would strand
    windows = []
    for run in runs(seats, available):
        for i in range(len(run) - n + 1):
            w = run[i:i + n]
            if category is None or all(s.category == category for s in w):
                windows.append((len(stranded_by(seats, available, {s.id for s in w})), w))
    if found is None:
        assert not [w for stranded, w in windows if stranded <= 1]
        return
    chosen = [by_id[i] for i in found.seat_ids]
    assert len(set(found.seat_ids)) == n and set(found.seat_ids) <= available
    assert category is None or all(s.category == category for s in chosen)
    assert found.stranded == len(stranded_by(seats, available, set(found.seat_ids)))
    if any(stranded == 0 for stranded, _ in windows):
        assert found.rule == 1 and found.stranded == 0
    elif any(stranded == 1 for stranded, _ in windows):
        assert found.rule == 2 and found.stranded == 1
    else:
        assert found.rule == 3
        rows = sorted({s.y for s in chosen})
        assert rows == list(range(rows[0], rows[0] + len(rows))) and len(rows) >= 2
        for y in rows:
            xs = sorted(s.x for s in chosen if s.y == y)
            assert len(xs) >= 2 and xs == list(range(xs[0], xs[0] + len(xs)))
        return
    # one row, side by side, and nearest the focal point among the windows of its rule
    assert len({s.y for s in chosen}) == 1
    xs = sorted(s.x for s in chosen)
    assert xs == list(range(xs[0], xs[0] + n))

    def distance(w):
        return ((sum(s.x for s in w) / n - focal[0]) ** 2 + (sum(s.y for s in w) / n - focal[1]) ** 2) ** 0.5

    best = min(distance(w) for stranded, w in windows if stranded == found.stranded)
    assert abs(found.distance - best) < 1e-9


CATEGORIES = {"S": "standard", "P": "premium", "W": "wheelchair", "C": "companion"}


def _row(pattern: str, y: int = 1, start_id: int = 1):
    """'S' a standard seat, 'P' premium, 'W' a wheelchair space, 'C' a companion seat,
    '.' a gap: seats with ids from ``start_id``."""
    seats, next_id = [], start_id
    for x, ch in enumerate(pattern, start=1):
        if ch != ".":
            seats.append(SeatPlace(next_id, x, y, CATEGORIES[ch]))
            next_id += 1
    return seats


def test_a_hold_that_strands_a_seat_is_refused_unless_every_placement_would():
    seats = _row("SSSSS")  # ids 1..5
    everything = {1, 2, 3, 4, 5}
    assert orphans_refused(seats, everything, {2, 3}) == [1]  # leaves seat 1 alone
    assert orphans_refused(seats, everything, {1, 2}) == []
    four = {1, 2, 3, 4}  # seat 5 is taken: a run of 4
    assert orphans_refused(seats, four, {1, 2, 3}) == []  # 3 of a run of 4: exempt, it must strand one
    assert orphans_refused(seats, everything, {1, 3}) == [2]


def test_best_available_prefers_no_orphan_then_the_middle():
    seats = _row("SSSSSSS") + _row("SSSSSSS", y=2, start_id=8)
    free = {s.id for s in seats}
    found = best_available(seats, free, 2, focal=(4, 2))
    assert found.rule == 1 and found.seat_ids in ((10, 11), (11, 12))  # middle of row 2, no orphan
    assert found.seat_ids == (10, 11)  # tie-break: smaller first x


def test_a_party_is_split_over_neighbouring_rows_when_no_row_fits_it():
    seats = _row("SS.SS") + _row("SS.SS", y=2, start_id=5)
    found = best_available(seats, {s.id for s in seats}, 4, focal=(2.5, 1.5))
    assert found.rule == 3 and len(found.seat_ids) == 4


def test_the_default_focal_point_is_the_middle_of_the_widest_row_two_thirds_back():
    seats = _row("SSS") + _row("SSSSSSS", y=2, start_id=4) + _row("SSSSS", y=4, start_id=11)
    assert default_focal_point(seats) == (4.0, 3.0)


def test_a_category_window_that_would_strand_two_seats_is_not_taken_in_one_row():
    seats = [SeatPlace(1, 1, 1, "standard"), SeatPlace(2, 2, 1, "premium"), SeatPlace(3, 3, 1, "premium"),
             SeatPlace(4, 4, 1, "standard")]
    assert best_available(seats, {1, 2, 3, 4}, 2, category="premium") is None  # it would leave 1 and 4 alone


# Accessible parties ------------------------------------------------------------------------------------------------

PIECES = ["S", "S", "P", ".", "WC", "CW", "CWC", "CWWC", "WW", "W", "C"]  # spaces with companions, and lonely ones


@st.composite
def accessible_rooms(draw):
    """1-4 rows built from pieces: wheelchair spaces with companion seats beside them,
    lonely spaces and companion seats, standard and premium seats, gaps; a quarter of
    the seats taken."""
    seats: list[SeatPlace] = []
    for y in range(1, draw(st.integers(1, 4)) + 1):
        pattern = "".join(draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=6)))
        seats += _row(pattern, y=y, start_id=len(seats) + 1)
    available = {s.id for s in seats if draw(st.integers(0, 3))}
    return seats, available


@st.composite
def accessible_parties(draw):
    """(n, k): a party of 1-6 with 1-3 wheelchair spaces, k <= n."""
    k = draw(st.integers(1, 3))
    return draw(st.integers(k, k + 3)), k


focal_points = st.none() | st.tuples(st.integers(0, 80), st.integers(0, 30)).map(lambda f6: (f6[0] / 6, f6[1] / 6))


def fits_party(window, k, category) -> bool:
    """Plain model of the accessible rule: k spaces, each companion seat beside a space of
    the window, the other seats of the category."""
    cats = [s.category for s in window]
    beside = [cats[i - 1:i] + cats[i + 1:i + 2] for i in range(len(cats))]
    return (cats.count("wheelchair") == k
            and all("wheelchair" in beside[i] for i, c in enumerate(cats) if c == "companion")
            and all(category in (None, c) for c in cats if c not in ("wheelchair", "companion")))


def plain_windows(seats, available, n):
    """Every n available seats side by side in one row, by looking up each position."""
    at = {(s.y, s.x): s for s in seats if s.id in available}
    for first in sorted(at.values(), key=lambda s: (s.y, s.x)):
        window = [at.get((first.y, first.x + i)) for i in range(n)]
        if all(window):
            yield window


def plain_choice(seats, available, n, k, category, focal):
    """Plain model of best available for an accessible party: the fitting windows that
    strand at most one seat, the least by (stranded, exact squared distance, y, first x)."""
    fx, fy = (Fraction(round(c * 6), 6) for c in focal)
    candidates = []
    for w in plain_windows(seats, available, n):
        stranded = len(alone(seats, available - {s.id for s in w}) - alone(seats, available))
        if fits_party(w, k, category) and stranded <= 1:
            d2 = (Fraction(sum(s.x for s in w), n) - fx) ** 2 + (Fraction(sum(s.y for s in w), n) - fy) ** 2
            candidates.append(((stranded, d2, w[0].y, w[0].x), w))
    return min(candidates, key=lambda c: c[0], default=None)


@settings(max_examples=500, deadline=None)
@given(accessible_rooms(), accessible_parties(), st.sampled_from([None, "standard", "premium"]), focal_points)
def test_an_accessible_party_gets_a_window_that_fits_it_or_nothing_when_none_does(room, party, category, focal):
    seats, available = room
    (n, k), by_id = party, {s.id: s for s in seats}
    found = best_available(seats, available, n, category=category, focal=focal, accessible=k)
    fitting = [w for w in plain_windows(seats, available, n) if fits_party(w, k, category)]
    strands = [len(alone(seats, available - {s.id for s in w}) - alone(seats, available)) for w in fitting]
    if found is None:
        assert min(strands, default=2) >= 2
        return
    chosen = [by_id[i] for i in found.seat_ids]
    assert set(found.seat_ids) <= available and len(set(found.seat_ids)) == n
    assert len({s.y for s in chosen}) == 1 and [s.x for s in chosen] == list(range(chosen[0].x, chosen[0].x + n))
    assert fits_party(chosen, k, category)
    assert found.stranded == len(alone(seats, available - set(found.seat_ids)) - alone(seats, available))
    assert found.rule == (1 if 0 in strands else 2) and found.stranded == found.rule - 1


@settings(max_examples=500, deadline=None)
@given(accessible_rooms(), accessible_parties(), st.sampled_from([None, "standard", "premium", "companion"]), focal_points)
def test_an_accessible_party_gets_the_least_fitting_window_by_the_documented_key(room, party, category, focal):
    seats, available = room
    n, k = party
    found = best_available(seats, available, n, category=category, focal=focal, accessible=k)
    expected = plain_choice(seats, available, n, k, category, focal or default_focal_point(seats))
    if expected is None:
        assert found is None
        return
    (stranded, d2, _y, _x), window = expected
    assert found.seat_ids == tuple(s.id for s in window)
    assert found.stranded == stranded and abs(found.distance ** 2 - d2) < 1e-9


def test_companion_space_space_companion_seats_a_party_of_four_with_two_spaces_not_one():
    seats = _row("CWWC")
    free = {1, 2, 3, 4}
    found = best_available(seats, free, 4, accessible=2)
    assert found.seat_ids == (1, 2, 3, 4) and found.rule == 1
    assert best_available(seats, free, 4, accessible=1) is None  # two spaces in the only window
    assert best_available(seats, free, 4, accessible=3) is None


def test_a_party_of_two_with_one_space_takes_the_pair_nearest_the_focal_point():
    seats = _row("CW.SSSS.WC")  # ids: C1 W2 . S3 S4 S5 S6 . W7 C8
    free = {s.id for s in seats}
    assert best_available(seats, free, 2, accessible=1, focal=(8, 1)).seat_ids == (7, 8)  # W C
    assert best_available(seats, free, 2, accessible=1, focal=(3, 1)).seat_ids == (1, 2)  # C W
    assert best_available(seats, free, 2, accessible=1, focal=(5.5, 1)).seat_ids == (1, 2)  # as near: smaller x


def test_a_companion_seat_away_from_the_space_is_refused():
    seats = _row("WCC")
    assert not accessible_window_ok(seats, 1)
    assert best_available(seats, {1, 2, 3}, 3, accessible=1) is None
    assert best_available(seats, {1, 2, 3}, 2, accessible=1).seat_ids == (1, 2)
    assert best_available(seats, {2, 3}, 2, accessible=1) is None  # the space beside them is taken


def test_the_rest_of_an_accessible_party_keeps_to_its_category():
    seats = _row("PWCS")
    free = {1, 2, 3, 4}
    assert best_available(seats, free, 3, accessible=1, category="premium").seat_ids == (1, 2, 3)
    assert best_available(seats, free, 3, accessible=1, category="standard").seat_ids == (2, 3, 4)
    assert accessible_window_ok(seats[:3], 1) and not accessible_window_ok(seats[:3], 1, "standard")


def test_an_accessible_party_is_not_split_over_rows():
    seats = _row("WC") + _row("SS", y=2, start_id=3)
    free = {1, 2, 3, 4}
    assert best_available(seats, free, 4, focal=(1.5, 1.5)).rule == 3  # any other party of four is split
    assert best_available(seats, free, 4, accessible=1, focal=(1.5, 1.5)) is None
