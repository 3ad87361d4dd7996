"""Flask CLI commands: ``create-admin`` and ``seed-demo``."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def register_cli(app: Flask) -> None:
    app.cli.add_command(create_admin)
    app.cli.add_command(seed_demo)
    app.cli.add_command(bootstrap_admin)
    from worker.dead_letters import cli as dead_letters

    app.cli.add_command(dead_letters)


@click.command("create-admin")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The admin's password (asked for when not given).")
@click.option("--name", default="Administrator", show_default=True)
@with_appcontext
def create_admin(email: str, password: str, name: str) -> None:
    """Create an admin account, or promote an existing one to admin."""
    from app.services.auth import ensure_admin

    if len(password) < 8:
        raise click.BadParameter("at least 8 characters", param_hint="--password")
    user, created = ensure_admin(email, password, name)
    click.echo(f"{'created' if created else 'promoted'} admin {user.email} (id {user.id})")


@click.command("bootstrap-admin")
@with_appcontext
def bootstrap_admin() -> None:
    """Ensure the admin named by ADMIN_EMAIL/ADMIN_PASSWORD exists (start-up hook)."""
    from app.services.auth import ensure_admin

    settings = current_app.extensions["marquee"].settings
    if not settings.admin_email:
        click.echo("ADMIN_EMAIL not set: no admin to bootstrap")
        return
    user, created = ensure_admin(settings.admin_email, settings.admin_password)
    click.echo(f"{'created' if created else 'ensured'} admin {user.email}")


@click.command("seed-demo")
@click.option("--customers", default=1000, show_default=True, help="Demo customer accounts.")
@with_appcontext
def seed_demo(customers: int) -> None:
    """Load demo data (idempotent): a city, theaters, screens, movies, showtimes, customers."""
    from app.services.demo import seed

    click.echo(seed(customers=customers))
