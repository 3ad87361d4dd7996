"""The best-available script against its specification (app/services/seat_choice.py):
random rooms with gaps, random taken seats, random parties, on the real Redis. Whatever
the model chooses, the script holds exactly that; where the model finds nothing, the
script takes nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.adapters.seat_store import SeatStore
from app.services.seat_choice import SeatPlace, best_available, default_focal_point, sixths
from tests.unit.test_seat_choice import rooms

SHOWTIME = 876_543


@pytest.fixture
def store(app):
    seats = app.extensions["marquee"].seats
    yield seats
    seats.store.delete_prefixed("{st:%d}:*" % SHOWTIME)


def _hold_in_script(store: SeatStore, room, n, category, user=1):
    seats, available = room
    store.store.delete_prefixed("{st:%d}:*" % SHOWTIME)
    store.sync(SHOWTIME, [(s.id, "r:1", 60_000) for s in seats if s.id not in available], 3600)
    ordered = sorted(seats, key=lambda s: (s.y, s.x))
    focal6 = sixths(default_focal_point(seats))
    layout = [(s.id, s.x, s.y, category is None or s.category == category) for s in ordered]
    expires = datetime.now(timezone.utc) + timedelta(minutes=5)
    return store.hold_best(SHOWTIME, user, layout, n, focal6, 60_000, expires)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(room=rooms(), n=st.integers(1, 6), category=st.sampled_from([None, "standard", "premium"]))
def test_the_script_holds_exactly_what_the_model_chooses(store, room, n, category):
    seats, available = room
    expected = best_available(seats, available, n, category=category)
    hold_id, result, chosen = _hold_in_script(store, room, n, category)
    if expected is None:
        assert not result.held and chosen == []
        assert store.owners(SHOWTIME, [s.id for s in seats if s.id in available]) == {}  # nothing taken
        return
    assert result.held and tuple(chosen) == expected.seat_ids
    owners = store.owners(SHOWTIME, [s.id for s in seats])
    assert {s for s, o in owners.items() if o == f"h:{hold_id}"} == set(chosen)
    assert store.get_hold(hold_id).seat_ids == chosen


def test_parties_fill_a_room_of_320_seats_without_a_seat_twice(store):
    """Parties of 1 to 6 until the room is full (a party that no longer fits is tried
    smaller): every seat ends up taken once, and no hold ever took a seat already taken."""
    seats = [SeatPlace(y * 100 + x, x, y, "standard") for y in range(1, 17) for x in range(1, 22) if x != 11]
    taken: set[int] = set()
    party, n = 0, 1
    while n >= 1:
        party += 1
        _, result, chosen = _hold_in_script_keep(store, seats, n, user=party)
        if not result.held:
            n -= 1  # no placement for this size now: smaller parties may still fit
            continue
        assert not taken & set(chosen) and len(chosen) == n
        taken |= set(chosen)
        n = 1 + party % 6
    assert taken == {s.id for s in seats}


def _hold_in_script_keep(store: SeatStore, seats, n, user):
    """Like _hold_in_script, but on the seats Redis holds already (parties add up)."""
    if not store.store.client.exists(store.synced_key(SHOWTIME)):
        store.sync(SHOWTIME, [], 3600)
    ordered = sorted(seats, key=lambda s: (s.y, s.x))
    layout = [(s.id, s.x, s.y, True) for s in ordered]
    expires = datetime.now(timezone.utc) + timedelta(minutes=5)
    return store.hold_best(SHOWTIME, user, layout, n, sixths(default_focal_point(seats)), 60_000, expires)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(room=rooms(), data=st.data())
def test_the_hold_script_refuses_exactly_the_holds_the_orphan_model_refuses(store, room, data):
    from app.services.seat_choice import orphans_refused

    seats, available = room
    if not available:
        return
    wanted = data.draw(st.lists(st.sampled_from(sorted(available)), min_size=1, max_size=4, unique=True))
    store.store.delete_prefixed("{st:%d}:*" % SHOWTIME)
    store.sync(SHOWTIME, [(s.id, "r:1", 60_000) for s in seats if s.id not in available], 3600)
    rows_of_request = {s.y for s in seats if s.id in wanted}
    rows = {s.id: (s.x, s.y) for s in seats if s.y in rows_of_request}
    expires = datetime.now(timezone.utc) + timedelta(minutes=5)
    _, result, = store.hold(SHOWTIME, 1, wanted, 60_000, expires, rows=rows)
    refused = orphans_refused(seats, available, set(wanted))
    if refused:
        assert not result.held and sorted(result.stranded) == refused
        assert store.owners(SHOWTIME, wanted) == {}  # nothing taken
    else:
        assert result.held and not result.stranded
