"""Reminders before confirmed showtimes: queued once per reservation and channel
whatever the schedulers do, none for cancelled reservations, channels as chosen,
and sent by a real worker through RabbitMQ to the SMTP server and the SMS and
push sinks."""
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from app import db
from app.adapters.messaging import PushSink, SmsSink
from app.models import Email, OutboxEvent, Reminder, Reservation, ReservationStatus
from app.services import reminders
from tests.conftest import ROOT
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import relay, status_of, work_until
from worker.consumer import handle

PREFS = "/api/v1/users/me/notifications"
ALL_CHANNELS = {"email": True, "sms": True, "push": True, "reminders": True, "reminder_minutes": 120,
                "phone": "+33612345678"}


@pytest.fixture
def sinks(app, tmp_path):
    """The SMS and push sinks write under this test's own folder."""
    ext = app.extensions["marquee"]
    original = ext.sms, ext.push
    ext.sms, ext.push = SmsSink(tmp_path / "sms"), PushSink(tmp_path / "push")
    try:
        yield ext.sms, ext.push
    finally:
        ext.sms, ext.push = original


@pytest.fixture
def soon(api, admin, show):
    """A showtime starting in 90 minutes (cancellable for 30 more), on the 6-seat screen."""
    starts = (datetime.now(timezone.utc) + timedelta(minutes=90)).replace(microsecond=0)
    return {**show, "showtime": api.showtime(admin, show["movie"], show["screen"], starts_at=starts)["id"],
            "starts_at": starts}


def confirmed(api, app, token, showtime_id, seat_index=0) -> int:
    """A reservation of one seat, confirmed as a successful charge would leave it."""
    seat = seat_ids(api, showtime_id)[seat_index]
    reservation_id = reserve(api, token, hold(api, token, showtime_id, [seat]).json["id"]).json["id"]
    with app.app_context():
        db.session.execute(update(Reservation).where(Reservation.id == reservation_id)
                           .values(status=ReservationStatus.CONFIRMED))
        db.session.commit()
    return reservation_id


def set_prefs(api, token, **over):
    r = api.call("PUT", PREFS, token, json={**ALL_CHANNELS, **over})
    assert r.status_code == 200, r.json


def queue(app, **kw):
    with app.app_context():
        return reminders.queue_due_reminders(**kw)


def reminder_events(app) -> list[tuple[str, int, str]]:
    """(topic, reservation id, idempotency key) of every reminder outbox row."""
    with app.app_context():
        rows = db.session.scalars(select(OutboxEvent).where(OutboxEvent.payload["kind"].astext == "reminder")
                                  .order_by(OutboxEvent.id)).all()
        return [(r.topic, r.payload["reservation_id"], r.payload["idempotency_key"]) for r in rows]


def outcomes_of(app, reservation_id) -> list[tuple[str, str | None]]:
    """(channel, outcome) of a reservation's reminders, by channel."""
    with app.app_context():
        return reminders.reminders_of(reservation_id)


def channels_queued(app, reservation_id) -> list[str]:
    return [channel for channel, _ in outcomes_of(app, reservation_id)]


def three_customers(api, app, soon, user, other):
    third = api.make_user("third@test.example")
    for token in (user, other, third):
        set_prefs(api, token)
    return [confirmed(api, app, token, soon["showtime"], i) for i, token in enumerate((user, other, third))]


# --- once, whatever the schedulers do ---------------------------------------------

def _race(app, n_threads: int) -> list:
    barrier = threading.Barrier(n_threads)
    results, failures = [], []

    def scheduler():
        try:
            barrier.wait(5)
            results.append(queue(app))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=scheduler) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    return results


def _assert_once_each(app, reservation_ids):
    events = reminder_events(app)
    assert len(events) == 3 * len(reservation_ids)
    assert len({key for _, _, key in events}) == len(events)  # no (reservation, channel) twice
    for reservation_id in reservation_ids:
        assert sorted(topic for topic, rid, _ in events if rid == reservation_id) == [
            "notifications.email", "notifications.push", "notifications.sms"]
        assert channels_queued(app, reservation_id) == ["email", "push", "sms"]


def test_two_schedulers_at_once_queue_each_reminder_once(api, app, soon, user, other):
    ids = three_customers(api, app, soon, user, other)
    results = _race(app, 2)
    assert sorted(r or 0 for r in results) == [0, 9]  # one queued them all; the other got the lock late or not at all
    _assert_once_each(app, ids)


