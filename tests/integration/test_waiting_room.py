"""The waiting room (API.md "Waiting room for on-sales", DESIGN.md invariant 10): admins turn
it on and change it, customers join (idempotently), wait, get admitted in number order and
hold with their admission token; without a live admission no hold is made."""
from __future__ import annotations

import base64
import json
import math
import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from app import db, ops_metrics
from app.adapters.waiting_room_store import active_key, events_key
from app.config import JWT_ALGORITHM
from app.models import Showtime
from app.services import waiting_room
from tests.conftest import TEST_ENV
from tests.integration.booking_helpers import hold, reserve, seat_ids, statuses


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


def soon(seconds: float = 60) -> str:
    return iso(datetime.now(timezone.utc) + timedelta(seconds=seconds))


def room_path(showtime_id) -> str:
    return f"/api/v1/showtimes/{showtime_id}/waiting-room"


def settings(**over) -> dict:
    return {"opens_at": soon(), "admit_per_minute": 6000, "max_active": 50, "session_seconds": 300, **over}


def turn_on(api, admin, showtime_id, opens_at=None, **over):
    """PUT the room; by default it opens at once (an opening time just past)."""
    body = settings(opens_at=opens_at or iso(datetime.now(timezone.utc) - timedelta(seconds=1)), **over)
    r = api.call("PUT", room_path(showtime_id), admin, json=body)
    assert r.status_code == 200, r.json
    return r.json


def join(api, token, showtime_id):
    return api.post(f"/api/v1/showtimes/{showtime_id}/queue", None, token)


def tick(app, times: int = 1):
    with app.app_context():
        for _ in range(times):
            assert waiting_room.admit_all() is not None


def tick_after(app, seconds: float):
    """One admission step ``seconds`` after the last: its credit is the time since the last
    step at the rate (at 60,000 a minute, a number a millisecond)."""
    time.sleep(seconds)
    tick(app)


def entry(api, token, entry_id):
    r = api.get(f"/api/v1/queue/{entry_id}", token)
    assert r.status_code == 200, r.json
    return r.json


def admission(token: str | None) -> dict:
    return {} if token is None else {"Admission-Token": token}


def by_seat_ids(api, token, showtime_id, admission_token=None):
    free = [seat for seat, status in statuses(api, showtime_id).items() if status == "available"]
    return hold(api, token, showtime_id, free[:1], headers=admission(admission_token))


def best_available(api, token, showtime_id, admission_token=None):
    return api.post(f"/api/v1/showtimes/{showtime_id}/holds", {"quantity": 1}, token,
                    headers=admission(admission_token))


def assert_admission_required(r, showtime_id, why=""):
    assert r.status_code == 403 and r.json["code"] == "admission_required", (why, r.json)
    assert r.json["queue_url"] == f"/api/v1/showtimes/{showtime_id}/queue"


def stats(api, admin, showtime_id) -> dict:
    r = api.get(room_path(showtime_id), admin)
    assert r.status_code == 200, r.json
    return r.json["stats"]


def join_as(app, showtime_id, users) -> dict[int, dict]:
    """Customers who need no account (the queue is Redis's): their entries by user id."""
    with app.app_context():
        return {u: waiting_room.join(u, showtime_id)[0] for u in users}


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def end_session_time(app, showtime_id, user_id) -> None:
    """The session's time is up, as the store records it: its end moved to the past (setup
    only; a real session lasts 30 s at least)."""
    store = app.extensions["marquee"].waiting_rooms.store
    assert store.client.zadd(active_key(store, showtime_id), {str(user_id): 1}, xx=True, ch=True) == 1


def queue_events(app, showtime_id) -> list[dict]:
    store = app.extensions["marquee"].waiting_rooms.store
    return [json.loads(fields[b"queue"]) for _, fields in store.client.xrange(events_key(store, showtime_id))]


