"""RabbitMQ: the topology, and publishing with publisher confirms (pika).

Every name starts with ``AMQP_PREFIX`` (``marquee.`` for the stack, another for
the tests). For each topic (``payments.charge``, ``payments.refund``, ``reviews.submit``,
``notifications.email``, ``notifications.sms``, ``notifications.push``,
``webhooks.event``):

- ``<p><topic>``               durable quorum queue, bound to the ``<p>events`` topic exchange
- ``<p><topic>.retry.<ms>``    a delay tier: messages wait there (queue TTL), then
                               dead-letter back to the main queue
- ``<p><topic>.dead``          durable quorum queue of messages that will not
                               succeed: an admin inspects and replays them
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pika
from pika.exceptions import AMQPError

TOPICS = ("payments.charge", "payments.refund", "reviews.submit", "notifications.email", "notifications.sms",
          "notifications.push", "webhooks.event")

BrokerError = AMQPError


@dataclass(frozen=True)
class Topology:
    prefix: str
    retry_delays_ms: tuple

    @property
    def exchange(self) -> str:
        return f"{self.prefix}events"

    def queue(self, topic: str) -> str:
        return f"{self.prefix}{topic}"

    def retry_queue(self, topic: str, delay_ms: int) -> str:
        return f"{self.prefix}{topic}.retry.{delay_ms}"

    def dead_queue(self, topic: str) -> str:
        return f"{self.prefix}{topic}.dead"

    def declare(self, channel) -> None:
        """Idempotent: every process declares what it uses."""
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        for topic in TOPICS:
            main = self.queue(topic)
            channel.queue_declare(main, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(main, self.exchange, routing_key=topic)
            channel.queue_declare(self.dead_queue(topic), durable=True, arguments={"x-queue-type": "quorum"})
            for delay in self.retry_delays_ms:
                channel.queue_declare(self.retry_queue(topic, delay), durable=True, arguments={
                    "x-message-ttl": int(delay),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": main,
                })

    def delete(self, channel) -> None:
        """Remove everything (tests clean up after themselves)."""
        for topic in TOPICS:
            for name in [self.queue(topic), self.dead_queue(topic),
                         *(self.retry_queue(topic, d) for d in self.retry_delays_ms)]:
                channel.queue_delete(name)
        channel.exchange_delete(self.exchange)


HEARTBEAT_SECONDS = 30


def connect(url: str, name: str | None = None) -> pika.BlockingConnection:
    """A blocking connection. Its heartbeats are only sent and checked while its
    owner calls into pika, so an owner that may sit idle calls ``keep_alive``
    (or ``process_data_events``) more often than every HEARTBEAT_SECONDS.
    ``name`` shows in RabbitMQ's list of connections."""
    params = pika.URLParameters(url)
    params.heartbeat = HEARTBEAT_SECONDS
    params.blocked_connection_timeout = 30
    params.socket_timeout = 5
    params.connection_attempts = 1
    if name:
        params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)


def publish_confirmed(channel, exchange: str, routing_key: str, body: dict, *,
                      headers: dict | None = None, message_id: str | None = None) -> None:
    """One persistent message on a channel in confirm mode: returns once the broker
    confirmed it, raises ``BrokerError`` if it was refused or could not be routed."""
    channel.basic_publish(
        exchange=exchange,
        routing_key=routing_key,
        body=json.dumps(body).encode(),
        properties=pika.BasicProperties(
            content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent,
            headers=headers or {}, message_id=message_id),
        mandatory=True,
    )


def close_quietly(connection) -> None:
    """Close a connection that may already be broken; never raises."""
    try:
        if connection is not None and connection.is_open:
            connection.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail in many ways while closing
        pass


class Publisher:
    """Publishes persistent messages and returns only once the broker confirmed them."""

    def __init__(self, url: str, topology: Topology, name: str | None = None) -> None:
        self.url = url
        self.topology = topology
        self.name = name
        self._connection = None
        self._channel = None
        self.failures = 0  # consecutive failed publishes: callers back off on them

    def _ensure(self):
        if self._channel is None or self._channel.is_closed or self._connection.is_closed:
            self.close()
            self._connection = connect(self.url, self.name)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
            self.topology.declare(self._channel)
        return self._channel

    def publish(self, routing_key: str, body: dict, *, exchange: str | None = None,
                headers: dict | None = None, message_id: str | None = None) -> None:
        """Raises ``BrokerError`` unless the broker confirmed (and could route) the message."""
        try:
            publish_confirmed(self._ensure(), self.topology.exchange if exchange is None else exchange,
                              routing_key, body, headers=headers, message_id=message_id)
        except AMQPError:
            self.failures += 1
            self.close()
            raise
        self.failures = 0

    def keep_alive(self) -> None:
        """Let pika send and check heartbeats while the publisher is idle. A connection
        the broker dropped is noticed here and let go, so the next publish starts on a
        fresh one instead of waiting on a dead one."""
        if self._connection is None:
            return
        try:
            self._connection.process_data_events(time_limit=0)
        except AMQPError:
            self.close()

    def close(self) -> None:
        close_quietly(self._connection)
        self._connection = self._channel = None


# --- parked messages ------------------------------------------------------------

def peek_dead(url: str, topology: Topology, topic: str, limit: int) -> list[tuple[dict, dict]]:
    """Up to ``limit`` parked messages of a topic (body, headers), left in place."""
    connection = connect(url)
    try:
        channel = connection.channel()
        found = []
        for _ in range(limit):
            method, properties, body = channel.basic_get(topology.dead_queue(topic), auto_ack=False)
            if method is None:
                break
            found.append((json.loads(body), dict(properties.headers or {})))
        return found  # closing the channel unacknowledged puts them all back
    finally:
        connection.close()


def replay_dead(url: str, topology: Topology, topic: str, limit: int) -> int:
    """Move up to ``limit`` parked messages back to their main queue with a fresh
    attempt count, each confirmed there before it leaves the dead queue."""
    publisher = Publisher(url, topology)
    connection = connect(url)
    moved = 0
    try:
        channel = connection.channel()
        for _ in range(limit):
            method, properties, body = channel.basic_get(topology.dead_queue(topic), auto_ack=False)
            if method is None:
                break
            headers = {k: v for k, v in (properties.headers or {}).items() if k not in ("x-attempt", "x-death-reason")}
            publisher.publish(topology.queue(topic), json.loads(body), exchange="", headers=headers)
            channel.basic_ack(method.delivery_tag)  # only after the main queue confirmed it
            moved += 1
    finally:
        connection.close()
        publisher.close()
    return moved
