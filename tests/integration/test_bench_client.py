"""The benchmarks' asyncio client (loadtests/client.py) against a real gunicorn: it
keeps connections alive, reads bodies whole (sized or chunked) and counts errors."""
import asyncio
from urllib.parse import urlparse

from loadtests.client import Connection, getter, run_clients


def test_it_counts_requests_and_errors_over_keep_alive_connections(live_server):
    ok = run_clients(live_server, getter(lambda: "/health"), 4, 0.5)
    assert len(ok.latencies) > 4 and ok.errors == 0 and ok.rate > 0
    missing = run_clients(live_server, getter(lambda: "/api/v1/no-such-thing"), 2, 0.3)
    assert missing.errors == len(missing.latencies) > 0


def test_it_sends_bodies_and_reads_whole_answers(live_server):
    url = urlparse(live_server)

    async def exchange():
        async with Connection(url.hostname, url.port) as conn:
            refused = await conn.request("POST", "/api/v1/showtimes/1/holds", {}, {"quantity": 1})
            listed = await conn.request("GET", "/api/v1/movies?page_size=100")
            again = await conn.request("GET", "/health")  # the same connection, still in step
            return refused, listed, again

    refused, listed, again = asyncio.run(exchange())
    assert refused.status == 401 and refused.json()["code"] == "token_missing"
    assert listed.status == 200 and isinstance(listed.json(), list)
    assert again.status == 200 and again.json() == {"status": "ok"}