def test_smoke_join_admit_hold(api, app, admin, user, show):
    turn_on(api, admin, show["showtime"])
    r = join(api, user, show["showtime"])
    assert r.status_code == 201, r.json
    assert r.json["status"] == "waiting" and r.json["number"] == 1
    again = join(api, user, show["showtime"])
    assert again.status_code == 200 and again.json["id"] == r.json["id"]
    s1, *_ = seat_ids(api, show["showtime"])
    refused = hold(api, user, show["showtime"], [s1])
    assert refused.status_code == 403 and refused.json["code"] == "admission_required", refused.json
    assert refused.json["queue_url"] == f"/api/v1/showtimes/{show['showtime']}/queue"
    tick(app)
    admitted = entry(api, user, r.json["id"])
    assert admitted["status"] == "admitted", admitted
    held = hold(api, user, show["showtime"], [s1], headers={"Admission-Token": admitted["admission_token"]})
    assert held.status_code == 201, held.json
    reserved = reserve(api, user, held.json["id"])
    assert reserved.status_code == 202, reserved.json
    assert entry(api, user, r.json["id"])["status"] == "done"
    status = api.get(f"/api/v1/showtimes/{show['showtime']}/queue/status")
    assert status.status_code == 200 and status.headers["Cache-Control"] == "public, max-age=1"
    assert status.json["serving_number"] == 1 and status.json["last_number"] == 1
    stats = api.get(f"/api/v1/showtimes/{show['showtime']}/waiting-room", admin).json["stats"]
    assert stats["done"] == 1 and stats["active"] == 0, stats


# --- the gate ------------------------------------------------------------------------------

@pytest.fixture
def admitted(api, app, admin, user, other, show):
    """The room on and open, ``user`` and ``other`` in it and admitted: their entries."""
    turn_on(api, admin, show["showtime"])
    mine, theirs = join(api, user, show["showtime"]).json, join(api, other, show["showtime"]).json
    tick(app)
    return entry(api, user, mine["id"]), entry(api, other, theirs["id"])


@pytest.mark.parametrize("take", [by_seat_ids, best_available])
def test_the_gate_takes_only_the_callers_own_token_for_this_showtime(api, app, admin, user, show, admitted, take):
    """The caller is admitted (a live session): only the token is at fault each time."""
    showtime_id = show["showtime"]
    mine, theirs = admitted
    claims = claims_of(mine["admission_token"])
    elsewhere = api.showtime(admin, show["movie"], show["screen"],
                             starts_at=(datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0))["id"]
    turn_on(api, admin, elsewhere)
    their_header, _, their_signature = theirs["admission_token"].split(".")
    elsewhere_entry = join(api, user, elsewhere).json
    tick(app)
    expired = app.extensions["marquee"].admissions.sign(
        int(claims["sub"]), showtime_id, claims["n"], int(datetime.now(timezone.utc).timestamp() * 1000) - 1000)
    refused = {
        "no token": None,
        "another user's": theirs["admission_token"],
        "another showtime's": entry(api, user, elsewhere_entry["id"])["admission_token"],
        "expired": expired,
        "signed with the access tokens' key": jwt.encode(claims, TEST_ENV["JWT_SECRET_KEY"], JWT_ALGORITHM),
        "another user's, its payload made ours": ".".join([their_header, _b64(claims), their_signature]),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "an access token": user,
    }
    before = statuses(api, showtime_id)
    for why, token in refused.items():
        assert_admission_required(take(api, user, showtime_id, token), showtime_id, why)
    assert statuses(api, showtime_id) == before and set(before.values()) == {"available"}
    assert api.get("/api/v1/holds", user).json == []
    assert take(api, user, showtime_id, mine["admission_token"]).status_code == 201
    assert api.get("/api/v1/holds", mine["admission_token"]).status_code == 401, "an admission is no access token"


@pytest.mark.parametrize("end", ["done", "left", "expired"])
def test_a_token_grants_nothing_once_its_session_has_ended(api, app, user, show, admitted, end):
    """The token is still well signed and unexpired: the session's end alone refuses it."""
    showtime_id = show["showtime"]
    mine, _ = admitted
    token, user_id = mine["admission_token"], int(claims_of(mine["admission_token"])["sub"])
    if end == "done":
        held = by_seat_ids(api, user, showtime_id, token)
        assert held.status_code == 201, held.json
        assert reserve(api, user, held.json["id"]).status_code == 202
    elif end == "left":
        assert api.delete(f"/api/v1/queue/{mine['id']}", user).status_code == 204
    else:
        end_session_time(app, showtime_id, user_id)
    before = statuses(api, showtime_id)
    for take in (by_seat_ids, best_available):
        assert_admission_required(take(api, user, showtime_id, token), showtime_id, take.__name__)
    assert statuses(api, showtime_id) == before and api.get("/api/v1/holds", user).json == []
    tick(app)
    assert entry(api, user, mine["id"])["status"] == end
    assert app.extensions["marquee"].admissions.verify(token, user_id, showtime_id)


