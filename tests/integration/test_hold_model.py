"""Property-based: the Redis seat store behaves like a simple model of the hold
rules, whatever sequence of holds, best-available holds, releases, checkouts, blocks,
unblocks and Redis losses happens. Real Redis (the suite's key prefix); the model is a
dict, and best available's choice is the one of app/services/seat_choice.py."""
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.adapters.seat_store import Room
from app.services.seat_choice import SeatPlace, best_available, sixths

SEATS = list(range(1, 7))
PLACES = [SeatPlace(s, (s - 1) % 3 + 1 + (1 if s % 3 == 0 else 0), (s - 1) // 3 + 1, "standard") for s in SEATS]
ROOM = Room((p.id, p.x, p.y, p.category) for p in PLACES)  # two rows: 1 2 _ 3 / 4 5 _ 6
FOCAL = (2.0, 1.5)
USERS = [1, 2, 3]
SHOWTIME = 987_654
TTL_MS = 60_000


@pytest.fixture
def store(app):
    return app.extensions["marquee"].seats


class HoldRules(RuleBasedStateMachine):
    store = None  # set by the test

    @initialize()
    def start(self):
        self.store.store.delete_prefixed("{st:%d}:*" % SHOWTIME)
        self.store.sync(SHOWTIME, ROOM, [], 3600)
        self.synced = True
        self.owner: dict[int, str] = {}      # seat -> owner token (model)
        self.holds: dict[int, object] = {}   # user -> Hold
        self.next_reservation = 1

    @rule(user=st.sampled_from(USERS), seats=st.lists(st.sampled_from(SEATS), min_size=1, max_size=4, unique=True))
    def hold(self, user, seats):
        hold_id, result = self.store.hold(SHOWTIME, ROOM, user, seats, TTL_MS, datetime.now(timezone.utc))
        if not self.synced:  # Redis lost the showtime: it decides nothing until rebuilt
            assert result.needs_sync and not result.held
            assert self.store.owners(SHOWTIME, ROOM) == {}
            return
        if user in self.holds:
            assert not result.held and result.live_hold_id == self.holds[user].id
            return
        taken = [s for s in seats if s in self.owner]
        if taken:
            assert not result.held and result.taken == taken
            return
        assert result.held
        self.holds[user] = self.store.get_hold(hold_id)
        assert self.holds[user].seat_ids == seats
        for s in seats:
            self.owner[s] = f"h:{hold_id}"

    @rule(user=st.sampled_from(USERS), n=st.integers(1, 4))
    def hold_best(self, user, n):
        hold_id, result, chosen = self.store.hold_best(SHOWTIME, ROOM, user, "s" * len(SEATS), n, sixths(FOCAL),
                                                       TTL_MS, datetime.now(timezone.utc))
        if not self.synced:
            assert result.needs_sync and not result.held
            return
        if user in self.holds:
            assert not result.held and result.live_hold_id == self.holds[user].id
            return
        expected = best_available(PLACES, set(SEATS) - set(self.owner), n, focal=FOCAL)
        if expected is None:
            assert not result.held and chosen == []
            return
        assert result.held and tuple(chosen) == expected.seat_ids
        self.holds[user] = self.store.get_hold(hold_id)
        assert self.holds[user].seat_ids == chosen
        for s in chosen:
            self.owner[s] = f"h:{hold_id}"

    @rule(seats=st.lists(st.sampled_from(SEATS), min_size=1, max_size=3, unique=True))
    def block(self, seats):
        result = self.store.block(SHOWTIME, ROOM, seats, TTL_MS)
        if not self.synced:
            assert result.needs_sync and not result.held
            return
        taken = [s for s in seats if s in self.owner]
        assert result.held == (not taken) and result.taken == taken
        if not taken:
            for s in seats:
                self.owner[s] = "b:"

    @precondition(lambda self: "b:" in self.owner.values())
    @rule(data=st.data())
    def unblock(self, data):
        seat = data.draw(st.sampled_from(sorted(s for s, o in self.owner.items() if o == "b:")))
        other = data.draw(st.sampled_from([s for s in SEATS if self.owner.get(s) != "b:"] or [seat]))
        assert self.store.unblock(SHOWTIME, ROOM, [seat, other] if other != seat else [seat]) == 1  # only blocked ones
        del self.owner[seat]

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data):
        user = data.draw(st.sampled_from(sorted(self.holds)))
        other = data.draw(st.sampled_from(USERS))
        hold = self.holds[user]
        if other != user:  # someone else's release does nothing
            assert self.store._release(keys=[*self.store.seat_keys(SHOWTIME, ROOM.version),
                                             self.store.hold_key(SHOWTIME, hold.id),
                                             self.store.user_key(SHOWTIME, other)],
                                       args=[hold.id, other, f"h:{hold.id}"]) == 0
            return
        assert self.store.release(hold)
        del self.holds[user]
        self.owner = {s: o for s, o in self.owner.items() if o != f"h:{hold.id}"}

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def check_out(self, data):
        user = data.draw(st.sampled_from(sorted(self.holds)))
        hold = self.holds.pop(user)
        assert self.store.claim(hold, user, TTL_MS) == 1
        rid = self.next_reservation
        self.next_reservation += 1
        assert self.store.bind_reservation(hold, rid, TTL_MS) == len(hold.seat_ids)
        for s in hold.seat_ids:
            self.owner[s] = f"r:{rid}"

    @precondition(lambda self: any(o.startswith("r:") for o in self.owner.values()))
    @rule(data=st.data())
    def end_reservation(self, data):
        token = data.draw(st.sampled_from(sorted({o for o in self.owner.values() if o.startswith("r:")})))
        seats = [s for s, o in self.owner.items() if o == token]
        assert self.store.free_reservation(SHOWTIME, ROOM, seats, int(token[2:])) == len(seats)
        for s in seats:
            del self.owner[s]

    @rule()
    def redis_forgets_everything(self):
        self.store.store.delete_prefixed("{st:%d}:*" % SHOWTIME)
        self.owner.clear()
        self.holds.clear()
        self.synced = False

    @precondition(lambda self: not self.synced)
    @rule(data=st.data())
    def rebuild(self, data):
        """What PostgreSQL still knows comes back: some live reservations' seats."""
        seats = data.draw(st.lists(st.sampled_from(SEATS), max_size=3, unique=True))
        rid = self.next_reservation
        self.next_reservation += 1
        assert self.store.sync(SHOWTIME, ROOM, [(s, f"r:{rid}", TTL_MS) for s in seats], 3600) == len(seats)
        for s in seats:
            self.owner[s] = f"r:{rid}"
        self.synced = True

    @invariant()
    def redis_matches_the_model(self):
        if hasattr(self, "owner"):
            assert self.store.owners(SHOWTIME, ROOM) == self.owner

    @invariant()
    def the_change_stream_replays_to_the_seat_map(self):
        """Invariant 9: every change is on the stream, in order; replayed from its start
        (it starts again empty when Redis forgets everything) it gives the seat map."""
        if not hasattr(self, "owner"):
            return
        replayed: dict[int, str] = {}
        for _, fields in self.store.store.client.xrange(self.store.events_key(SHOWTIME)):
            for change in json.loads(fields[b"seats"]):
                replayed[change["id"]] = change["status"]
        status = {"h": "held", "r": "held", "b": "blocked"}
        assert {s: st for s, st in replayed.items() if st != "available"} == {
            s: status[o[0]] for s, o in self.owner.items()}
        assert self.store.read(SHOWTIME, ROOM).statuses == {s: status[o[0]] for s, o in self.owner.items()}


def test_hold_rules_match_the_model(store):
    HoldRules.store = store
    try:
        HoldRules.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                                               suppress_health_check=list(HealthCheck))
        HoldRules.TestCase().runTest()
    finally:
        store.store.delete_prefixed("{st:%d}:*" % SHOWTIME)
