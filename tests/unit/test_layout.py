"""Screen layouts become seats: numbering, gaps, and every way a layout is refused."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.services.layout import MAX_SEATS, LayoutError, build_seats


def test_gaps_are_skipped_in_numbering():
    seats = build_seats({"rows": [{"label": "A", "seats": ["standard", "standard", None, "standard"]}]})
    assert [s.label for s in seats] == ["A1", "A2", "A3"]
    assert [s.col_index for s in seats] == [0, 1, 3]


def test_rows_keep_their_order_and_categories():
    seats = build_seats({"rows": [{"label": "A", "seats": ["premium"]}, {"label": "B", "seats": ["recliner", None]}]})
    assert [(s.label, s.category, s.row_index) for s in seats] == [("A1", "premium", 0), ("B1", "recliner", 1)]


@pytest.mark.parametrize("layout, fragment", [
    ({}, "non-empty list"),
    ({"rows": []}, "non-empty list"),
    ({"rows": [{"label": "A", "seats": []}]}, "non-empty list"),
    ({"rows": [{"label": "A", "seats": [None, None]}]}, "has no seats"),
    ({"rows": [{"label": "A", "seats": ["standard"]}, {"label": "A", "seats": ["standard"]}]}, "used twice"),
    ({"rows": [{"label": "A!", "seats": ["standard"]}]}, "label must be"),
    ({"rows": [{"label": "A", "seats": ["Not A Category"]}]}, "category must match"),
    ({"rows": [{"label": "A", "seats": [7]}]}, "category must match"),
    ({"rows": ["A"]}, "must be an object"),
])
def test_invalid_layouts_are_refused_with_a_reason(layout, fragment):
    with pytest.raises(LayoutError) as info:
        build_seats(layout)
    assert any(fragment in m for m in info.value.messages), info.value.messages


def test_labels_that_collide_across_rows_are_refused():
    # Row "A" seat 11 and row "A1" seat 1 would both be "A11".
    layout = {"rows": [{"label": "A", "seats": ["standard"] * 11}, {"label": "A1", "seats": ["standard"]}]}
    with pytest.raises(LayoutError, match="collides"):
        build_seats(layout)


def _letters(i: int) -> str:
    return chr(ord("A") + i // 26) + chr(ord("A") + i % 26)


def test_thousands_of_seats_are_fine_but_not_unbounded():
    big = {"rows": [{"label": _letters(i), "seats": ["standard"] * 100} for i in range(100)]}
    assert len(build_seats(big)) == 10_000
    too_big = {"rows": [{"label": _letters(i), "seats": ["standard"] * 500} for i in range(50)]}
    assert MAX_SEATS < 50 * 500
    with pytest.raises(LayoutError, match="at most"):
        build_seats(too_big)


@given(st.lists(st.lists(st.one_of(st.none(), st.sampled_from(["standard", "premium"])), min_size=1, max_size=30),
                min_size=1, max_size=20))
def test_every_seat_gets_a_unique_label_and_gaps_none(rows):
    layout = {"rows": [{"label": _letters(i), "seats": r} for i, r in enumerate(rows)]}
    if any(all(c is None for c in r) for r in rows):
        with pytest.raises(LayoutError):
            build_seats(layout)
        return
    seats = build_seats(layout)
    assert len(seats) == sum(c is not None for r in rows for c in r)
    assert len({s.label for s in seats}) == len(seats)


def test_the_focal_point_is_the_layouts_own_or_the_middle_of_the_widest_row_two_thirds_back():
    from app.services.layout import focal_point

    layout = {"rows": [{"label": "A", "seats": ["standard"] * 3},
                       {"label": "B", "seats": ["standard"] * 10 + [None] + ["standard"] * 10},
                       {"label": "C", "seats": ["standard"] * 5}]}
    assert focal_point(layout) == {"x": 11.0, "y": 2.3333}
    assert focal_point({**layout, "focal_point": {"x": 4, "y": 2}}) == {"x": 4.0, "y": 2.0}


@pytest.mark.parametrize("point", [{"x": 22, "y": 1}, {"x": 1, "y": 4}, {"x": 0, "y": 1}, {"x": "1", "y": 1},
                                   {"x": 1}, {"x": True, "y": 1}])
def test_a_focal_point_outside_the_room_is_refused(point):
    layout = {"rows": [{"label": "A", "seats": ["standard"] * 21}] * 1 + [
        {"label": "B", "seats": ["standard"] * 3}, {"label": "C", "seats": ["standard"] * 3}], "focal_point": point}
    with pytest.raises(LayoutError) as refused:
        build_seats(layout)
    assert any("focal_point" in m for m in refused.value.messages)
