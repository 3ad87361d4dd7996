"""Invariant audit of a running (or just stopped) stack: what DESIGN.md promises, checked
against PostgreSQL, Redis and RabbitMQ as they are now.

    .venv/bin/python -m loadtests.audit [--showtime ID] [--settle 60]

Reads the stack's settings (``.env``). Exits 1 when any check fails, 0 otherwise, after
printing a table. ``--settle`` waits up to that many seconds for work still in flight
(unpublished outbox rows, messages in queues, emails being sent) before judging those
checks; the others are judged at once. ``--showtime`` limits the seat checks to one
showtime (the rest are always global).

Checks:
  1. no seat of a showtime is live in two reservations;
  2. no seat held in Redis without a live hold or live reservation behind it;
  3. every confirmed reservation: exactly one successful charge, one ticket per seat;
  4. every cancelled reservation that had been confirmed: exactly one successful refund;
  5. every outbox row published;
  6. no message ready or unacknowledged in the work queues (dead letters are reported);
  7. every email that was due (confirmation, payment failure, cancellation) was sent.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from dotenv import load_dotenv
from sqlalchemy import text

from app.adapters.seat_store import SeatOwner
from app.models import LIVE_STATUSES, EmailStatus, PaymentKind, PaymentStatus, ReservationStatus


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


# The state names the SQL below compares with, from the models (bound, never spelled out).
NAMES = {"live": [str(s) for s in LIVE_STATUSES], "pending": ReservationStatus.PENDING_PAYMENT.value,
         "confirmed": ReservationStatus.CONFIRMED.value, "cancelled": ReservationStatus.CANCELLED.value,
         "payment_failed": ReservationStatus.PAYMENT_FAILED.value, "charge": PaymentKind.CHARGE.value,
         "refund": PaymentKind.REFUND.value, "succeeded": PaymentStatus.SUCCEEDED.value}


def _rows(session, sql: str, **params):
    return session.execute(text(sql), {**NAMES, **params}).all()


def check_double_sold(session, showtime: int | None) -> Check:
    rows = _rows(session, """
        SELECT rs.showtime_id, rs.seat_id, count(*) FROM reservation_seats rs
        JOIN reservations r ON r.id = rs.reservation_id
        WHERE r.status = ANY(:live) AND rs.released_at IS NULL
          AND (CAST(:st AS bigint) IS NULL OR rs.showtime_id = :st)
        GROUP BY rs.showtime_id, rs.seat_id HAVING count(*) > 1""", st=showtime)
    live = _rows(session, """
        SELECT count(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
        WHERE r.status = ANY(:live) AND rs.released_at IS NULL
          AND (CAST(:st AS bigint) IS NULL OR rs.showtime_id = :st)""", st=showtime)[0][0]
    detail = f"{live} live reservation seats" if not rows else f"{len(rows)} seats in two live reservations: {rows[:5]}"
    return Check("no seat sold twice", not rows, detail)


def check_stuck_holds(session, marquee, showtime: int | None) -> Check:
    """Every seat Redis gives an owner belongs to a live hold (its record exists), a live
    reservation or a block PostgreSQL knows."""
    from app.services.seats import showtime_room

    seats = marquee.seats
    stuck, checked = [], 0
    live_reservations = {row[0] for row in _rows(session, "SELECT id FROM reservations WHERE status = ANY(:live)")}
    blocked = {(row[0], row[1]) for row in _rows(session, "SELECT showtime_id, seat_id FROM blocked_seats")}
    for s, version in seats.scan_rooms():
        if showtime is not None and s != showtime:
            continue
        room = showtime_room(s)
        if room.version != version:
            continue  # keys of an earlier layout: read by no one, they end with their TTL
        for seat, token in seats.owners(s, room).items():
            checked += 1
            owner = SeatOwner.parse(token)
            if owner is None or (owner.hold_id is not None and not seats.hold_exists(s, owner.hold_id)) or (
                    owner.reservation_id is not None and owner.reservation_id not in live_reservations) or (
                    owner.kind == "blocked" and (s, seat) not in blocked):
                stuck.append((s, seat, token))
    return Check("no seat stuck in Redis", not stuck,
                 f"{checked} taken seats, each with a live hold, reservation or block" if not stuck
                 else f"{len(stuck)} seats held by nothing live: {stuck[:5]}")


def check_confirmed(session) -> Check:
    rows = _rows(session, """
        SELECT r.id,
               (SELECT count(*) FROM payments p WHERE p.reservation_id = r.id
                  AND p.kind = :charge AND p.status = :succeeded) AS charges,
               (SELECT count(*) FROM tickets t WHERE t.reservation_id = r.id) AS tickets,
               (SELECT count(*) FROM reservation_seats s WHERE s.reservation_id = r.id) AS seats
        FROM reservations r WHERE r.status = :confirmed""")
    bad = [row for row in rows if row.charges != 1 or row.tickets != row.seats]
    return Check("confirmed: one charge, one ticket a seat", not bad,
                 f"{len(rows)} confirmed reservations" if not bad
                 else f"{len(bad)} wrong (id, charges, tickets, seats): {[tuple(b) for b in bad[:5]]}")


def check_refunds(session) -> Check:
    rows = _rows(session, """
        SELECT r.id, (SELECT count(*) FROM payments p WHERE p.reservation_id = r.id
                        AND p.kind = :refund AND p.status = :succeeded) AS refunds
        FROM reservations r WHERE r.status = :cancelled AND r.confirmed_at IS NOT NULL""")
    bad = [tuple(row) for row in rows if row.refunds != 1]
    return Check("cancelled after payment: one refund", not bad,
                 f"{len(rows)} refunded cancellations" if not bad else f"{len(bad)} wrong (id, refunds): {bad[:5]}")


def check_outbox(session) -> Check:
    count, oldest = _rows(session, """
        SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL""")[0]
    total = _rows(session, "SELECT count(*) FROM outbox")[0][0]
    return Check("outbox all published", count == 0,
                 f"{total} rows, all published" if count == 0 else f"{count} unpublished, oldest {oldest}")


def queue_depths(settings) -> dict[str, tuple[int, int]]:
    """(ready, unacknowledged) per queue of the stack's prefix, from rabbitmqctl when it
    is at hand, else ready counts from passive declares."""
    from app.adapters.broker import TOPICS, Topology, connect

    topology = Topology(settings.amqp_prefix, settings.retry_delays_ms)
    names = [topology.queue(t) for t in TOPICS] + [topology.dead_queue(t) for t in TOPICS]
    names += [topology.retry_queue(t, d) for t in TOPICS for d in settings.retry_delays_ms]
    if shutil.which("rabbitmqctl"):
        out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "messages_ready",
                              "messages_unacknowledged"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            depths = {}
            for line in out.stdout.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[0] in names and parts[1].isdigit():
                    depths[parts[0]] = (int(parts[1]), int(parts[2]))
            return depths
    connection = connect(settings.amqp_url)
    try:
        channel = connection.channel()
        depths = {}
        for name in names:
            try:
                frame = channel.queue_declare(name, passive=True)
                depths[name] = (frame.method.message_count, 0)
            except Exception:  # noqa: BLE001 - a queue not declared yet holds nothing
                channel = connection.channel()
        return depths
    finally:
        connection.close()


def check_queues(settings) -> Check:
    depths = queue_depths(settings)
    work = {n: d for n, d in depths.items() if ".dead" not in n and sum(d)}
    dead = {n: d[0] for n, d in depths.items() if ".dead" in n and d[0]}
    detail = "work queues empty" if not work else f"waiting or unacked: {work}"
    if dead:
        detail += f"; parked for a person (dead letters): {dead}"
    return Check("no message left unacked", not work, detail)


def check_emails(session) -> Check:
    rows = _rows(session, """
        WITH due AS (
          SELECT 'confirmation-' || id AS key FROM reservations WHERE confirmed_at IS NOT NULL
          UNION ALL SELECT 'payment_failed-' || id FROM reservations WHERE status = :payment_failed
          UNION ALL SELECT 'cancellation-' || id FROM reservations WHERE status = :cancelled)
        SELECT due.key, e.status FROM due LEFT JOIN emails e ON e.idempotency_key = due.key""")
    missing = [key for key, status in rows if status != EmailStatus.SENT]
    return Check("every due email sent", not missing,
                 f"{len(rows)} due, all sent" if not missing else f"{len(missing)} not sent: {missing[:5]}")


def seats_summary(session, marquee, showtime: int) -> str:
    total = _rows(session, """SELECT count(*) FROM seats s JOIN showtimes st ON st.screen_id = s.screen_id
                              WHERE st.id = :st""", st=showtime)[0][0]
    sold = _rows(session, """
        SELECT count(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
        WHERE rs.showtime_id = :st AND r.status = :confirmed AND rs.released_at IS NULL""", st=showtime)[0][0]
    pending = _rows(session, """
        SELECT count(*) FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
        WHERE rs.showtime_id = :st AND r.status = :pending AND rs.released_at IS NULL""",
                    st=showtime)[0][0]
    from app.services.seats import showtime_room

    owners = marquee.seats.owners(showtime, showtime_room(showtime)).values()
    held = sum(1 for token in owners if SeatOwner.parse(token) and SeatOwner.parse(token).kind == "hold")
    return (f"showtime {showtime}: {total} seats, {sold} sold, {pending} awaiting payment, "
            f"{held} in holds (free again when they expire), {total - sold - pending - held} free")


def audit(showtime: int | None = None, settle: float = 60.0, out=print) -> bool:
    load_dotenv(".env", override=False)
    from app import db
    from app.bootstrap import bootstrap, marquee

    bootstrap()
    with db.scoped():
        settings = marquee().settings
        deadline = time.monotonic() + settle
        while True:  # work in flight gets time to land before it is judged
            db.session.rollback()
            settling = [check_outbox(db.session), check_queues(settings), check_emails(db.session),
                        check_confirmed(db.session), check_refunds(db.session)]
            if all(c.ok for c in settling) or time.monotonic() > deadline:
                break
            time.sleep(1)
        checks = [check_double_sold(db.session, showtime), check_stuck_holds(db.session, marquee(), showtime),
                  *settling]
        out("invariant audit" + (f" (showtime {showtime})" if showtime else ""))
        for check in checks:
            out(f"  {'PASS' if check.ok else 'FAIL'}  {check.name:42s} {check.detail}")
        if showtime:
            out("  " + seats_summary(db.session, marquee(), showtime))
        ok = all(c.ok for c in checks)
        out("verdict: " + ("all invariants hold" if ok else "VIOLATIONS FOUND"))
        return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--showtime", type=int)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    sys.exit(0 if audit(args.showtime, args.settle) else 1)


if __name__ == "__main__":
    main()