def test_turning_the_room_off_lets_holds_through_and_ends_every_entry(api, app, admin, user, other, show, admitted):
    showtime_id = show["showtime"]
    mine, _ = admitted
    assert api.delete(room_path(showtime_id), admin).status_code == 204
    assert by_seat_ids(api, user, showtime_id).status_code == 201
    assert best_available(api, other, showtime_id).status_code == 201
    assert api.get(f"/api/v1/queue/{mine['id']}", user).status_code == 404
    refused = join(api, user, showtime_id)
    assert refused.status_code == 409 and refused.json["code"] == "no_waiting_room"
    assert api.get(f"/api/v1/showtimes/{showtime_id}/queue/status").status_code == 404
    assert api.get(room_path(showtime_id), admin).status_code == 404
    assert api.delete(room_path(showtime_id), admin).status_code == 404
    turn_on(api, admin, showtime_id)
    assert join(api, user, showtime_id).json["number"] == 3, "a room turned on again never gives a number twice"


def test_a_waitlist_offer_is_the_systems_own_hold_and_needs_no_admission(api, app, admin, show):
    showtime_id = show["showtime"]
    buyer, waiter = api.make_user("buyer@test.example"), api.make_user("waiter@test.example")
    bought = reserve(api, buyer, hold(api, buyer, showtime_id, seat_ids(api, showtime_id)).json["id"]).json
    waiting = api.post(f"/api/v1/showtimes/{showtime_id}/waitlist", {"seats": 1}, waiter).json
    turn_on(api, admin, showtime_id)  # the waiter never joins its queue
    assert api.post(f"/api/v1/reservations/{bought['id']}/cancel", token=buyer).status_code == 202
    offer = api.get(f"/api/v1/waitlist/{waiting['id']}", waiter).json
    assert offer["status"] == "offered" and offer["offer_hold_id"], offer
    taken = reserve(api, waiter, offer["offer_hold_id"])
    assert taken.status_code == 202, taken.json


# --- the admins' API -----------------------------------------------------------------------

def test_only_admins_manage_a_waiting_room(api, admin, user, show):
    path = room_path(show["showtime"])
    for method in ("PUT", "GET", "DELETE"):
        as_customer = api.call(method, path, user, json=settings())
        assert as_customer.status_code == 403 and as_customer.json["code"] == "forbidden", (method, as_customer.json)
        assert api.call(method, path, None, json=settings()).status_code == 401, method
    assert api.get(path, admin).status_code == 404, "nothing was turned on"


def _starts_at(show) -> datetime:
    return datetime.fromisoformat(show["showtime_obj"]["starts_at"])


BAD_SETTINGS = [
    ("admit_per_minute", lambda starts: {"admit_per_minute": 0}),
    ("admit_per_minute", lambda starts: {"admit_per_minute": "60"}),
    ("max_active", lambda starts: {"max_active": 0}),
    ("session_seconds", lambda starts: {"session_seconds": 29}),
    ("opens_at", lambda starts: {"opens_at": (starts - timedelta(hours=1)).replace(tzinfo=None).isoformat()}),
    ("opens_at", lambda starts: {"opens_at": iso(starts)}),
    ("opens_at", lambda starts: {"opens_at": iso(starts + timedelta(minutes=1))}),
    ("surprise", lambda starts: {"surprise": 1}),
]


@pytest.mark.parametrize("field, over", BAD_SETTINGS)
def test_invalid_settings_are_422_and_turn_nothing_on(api, admin, show, field, over):
    r = api.call("PUT", room_path(show["showtime"]), admin, json=settings(**over(_starts_at(show))))
    assert r.status_code == 422 and r.json["code"] == "validation_error", r.json
    assert field in r.json["errors"], r.json
    assert api.get(room_path(show["showtime"]), admin).status_code == 404


def test_unknown_showtimes_and_rooms_are_404(api, admin, user, show):
    for method in ("PUT", "GET", "DELETE"):
        assert api.call(method, room_path(999999), admin, json=settings()).status_code == 404, method
    for method in ("GET", "DELETE"):
        assert api.call(method, room_path(show["showtime"]), admin).status_code == 404, method
    assert join(api, user, 999999).status_code == 404
    assert api.get("/api/v1/showtimes/999999/queue/status").status_code == 404
    assert api.get(f"/api/v1/showtimes/{show['showtime']}/queue/status").status_code == 404


