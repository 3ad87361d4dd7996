"""A showtime's waiting room for its on-sale: a fair queue, admission at a rate the
machine can serve, and the gate on holds (API.md, "Waiting room for on-sales"; DESIGN.md's
invariant 10).

The settings are PostgreSQL's (``WaitingRoom``); the queue is Redis's
(``app.adapters.waiting_room_store``): joining, reading an entry, leaving and the gate are
one script each and touch no database. The scheduler runs ``admit_all`` every second (one
scheduler acts: a PostgreSQL advisory lock): it pushes each room's settings to Redis (an
admin's change is followed within a second) and runs one admission step per room, which
opens the queue when its time comes, ends the sessions whose time is up, and admits the
next numbers in order for the time since the last step at ``admit_per_minute`` while fewer
than ``max_active`` sessions are live.

An admitted customer gets an admission token (``AdmissionTokens``: signed, for one user
and one showtime, expiring with the session). A hold while the room is on needs it: the
signature and expiry are checked here, and the hold script itself checks, in the same
step as the take, that the session is still live; so a session that ended (a reservation
made, the customer left, the time up) takes its token's power with it at once.

Waiting costs the app almost nothing: the public status is the same for everyone
(``public_status``, cacheable for a second, and pushed as ``event: queue`` on the seat
events stream by the live process); a customer's position is their number less the
serving number, so they need their entry only once after the opening (for their number)
and once when the serving number reaches it (for the token).

The settings are an admin's, or a manager's of the showtime's theater (``staff.require``,
decided in the write's transaction with the showtime's row locked); each change records
its audit entry there (``waiting_room.set``, ``waiting_room.delete``).
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from app import db
from app.adapters.seat_store import GATE_NO_TOKEN, GATE_TOKEN
from app.adapters.waiting_room_store import Entry, showtime_of_entry
from app.bootstrap import marquee
from app.models import Showtime, WaitingRoom
from app.services import audit, catalog, errors, staff

log = logging.getLogger(__name__)

WAITING_ROOM_LOCK = 0x6D71_0004  # one admission step at a time, across schedulers
HORIZON = timedelta(days=1)  # the queue's keys outlive the showtime's start by this much

LIMITS = {"admit_per_minute": (1, 60000), "max_active": (1, 100000), "session_seconds": (30, 7200)}


class NoWaitingRoom(errors.Conflict):
    code, title = "no_waiting_room", "This showtime has no waiting room"


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _store():
    return marquee().waiting_rooms


# --- the admins' ---------------------------------------------------------------------

def _authorize(actor: staff.Actor | None, showtime_id: int) -> None:
    """``NotFound`` for an unknown showtime; ``Forbidden`` unless ``actor`` is an admin or a
    manager of its theater (``None``: the system itself, as the demo seeding)."""
    theater_id = catalog.showtime_theater_id(showtime_id, lock=True)
    if actor is not None:
        staff.require(actor, theater_id, "manager")


def _actor_id(actor: staff.Actor | None) -> int | None:
    return actor.user_id if actor else None


def configure(showtime_id: int, opens_at: datetime, admit_per_minute: int, max_active: int,
              session_seconds: int, *, actor: staff.Actor | None) -> dict:
    """Turn the waiting room on, or change it (200 with the settings). A change of the
    rate or of ``max_active`` during the sale is followed from the next second;
    ``opens_at`` matters only until the queue has opened."""
    given = {"admit_per_minute": admit_per_minute, "max_active": max_active, "session_seconds": session_seconds}
    problems = {name: [f"Between {low} and {high}"] for name, (low, high) in LIMITS.items()
                if not low <= given[name] <= high}
    if opens_at.tzinfo is None:
        problems["opens_at"] = ["Give an offset (UTC: Z or +00:00)"]
    if problems:
        raise errors.Invalid("Invalid waiting room settings", errors=problems)
    with db.unit_of_work():
        _lock_rooms()
        _authorize(actor, showtime_id)
        showtime = db.session.get(Showtime, showtime_id)
        if showtime.starts_at <= _now():
            raise errors.ShowtimeStarted("The showtime has started: no waiting room for it")
        if opens_at >= showtime.starts_at:
            raise errors.Invalid("The waiting room must open before the showtime starts",
                                 errors={"opens_at": ["Before the showtime's start"]})
        room = db.session.get(WaitingRoom, showtime_id)
        before = settings_view(room) if room is not None else None
        if room is None:
            room = WaitingRoom(showtime_id=showtime_id)
            db.session.add(room)
        room.opens_at, room.admit_per_minute = opens_at, admit_per_minute
        room.max_active, room.session_seconds = max_active, session_seconds
        db.session.flush()
        audit.record("waiting_room.set", actor_id=_actor_id(actor), object_type="showtime",
                     object_id=showtime_id, before=before, after=settings_view(room))
        starts_at = showtime.starts_at
    _push(room, starts_at, publish=True)
    return settings_view(room)


def _lock_rooms() -> None:
    """Wait for the admission step: it never reads the rooms while an admin changes them,
    so it never takes a room just turned on for one to turn off."""
    db.xact_lock(WAITING_ROOM_LOCK)


def _push(room: WaitingRoom, starts_at: datetime, *, publish: bool) -> None:
    _store().configure(room.showtime_id, _ms(room.opens_at), room.opens_at.astimezone(timezone.utc).isoformat(),
                       room.admit_per_minute, room.max_active, room.session_seconds * 1000,
                       _ms(starts_at + HORIZON), publish=publish)


def settings_view(room: WaitingRoom) -> dict:
    return {"showtime_id": room.showtime_id, "opens_at": room.opens_at, "admit_per_minute": room.admit_per_minute,
            "max_active": room.max_active, "session_seconds": room.session_seconds}


def _room(showtime_id: int) -> WaitingRoom:
    room = db.session.get(WaitingRoom, showtime_id)
    if room is None:
        if db.session.get(Showtime, showtime_id) is None:
            raise errors.NotFound(f"Showtime {showtime_id} does not exist")
        raise errors.NotFound("This showtime has no waiting room")
    return room


def get(showtime_id: int, *, actor: staff.Actor | None) -> dict:
    """The settings and the live figures (an admin's, or a manager's of the theater)."""
    with db.unit_of_work():  # a read: ends the share lock at once
        _authorize(actor, showtime_id)
    room = _room(showtime_id)
    stats = _store().stats(showtime_id)
    return {**settings_view(room), "stats": {
        "pre_queue": stats.pre_queue, "waiting": stats.waiting, "admitted": stats.admitted, "active": stats.active,
        "serving_number": stats.serving_number, "last_number": stats.last_number,
        "admissions_last_minute": stats.admissions_last_minute, "expired": stats.expired, "done": stats.done,
        "left": stats.left, "joined": stats.joined}}


def disable(showtime_id: int, *, actor: staff.Actor | None) -> None:
    """Turn the waiting room off: holds need no admission, and every entry ends with it."""
    with db.unit_of_work():
        _lock_rooms()
        _authorize(actor, showtime_id)
        room = _room(showtime_id)
        audit.record("waiting_room.delete", actor_id=_actor_id(actor), object_type="showtime",
                     object_id=showtime_id, before=settings_view(room))
        db.session.delete(room)
    _store().disable(showtime_id)


# --- the customers' ----------------------------------------------------------------------

def join(user_id: int, showtime_id: int) -> tuple[dict, bool]:
    """The caller's live entry (and False), or a new one (and True): idempotent per user."""
    joined = _store().join(showtime_id, user_id)
    if joined is None:
        if db.session.get(Showtime, showtime_id) is None:
            raise errors.NotFound(f"Showtime {showtime_id} does not exist")
        raise NoWaitingRoom("This showtime has no waiting room: hold seats directly")
    entry, created = joined
    return entry_view(showtime_id, entry), created


