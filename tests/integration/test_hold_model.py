"""Property-based: the Redis seat store behaves like a simple model of the hold
rules, whatever sequence of holds, releases, checkouts and Redis losses happens.
Real Redis (the suite's key prefix); the model is a dict."""
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

SEATS = list(range(1, 7))
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
        self.store.sync(SHOWTIME, [], 3600)
        self.synced = True
        self.owner: dict[int, str] = {}      # seat -> owner token (model)
        self.holds: dict[int, object] = {}   # user -> Hold
        self.next_reservation = 1

    @rule(user=st.sampled_from(USERS), seats=st.lists(st.sampled_from(SEATS), min_size=1, max_size=4, unique=True))
    def hold(self, user, seats):
        hold_id, result = self.store.hold(SHOWTIME, user, seats, TTL_MS, datetime.now(timezone.utc))
        if not self.synced:  # Redis lost the showtime: it decides nothing until rebuilt
            assert result.needs_sync and not result.held
            assert self.store.owners(SHOWTIME, SEATS) == {}
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

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data):
        user = data.draw(st.sampled_from(sorted(self.holds)))
        other = data.draw(st.sampled_from(USERS))
        hold = self.holds[user]
        if other != user:  # someone else's release does nothing
            assert self.store._release(keys=[self.store.hold_key(SHOWTIME, hold.id),
                                             self.store.user_key(SHOWTIME, other)],
                                       args=[hold.id, other]) == 0
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
        assert self.store.free_reservation(SHOWTIME, seats, int(token[2:])) == len(seats)
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
        assert self.store.sync(SHOWTIME, [(s, f"r:{rid}", TTL_MS) for s in seats], 3600) == len(seats)
        for s in seats:
            self.owner[s] = f"r:{rid}"
        self.synced = True

    @invariant()
    def redis_matches_the_model(self):
        if hasattr(self, "owner"):
            assert self.store.owners(SHOWTIME, SEATS) == self.owner


def test_hold_rules_match_the_model(store):
    HoldRules.store = store
    try:
        HoldRules.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None,
                                               suppress_health_check=list(HealthCheck))
        HoldRules.TestCase().runTest()
    finally:
        store.store.delete_prefixed("{st:%d}:*" % SHOWTIME)