def test_without_the_lock_the_claim_alone_queues_once(api, app, soon, user, other, monkeypatch):
    """Schedulers that all believe they hold the lock still queue each reminder once."""
    monkeypatch.setattr(db, "try_xact_lock", lambda key: True)
    ids = three_customers(api, app, soon, user, other)
    results = _race(app, 6)
    assert sum(results) == 9
    _assert_once_each(app, ids)


def test_a_restart_queues_nothing_again(api, app, soon, user, other):
    ids = three_customers(api, app, soon, user, other)
    assert queue(app) == 9
    assert queue(app) == 0  # the scheduler again, or another after a crash
    _assert_once_each(app, ids)


def test_two_scheduler_processes_then_a_restart_queue_each_reminder_once(api, app, soon, user, other, broker):
    """The real scheduler (``--once``: every job, then the relay), twice at once and once more."""
    ids = three_customers(api, app, soon, user, other)
    # the broker fixture's prefix and delays, so that its clean-up removes every queue they declare
    env = {**os.environ, "AMQP_PREFIX": broker.prefix, "RETRY_DELAYS_MS": ",".join(map(str, broker.retry_delays_ms))}

    def start():
        return subprocess.Popen([sys.executable, "-m", "worker.scheduler", "--once"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    outputs = []
    for size in (2, 1):  # the restart starts once the first two have ended
        batch = [start() for _ in range(size)]
        for proc in batch:
            try:
                outputs.append(proc.communicate(timeout=60)[0].decode())
            finally:
                proc.kill()
            assert proc.returncode == 0, outputs[-1]
    _assert_once_each(app, ids)
    with app.app_context():  # and the relay published them
        assert db.session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.payload["kind"].astext == "reminder", OutboxEvent.published_at.is_(None))) == 0, outputs


# --- when ---------------------------------------------------------------------------

def test_due_reminder_minutes_before_and_never_late(api, app, soon, user):
    set_prefs(api, user, sms=False, push=False, phone=None, reminder_minutes=60)
    reservation_id = confirmed(api, app, user, soon["showtime"])
    starts = soon["starts_at"]
    assert queue(app, now=starts - timedelta(minutes=61)) == 0  # not yet
    assert queue(app, now=starts + timedelta(seconds=1)) == 0   # started: missed, not sent late
    assert queue(app, now=starts - timedelta(minutes=60)) == 1
    assert reminder_events(app) == [("notifications.email", reservation_id, f"reminder-{reservation_id}")]


def test_a_long_reminder_widens_the_window(api, app, show, user, other):
    """A day's notice reaches tomorrow's showtime; the job's window follows the longest in use."""
    set_prefs(api, user, sms=False, push=False, phone=None, reminder_minutes=24 * 60 + 5)
    set_prefs(api, other, sms=False, push=False, phone=None, reminder_minutes=24 * 60 - 5)
    mine = confirmed(api, app, user, show["showtime"], 0)
    confirmed(api, app, other, show["showtime"], 1)
    assert queue(app) == 1
    assert [rid for _, rid, _ in reminder_events(app)] == [mine]


def test_the_default_is_an_email_120_minutes_before(api, app, soon, user):
    reservation_id = confirmed(api, app, user, soon["showtime"])  # no preferences stored
    assert queue(app, now=soon["starts_at"] - timedelta(minutes=121)) == 0
    assert queue(app) == 1
    assert channels_queued(app, reservation_id) == ["email"]


def test_only_confirmed_reservations_get_one(api, app, soon, user):
    seat = seat_ids(api, soon["showtime"])[0]
    reserve(api, user, hold(api, user, soon["showtime"], [seat]).json["id"])  # pending payment
    assert queue(app) == 0


# --- none for a cancelled reservation -------------------------------------------------

def test_cancelled_before_the_job_gets_nothing(api, app, soon, user):
    set_prefs(api, user)
    reservation_id = confirmed(api, app, user, soon["showtime"])
    assert api.post(f"/api/v1/reservations/{reservation_id}/cancel", token=user).status_code == 202
    assert queue(app) == 0
    assert reminder_events(app) == []


def test_cancelled_between_queuing_and_sending_gets_nothing(api, app, soon, user, sinks):
    set_prefs(api, user)
    reservation_id = confirmed(api, app, user, soon["showtime"])
    assert queue(app) == 3
    assert api.post(f"/api/v1/reservations/{reservation_id}/cancel", token=user).status_code == 202
    with app.app_context():
        events = db.session.scalars(select(OutboxEvent).where(OutboxEvent.payload["kind"].astext == "reminder")).all()
        outcomes = {e.topic: handle(e.topic, dict(e.payload)) for e in events}  # what the worker would do
        db.session.rollback()
    assert outcomes == {"notifications.email": "not_due", "notifications.sms": "not_due", "notifications.push": "not_due"}
    sms, push = sinks
    assert not sms.folder.exists() or sms.messages() == []
    assert not push.folder.exists() or push.messages() == []
    assert dict(outcomes_of(app, reservation_id)) == {"email": None, "push": "not_due", "sms": "not_due"}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Email)) == 0  # not even recorded


