"""The worker process: RabbitMQ consumers for payments, refunds, reviews, email, SMS, push and
outbound webhooks (pika), and the dispatcher threads that deliver outbound webhooks.

    python -m worker.consumer

Each message is handled by the same services as the API (``app.services``), then
acknowledged, only after the handler's own commit. Delivery is at least once and
every handler is idempotent. A transient failure (the gateway, a database or
Redis hiccup) goes to a delay queue and comes back, with growing delays
(RETRY_DELAYS_MS); after MAX_DELIVERY_ATTEMPTS, or at once for a message that can
never succeed, it is parked in ``<queue>.dead`` (see ``flask --app wsgi
dead-letters``). SIGTERM finishes the messages in hand, then stops. A lost
connection is closed at once (its unacknowledged message goes back to the queue)
and re-established with backoff.

Each queue has its own consumer threads (``WORKER_THREADS``, default
``payments.charge=4,notifications.email=3,payments.refund=1,reviews.submit=1,
notifications.sms=1,notifications.push=1,webhooks.event=1``; one thread fans webhook
events out in the order the relay published them):
a charge never waits behind an email, and several charges are in flight while
each waits on the gateway or PostgreSQL. Every thread has its own connection and
channel (pika is not thread-safe) and a prefetch of one, so no message sits in a
busy thread's buffer while another thread is free. A retried or parked message
is published on the channel that delivered it, with a confirm, before the ack:
no second connection that could sit idle and die unnoticed.

Besides, ``WEBHOOK_DISPATCH_THREADS`` threads (default 2) deliver outbound webhooks
(``outbound_webhooks.dispatch_forever``): they claim due deliveries from PostgreSQL
with ``FOR UPDATE SKIP LOCKED``, so several threads and workers share them.

It boots no web app: ``app.bootstrap`` builds what the services need.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time

import redis
from sqlalchemy.exc import OperationalError

from app import db
from app.adapters import tracing
from app.adapters.broker import TOPICS, BrokerError, close_quietly, connect, publish_confirmed
from app.adapters.payments import TransientPaymentError
from app.bootstrap import Marquee, bootstrap, using
from app.logging_setup import dump_stacks_on_sigusr1, request_id_var
from app.ops_metrics import record_message
from app.services import notifications, outbound_webhooks, payments, reminders, reviews
from app.services.notifications import EmailInProgress

log = logging.getLogger("marquee.worker")

PREFETCH = 1  # per thread: see the module's docstring
DEFAULT_THREADS = {"payments.charge": 4, "notifications.email": 3, "payments.refund": 1, "reviews.submit": 1,
                   "notifications.sms": 1, "notifications.push": 1, "webhooks.event": 1}
# OSError: SMTP (or a sink's folder) unavailable; EmailInProgress: another thread is sending the same notice
TRANSIENT = (TransientPaymentError, EmailInProgress, OperationalError, redis.RedisError, OSError)


def handle(topic: str, payload: dict) -> str:
    """Decode a message into a service call: the same services as the API's."""
    if topic == "payments.charge":
        return payments.process_charge(payload)
    if topic == "payments.refund":
        return payments.process_refund(payload)
    if topic == "reviews.submit":
        return reviews.apply_review(payload)
    if topic == "notifications.email":
        return notifications.send_email(payload)
    if topic == "notifications.sms":
        return reminders.send_sms(payload)
    if topic == "notifications.push":
        return reminders.send_push(payload)
    if topic == "webhooks.event":
        return outbound_webhooks.fan_out(payload)
    raise ValueError(f"no handler for topic {topic!r}")


EVENT_WAIT_SECONDS = 0.5  # a consuming thread looks at its stop event at least this often
JOIN_POLL_SECONDS = 0.2  # how often the main thread, waiting for the others, runs signal handlers


def _nothing() -> None:
    """A callback whose only effect is to end a connection's wait for events."""