def test_no_waiting_room_for_a_showtime_that_has_started(api, app, admin, show):
    with app.app_context():
        db.session.execute(update(Showtime).where(Showtime.id == show["showtime"]).values(
            starts_at=datetime.now(timezone.utc) - timedelta(minutes=1),
            ends_at=datetime.now(timezone.utc) + timedelta(minutes=100)))
        db.session.commit()
    r = api.call("PUT", room_path(show["showtime"]), admin,
                 json=settings(opens_at=iso(datetime.now(timezone.utc) - timedelta(minutes=5))))
    assert r.status_code == 409 and r.json["code"] == "showtime_started", r.json


def test_a_change_during_the_sale_is_followed_by_the_next_step(api, app, admin, show):
    showtime_id = show["showtime"]
    turn_on(api, admin, showtime_id, admit_per_minute=60000, max_active=3)
    join_as(app, showtime_id, range(1, 31))
    tick(app)
    assert stats(api, admin, showtime_id)["active"] == 3
    turn_on(api, admin, showtime_id, admit_per_minute=60000, max_active=8)
    tick_after(app, 0.05)
    assert (stats(api, admin, showtime_id)["active"], stats(api, admin, showtime_id)["serving_number"]) == (8, 8)
    turn_on(api, admin, showtime_id, admit_per_minute=1, max_active=30)
    tick_after(app, 0.05)
    assert stats(api, admin, showtime_id)["serving_number"] <= 9, "1 a minute: at most the credit carried over"
    turn_on(api, admin, showtime_id, admit_per_minute=60000, max_active=30)
    tick_after(app, 0.05)
    assert stats(api, admin, showtime_id)["serving_number"] == 30
    turn_on(api, admin, showtime_id, admit_per_minute=60000, max_active=2)
    with app.app_context():
        for customer in range(1, 30):
            waiting_room.session_done(showtime_id, customer)
    assert stats(api, admin, showtime_id)["active"] == 1
    join_as(app, showtime_id, range(31, 41))
    tick_after(app, 0.05)
    got = stats(api, admin, showtime_id)
    assert (got["active"], got["serving_number"]) == (2, 31), "a lower max_active admits only up to it"
    status = api.get(f"/api/v1/showtimes/{showtime_id}/queue/status").json
    assert (status["admit_per_minute"], status["max_active"]) == (60000, 2)


def test_the_operators_figures_after_a_scripted_sale(api, app, admin, show):
    showtime_id = show["showtime"]
    turn_on(api, admin, showtime_id, opens_at=soon(3600), admit_per_minute=60000, max_active=2)
    entries = join_as(app, showtime_id, [1, 2, 3])
    with app.app_context():
        waiting_room.leave(3, entries[3]["id"])
    assert {k: stats(api, admin, showtime_id)[k] for k in ("pre_queue", "waiting", "last_number", "left", "joined")} \
        == {"pre_queue": 2, "waiting": 0, "last_number": 0, "left": 1, "joined": 3}
    turn_on(api, admin, showtime_id, admit_per_minute=60000, max_active=2)  # opens now
    entries |= join_as(app, showtime_id, [4, 5, 6, 7])
    assert {k: stats(api, admin, showtime_id)[k] for k in ("pre_queue", "waiting", "serving_number", "last_number")} \
        == {"pre_queue": 0, "waiting": 6, "serving_number": 0, "last_number": 6}
    tick_after(app, 0.01)  # admits 1 and 2: customers 1 and 2, in some order
    with app.app_context():
        waiting_room.session_done(showtime_id, 1)
        waiting_room.leave(2, entries[2]["id"])
        waiting_room.leave(5, entries[5]["id"])  # number 4: leaves while waiting
    assert {k: stats(api, admin, showtime_id)[k] for k in ("waiting", "active", "done", "left")} \
        == {"waiting": 3, "active": 0, "done": 1, "left": 3}
    tick_after(app, 0.01)  # admits 3 and 5 (customers 4 and 6), passing over 4
    end_session_time(app, showtime_id, 4)
    tick_after(app, 0.01)  # the session of customer 4 expires; number 6 takes its place
    assert stats(api, admin, showtime_id) == {
        "pre_queue": 0, "waiting": 0, "admitted": 5, "active": 2, "serving_number": 6, "last_number": 6,
        "admissions_last_minute": 5, "expired": 1, "done": 1, "left": 3, "joined": 7}


