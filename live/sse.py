"""Server-sent events as bytes, made once per event and written as they are to every watcher.

The formats are API.md's ("Live seat map"): a change is ``id: <version>``, ``event: seats``
and ``data: {"showtime_id", "version", "seats"}``; the first message of a stream started
without a version is ``event: snapshot`` (the seat map, ``id:`` its version); ``event:
reset`` (no id) says the version a client gave is too old; ``event: queue`` (no id, so a
client's ``Last-Event-ID`` stays the seat map's version) is the waiting room's public
status, a state rather than a change; a comment line keeps an idle stream open. Versions
are Redis stream ids (``<ms>-<seq>``), ``0-0`` before any change.
"""
from __future__ import annotations

import json
import re

_VERSION = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_U64 = 2 ** 64
NO_VERSION = "0-0"  # the version of a showtime without changes (its stream is empty or missing)
CHUNK_END = b"0\r\n\r\n"


def parse_version(text: str) -> tuple[int, int] | None:
    """``(ms, seq)`` of a version, comparable in the stream's order; None if it is not one."""
    match = _VERSION.match(text)
    if match is None:
        return None
    ms, seq = int(match.group(1)), int(match.group(2))
    return (ms, seq) if ms < _U64 and seq < _U64 else None


def version_key(version: str) -> tuple[int, int]:
    """``parse_version`` of a version that came from Redis (always well formed)."""
    ms, _, seq = version.partition("-")
    return int(ms), int(seq or 0)


class Frame:
    """One message, ready for both kinds of stream: ``raw`` for a connection that ends the
    body by closing (HTTP/1.0), ``chunked`` framed for HTTP/1.1's chunked encoding."""

    __slots__ = ("raw", "chunked")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.chunked = b"%x\r\n%b\r\n" % (len(raw), raw)


def _message(event: str, data: str, version: str | None = None) -> Frame:
    head = f"id: {version}\n" if version is not None else ""
    return Frame(f"{head}event: {event}\ndata: {data}\n\n".encode())


def _json(document) -> str:
    """One line of JSON: a newline inside ``data:`` would end the message early."""
    return json.dumps(document, separators=(",", ":"))


def seats_event(showtime_id: int, version: str, seats_json: str) -> Frame:
    """A change: the seats whose status changed, as the seat store wrote them (JSON text)."""
    return _message("seats", _json({"showtime_id": showtime_id, "version": version,
                                     "seats": json.loads(seats_json)}), version)


def snapshot_event(seat_map: dict) -> Frame:
    """The whole seat map (``seats.seat_map_snapshot``), identified by its version."""
    return _message("snapshot", _json(seat_map), seat_map["version"])


def queue_event(status_json: str) -> Frame:
    """The waiting room's status, as the waiting room store pushed it (JSON text)."""
    return _message("queue", _json(json.loads(status_json)))


def reset_event(showtime_id: int, reason: str) -> Frame:
    return _message("reset", _json({"showtime_id": showtime_id, "reason": reason}))


HEARTBEAT = Frame(b": keep-alive\n\n")
