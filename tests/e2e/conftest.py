"""Fixtures of the end-to-end tests: the real proxy in front of the session's app instance."""
import pytest

from tests.proxy.conftest import Proxy


@pytest.fixture(scope="module")
def proxy(live_server, tmp_path_factory):
    """The proxy with its default limits in front of the session's app instance (one per module)."""
    proxy = Proxy(live_server.removeprefix("http://"), tmp_path_factory.mktemp("proxy"))
    try:
        yield proxy
    finally:
        proxy.stop()
