"""Releasing a hold is one step in Redis (release_hold.lua through SeatStore.release_own):
only its owner's, never while it is being reserved, on the seat keys of its layout."""
from datetime import datetime, timedelta, timezone

from app.adapters.seat_store import ClaimOutcome, ReleaseOutcome, Room
from tests.integration.booking_helpers import hold, seat_ids, statuses


def _claim(app, hold_id, user_id):
    """What a reservation does first: the hold is claimed for checkout."""
    store = app.extensions["marquee"].seats
    with app.app_context():
        assert store.claim(store.get_hold(hold_id), user_id, 60_000) is ClaimOutcome.CLAIMED


def test_a_hold_being_reserved_is_not_released(api, app, user, show):
    s1 = seat_ids(api, show["showtime"])[0]
    held = hold(api, user, show["showtime"], [s1]).json
    me = api.get("/api/v1/users/me", user).json["id"]
    _claim(app, held["id"], me)
    r = api.delete(f"/api/v1/holds/{held['id']}", user)
    assert r.status_code == 409 and r.json["code"] == "hold_in_use"
    assert statuses(api, show["showtime"])[s1] == "held"


def test_an_unknown_a_malformed_or_an_ended_hold_is_404(api, user, show):
    s1 = seat_ids(api, show["showtime"])[0]
    held = hold(api, user, show["showtime"], [s1]).json
    assert api.delete(f"/api/v1/holds/{held['id']}", user).status_code == 204
    assert api.delete(f"/api/v1/holds/{held['id']}", user).status_code == 404
    assert api.delete(f"/api/v1/holds/{show['showtime']}.{'0' * 32}", user).status_code == 404
    assert api.delete("/api/v1/holds/not-a-hold", user).status_code == 404
    assert api.delete(f"/api/v1/holds/999999.{'0' * 32}", user).status_code == 404  # no such showtime


def test_a_hold_on_another_layouts_seat_keys_is_left_to_its_record(app):
    store = app.extensions["marquee"].seats
    before = Room([(1, 1, 1, "standard"), (2, 2, 1, "standard")])
    after = Room([(1, 1, 1, "standard"), (2, 2, 1, "standard"), (3, 3, 1, "standard")])
    assert before.version != after.version
    expires = datetime.now(timezone.utc) + timedelta(minutes=6)
    with app.app_context():
        store.sync(77, before, [], 3600)
        hold_id, result = store.hold(77, before, 5, [1], 360_000, expires)
        assert result.held
        assert store.release_own(77, after, 5, hold_id) is ReleaseOutcome.OTHER_LAYOUT
        assert store.get_hold(hold_id) is not None  # untouched
        assert store.release_own(77, before, 6, hold_id) is ReleaseOutcome.NOT_FOUND  # not theirs
        assert store.release_own(77, before, 5, hold_id) is ReleaseOutcome.RELEASED
        assert store.get_hold(hold_id) is None and store.owners(77, before) == {}