# --- the customers' API --------------------------------------------------------------------

def test_joining_is_once_per_customer(api, admin, user, show):
    showtime_id = show["showtime"]
    assert join(api, None, showtime_id).status_code == 401
    refused = join(api, user, showtime_id)
    assert refused.status_code == 409 and refused.json["code"] == "no_waiting_room"
    assert join(api, user, 999999).status_code == 404
    opens_at = soon(600)
    turn_on(api, admin, showtime_id, opens_at=opens_at)
    first = join(api, user, showtime_id)
    assert first.status_code == 201 and first.headers["Location"] == f"/api/v1/queue/{first.json['id']}"
    assert {k: first.json[k] for k in ("showtime_id", "status", "number", "position")} == {
        "showtime_id": showtime_id, "status": "pre_queue", "number": None, "position": None}
    assert datetime.fromisoformat(first.json["opens_at"]) == datetime.fromisoformat(opens_at)
    assert 590 <= first.json["estimated_wait_seconds"] <= 600
    again = join(api, user, showtime_id)
    assert again.status_code == 200 and again.json["id"] == first.json["id"]


def test_an_entry_is_its_owners_alone(api, admin, user, other, show):
    showtime_id = show["showtime"]
    turn_on(api, admin, showtime_id)
    mine = join(api, user, showtime_id).json
    assert api.get(f"/api/v1/queue/{mine['id']}", other).status_code == 404
    assert api.delete(f"/api/v1/queue/{mine['id']}", other).status_code == 404
    assert api.get(f"/api/v1/queue/{mine['id']}").status_code == 401
    assert entry(api, user, mine["id"])["status"] == "waiting"
    tail = mine["id"].split(".")[1]
    for malformed in ("nope", "1", f"{showtime_id}.", f"{showtime_id}.xyz", f"{showtime_id}.{'g' * 16}",
                      f"{showtime_id}.{tail}0", f"{showtime_id + 1}.{tail}", f"0.{tail}", f"{'9' * 19}.{tail}",
                      f"{showtime_id}.{'0' * 16}"):
        assert api.get(f"/api/v1/queue/{malformed}", user).status_code == 404, malformed


def test_leaving_and_joining_again_takes_a_new_number_at_the_back(api, app, admin, user, other, show):
    showtime_id = show["showtime"]
    turn_on(api, admin, showtime_id, opens_at=soon(3600))
    early = join(api, user, showtime_id).json
    assert api.delete(f"/api/v1/queue/{early['id']}", user).status_code == 204
    assert entry(api, user, early["id"])["status"] == "left"
    turn_on(api, admin, showtime_id)  # opens now: one who left the pre-queue gets no number
    theirs = join(api, other, showtime_id).json
    assert theirs["number"] == 1
    back = join(api, user, showtime_id)
    assert back.status_code == 201 and back.json["id"] != early["id"] and back.json["number"] == 2
    assert api.delete(f"/api/v1/queue/{back.json['id']}", user).status_code == 204
    again = join(api, user, showtime_id).json
    assert again["number"] == 3, "numbers are never given twice"
    assert api.get(f"/api/v1/queue/{back.json['id']}", user).status_code == 404, "an entry replaced is gone"
    tick(app)
    assert entry(api, other, theirs["id"])["status"] == "admitted"
    assert entry(api, user, again["id"])["status"] == "admitted"
    assert stats(api, admin, showtime_id)["admitted"] == 2


def test_joining_again_right_after_the_session_lapsed_keeps_the_new_place(api, app, admin, user, show):
    """The customer sees ``expired`` as soon as the time is up, before the next step has
    ended the session: joining again then must give a place that is theirs to keep."""
    showtime_id = show["showtime"]
    turn_on(api, admin, showtime_id, admit_per_minute=60000, max_active=1)
    first = join(api, user, showtime_id).json
    tick(app)
    user_id = claims_of(entry(api, user, first["id"])["admission_token"])["sub"]
    end_session_time(app, showtime_id, user_id)
    assert entry(api, user, first["id"])["status"] == "expired"
    again = join(api, user, showtime_id).json
    assert (again["status"], again["number"]) == ("waiting", 2)
    tick_after(app, 0.01)
    assert entry(api, user, again["id"])["status"] == "admitted"
    got = stats(api, admin, showtime_id)
    assert (got["expired"], got["active"], got["waiting"], got["admitted"]) == (1, 1, 0, 2), got


