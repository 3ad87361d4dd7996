"""Fixtures of the integration tests that need RabbitMQ."""
import uuid
from dataclasses import replace

import pytest

from app.adapters.broker import Topology, connect


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