def _own_entry(user_id: int, entry_id: str) -> tuple[int, Entry]:
    showtime_id = showtime_of_entry(entry_id)
    entry = _store().entry(entry_id) if showtime_id else None
    if entry is None or entry.user_id != user_id:
        raise errors.NotFound("No such queue entry")
    return showtime_id, entry


def get_entry(user_id: int, entry_id: str) -> dict:
    """The caller's entry, with the admission token once admitted (404 for anyone else's)."""
    return entry_view(*_own_entry(user_id, entry_id))


def leave(user_id: int, entry_id: str) -> None:
    """Leave the queue (or end an admitted session early): the slot goes to the next number."""
    showtime_id, entry = _own_entry(user_id, entry_id)
    _store().end(showtime_id, user_id, "left", entry_id)


def entry_view(showtime_id: int, entry: Entry) -> dict:
    """API.md's entry: position and estimated wait from the number and the serving number."""
    view = {"id": entry.id, "showtime_id": showtime_id, "status": entry.status, "number": entry.number,
            "position": None, "estimated_wait_seconds": None, "opens_at": entry.opens_at or None}
    if entry.status == "waiting" and entry.number is not None:
        position = entry.number - entry.serving
        view["position"] = position
        view["estimated_wait_seconds"] = math.ceil(position * 60 / max(entry.admit_per_minute, 1))
    elif entry.status == "pre_queue" and entry.opens_at:
        until_opening = datetime.fromisoformat(entry.opens_at) - _now()
        view["estimated_wait_seconds"] = max(0, math.ceil(until_opening.total_seconds()))
    elif entry.status == "admitted" and entry.admitted_until_ms is not None:
        view["position"], view["estimated_wait_seconds"] = 0, 0
        view["admitted_until"] = datetime.fromtimestamp(entry.admitted_until_ms / 1000, timezone.utc)
        view["admission_token"] = marquee().admissions.sign(entry.user_id, showtime_id, entry.number,
                                                            entry.admitted_until_ms)
    return view


