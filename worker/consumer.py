"""The worker process: RabbitMQ consumers for payments, refunds, reviews and email (pika).

    python -m worker.consumer

Each message is handled by the same services as the API (``app.services``), then
acknowledged, only after the handler's own commit. Delivery is at least once and
every handler is idempotent. A transient failure (the gateway, a database or
Redis hiccup) goes to a delay queue and comes back, with growing delays
(RETRY_DELAYS_MS); after MAX_DELIVERY_ATTEMPTS, or at once for a message that can
never succeed, it is parked in ``<queue>.dead`` (see ``flask --app wsgi
dead-letters``). SIGTERM finishes the message in hand, then stops. A lost
connection is re-established with backoff.

It boots no web app: ``app.bootstrap`` builds what the services need.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time

import redis
from sqlalchemy.exc import OperationalError

from app import db
from app.adapters.broker import TOPICS, BrokerError, connect
from app.adapters.payments import TransientPaymentError
from app.bootstrap import Marquee, bootstrap, using
from app.logging_setup import request_id_var
from app.ops_metrics import record_message
from app.services import notifications, payments, reviews

log = logging.getLogger("marquee.worker")

PREFETCH = 10
TRANSIENT = (TransientPaymentError, OperationalError, redis.RedisError, OSError)  # OSError: SMTP down


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
    raise ValueError(f"no handler for topic {topic!r}")


class Consumer:
    def __init__(self, deps: Marquee) -> None:
        self.deps = deps
        self.url = deps.settings.amqp_url
        self.topology = deps.topology
        self.max_attempts = deps.settings.max_delivery_attempts
        self.publisher = deps.publisher()
        self.stop = threading.Event()
        self.handled = 0

    # --- one message ----------------------------------------------------------
    def on_message(self, channel, method, properties, body) -> None:
        headers = dict(properties.headers or {})
        attempt = int(headers.get("x-attempt", 0))
        try:
            message = json.loads(body)
            topic = message["topic"]
        except (ValueError, KeyError, TypeError):
            self._park(method, body, headers, "undecodable message")
            channel.basic_ack(method.delivery_tag)
            return
        token = request_id_var.set(message.get("request_id") or f"outbox-{message.get('event_id')}")
        result = "handled"
        try:
            with db.scoped():
                outcome = handle(topic, message)
            log.info("handled", extra={"topic": topic, "outcome": outcome, "attempt": attempt,
                                       "event_id": message.get("event_id")})
        except TRANSIENT as exc:
            log.warning("transient failure", extra={"topic": topic, "attempt": attempt, "error": str(exc)})
            if attempt + 1 >= self.max_attempts:
                result = "parked"
                self._park(method, body, headers, f"gave up after {attempt + 1} attempts: {exc}")
            else:
                result = "retried"
                delays = self.topology.retry_delays_ms
                delay = delays[min(attempt, len(delays) - 1)]
                self.publisher.publish(self.topology.retry_queue(topic, delay), message, exchange="",
                                       headers={**headers, "x-attempt": attempt + 1})
        except Exception as exc:  # noqa: BLE001 - cannot succeed: park it for a person
            log.exception("message failed for good", extra={"topic": topic})
            result = "parked"
            self._park(method, body, headers, f"{type(exc).__name__}: {exc}", topic=topic)
        finally:
            request_id_var.reset(token)
        self._record(topic, result, message.get("published_at"))
        # Acknowledge only now: after the handler committed, or after the message
        # was confirmed into its retry or dead queue.
        channel.basic_ack(method.delivery_tag)
        self.handled += 1

    def _record(self, topic: str, result: str, published_at) -> None:
        """For the operators' view: outcome and time waited in the queue (ops_metrics)."""
        try:
            waited = time.time() - float(published_at) if published_at else None
            record_message(self.deps.redis, topic, result, waited)
        except Exception:  # noqa: BLE001 - a metric is not worth a lost message
            log.warning("could not record the message outcome", extra={"topic": topic}, exc_info=True)

    def _park(self, method, body, headers, reason: str, topic: str | None = None) -> None:
        try:
            message = json.loads(body)
            topic = topic or message.get("topic")
        except ValueError:
            message = {"raw": body.decode("utf-8", "replace")}
        topic = topic if topic in TOPICS else TOPICS[0]
        self.publisher.publish(self.topology.dead_queue(topic), message, exchange="",
                               headers={**headers, "x-death-reason": reason[:500]})

    # --- the loop -------------------------------------------------------------
    def run(self) -> None:
        with using(self.deps):
            self._run()

    def _run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                connection = connect(self.url)
                channel = connection.channel()
                self.topology.declare(channel)
                channel.basic_qos(prefetch_count=PREFETCH)
                for topic in TOPICS:
                    channel.basic_consume(self.topology.queue(topic), self.on_message)
                log.info("consuming", extra={"queues": [self.topology.queue(t) for t in TOPICS]})
                backoff = 1.0
                while not self.stop.is_set():
                    connection.process_data_events(time_limit=0.5)
                connection.close()
            except BrokerError:
                log.warning("broker connection lost; reconnecting", exc_info=True, extra={"in_s": backoff})
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        self.publisher.close()


def main() -> int:
    from dotenv import load_dotenv

    load_dotenv(override=False)
    consumer = Consumer(bootstrap())

    def stop(signum, _frame):
        log.info("stopping after the message in hand", extra={"signal": signum})
        consumer.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
