"""The on-sale view for operators, served on every instance's ``/metrics``.

Per-request counters live in each process (``app.metrics``). What an operator watches
during an on-sale is the state of the whole system, so it is read at scrape time from
where it lives, once per ``CACHE_SECONDS`` per process:

- PostgreSQL: reservations by status, the outbox's unpublished rows and the age of the
  oldest (relay lag);
- RabbitMQ: messages ready in each work queue and its dead-letter queue;
- Redis: what the scheduler and the worker record after each run / message (``record_*``
  below): runs per job and when the last one was, messages handled per topic and how long
  the last one waited in its queue.
"""
from __future__ import annotations

import logging
import threading
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import text

from app import db
from app.adapters.broker import TOPICS, connect
from app.bootstrap import using

log = logging.getLogger(__name__)
CACHE_SECONDS = 5.0
_SCHEDULER_KEY = "ops:scheduler"
_WORKER_KEY = "ops:worker"


# -- written by the scheduler and the worker ------------------------------------------------
def record_job_run(store, job: str, acted: bool, seconds: float) -> None:
    """After a scheduler job: runs (acted, or skipped because another scheduler had the lock)."""
    key = store.key(_SCHEDULER_KEY, job)
    pipe = store.client.pipeline(transaction=False)
    pipe.hincrby(key, "acted" if acted else "skipped", 1)
    pipe.hset(key, mapping={"last_run": time.time(), "last_seconds": round(seconds, 4)})
    pipe.expire(key, 7 * 86400)
    pipe.execute()


def record_message(store, topic: str, outcome: str, waited_seconds: float | None) -> None:
    """After the worker handled a message: its outcome and how long it waited in the queue."""
    key = store.key(_WORKER_KEY, topic)
    pipe = store.client.pipeline(transaction=False)
    pipe.hincrby(key, outcome, 1)
    mapping = {"last_handled": time.time()}
    if waited_seconds is not None:
        mapping["last_wait_seconds"] = round(max(waited_seconds, 0.0), 4)
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, 7 * 86400)
    pipe.execute()


