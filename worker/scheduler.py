"""The scheduler process: periodic jobs of the booking engine.

    python -m worker.scheduler          run until SIGTERM/SIGINT
    python -m worker.scheduler --once   run every job once and exit

Jobs (intervals from the environment):
- ``expire_unpaid_reservations`` every EXPIRY_INTERVAL_SECONDS (5): reservations
  past their payment window expire and free their seats.
- ``sweep_stray_seat_keys`` every SWEEP_INTERVAL_SECONDS (60): Redis seat keys no
  live hold or reservation owns are freed.
- the outbox relay, in a thread of its own: outbox rows are published to RabbitMQ
  with publisher confirms as soon as the transaction that wrote them commits
  (LISTEN/NOTIFY), and every RELAY_INTERVAL_SECONDS (1) anyway
  (``app.services.outbox``).
- ``waitlist_offers`` every 5 s: lapsed offers move on to the next waiting customer.
- ``waiting_room_admissions`` every second: each waiting room opens when its time
  comes, ends the sessions whose time is up and admits the next numbers
  (``app.services.waiting_room.admit_all``).
- ``queue_due_reminders`` every REMINDER_INTERVAL_SECONDS (5): reminders now due
  are claimed once per reservation and channel and go to the outbox
  (``app.services.reminders``).
- ``purge_outbox`` every OUTBOX_PURGE_INTERVAL_SECONDS (3600): published outbox rows
  older than OUTBOX_RETENTION_DAYS (7; 0 keeps them) are deleted, but for refund
  requests and webhook events not yet fanned out (``app.services.outbox.purge_published``).

Several schedulers may run (for availability); each job takes a PostgreSQL
advisory lock for its transaction, so only one acts at a time, and a crashed
one lets go with its connection. It boots no web app: ``app.bootstrap`` builds
what the services need.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from apscheduler.schedulers.blocking import BlockingScheduler
from dotenv import load_dotenv

from app import db
from app.adapters import tracing
from app.bootstrap import Marquee, bootstrap, using
from app.logging_setup import dump_stacks_on_sigusr1
from app.ops_metrics import record_job_run
from app.services.booking import expire_unpaid_reservations
from app.services.outbox import purge_published, relay_forever, relay_outbox
from app.services.reminders import queue_due_reminders
from app.services.seats import sweep_stray_seat_keys
from app.services.waiting_room import admit_all
from app.services.waitlist import offer_everywhere

log = logging.getLogger("marquee.scheduler")


def _job(deps: Marquee, name: str, fn):
    def run():
        with using(deps), db.scoped():
            started = time.monotonic()
            try:
                result = fn()
            except Exception:  # noqa: BLE001 - a failed run must not stop the scheduler
                log.exception("job failed", extra={"job": name})
                return
            if result is None:
                log.debug("job skipped: another scheduler holds the lock", extra={"job": name})
            try:
                record_job_run(deps.redis, name, result is not None, time.monotonic() - started)
            except Exception:  # noqa: BLE001 - the operators' record is not worth a failed job
                log.warning("could not record the job run", extra={"job": name})
    run.__name__ = name
    return run


def build(deps: Marquee) -> BlockingScheduler:
    settings = deps.settings
    scheduler = BlockingScheduler(timezone="UTC")
    # coalesce + max_instances=1: a slow run is never stacked on itself.
    common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
    scheduler.add_job(_job(deps, "expire_unpaid_reservations", expire_unpaid_reservations),
                      "interval", seconds=settings.expiry_interval_seconds, id="expire", **common)
    scheduler.add_job(_job(deps, "sweep_stray_seat_keys", sweep_stray_seat_keys),
                      "interval", seconds=settings.sweep_interval_seconds, id="sweep", **common)
    scheduler.add_job(_job(deps, "waitlist_offers", offer_everywhere),
                      "interval", seconds=5, id="waitlist", **common)
    scheduler.add_job(_job(deps, "queue_due_reminders", queue_due_reminders),
                      "interval", seconds=settings.reminder_interval_seconds, id="reminders", **common)
    scheduler.add_job(_job(deps, "purge_outbox", purge_published),
                      "interval", seconds=settings.outbox_purge_interval_seconds, id="purge_outbox", **common)
    # a missed second is not made up for (admit_all credits the time since its last step,
    # two seconds at most): a short grace, so a late run is skipped, not stacked
    scheduler.add_job(_job(deps, "waiting_room_admissions", admit_all), "interval", seconds=1, id="admission",
                      coalesce=True, max_instances=1, misfire_grace_time=1)
    return scheduler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="run every job once and exit")
    args = parser.parse_args(argv)
    load_dotenv(override=False)
    tracing.setup("marquee-scheduler")
    deps = bootstrap()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per run
    scheduler = build(deps)
    publisher = deps.publisher()
    if args.once:
        for job in scheduler.get_jobs():
            job.func()
        with db.scoped():
            relay_outbox(publisher)
        publisher.close()
        return 0

    stopping = threading.Event()
    relay = threading.Thread(target=relay_forever, name="outbox-relay", args=(deps, publisher, stopping),
                             kwargs={"poll_seconds": deps.settings.relay_interval_seconds})

    def stop(signum, _frame):
        log.info("stopping", extra={"signal": signum})
        stopping.set()
        scheduler.shutdown(wait=False)  # start() returns; the job in hand finishes below

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    dump_stacks_on_sigusr1()
    relay.start()
    log.info("scheduler started", extra={"jobs": [j.id for j in scheduler.get_jobs()] + ["relay"]})
    scheduler.start()
    relay.join(30)
    tracing.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
