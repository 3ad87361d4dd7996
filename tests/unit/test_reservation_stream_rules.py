"""The ordering rules of the live process's reservation streams (``live.reservations``), with a
fake reader of the reservation in place of PostgreSQL and a fake stream in place of the
client: a change announced while a stream's first read is under way is read again (the
stream is registered before that read), reads of one stream never overlap, and the stream
ends with the state that is no longer awaiting payment. The real thing, against the real
live process, is in tests/live/test_reservation_streams.py."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from live.reservations import Reservations


class FakeStream:
    def __init__(self) -> None:
        self.closed = False
        self.sent: list[bytes] = []
        self.ended = ""

    def send(self, frame) -> bool:
        self.sent.append(frame.raw)
        return True

    def end(self, frame=None, reason: str = "") -> None:
        self.closed, self.ended = True, reason


def _hub(read) -> Reservations:
    deps = SimpleNamespace(redis=SimpleNamespace(pushed_channel=lambda name: f"test:{name}"),
                           settings=SimpleNamespace(redis_url="redis://127.0.0.1:6379/0", redis_prefix="test:"))
    metrics = SimpleNamespace(reservation_events_sent=SimpleNamespace(inc=lambda: None))
    loop = asyncio.get_running_loop()

    def in_thread(fn, watch):
        return asyncio.ensure_future(read(watch))

    return Reservations(deps, SimpleNamespace(heartbeat_seconds=15), metrics, in_thread, loop.create_task)


def _view(status: str) -> dict:
    return {"id": 1, "status": status, "seats": []}


def _statuses(stream: FakeStream) -> list[str]:
    return [b'"status":"%s"' % s.encode() in raw and s for raw in stream.sent
            for s in ("pending_payment", "confirmed") if b'"status":"%s"' % s.encode() in raw]


def test_a_change_announced_during_the_first_read_is_read_again():
    async def scenario():
        state = {"status": "pending_payment"}
        reads = []

        async def read(_watch):
            seen = state["status"]  # the read's snapshot...
            reads.append(seen)
            if len(reads) == 1:  # ...then the payment commits and is announced before the read returns
                state["status"] = "confirmed"
                hub._announced(b"1")
            await asyncio.sleep(0)
            return _view(seen)

        hub = _hub(read)
        stream = FakeStream()
        watch, view = await hub.start(stream, 1, 7, False)
        hub.deliver(watch, view)
        for _ in range(10):
            await asyncio.sleep(0)
        return reads, stream

    reads, stream = asyncio.run(scenario())
    assert reads == ["pending_payment", "confirmed"]
    assert _statuses(stream) == ["pending_payment", "confirmed"] and stream.ended == "settled"


def test_announcements_during_a_read_give_one_more_read_and_states_go_out_in_order():
    async def scenario():
        state = {"status": "pending_payment"}
        running, overlaps, reads = [0], [0], []

        async def read(_watch):
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
            seen = state["status"]
            reads.append(seen)
            await asyncio.sleep(0.01)
            running[0] -= 1
            return _view(seen)

        hub = _hub(read)
        stream = FakeStream()
        watch, view = await hub.start(stream, 1, 7, False)
        hub.deliver(watch, view)
        hub._announced(b"1")  # a refresh starts reading (and sees the payment still awaited)
        await asyncio.sleep(0.005)
        state["status"] = "confirmed"
        for _ in range(5):  # five announcements while it reads: one more read after it
            hub._announced(b"1")
        await asyncio.sleep(0.1)
        return reads, overlaps[0], stream, hub

    reads, overlaps, stream, hub = asyncio.run(scenario())
    assert overlaps == 1  # never two reads of one stream at once
    assert reads == ["pending_payment", "pending_payment", "confirmed"]  # the first, one, one more
    assert _statuses(stream) == ["pending_payment", "confirmed"] and stream.ended == "settled"
    assert hub.count == 0  # an ended stream is forgotten