# -- read at scrape time ------------------------------------------------------------------------
class OpsCollector:
    def __init__(self, deps) -> None:
        self.deps = deps
        self._lock = threading.Lock()
        self._cached: list = []
        self._at = 0.0

    def collect(self):
        with self._lock:
            if time.monotonic() - self._at > CACHE_SECONDS:
                self._cached = list(self._gather())
                self._at = time.monotonic()
            return list(self._cached)

    def _gather(self):
        try:
            with using(self.deps), db.unit_of_work() as session:
                found = list(self._postgresql(session))
            yield from found
        except Exception:  # noqa: BLE001 - a scrape must not fail because one source did
            log.warning("ops metrics: PostgreSQL unavailable", exc_info=True)
        try:
            yield from self._redis(self.deps.redis)
        except Exception:  # noqa: BLE001
            log.warning("ops metrics: Redis unavailable", exc_info=True)
        yield from self._rabbitmq(self.deps)

    def _postgresql(self, session):
        states = GaugeMetricFamily("marquee_reservations", "Reservations by status", labels=["status"])
        counts = dict(session.execute(text("SELECT status, count(*) FROM reservations GROUP BY status")).all())
        for status in ("pending_payment", "confirmed", "payment_failed", "expired", "cancelled"):
            states.add_metric([status], counts.get(status, 0))
        yield states
        unpublished, oldest_age = session.execute(text(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) "
            "FROM outbox WHERE published_at IS NULL")).one()
        yield GaugeMetricFamily("marquee_outbox_unpublished", "Outbox rows not yet published",
                                value=unpublished)
        yield GaugeMetricFamily("marquee_outbox_lag_seconds",
                                "Age of the oldest unpublished outbox row (0 when none)", value=float(oldest_age))

    def _redis(self, store):
        runs = CounterMetricFamily("marquee_scheduler_job_runs", "Scheduler job runs",
                                   labels=["job", "outcome"])
        last = GaugeMetricFamily("marquee_scheduler_job_last_run_timestamp_seconds",
                                 "When the job last ran (any scheduler)", labels=["job"])
        duration = GaugeMetricFamily("marquee_scheduler_job_last_duration_seconds",
                                     "How long the job's last run took", labels=["job"])
        for key in store.client.scan_iter(match=store.key(_SCHEDULER_KEY, "*"), count=100):
            job = key.decode().rsplit(":", 1)[1]
            fields = {k.decode(): v.decode() for k, v in store.client.hgetall(key).items()}
            for outcome in ("acted", "skipped"):
                runs.add_metric([job, outcome], float(fields.get(outcome, 0)))
            last.add_metric([job], float(fields.get("last_run", 0)))
            duration.add_metric([job], float(fields.get("last_seconds", 0)))
        handled = CounterMetricFamily("marquee_worker_messages", "Messages the worker finished, by outcome",
                                      labels=["topic", "outcome"])
        waited = GaugeMetricFamily("marquee_worker_last_message_wait_seconds",
                                   "How long the last handled message waited between publish and handling",
                                   labels=["topic"])
        for key in store.client.scan_iter(match=store.key(_WORKER_KEY, "*"), count=100):
            topic = key.decode().rsplit(":", 1)[1]
            fields = {k.decode(): v.decode() for k, v in store.client.hgetall(key).items()}
            for outcome in ("handled", "retried", "parked"):
                handled.add_metric([topic, outcome], float(fields.get(outcome, 0)))
            waited.add_metric([topic], float(fields.get("last_wait_seconds", 0)))
        yield from (runs, last, duration, handled, waited)
        yield from self._waiting_rooms(store)

    def _waiting_rooms(self, store):
        """Each waiting room that is on, by showtime (what GET .../waiting-room shows)."""
        rooms = self.deps.waiting_rooms
        gauges = {name: GaugeMetricFamily(f"marquee_waiting_room_{name}", doc, labels=["showtime_id"]) for name, doc in (
            ("pre_queue", "Customers who joined before the opening (until it)"),
            ("waiting", "Customers numbered and not admitted yet"),
            ("active", "Admitted customers still shopping (at most max_active)"),
            ("admissions_per_minute", "Customers admitted in the last minute"),
            ("serving_number", "Numbers up to it are admitted"),
            ("last_number", "The last number given"))}
        counters = {name: CounterMetricFamily(f"marquee_waiting_room_{name}", doc, labels=["showtime_id"])
                    for name, doc in (("admitted", "Sessions admitted"), ("expired", "Sessions whose time ran out"),
                                      ("done", "Sessions ended by a reservation"), ("left", "Customers who left"))}
        for showtime_id in sorted(rooms.rooms_on()):
            stats, label = rooms.stats(showtime_id), [str(showtime_id)]
            for name, gauge in gauges.items():
                gauge.add_metric(label, {"admissions_per_minute": stats.admissions_last_minute}.get(
                    name, getattr(stats, name, 0)))
            for name, counter in counters.items():
                counter.add_metric(label, getattr(stats, name))
        yield from gauges.values()
        yield from counters.values()

    def _rabbitmq(self, deps):
        depth = GaugeMetricFamily("marquee_queue_messages", "Messages ready in a queue", labels=["queue"])
        up = GaugeMetricFamily("marquee_broker_up", "1 when RabbitMQ answered this scrape")
        topology = deps.topology
        try:
            connection = connect(deps.settings.amqp_url)
        except Exception:  # noqa: BLE001
            up.add_metric([], 0)
            yield up
            return
        try:
            channel = connection.channel()
            for name in [topology.queue(t) for t in TOPICS] + [topology.dead_queue(t) for t in TOPICS]:
                try:
                    frame = channel.queue_declare(name, passive=True)
                    depth.add_metric([name], frame.method.message_count)
                except Exception:  # noqa: BLE001 - not declared yet: the channel closed
                    channel = connection.channel()
            up.add_metric([], 1)
        finally:
            try:
                connection.close()
            except Exception:  # noqa: BLE001
                pass
        yield from (depth, up)
