"""DESIGN.md promises cluster-ready Redis keys: every key of a showtime carries its hash
tag ``{st:<id>}``, so each seat script touches one slot. This runs the seat store's
scripts against a real three-master Redis Cluster (redis-py's cluster client), with
showtimes spread over the three nodes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings
from redis.cluster import key_slot

from app.adapters.redis_store import RedisStore
from app.adapters.seat_store import GATE_NO_TOKEN, GATE_TOKEN, ClaimOutcome, Room, SeatStore
from app.adapters.waiting_room_store import WaitingRoomStore
from tests.integration.test_hold_model import HoldRules
from tests.redis_cluster import redis_cluster

TTL_MS = 60_000
ROOM = Room((y * 10 + x, x, y, "standard") for y in range(1, 4) for x in range(1, 7))  # 3 rows of 6


@pytest.fixture(scope="module")
def cluster_store():
    with redis_cluster() as url:
        store = SeatStore(RedisStore(url, "mqcluster:", cluster=True))
        try:
            yield store
        finally:
            store.store.delete_prefixed()


def _expires():
    return datetime.now(timezone.utc) + timedelta(minutes=5)


def test_showtimes_spread_over_the_nodes_and_each_keeps_to_one_slot(cluster_store):
    client = cluster_store.store.client
    nodes = set()
    for showtime in range(1, 31):
        keys = cluster_store.seat_keys(showtime, ROOM.version) + [
            cluster_store.hold_key(showtime, f"{showtime}.{'0' * 32}"), cluster_store.user_key(showtime, 9)]
        assert len({key_slot(k.encode()) for k in keys}) == 1
        nodes.add(client.get_node_from_key(keys[0]).name)
    assert len(nodes) == 3  # the scripts below are routed to every node, not one


def test_a_hold_is_claimed_bound_and_freed_on_whichever_node_owns_its_showtime(cluster_store):
    for showtime in range(101, 113):
        cluster_store.sync(showtime, ROOM, [], 3600)
        hold_id, result = cluster_store.hold(showtime, ROOM, 7, [11, 12], TTL_MS, _expires())
        assert result.held
        _, again = cluster_store.hold(showtime, ROOM, 8, [12, 13], TTL_MS, _expires())
        assert not again.held and again.taken == [12]  # all or nothing, on the cluster too
        hold = cluster_store.get_hold(hold_id)
        assert cluster_store.claim(hold, 7, TTL_MS) is ClaimOutcome.CLAIMED
        assert cluster_store.bind_reservation(hold, 500 + showtime, TTL_MS) == 2
        assert cluster_store.owners(showtime, ROOM) == {11: f"r:{500 + showtime}", 12: f"r:{500 + showtime}"}
        assert cluster_store.free_reservation(showtime, ROOM, [11, 12], 500 + showtime) == 2
        assert cluster_store.owners(showtime, ROOM) == {}


def test_a_rebuild_and_the_sweep_see_seats_on_every_node(cluster_store):
    showtimes = range(201, 216)
    for showtime in showtimes:
        assert cluster_store.sync(showtime, ROOM, [(14, f"r:{showtime}", TTL_MS)], 3600) == 1
    found = {pair for pair in cluster_store.scan_rooms() if pair[0] in showtimes}
    assert found == {(showtime, ROOM.version) for showtime in showtimes}
    assert all(cluster_store.owners(showtime, ROOM) == {14: f"r:{showtime}"} for showtime in showtimes)


def test_the_hold_rules_match_the_model_on_a_cluster(cluster_store):
    """The same state machine as against one Redis (tests/integration/test_hold_model.py)."""
    HoldRules.store = cluster_store
    HoldRules.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                           suppress_health_check=list(HealthCheck))
    HoldRules.TestCase().runTest()


def test_best_available_chooses_and_holds_on_the_node_of_its_showtime(cluster_store):
    """hold_best.lua reads and takes every seat of a showtime in one script: legal on a
    cluster because every key carries the showtime's hash tag."""
    classes = "s" * len(ROOM.ids)
    for showtime in range(301, 310):
        cluster_store.sync(showtime, ROOM, [], 3600)
        _, first, chosen = cluster_store.hold_best(showtime, ROOM, 1, classes, 4, (21, 14), TTL_MS, _expires())
        assert first.held and len(chosen) == 4
        _, second, more = cluster_store.hold_best(showtime, ROOM, 2, classes, 6, (21, 14), TTL_MS, _expires())
        assert second.held and not set(chosen) & set(more)
        assert set(cluster_store.owners(showtime, ROOM)) == set(chosen) | set(more)


def test_a_waiting_room_queues_admits_and_gates_holds_on_the_node_of_its_showtime(cluster_store):
    """Each waiting-room script and the gate inside the hold scripts keep to the showtime's
    slot: rooms of showtimes on every node queue, admit in order and gate their holds."""
    rooms = WaitingRoomStore(cluster_store.store)
    client, nodes = cluster_store.store.client, set()
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    for showtime in range(401, 410):
        keys = rooms.keys(showtime) + cluster_store.seat_keys(showtime, ROOM.version)
        assert len({key_slot(k.encode()) for k in keys}) == 1
        nodes.add(client.get_node_from_key(keys[0]).name)
        rooms.configure(showtime, now_ms - 1000, "2026-01-01T00:00:00+00:00", 60, 1, 60_000, now_ms + 3_600_000)
        first, _ = rooms.join(showtime, 7)
        second, _ = rooms.join(showtime, 8)
        assert (first.number, second.number) == (1, 2)
        cluster_store.sync(showtime, ROOM, [], 3600)
        _, refused = cluster_store.hold(showtime, ROOM, 7, [11], TTL_MS, _expires(), gate=GATE_NO_TOKEN)
        assert refused.not_admitted
        assert rooms.tick(showtime).admitted == 1  # one a second at 60 a minute, and max_active 1
        _, held = cluster_store.hold(showtime, ROOM, 7, [11], TTL_MS, _expires(), gate=GATE_TOKEN)
        _, waiting = cluster_store.hold(showtime, ROOM, 8, [12], TTL_MS, _expires(), gate=GATE_TOKEN)
        assert held.held and waiting.not_admitted
        assert rooms.end(showtime, 7, "done")[0] == 1
        assert rooms.entry(first.id).status == "done"
    assert showtime in rooms.rooms_on() and len(nodes) == 3
