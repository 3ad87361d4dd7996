"""Fixtures of the integration tests that need RabbitMQ."""
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import event

from app import bootstrap
from app.adapters.broker import Topology, connect
from tests.helpers import wait_until


@pytest.fixture
def broker(app):
    """Queues of this test alone (a unique name prefix), short retry delays; removed afterwards."""
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, amqp_prefix=f"mqtest.{uuid.uuid4().hex[:8]}.",
                           retry_delays_ms=(50, 100, 200), max_delivery_attempts=4)
    topology = Topology(ext.settings.amqp_prefix, ext.settings.retry_delays_ms)
    try:
        yield topology
    finally:
        ext.settings = original
        connection = connect(original.amqp_url)
        topology.delete(connection.channel())
        connection.close()


class _Inbox:
    """Messages a real SMTP server (aiosmtpd) received, parsed."""

    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        from email import message_from_bytes, policy

        self.messages.append(message_from_bytes(envelope.original_content or envelope.content,
                                                policy=policy.default))
        return "250 OK"

    def subjects(self, to=None):
        return [m["Subject"] for m in self.messages if to is None or m["To"] == to]


@pytest.fixture
def smtp(app):
    """A real SMTP server on a free loopback port; the app sends its mail there."""
    import socket

    from aiosmtpd.controller import Controller

    from app.adapters.mailer import Mailer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = _Inbox()
    inbox.port = port
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    ext = app.extensions["marquee"]
    original = ext.mailer
    ext.mailer = Mailer("127.0.0.1", port, starttls=False, username=None, password=None,
                        sender="Marquee <tickets@marquee.test>")
    try:
        yield inbox
    finally:
        ext.mailer = original
        controller.stop()


@pytest.fixture
def processes(app):
    """Two app processes' dependencies (``bootstrap.build``: their own Redis connections
    and mirrors), the mirrors subscribed and loaded."""
    pair = [bootstrap.build(app.extensions["marquee"].settings) for _ in range(2)]
    for deps in pair:
        for state in (deps.revocations, deps.cache.generations):
            assert wait_until(lambda state=state: state.lookup(["warm-up"]) is not None, timeout=5)
    yield pair
    for deps in pair:
        deps.revocations.close()
        deps.cache.generations.close()
        deps.engine.dispose()


@pytest.fixture
def statements(app):
    """Counts the SQL statements sent while the block runs."""
    engine = app.extensions["marquee"].engine
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)
