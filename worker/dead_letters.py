"""Inspect and replay parked messages (``<queue>.dead``).

    flask --app wsgi dead-letters list [--topic payments.charge] [--limit 20]
    flask --app wsgi dead-letters replay [--topic payments.charge] [--limit 100]

``replay`` moves messages back to their main queue with a fresh attempt count,
each one confirmed there before it leaves the dead queue.
"""
from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import AppGroup

from app.adapters.broker import TOPICS, Publisher, Topology, connect

cli = AppGroup("dead-letters", help="Inspect and replay messages the worker parked.")


def _topology() -> Topology:
    settings = current_app.extensions["marquee"].settings
    return Topology(settings.amqp_prefix, settings.retry_delays_ms)


def peek(topic: str, limit: int) -> list[tuple[dict, dict]]:
    """Up to ``limit`` parked messages (body, headers), left in place."""
    connection = connect(current_app.extensions["marquee"].settings.amqp_url)
    try:
        channel = connection.channel()
        found = []
        for _ in range(limit):
            method, properties, body = channel.basic_get(_topology().dead_queue(topic), auto_ack=False)
            if method is None:
                break
            found.append((json.loads(body), dict(properties.headers or {})))
        return found  # closing the channel unacknowledged puts them all back
    finally:
        connection.close()


def replay(topic: str, limit: int) -> int:
    settings = current_app.extensions["marquee"].settings
    topology = _topology()
    publisher = Publisher(settings.amqp_url, topology)
    connection = connect(settings.amqp_url)
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


@cli.command("list")
@click.option("--topic", type=click.Choice(TOPICS), default=None, help="One topic (default: all).")
@click.option("--limit", default=20, show_default=True)
def list_command(topic, limit):
    """Show parked messages and why they were parked."""
    for name in [topic] if topic else TOPICS:
        for body, headers in peek(name, limit):
            click.echo(json.dumps({"topic": name, "reason": headers.get("x-death-reason"), "message": body}))


@cli.command("replay")
@click.option("--topic", type=click.Choice(TOPICS), default=None, help="One topic (default: all).")
@click.option("--limit", default=100, show_default=True)
def replay_command(topic, limit):
    """Send parked messages back to their queue for another try."""
    for name in [topic] if topic else TOPICS:
        click.echo(f"{name}: {replay(name, limit)} replayed")
