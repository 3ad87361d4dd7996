"""Marquee: a movie-ticket booking backend.

``create_app`` is the one wiring point: settings from the environment,
extensions, adapters, blueprints, error handlers and request hooks.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from flask import Flask, g, request
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from app import errors
from app.adapters.cache import Cache
from app.adapters.mailer import Mailer
from app.adapters.payments import PaymentGateway, TestGateway
from app.adapters.passwords import PasswordHasher
from app.adapters.redis_store import RedisStore
from app.adapters.seat_store import SeatStore
from app.config import Settings
from app.extensions import db, jwt, migrate
from app.logging_setup import accept_or_create_request_id, configure_logging, request_id_var

log = logging.getLogger("marquee")
access_log = logging.getLogger("marquee.access")


@dataclass
class Marquee:
    """What the services need from the outside world, built once per process."""

    settings: Settings
    redis: RedisStore
    cache: Cache
    passwords: PasswordHasher
    seats: SeatStore
    gateway: PaymentGateway
    mailer: Mailer
    count_failure: object
    rotate_refresh: object


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config.update(settings.flask_config())

    store = RedisStore(settings.redis_url, settings.redis_prefix)
    app.extensions["marquee"] = Marquee(
        settings=settings,
        redis=store,
        cache=Cache(store, settings.cache_ttl_seconds),
        passwords=PasswordHasher(
            settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
        ),
        seats=SeatStore(store),
        gateway=TestGateway(store),
        mailer=Mailer(settings.smtp_host, settings.smtp_port, starttls=settings.smtp_starttls,
                      username=settings.smtp_username, password=settings.smtp_password,
                      sender=settings.mail_from),
        count_failure=store.script("count_failure"),
        rotate_refresh=store.script("rotate_refresh"),
    )

    db.init_app(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()))
    jwt.init_app(app)
    _register_jwt_callbacks()

    from app.api import Api, register_blueprints
    from app.api.ops import bp as ops_bp

    api = Api(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    register_blueprints(api)
    app.register_blueprint(ops_bp)
    _register_error_handlers(app)
    _register_request_hooks(app)

    from app.cli import register_cli

    register_cli(app)
    # Outbox rows wake the relay when their transaction commits (LISTEN/NOTIFY).
    from app.services import outbox  # noqa: F401
    return app


def _migrations_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"


def _register_jwt_callbacks() -> None:
    from app.services.auth import is_token_revoked

    def unauthorized(code: str, detail: str):
        return errors.problem(401, code=code, title="Unauthorized", detail=detail,
                              headers={"WWW-Authenticate": "Bearer"})

    jwt.token_in_blocklist_loader(lambda _header, payload: is_token_revoked(payload))
    jwt.unauthorized_loader(lambda reason: unauthorized("token_missing", "A Bearer token is required"))
    jwt.invalid_token_loader(lambda reason: unauthorized("token_invalid", f"Invalid token: {reason}"))
    jwt.expired_token_loader(lambda _h, _p: unauthorized("token_expired", "The token has expired"))
    jwt.revoked_token_loader(lambda _h, _p: unauthorized("token_revoked", "The token has been revoked"))


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.DomainError)
    def on_domain_error(err: errors.DomainError):
        return errors.domain_error_response(err)

    @app.errorhandler(redis.RedisError)
    def on_redis_down(err):
        log.error("redis unavailable", exc_info=err)
        return errors.problem(503, code="dependency_unavailable",
                              detail="A backing service is unavailable; try again shortly",
                              headers={"Retry-After": "5"})

    @app.errorhandler(OperationalError)
    def on_database_down(err):
        db.session.rollback()
        log.error("database unavailable", exc_info=err)
        return errors.problem(503, code="dependency_unavailable",
                              detail="A backing service is unavailable; try again shortly",
                              headers={"Retry-After": "5"})

    @app.errorhandler(IntegrityError)
    def on_integrity_error(err):
        # Services map the constraints they expect; this is the safety net for
        # one they did not: a conflict with the current state, never a 500.
        db.session.rollback()
        log.warning("unmapped integrity error", exc_info=err)
        return errors.problem(409, code="conflict",
                              detail="The change conflicts with the current state of the data")

    @app.errorhandler(DBAPIError)
    def on_database_error(err):
        db.session.rollback()
        log.exception("database error", exc_info=err)
        return errors.problem(500, detail="An unexpected error occurred; it has been logged")

    @app.errorhandler(Exception)
    def on_unexpected(err):
        # HTTPExceptions never get here: flask-smorest's handler for them is more specific.
        log.exception("unhandled error", exc_info=err)
        return errors.problem(500, detail="An unexpected error occurred; it has been logged")


def _register_request_hooks(app: Flask) -> None:
    from app.api.security import client_address
    from app.metrics import LATENCY, REQUESTS

    @app.before_request
    def start():
        g.request_id = accept_or_create_request_id(request.headers.get("X-Request-ID"))
        g.request_token = request_id_var.set(g.request_id)
        g.started = time.perf_counter()

    @app.after_request
    def finish(response):
        elapsed = time.perf_counter() - getattr(g, "started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(request.method, route).observe(elapsed)
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        if route != "/health":
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "route": route,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                    "remote_addr": request.remote_addr,
                    "client": client_address(),
                },
            )
        return response

    @app.teardown_request
    def reset(_exc):
        token = g.pop("request_token", None)
        if token is not None:
            request_id_var.reset(token)