def threads_from(spec: str) -> dict[str, int]:
    """Consumer threads per queue: the defaults, with ``WORKER_THREADS``'s
    ``topic=n`` pairs (comma-separated) over them. 0 leaves a queue to other workers."""
    threads = dict(DEFAULT_THREADS)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        topic, _, count = item.partition("=")
        if topic.strip() not in TOPICS or not count.strip().isdigit():
            raise ValueError(f"WORKER_THREADS: expected topic=n with a topic of {TOPICS}, got {item!r}")
        threads[topic.strip()] = int(count)
    return threads


class Consumer:
    def __init__(self, deps: Marquee, threads: dict[str, int] | None = None) -> None:
        self.deps = deps
        self.url = deps.settings.amqp_url
        self.topology = deps.topology
        self.max_attempts = deps.settings.max_delivery_attempts
        self.threads = threads or dict(DEFAULT_THREADS)
        self.stop = threading.Event()
        self.failed = False  # a thread died of an unexpected error: the process exits non-zero
        self.event_wait_seconds = EVENT_WAIT_SECONDS
        self.handled = 0
        self._counting = threading.Lock()
        self._connections: set = set()  # each consuming thread's live connection (request_stop)
        self._registry = threading.Lock()

    def request_stop(self) -> None:
        """Stop now, after the messages in hand: every thread's wait is cut short (a
        consumer's ``process_data_events`` by a callback on its connection, the only call
        pika allows from another thread; a dispatcher's by its wake-up), where it would
        otherwise run out its time limit first (``EVENT_WAIT_SECONDS``; a dispatcher's,
        ``WEBHOOK_POLL_SECONDS``)."""
        self.stop.set()
        outbound_webhooks.wake_dispatchers()
        with self._registry:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.add_callback_threadsafe(_nothing)
            except Exception:  # noqa: BLE001 - a connection closing meanwhile has nothing to cut short
                pass

    # --- one message ----------------------------------------------------------
    def on_message(self, channel, method, properties, body) -> None:
        headers = dict(properties.headers or {})
        attempt = int(headers.get("x-attempt", 0))
        try:
            message = json.loads(body)
            topic = message["topic"]
        except (ValueError, KeyError, TypeError):
            self._park(channel, body, headers, "undecodable message")
            channel.basic_ack(method.delivery_tag)
            return
        token = request_id_var.set(message.get("request_id") or f"outbox-{message.get('event_id')}")
        result = "handled"
        try:
            started = time.perf_counter()
            # a child of the relay's publish (the traceparent it put in the headers);
            # retries and dead letters copy the headers, so they keep it too
            with db.scoped(), tracing.child_span(headers, f"process {topic}", kind="CONSUMER",
                                                 attributes={"messaging.system": "rabbitmq",
                                                             "messaging.destination.name": topic,
                                                             "messaging.message.id": str(properties.message_id),
                                                             "marquee.attempt": attempt}):
                outcome = handle(topic, message)
            log.info("handled", extra={"topic": topic, "outcome": outcome, "attempt": attempt,
                                       "event_id": message.get("event_id"),
                                       "ms": round((time.perf_counter() - started) * 1000, 1)})
        except TRANSIENT as exc:
            log.warning("transient failure", extra={"topic": topic, "attempt": attempt, "error": str(exc)})
            if attempt + 1 >= self.max_attempts:
                result = "parked"
                self._park(channel, body, headers, f"gave up after {attempt + 1} attempts: {exc}")
            else:
                result = "retried"
                delays = self.topology.retry_delays_ms
                delay = delays[min(attempt, len(delays) - 1)]
                publish_confirmed(channel, "", self.topology.retry_queue(topic, delay), message,
                                  headers={**headers, "x-attempt": attempt + 1})
        except Exception as exc:  # noqa: BLE001 - cannot succeed: park it for a person
            log.exception("message failed for good", extra={"topic": topic})
            result = "parked"
            self._park(channel, body, headers, f"{type(exc).__name__}: {exc}", topic=topic)
        finally:
            request_id_var.reset(token)
        self._record(topic, result, message.get("published_at"))
        # Acknowledge only now: after the handler committed, or after the message
        # was confirmed into its retry or dead queue.
        channel.basic_ack(method.delivery_tag)
        with self._counting:
            self.handled += 1

    def _record(self, topic: str, result: str, published_at) -> None:
        """For the operators' view: outcome and time waited in the queue (ops_metrics)."""
        try:
            waited = time.time() - float(published_at) if published_at else None
            record_message(self.deps.redis, topic, result, waited)
        except Exception:  # noqa: BLE001 - a metric is not worth a lost message
            log.warning("could not record the message outcome", extra={"topic": topic}, exc_info=True)

    def _park(self, channel, body, headers, reason: str, topic: str | None = None) -> None:
        try:
            message = json.loads(body)
            topic = topic or message.get("topic")
        except ValueError:
            message = {"raw": body.decode("utf-8", "replace")}
        topic = topic if topic in TOPICS else TOPICS[0]
        publish_confirmed(channel, "", self.topology.dead_queue(topic), message,
                          headers={**headers, "x-death-reason": reason[:500]})

    # --- the threads ----------------------------------------------------------
    def run(self) -> None:
        """Consume with every thread until ``stop``; returns when all have finished."""
        threads = [threading.Thread(target=self._thread, args=(topic,), name=f"{topic}-{n}")
                   for topic, count in self.threads.items() for n in range(count)]
        threads += [threading.Thread(target=outbound_webhooks.dispatch_forever, args=(self.deps, self.stop),
                                     name=f"webhooks-dispatch-{n}")
                    for n in range(self.deps.settings.webhook_dispatch_threads)]
        for thread in threads:
            thread.start()
        # Joined with a timeout: a signal the kernel hands to another thread only flags itself
        # for the main thread, whose Python handler runs when it next runs Python; in a join
        # without one it slept through SIGTERM, and the worker stopped only at SIGKILL.
        for thread in threads:
            while thread.is_alive():
                thread.join(JOIN_POLL_SECONDS)

    def _thread(self, topic: str) -> None:
        with using(self.deps):
            try:
                self._consume(topic)
            except Exception:  # noqa: BLE001 - stop them all: the supervisor restarts the process
                log.exception("consumer thread failed", extra={"queue": self.topology.queue(topic)})
                self.failed = True
                self.request_stop()
            finally:
                self.deps.mailer.close()  # this thread's SMTP session, if it kept one

    def _consume(self, topic: str) -> None:
        """Consume one queue on a connection of this thread's own, reconnecting with backoff."""
        queue = self.topology.queue(topic)
        backoff = 1.0
        while not self.stop.is_set():
            connection = None
            try:
                connection = connect(self.url, f"marquee worker {topic} {threading.current_thread().name}")
                channel = connection.channel()
                channel.confirm_delivery()  # retries and parked messages: confirmed before the ack
                self.topology.declare(channel)
                channel.basic_qos(prefetch_count=PREFETCH)
                channel.basic_consume(queue, self.on_message)
                log.info("consuming", extra={"queue": queue})
                backoff = 1.0
                with self._registry:
                    self._connections.add(connection)
                try:
                    while not self.stop.is_set():
                        connection.process_data_events(time_limit=self.event_wait_seconds)
                finally:
                    with self._registry:
                        self._connections.discard(connection)
                connection.close()
            except BrokerError:
                log.warning("broker connection lost; reconnecting", exc_info=True,
                            extra={"queue": queue, "in_s": backoff})
                # Closed now, not when the broker misses its heartbeats: until then
                # the message in hand would stay unacknowledged there, delivered to no one.
                close_quietly(connection)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)


def main() -> int:
    from dotenv import load_dotenv

    load_dotenv(override=False)
    tracing.setup("marquee-worker")
    consumer = Consumer(bootstrap(), threads_from(os.environ.get("WORKER_THREADS", "")))

    def stop(signum, _frame):
        log.info("stopping after the messages in hand", extra={"signal": signum})
        consumer.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    dump_stacks_on_sigusr1()
    consumer.run()
    tracing.shutdown()
    return 1 if consumer.failed else 0


if __name__ == "__main__":
    sys.exit(main())