def public_status(showtime_id: int) -> dict:
    """The same for everyone: ``{serving_number, last_number, admit_per_minute, opens_at}``
    and a little more (``open``, ``max_active``); what ``event: queue`` carries."""
    status = _store().public_status(showtime_id)
    if status is None or not status.get("on"):
        room = _room(showtime_id)  # 404 without one; with one, Redis lost it: push it again
        _push(room, db.session.get(Showtime, showtime_id).starts_at, publish=True)
        status = _store().public_status(showtime_id) or {}
    status.pop("on", None)
    return status


# --- the gate and the end of a session ---------------------------------------------------

def gate(user_id: int, showtime_id: int, token: str | None) -> str:
    """What a hold script's gate is told (``seat_store.GATE_*``): the token's signature,
    audience, expiry, user and showtime are checked here; the session's being live, there."""
    if token is None:
        return GATE_NO_TOKEN
    return GATE_TOKEN if marquee().admissions.verify(token, user_id, showtime_id) else GATE_NO_TOKEN


def session_done(showtime_id: int, user_id: int) -> None:
    """The user made a reservation: their admitted session ends (``done``) and its slot
    goes to the next number. Nothing happens for a user without one."""
    _store().end(showtime_id, user_id, "done")


# --- the scheduler's --------------------------------------------------------------------

def admit_all() -> int | None:
    """One admission step for every waiting room that is on; how many were admitted, or
    None when another scheduler holds the lock. Rooms Redis has on that PostgreSQL does
    not (a room turned off while Redis was away, or of a showtime that has started) are
    turned off."""
    store = _store()
    admitted = 0
    with db.unit_of_work():
        if not db.try_xact_lock(WAITING_ROOM_LOCK):
            return None
        rooms = db.session.execute(  # a showtime that has started sells no more: its room ends
            select(WaitingRoom, Showtime.starts_at).join(Showtime, Showtime.id == WaitingRoom.showtime_id)
            .where(Showtime.starts_at > _now())
        ).all()
        for room, starts_at in rooms:
            try:
                _push(room, starts_at, publish=False)
                admitted += store.tick(room.showtime_id).admitted
            except Exception:  # noqa: BLE001 - one room's failure must not stop the others'
                log.warning("admission step failed", exc_info=True, extra={"showtime_id": room.showtime_id})
        for stray in store.rooms_on() - {room.showtime_id for room, _ in rooms}:
            store.disable(stray)
    return admitted
