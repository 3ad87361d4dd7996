"""Flask CLI commands (``flask --app wsgi ...``): ``create-admin``,
``bootstrap-admin``, ``seed-demo``, ``dead-letters list|replay``, ``rotate-ticket-key``
and ``ticket-keys``."""
from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from app.adapters.broker import TOPICS, peek_dead, replay_dead
from app.bootstrap import marquee


def register_cli(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(seed_demo)
    app.cli.add_command(bootstrap_admin)
    app.cli.add_command(dead_letters)
    app.cli.add_command(rotate_ticket_key)
    app.cli.add_command(list_ticket_keys)


@click.command("create-admin")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The admin's password (asked for when not given).")
@click.option("--name", default="Administrator", show_default=True)
@with_appcontext
def create_admin(email: str, password: str, name: str) -> None:
    """Create an admin account, or promote an existing one to admin."""
    from app.services.roles import ensure_admin

    if len(password) < 8:
        raise click.BadParameter("at least 8 characters", param_hint="--password")
    user, created = ensure_admin(email, password, name, via="create-admin")
    click.echo(f"{'created' if created else 'promoted'} admin {user.email} (id {user.id})")


@click.command("bootstrap-admin")
@with_appcontext
def bootstrap_admin() -> None:
    """Ensure the admin named by ADMIN_EMAIL/ADMIN_PASSWORD exists (start-up hook)."""
    from app.services.roles import ensure_admin

    settings = marquee().settings
    if not settings.admin_email:
        click.echo("ADMIN_EMAIL not set: no admin to bootstrap")
        return
    user, created = ensure_admin(settings.admin_email, settings.admin_password, via="bootstrap-admin")
    click.echo(f"{'created' if created else 'ensured'} admin {user.email}")


@click.command("seed-demo")
@click.option("--customers", default=1000, show_default=True, help="Demo customer accounts.")
@with_appcontext
def seed_demo(customers: int) -> None:
    """Load demo data (idempotent): a city, theaters, screens, movies, showtimes, customers."""
    from app.services.demo import seed

    click.echo(seed(customers=customers))


dead_letters = AppGroup("dead-letters", help="Inspect and replay messages the worker parked.")


@dead_letters.command("list")
@click.option("--topic", type=click.Choice(TOPICS), default=None, help="One topic (default: all).")
@click.option("--limit", default=20, show_default=True)
def list_dead_letters(topic, limit):
    """Show parked messages and why they were parked."""
    deps = marquee()
    for name in [topic] if topic else TOPICS:
        for body, headers in peek_dead(deps.settings.amqp_url, deps.topology, name, limit):
            click.echo(json.dumps({"topic": name, "reason": headers.get("x-death-reason"), "message": body}))


@dead_letters.command("replay")
@click.option("--topic", type=click.Choice(TOPICS), default=None, help="One topic (default: all).")
@click.option("--limit", default=100, show_default=True)
def replay_dead_letters(topic, limit):
    """Send parked messages back to their queue for another try."""
    deps = marquee()
    for name in [topic] if topic else TOPICS:
        click.echo(f"{name}: {replay_dead(deps.settings.amqp_url, deps.topology, name, limit)} replayed")


@click.command("rotate-ticket-key")
@with_appcontext
def rotate_ticket_key() -> None:
    """Sign new tickets with a new Ed25519 key; the old one keeps verifying until its shows end."""
    from app.services import ticket_keys

    new, old = ticket_keys.rotate(actor_id=None)
    click.echo(f"new signing key {new.kid}" + (f"; retired {old.kid}" if old else ""))


@click.command("ticket-keys")
@with_appcontext
def list_ticket_keys() -> None:
    """List the ticket signing keys (kid, created, retired, published until): no secret."""
    from app.services import ticket_keys

    for key in ticket_keys.describe_all():
        click.echo(json.dumps(key, default=str))