def test_position_and_estimated_wait_follow_the_serving_number_and_the_rate(api, app, admin, user, show):
    showtime_id = show["showtime"]
    turn_on(api, admin, showtime_id, admit_per_minute=120, max_active=2)
    join_as(app, showtime_id, range(9001, 9005))
    mine = join(api, user, showtime_id).json
    assert (mine["number"], mine["position"], mine["estimated_wait_seconds"]) == (5, 5, math.ceil(5 * 60 / 120))
    tick(app)  # the first step credits one second: 2 admitted at 120 a minute
    now = entry(api, user, mine["id"])
    assert (now["status"], now["position"], now["estimated_wait_seconds"]) == ("waiting", 3, math.ceil(3 * 60 / 120))
    assert "admission_token" not in now
    status = api.get(f"/api/v1/showtimes/{showtime_id}/queue/status").json
    assert now["position"] == now["number"] - status["serving_number"]


def test_the_public_status_is_the_same_for_everyone_and_cacheable(api, admin, user, show):
    showtime_id = show["showtime"]
    opens_at = soon(600)
    turn_on(api, admin, showtime_id, opens_at=opens_at, admit_per_minute=120, max_active=60)
    path = f"/api/v1/showtimes/{showtime_id}/queue/status"
    anonymous, signed_in = api.get(path), api.get(path, user)
    assert anonymous.status_code == 200 and anonymous.headers["Cache-Control"] == "public, max-age=1"
    assert signed_in.headers["Cache-Control"] == "public, max-age=1" and signed_in.json == anonymous.json
    body = dict(anonymous.json)
    assert datetime.fromisoformat(body.pop("opens_at")) == datetime.fromisoformat(opens_at)
    assert body == {"showtime_id": showtime_id, "serving_number": 0, "last_number": 0, "admit_per_minute": 120,
                    "max_active": 60, "open": False}


def test_the_status_is_pushed_on_the_stream_when_it_changes_and_only_then(api, app, admin, show):
    showtime_id = show["showtime"]
    turn_on(api, admin, showtime_id, admit_per_minute=6000, max_active=5)
    assert [e["open"] for e in queue_events(app, showtime_id)] == [True]
    tick(app, 3)
    assert len(queue_events(app, showtime_id)) == 1, "nothing changed: nothing pushed"
    join_as(app, showtime_id, [1, 2])
    tick(app)
    pushed = queue_events(app, showtime_id)
    serving = stats(api, admin, showtime_id)["serving_number"]
    assert len(pushed) == 2 and (pushed[-1]["serving_number"], pushed[-1]["last_number"]) == (serving, 2)
    turn_on(api, admin, showtime_id, admit_per_minute=600, max_active=5)
    assert queue_events(app, showtime_id)[-1]["admit_per_minute"] == 600, "an admin's change is pushed at once"
    assert api.delete(room_path(showtime_id), admin).status_code == 204
    assert queue_events(app, showtime_id)[-1]["on"] is False


def test_prometheus_shows_each_open_rooms_figures(api, app, admin, show, monkeypatch):
    monkeypatch.setattr(ops_metrics, "CACHE_SECONDS", 0.0)
    showtime_id = show["showtime"]
    turn_on(api, admin, showtime_id, admit_per_minute=6000, max_active=1)
    entries = join_as(app, showtime_id, [1, 2, 3])
    tick(app)
    with app.app_context():
        waiting_room.leave(3, entries[3]["id"])

    def samples() -> dict[str, float]:
        text = api.get("/metrics").data.decode()
        return {s.name.removeprefix("marquee_waiting_room_"): s.value
                for family in text_string_to_metric_families(text) for s in family.samples
                if s.name.startswith("marquee_waiting_room_") and s.labels == {"showtime_id": str(showtime_id)}}

    assert samples() == {"pre_queue": 0, "waiting": 1, "active": 1, "admissions_per_minute": 1, "serving_number": 1,
                         "last_number": 3, "admitted_total": 1, "expired_total": 0, "done_total": 0,
                         "left_total": 1}
    assert api.delete(room_path(showtime_id), admin).status_code == 204
    assert samples() == {}, "a room turned off is not shown"

