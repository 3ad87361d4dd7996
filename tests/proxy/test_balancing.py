"""How the proxy spreads requests: round-robin evenly (and by weight), least-connections
away from a backend that holds slow requests."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests


def _who(url: str, session=None) -> str:
    response = (session or requests).get(url + "/whoami", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["backend"]


def test_round_robin_spreads_evenly_across_three(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), strategy="round_robin")
    with requests.Session() as session:
        seen = Counter(_who(proxy.url, session) for _ in range(30))
    assert seen == {"b1": 10, "b2": 10, "b3": 10}
    status = proxy.status()
    assert status["strategy"] == "round_robin"
    assert [b["requests"] for b in status["backends"]] == [10, 10, 10]


def test_round_robin_honours_weights(live_backends, start_proxy):
    b1, b2, b3 = live_backends
    spec = f"{b1.address}=3,{b2.address}=1,{b3.address}=1"
    proxy = start_proxy(spec, strategy="round_robin")
    with requests.Session() as session:
        seen = Counter(_who(proxy.url, session) for _ in range(50))
    assert seen == {"b1": 30, "b2": 10, "b3": 10}


def test_least_connections_sends_new_requests_away_from_a_busy_backend(live_backends, start_proxy):
    """b1 takes 1.5 s per request, the others answer at once: with least-connections b1
    holds one slow request at a time while the rest go elsewhere; round-robin, blind to
    load, keeps handing b1 a third of them."""

    def run(strategy: str) -> Counter:
        proxy = start_proxy(live_backends.spec(), strategy=strategy)
        url = proxy.url + "/slow?ms=1500&on=b1"

        def one(_):
            response = requests.get(url, timeout=30)
            assert response.status_code == 200
            return response.json()["backend"]

        with ThreadPoolExecutor(6) as pool:
            seen = Counter(pool.map(one, range(30)))
        proxy.stop()
        return seen

    least = run("least_connections")
    assert sum(least.values()) == 30
    assert least["b1"] <= 4, least  # a round-robin share would be 10
    robin = run("round_robin")
    assert robin["b1"] == 10, robin


def test_least_connections_breaks_ties_in_turn(live_backends, start_proxy):
    proxy = start_proxy(live_backends.spec(), strategy="least_connections")
    with requests.Session() as session:
        seen = Counter(_who(proxy.url, session) for _ in range(30))
    assert seen == {"b1": 10, "b2": 10, "b3": 10}