# --- channels as chosen ----------------------------------------------------------------

@pytest.mark.parametrize("prefs, expected", [
    ({"email": True, "sms": False, "push": False}, ["email"]),
    ({"email": False, "sms": True, "push": False}, ["sms"]),
    ({"email": False, "sms": False, "push": True}, ["push"]),
    ({"email": True, "sms": True, "push": True, "reminders": False}, []),
    ({"email": False, "sms": False, "push": False}, []),
])
def test_preferences_per_channel_are_respected(api, app, soon, user, prefs, expected):
    set_prefs(api, user, **prefs)
    reservation_id = confirmed(api, app, user, soon["showtime"])
    assert queue(app) == len(expected)
    assert channels_queued(app, reservation_id) == expected
    topics = {"email": "notifications.email", "sms": "notifications.sms", "push": "notifications.push"}
    assert [t for t, _, _ in reminder_events(app)] == [topics[c] for c in expected]


def test_a_channel_turned_off_after_queuing_sends_nothing(api, app, soon, user, sinks):
    set_prefs(api, user, email=False)
    reservation_id = confirmed(api, app, user, soon["showtime"])
    assert queue(app) == 2
    set_prefs(api, user, email=False, sms=False, push=True, phone=None)
    with app.app_context():
        for e in db.session.scalars(select(OutboxEvent).where(OutboxEvent.payload["kind"].astext == "reminder")).all():
            handle(e.topic, dict(e.payload))
    assert dict(outcomes_of(app, reservation_id)) == {"push": "sent", "sms": "unwanted"}
    assert len(sinks[1].messages()) == 1 and not sinks[0].folder.exists()


# --- a real worker, through RabbitMQ ---------------------------------------------------

def test_a_real_worker_sends_each_channel_once_into_the_sinks(api, app, soon, user, broker, smtp, sinks):
    set_prefs(api, user)
    seat = seat_ids(api, soon["showtime"])[0]
    reservation_id = reserve(api, user, hold(api, user, soon["showtime"], [seat]).json["id"]).json["id"]
    relay(app, broker)  # the charge
    work_until(app, lambda c: status_of(app, reservation_id) == "confirmed")
    relay(app, broker)  # the confirmation email
    work_until(app, lambda c: len(smtp.messages) == 1)
    assert queue(app) == 3
    assert relay(app, broker) == 3
    sms, push = sinks
    work_until(app, lambda c: len(smtp.messages) == 2 and sms.folder.exists() and push.folder.exists()
               and sms.messages() and push.messages())
    assert smtp.subjects() == ["Your tickets for Heat", "Reminder: Heat starts soon"]
    reminder_mail = smtp.messages[1].get_body(("plain",)).get_content()
    code = api.get(f"/api/v1/reservations/{reservation_id}/tickets", user).json[0]["code"]
    assert "A reminder: Heat starts" in reminder_mail and code in reminder_mail
    (text,) = sms.messages()
    assert text["to"] == "+33612345678" and "Heat" in text["text"] and "Opera" in text["text"]
    assert len(text["text"]) <= 160 and text["idempotency_key"] == f"reminder-{reservation_id}-sms"
    (note,) = push.messages()
    assert note["title"] == "Heat starts soon" and "Opera" in note["body"] and note["user_id"]
    assert dict(outcomes_of(app, reservation_id)) == {"email": None, "push": "sent", "sms": "sent"}

    # redelivered: the relay publishes the reminders again; nothing goes twice
    with app.app_context():
        db.session.execute(update(OutboxEvent).where(OutboxEvent.payload["kind"].astext == "reminder")
                           .values(published_at=None))
        db.session.commit()
    assert relay(app, broker) == 3
    work_until(app, lambda c: c.handled >= 3)
    assert len(smtp.messages) == 2 and len(sms.messages()) == 1 and len(push.messages()) == 1


def test_the_reminder_table_keeps_one_row_per_reservation_and_channel(app):
    """The claim's guarantee is the primary key: a second row for one pair is refused."""
    with app.app_context():
        pk = [c.name for c in Reminder.__table__.primary_key.columns]
    assert pk == ["reservation_id", "channel"]
