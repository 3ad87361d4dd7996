"""The database session and the unit of work, without Flask.

``session`` is a thread-scoped SQLAlchemy session: each thread (a request, the
worker's message loop, a scheduler job) has its own, on the engine of the
dependencies current there (``app.bootstrap.marquee()``). Whoever owns the thread ends it with
``session.remove()`` (the web app at the end of each app context, the worker
after each message, the scheduler after each job).

Every service that writes does so inside ``unit_of_work()``: one commit at the
end, a rollback on any error, and nothing left half-done.
"""
from __future__ import annotations

import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import MetaData, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker

# Deterministic constraint names, so migrations can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


_engine_source: Callable[[], object] | None = None


def set_engine_source(source: Callable[[], object]) -> None:
    """Where sessions find their engine: the current process's dependencies
    (``app.bootstrap`` registers it), so two apps in one process (the tests'
    app and one pointed at a dead server, say) never share a database."""
    global _engine_source
    _engine_source = source


class _Session(Session):
    def get_bind(self, mapper=None, clause=None, **kw):
        if _engine_source is None:
            raise RuntimeError("no database engine: app.bootstrap has not run")
        return _engine_source()


session: scoped_session[Session] = scoped_session(sessionmaker(class_=_Session))


_DEPTH = "marquee.uow_depth"


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction: commit once when the block ends, roll back (and re-raise)
    if anything in it raises, a domain error included.

    A block that only reads commits too: that ends the read transaction (and
    releases its row locks) before whatever follows, such as a gateway call.
    Inside another unit of work, a block is a savepoint: its failure undoes its
    own writes only, and only the outermost block commits.
    """
    current = session()
    depth = current.info.get(_DEPTH, 0)
    current.info[_DEPTH] = depth + 1
    try:
        if depth:
            with current.begin_nested():
                yield current
        else:
            try:
                yield current
                current.commit()
            except BaseException:
                current.rollback()
                raise
    finally:
        current.info[_DEPTH] = depth


def alone(statement, params: dict | None = None) -> list:
    """Run one statement as a transaction of its own, in one round trip, outside any
    unit of work; returns the rows it returns (``[]`` for one that returns none).

    A transaction costs psycopg2 two round trips besides its statements (BEGIN, sent
    before the first, and COMMIT): a single read or a single write, which PostgreSQL
    makes atomic by itself, pays three where one will do, and the worker's charges and
    emails, waiting on a busy server, felt each. The pooled connection is switched to
    autocommit for the statement (psycopg2 keeps that setting on the client: nothing is
    sent) and back before it returns to the pool. Not for a statement that must see, or
    be undone with, the caller's unit of work: it runs on a connection of its own."""
    if _engine_source is None:
        raise RuntimeError("no database engine: app.bootstrap has not run")
    with _engine_source().connect() as connection:
        raw = connection.connection.dbapi_connection
        raw.autocommit = True
        try:
            result = connection.execute(statement, params or {})
            return result.all() if result.returns_rows else []
        finally:
            if not raw.closed:  # a connection lost meanwhile is discarded by the pool anyway
                raw.autocommit = False


_TRY_XACT_LOCK = text("SELECT pg_try_advisory_xact_lock(:k)")
_XACT_LOCKS = {  # (shared, with a second key): the statement
    (False, False): text("SELECT pg_advisory_xact_lock(:k)"),
    (False, True): text("SELECT pg_advisory_xact_lock(:k, :s)"),
    (True, False): text("SELECT pg_advisory_xact_lock_shared(:k)"),
    (True, True): text("SELECT pg_advisory_xact_lock_shared(:k, :s)"),
}


def try_xact_lock(key: int) -> bool:
    """A transaction-scoped PostgreSQL advisory lock, if free: one process acts
    at a time, and a crashed one lets go with its connection."""
    return bool(session.execute(_TRY_XACT_LOCK, {"k": key}).scalar())


_NO_BITMAP_SCANS = text("SET LOCAL enable_bitmapscan = off")


def index_scans_only() -> None:
    """Until the end of the transaction, no bitmap scans: for a job that reads a partial
    index of rows waiting for it (unpublished, unpaid) again and again. A row that leaves
    that state leaves its entry in the index until VACUUM; an index scan marks such entries
    dead as it passes, so later scans skip them, where a bitmap scan reads them all, every
    run, and the planner picks it for the few rows it expects (the outbox relay: 12,890
    dead entries and 624 heap pages a run to find nothing, 1.5 ms and growing, then 0.03 ms)."""
    session.execute(_NO_BITMAP_SCANS)


def xact_lock(key: int, sub: int | None = None, *, shared: bool = False) -> None:
    """Wait for a transaction-scoped PostgreSQL advisory lock (``key``, or the pair ``key``,
    ``sub``: one of a kind of thing, such as one showtime; ``sub`` is an int4, so ids 2^31
    apart share a lock, harmlessly); ``shared``: with other shared holders, against the
    exclusive one. It is let go at the end of the transaction. The two-key form never meets
    the one-key one."""
    if sub is None:
        session.execute(_XACT_LOCKS[shared, False], {"k": key})
    else:
        session.execute(_XACT_LOCKS[shared, True], {"k": key, "s": sub % 2**31})


@contextmanager
def scoped() -> Iterator[None]:
    """For a thread that owns its work (a job, a message): the session it used is
    closed and forgotten at the end, whatever happened."""
    try:
        yield
    finally:
        session.remove()


def replace_closed_connections(engine) -> None:
    """Before a transaction, give up a pooled connection that the server closed while it
    sat in the pool (a restart, ``pg_terminate_backend``, an idle timeout): the pool opens
    another instead (SQLAlchemy's checkout event and ``DisconnectionError``), so no request
    meets the dead one. What ``pool_pre_ping`` did with a ``SELECT 1`` round trip before
    every transaction (about 19 a checkout across the processes; 115 µs of client CPU and
    260 µs of wall time each, measured here), this does with a poll of the socket: a server
    that ends a session says so (its FATAL message, then end of file), and an idle
    connection is otherwise never sent anything (nothing LISTENs on the pool's), so a
    readable socket means a connection to drop. A server gone without a word (a host lost
    from the network) shows on first use, as it would with a ping, and SQLAlchemy then
    replaces the connection. ``poll``, not ``select``: the live process holds thousands of
    sockets, and ``select`` refuses a descriptor above 1023."""
    @event.listens_for(engine, "checkout")
    def _closed_while_idle(dbapi_connection, _record, _proxy) -> None:
        if dbapi_connection.closed:
            raise DisconnectionError("this pooled connection was closed")
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        if poller.poll(0):
            raise DisconnectionError("the server closed this pooled connection while it was idle")
