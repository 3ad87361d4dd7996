"""The hand-over between a watcher's catch-up read and the follower's live fan-out, with the
reader's position set by the test (so each interleaving happens every time): against the
suite's Redis, with a watcher that records what it is sent in place of a client
connection."""
from __future__ import annotations

import asyncio

import pytest

from live.config import LiveSettings
from live.followers import Follower, Followers, Reset
from live.metrics import LiveMetrics


class Recorder:
    """A watcher that keeps the versions of the changes it is sent."""

    def __init__(self) -> None:
        self.closed = False
        self.versions: list[str] = []

    def send(self, frame) -> bool:
        """A frame is one message, or the several changes of one read."""
        self.versions += [line.removeprefix(b"id: ").decode() for line in frame.raw.split(b"\n") if line.startswith(b"id: ")]
        return True

    def end(self, frame=None, reason: str = "") -> None:
        self.closed = True


def _run(app, showtime_id: int, scenario):
    """``scenario(follower, entries)`` on a follower of the showtime that has not started reading."""
    async def main():
        hub = Followers(app.extensions["marquee"], LiveSettings(), LiveMetrics(None), executor=None)
        try:
            follower = Follower(hub, showtime_id)
            return await scenario(follower, lambda *ids: [(i, {"seats": "[]"}) for i in ids])
        finally:
            await hub.redis.aclose()

    return asyncio.run(main())


def test_a_watcher_behind_the_reader_catches_up_to_it_then_gets_the_rest_once(app, showtime, changes):
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3, 4, 5)]
    watcher = Recorder()

    async def scenario(follower, entries):
        follower.last_id = versions[2]  # the reader has delivered up to the third change
        await follower.join(watcher, versions[0])
        await follower.deliver(entries(*versions[3:]))

    _run(app, showtime, scenario)
    assert watcher.versions == versions[1:]


def test_a_watcher_ahead_of_the_reader_skips_what_it_has_seen(app, showtime, changes):
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3, 4)]
    ahead, behind = Recorder(), Recorder()

    async def scenario(follower, entries):
        follower.last_id = versions[0]  # the reader lags: a snapshot at versions[2] is newer
        await follower.join(ahead, versions[2])
        await follower.join(behind, versions[0])
        await follower.deliver(entries(*versions[1:]))

    _run(app, showtime, scenario)
    assert ahead.versions == versions[3:]
    assert behind.versions == versions[1:]


def test_the_reader_waits_for_a_watcher_catching_up(app, showtime, changes):
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3, 4)]
    watcher = Recorder()

    async def scenario(follower, entries):
        follower.last_id = versions[1]
        joining = asyncio.create_task(follower.join(watcher, versions[0]))
        await asyncio.sleep(0)  # the catch-up read is under way
        await follower.deliver(entries(*versions[2:]))
        await joining

    _run(app, showtime, scenario)
    assert watcher.versions == versions[1:]


def test_a_version_the_stream_no_longer_holds_cannot_be_joined(app, showtime, changes):
    versions = [changes.add((seat, "held")) for seat in (1, 2, 3)]
    changes.client.xtrim(changes.key, maxlen=1, approximate=False)
    kept = Recorder()

    async def scenario(follower, entries):
        follower.last_id = versions[2]
        for version in (versions[0], versions[1], "0-0"):
            with pytest.raises(Reset):
                await follower.join(Recorder(), version)
        await follower.join(kept, versions[2])
        await follower.deliver(entries("9999999999999-0"))

    _run(app, showtime, scenario)
    assert kept.versions == ["9999999999999-0"]
