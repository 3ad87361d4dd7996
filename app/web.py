"""The web application: ``create_app`` wires Flask onto the process's
dependencies (``app.bootstrap``): settings, extensions, blueprints, error
handlers and request hooks.
"""
from __future__ import annotations

import logging
import time

import redis
from flask import Flask, g, request
from flask.ctx import AppContext, _sentinel
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from app import bootstrap, db
from app.adapters import tracing
from app.api import Api, register_blueprints
from app.api.graphql import bp as graphql_bp
from app.api.ops import bp as ops_bp
from app.api.problems import domain_error_response, problem
from app.api.security import VerifiedTokens, client_address
from app.cli import register_cli
from app.config import Settings
from app.extensions import cors, jwt
from app.logging_setup import accept_or_create_request_id, client_address_var, request_id_var
from app.metrics import LATENCY, REQUESTS
from app.services import errors
from app.services.auth import is_token_revoked

log = logging.getLogger("marquee")
access_log = logging.getLogger("marquee.access")


class _AppContext(AppContext):
    """Inside an app context, that app's dependencies are the current ones, and
    the thread's session ends with the context."""

    def push(self) -> None:
        super().push()
        bootstrap.enter(self.app.extensions["marquee"])

    def pop(self, exc: BaseException | None = _sentinel) -> None:  # type: ignore[assignment]
        last = len(self._cv_tokens) == 1  # a context pushed twice ends at its last pop
        try:
            if last:
                db.session.remove()
        finally:
            try:
                super().pop(exc)
            finally:
                bootstrap.leave()


class MarqueeFlask(Flask):
    def app_context(self) -> AppContext:
        return _AppContext(self)


def create_app(settings: Settings | None = None) -> Flask:
    # gunicorn builds the app in each worker, after the fork: each sets its own tracing up
    traced = tracing.setup("marquee-app")
    deps = bootstrap.build(settings)
    app = MarqueeFlask(__name__)
    if traced:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        # the server span of each request, continuing the proxy's traceparent
        FlaskInstrumentor.instrument_app(app, excluded_urls="/health,/ready,/metrics")
    app.config.update(deps.settings.flask_config())
    app.extensions["marquee"] = deps
    app.extensions["verified_tokens"] = VerifiedTokens()

    jwt.init_app(app)
    _register_jwt_callbacks()
    _enable_cors(app, deps.settings)
    api = Api(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    register_blueprints(api)
    app.register_blueprint(ops_bp)
    app.register_blueprint(graphql_bp)
    _register_error_handlers(app)
    _register_request_hooks(app)
    register_cli(app)
    return app


def _register_jwt_callbacks() -> None:
    def unauthorized(error: errors.Unauthorized):
        return problem(401, code=error.code, title="Unauthorized", detail=error.detail,
                       headers={"WWW-Authenticate": "Bearer"})

    jwt.token_in_blocklist_loader(lambda _header, payload: is_token_revoked(payload))
    jwt.unauthorized_loader(lambda reason: unauthorized(errors.TokenMissing()))
    def invalid_token(reason: str):
        # The decoder's reason ("Invalid header string: 'utf-8' codec can't decode...")
        # is for the log, not for the client.
        log.info("invalid token refused", extra={"reason": reason[:500]})
        return unauthorized(errors.TokenInvalid())

    jwt.invalid_token_loader(invalid_token)
    jwt.expired_token_loader(lambda _h, _p: unauthorized(errors.TokenExpired()))
    jwt.revoked_token_loader(lambda _h, _p: unauthorized(errors.TokenRevoked("The token has been revoked")))


# CORS (CORS_ORIGINS): what a browser script on an allowed origin may send and read.
CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-None-Match", "Admission-Token",
                      "X-Request-ID"]
CORS_EXPOSE_HEADERS = ["X-Pagination", "ETag", "Location", "X-Request-ID", "Idempotent-Replayed", "Retry-After"]


