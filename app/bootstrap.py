"""The one place that builds a process's dependencies, without Flask.

:func:`build` reads the settings and builds the database engine and the
adapters (Redis, cache, seat store, payment gateway, mailer, SMS and push, broker topology,
token minter, idempotency records); services reach them through
:func:`marquee`. Entry points:

- the worker, the scheduler and the load tools call :func:`bootstrap`, which
  builds them and makes them the process's own;
- the web app (``app.web.create_app``) builds them for its app and makes them
  current inside each of its app contexts (:func:`using`), so a second app in
  one process (the tests make some) never changes what the first one uses.

Tests swap an adapter by assigning to the object (``marquee().mailer = ...``).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from app import db
from app.adapters import tracing
from app.adapters.broker import Publisher, Topology
from app.adapters.cache import Cache
from app.adapters.idempotency import IdempotencyStore
from app.adapters.mailer import Mailer
from app.adapters.messaging import PushSender, SmsSender, push_sender, sms_sender
from app.adapters.passwords import PasswordHasher
from app.adapters.payments import PaymentGateway, TestGateway
from app.adapters.pushed import PushedState
from app.adapters.redis_store import RedisStore
from app.adapters.seat_store import SeatStore
from app.adapters.templates import Templates
from app.adapters.tokens import AdmissionTokens, TokenMinter, live_revocations
from app.adapters.waiting_room_store import WaitingRoomStore
from app.config import JWT_ALGORITHM, Settings
from app.logging_setup import configure_logging


@dataclass
class Marquee:
    """What the services need from the outside world, built once per process."""

    settings: Settings
    engine: Engine
    redis: RedisStore
    cache: Cache
    passwords: PasswordHasher
    seats: SeatStore
    waiting_rooms: WaitingRoomStore
    admissions: AdmissionTokens
    gateway: PaymentGateway
    mailer: Mailer
    sms: SmsSender
    push: PushSender
    templates: Templates
    tokens: TokenMinter
    idempotency: IdempotencyStore
    revocations: PushedState
    count_failure: object
    rotate_refresh: object
    cut_sessions: object

    @property
    def topology(self) -> Topology:
        """The broker's names (queues, exchange, delay tiers) under this process's prefix."""
        return Topology(self.settings.amqp_prefix, self.settings.retry_delays_ms)

    def publisher(self) -> Publisher:
        """A new publisher with confirms; its owner closes it."""
        return Publisher(self.settings.amqp_url, self.topology)


_process: Marquee | None = None
_context: ContextVar[tuple[Marquee, ...]] = ContextVar("marquee_dependencies", default=())


def build(settings: Settings | None = None) -> Marquee:
    """The dependencies described by ``settings`` (the environment's by default)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    store = RedisStore(settings.redis_url, settings.redis_prefix)
    engine = create_engine(settings.database_url, **settings.engine_options())
    db.replace_closed_connections(engine)
    tracing.instrument_engine(engine)  # when the process set tracing up (app.adapters.tracing)
    return Marquee(
        settings=settings,
        engine=engine,
        redis=store,
        cache=Cache(store, settings.cache_ttl_seconds),
        passwords=PasswordHasher(
            settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
        ),
        seats=SeatStore(store),
        waiting_rooms=WaitingRoomStore(store),
        # a key of their own: an admission is never an access token, nor the reverse
        admissions=AdmissionTokens(hashlib.sha256(b"marquee admission tokens:" + settings.jwt_secret_key.encode())
                                   .hexdigest(), JWT_ALGORITHM),
        gateway=TestGateway(store),
        mailer=Mailer(settings.smtp_host, settings.smtp_port, starttls=settings.smtp_starttls,
                      username=settings.smtp_username, password=settings.smtp_password,
                      sender=settings.mail_from),
        sms=sms_sender(settings.sms_provider, settings.sms_sink_dir),
        push=push_sender(settings.push_provider, settings.push_sink_dir),
        templates=Templates(),
        tokens=TokenMinter(settings.jwt_secret_key, JWT_ALGORITHM, settings.access_token_seconds,
                           settings.refresh_token_seconds),
        idempotency=IdempotencyStore(store, settings.idempotency_ttl_seconds),
        revocations=PushedState(store, "revoked", live_revocations(store)),
        count_failure=store.script("count_failure"),
        rotate_refresh=store.script("rotate_refresh"),
        cut_sessions=store.script("cut_sessions"),
    )


def bootstrap(settings: Settings | None = None) -> Marquee:
    """Build the dependencies and make them this process's own."""
    global _process
    _process = build(settings)
    return _process


def enter(deps: Marquee) -> None:
    """Make ``deps`` current in this thread (or task) until the matching ``leave``."""
    _context.set(_context.get() + (deps,))


def leave() -> None:
    _context.set(_context.get()[:-1])


@contextmanager
def using(deps: Marquee) -> Iterator[Marquee]:
    """``deps`` are current inside the block, in this thread."""
    enter(deps)
    try:
        yield deps
    finally:
        leave()


def marquee() -> Marquee:
    """The dependencies current here: those entered in this thread, else the process's."""
    stack = _context.get()
    if stack:
        return stack[-1]
    if _process is None:
        raise RuntimeError("no dependencies: call app.bootstrap.bootstrap() (or use the web app)")
    return _process


db.set_engine_source(lambda: marquee().engine)