def _enable_cors(app: Flask, settings: Settings) -> None:
    """CORS for the origins in ``CORS_ORIGINS`` only (none by default), preflight
    included; other origins get no CORS headers, so browsers keep them out."""
    if not settings.cors_origins:
        return
    cors.init_app(
        app,
        resources={r"/api/*": {}, r"/openapi.json": {}, r"/graphql": {}},
        origins=list(settings.cors_origins),
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        supports_credentials=False,  # Bearer tokens, no cookies
        max_age=600,
    )

    @app.after_request
    def vary_by_origin(response):
        # Answers differ by Origin (CORS headers or none) even with one allowed origin,
        # where flask-cors leaves Vary out: shared caches must keep them apart.
        response.vary.add("Origin")
        return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.DomainError)
    def on_domain_error(err: errors.DomainError):
        return domain_error_response(err)

    def dependency_unavailable(what: str, err: Exception):
        log.error("%s unavailable", what, exc_info=err)
        return problem(503, code="dependency_unavailable",
                       detail="A backing service is unavailable; try again shortly", headers={"Retry-After": "5"})

    @app.errorhandler(redis.RedisError)
    def on_redis_down(err):
        return dependency_unavailable("redis", err)

    @app.errorhandler(OperationalError)
    def on_database_down(err):
        db.session.rollback()
        return dependency_unavailable("database", err)

    @app.errorhandler(IntegrityError)
    def on_integrity_error(err):
        # Services map the constraints they expect; this is the safety net for
        # one they did not: a conflict with the current state, never a 500.
        db.session.rollback()
        log.warning("unmapped integrity error", exc_info=err)
        return problem(409, code="conflict", detail="The change conflicts with the current state of the data")

    @app.errorhandler(DBAPIError)
    def on_database_error(err):
        db.session.rollback()
        log.exception("database error", exc_info=err)
        return problem(500, detail="An unexpected error occurred; it has been logged")

    @app.errorhandler(Exception)
    def on_unexpected(err):
        # HTTPExceptions never get here: flask-smorest's handler for them is more specific.
        log.exception("unhandled error", exc_info=err)
        return problem(500, detail="An unexpected error occurred; it has been logged")


# Past this, an unread request body is left unread (gunicorn then closes the connection).
# Above the proxy's max_body_bytes (10 MiB), so whatever the proxy forwards is read.
UNREAD_BODY_LIMIT = 16 * 1024 * 1024


def _read_rest_of_body() -> None:
    """Read (and drop) what is left of the request body before answering.

    An answer given before the body was read (401 before parsing, 413 past
    MAX_CONTENT_LENGTH, 404, 415...) otherwise leaves it on the connection: gunicorn
    then closes that connection while the proxy is still sending the body, and the
    client gets the proxy's 502 instead of this answer."""
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    left = UNREAD_BODY_LIMIT
    try:
        while left > 0:
            chunk = stream.read(min(64 * 1024, left))
            if not chunk:
                return
            left -= len(chunk)
    except (OSError, ValueError) as exc:  # the client went away: nothing to answer anyway
        log.info("request body unreadable", extra={"reason": str(exc)[:200]})


def _register_request_hooks(app: Flask) -> None:
    @app.before_request
    def start():
        g.request_id = accept_or_create_request_id(request.headers.get("X-Request-ID"))
        g.request_token = request_id_var.set(g.request_id)
        g.address_token = client_address_var.set(client_address)
        g.started = time.perf_counter()

    @app.after_request
    def finish(response):
        _read_rest_of_body()
        elapsed = time.perf_counter() - getattr(g, "started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        LATENCY.labels(request.method, route).observe(elapsed)
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        if response.status_code == 204:
            # No content, so no content type either (Werkzeug drops the length).
            response.headers.pop("Content-Type", None)
            response.set_data(b"")
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
        address_token = g.pop("address_token", None)
        if address_token is not None:
            client_address_var.reset(address_token)
