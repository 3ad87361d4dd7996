"""Revocations and cache generations are mirrored in each process and pushed by Redis
(app/adapters/pushed.py): a logout takes effect at once everywhere, a read after a
write never sees what the write replaced, and a mirror that lost its subscription
asks Redis until it has loaded again. Two dependency sets (``bootstrap.build``) stand
for two app processes: each has its own Redis connections and its own mirrors."""
from __future__ import annotations

import concurrent.futures
import time
import uuid

import pytest
import redis
import requests
from redis._parsers import _HiredisParser, _RESP3Parser

from app import bootstrap
from app.adapters.pushed import _buffered
from app.services import auth
from tests.helpers import wait_until


def _claims(seconds: int = 900) -> dict:
    return {"jti": uuid.uuid4().hex, "fam": uuid.uuid4().hex, "exp": time.time() + seconds, "sub": "7"}


def _revoked(deps, claims) -> bool:
    with bootstrap.using(deps):
        return auth.is_token_revoked(claims)


def test_a_logout_is_known_at_once_by_every_process(processes):
    here, there = processes
    for _ in range(300):  # no pause between the logout and the check: the race itself
        claims = _claims()
        assert not _revoked(there, claims)
        with bootstrap.using(here):
            auth.logout(claims)
        assert _revoked(there, claims)
        assert _revoked(there, {**claims, "jti": uuid.uuid4().hex})  # the whole session ended
    # ...and it was the mirror that knew, not Redis asked again.
    assert there.revocations.reloads == 1 and there.revocations.lookup(["x"]) == [None]


def test_many_checking_threads_see_a_logout_at_once(processes):
    here, there = processes
    claims = [_claims() for _ in range(1000)]  # without `delivered`, some were missed in every run

    def logout_then_check(c):
        with bootstrap.using(here):
            auth.logout(c)
        return _revoked(there, c)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(logout_then_check, claims))


def test_a_revocation_ends_with_the_token_it_revoked(processes):
    here, there = processes
    claims = _claims(seconds=1)
    with bootstrap.using(here):
        auth.logout(claims)
    assert _revoked(there, claims)
    assert wait_until(lambda: not _revoked(there, {**claims, "fam": None}), timeout=5)


def test_a_reused_refresh_token_revokes_its_family_everywhere_at_once(processes, app):
    """100 rounds: without the delivery barrier the other process missed some."""
    here, there = processes
    for _ in range(100):
        family, first, second = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
        with bootstrap.using(here):
            settings = here.settings
            family_key = here.redis.key("auth", "fam", family)
            here.redis.client.set(family_key, second)  # `first` was rotated already
            keys = [family_key, here.redis.key("auth", "famrev", family), auth._revocations_key(),
                    auth._cutoff_key(7)]
            args = [first, uuid.uuid4().hex, settings.refresh_token_seconds, settings.access_token_seconds,
                    here.revocations.channel, int(time.time() * 1_000_000)]
            assert int(here.rotate_refresh(keys=keys, args=args)) == -1  # theft detected
            here.revocations.delivered()  # the barrier auth.rotate_refresh_token passes before answering
        assert _revoked(there, {"jti": uuid.uuid4().hex, "fam": family})


def test_a_new_process_loads_the_revocations_made_before_it(processes, app):
    here, _there = processes
    claims = _claims()
    with bootstrap.using(here):
        auth.logout(claims)
    newcomer = bootstrap.build(app.extensions["marquee"].settings)
    try:
        assert _revoked(newcomer, claims)  # before its mirror: Redis
        assert wait_until(lambda: newcomer.revocations.lookup(["x"]) is not None, timeout=5)
        assert _revoked(newcomer, claims)  # its mirror, loaded
    finally:
        newcomer.revocations.close()
        newcomer.engine.dispose()


def _kill_subscription(deps, state) -> None:
    """Redis ends the mirror's subscription (as when Redis restarts or a network cuts it)."""
    host, port = state._pubsub.connection._sock.getsockname()[:2]
    assert deps.redis.client.client_kill(f"{host}:{port}")


def test_a_lost_subscription_asks_redis_and_then_loads_again(processes):
    here, there = processes
    _kill_subscription(there, there.revocations)
    claims = _claims()
    with bootstrap.using(here):
        auth.logout(claims)  # while `there` is not subscribed: only Redis knows
    assert _revoked(there, claims)
    assert wait_until(lambda: there.revocations.lookup(["x"]) is not None, timeout=5)
    assert there.revocations.reloads == 2 and _revoked(there, claims)


def test_a_cached_read_after_a_write_elsewhere_sees_the_write(processes):
    here, there = processes
    for n in range(200):
        here.cache.invalidate("movies")  # a write in one process, after its commit
        assert there.cache.get_or_compute(["movies"], "count", "p", lambda n=n: n, local=True) == n


def test_deleted_keys_make_every_mirror_load_again(processes):
    here, there = processes
    there.cache.get_or_compute(["movies"], "count", "p", lambda: "before", local=True)
    here.redis.delete_prefixed()  # the tests between cases; maintenance
    assert there.cache.get_or_compute(["movies"], "count", "p", lambda: "after", local=True) == "after"


def test_logout_through_gunicorn_is_refused_by_every_worker_at_once(live_server):
    """Two gunicorn worker processes, each with its mirror: right after the logout, new
    connections (spread over both workers) all get 401 token_revoked."""
    email = f"mirror-{uuid.uuid4().hex[:8]}@test.example"
    requests.post(live_server + "/api/v1/auth/register",
                  json={"email": email, "password": "correct horse battery", "name": "M"}, timeout=10)
    tokens = requests.post(live_server + "/api/v1/auth/login",
                           json={"email": email, "password": "correct horse battery"}, timeout=10).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for _ in range(20):  # both workers have seen the token, and subscribed
        assert requests.get(live_server + "/api/v1/users/me", headers=headers, timeout=10).status_code == 200
    assert requests.post(live_server + "/api/v1/auth/logout", headers=headers, timeout=10).status_code == 204
    answers = [requests.get(live_server + "/api/v1/users/me", headers=headers, timeout=10) for _ in range(40)]
    assert {(r.status_code, r.json()["code"]) for r in answers} == {(401, "token_revoked")}


def test_the_app_s_redis_clients_parse_with_hiredis(processes):
    """hiredis (C) parses Redis's answers: redis-py's pure-Python parser cost a hold and
    its release about a fifth of their CPU in the app (loadtests/BENCHMARKS.md, "Cheaper requests")."""
    connection = processes[0].redis.client.connection_pool.make_connection()
    assert isinstance(connection._parser, _HiredisParser)


@pytest.mark.parametrize("parser_class", [_HiredisParser, _RESP3Parser], ids=["hiredis", "python"])
def test_a_message_read_from_the_socket_but_not_parsed_is_seen_as_news(processes, parser_class):
    """Two announcements arrive in one read: after the first is taken, the second sits in
    redis-py's parser, not in the socket, and polling the socket would miss it. ``_buffered``
    knows both parsers' buffers (an AttributeError here, with hiredis, was a 500 per request)."""
    deps = processes[0]
    client = redis.Redis(connection_pool=redis.ConnectionPool(
        **{**deps.redis.client.connection_pool.connection_kwargs, "parser_class": parser_class}))
    pubsub, channel = client.pubsub(), f"{deps.redis.prefix}buffered-{uuid.uuid4().hex}"
    try:
        pubsub.subscribe(channel)
        assert pubsub.get_message(timeout=2.0)["type"] == "subscribe"
        parser = pubsub.connection._parser
        assert isinstance(parser, parser_class) and not _buffered(parser)
        with client.pipeline(transaction=True) as pipe:  # both written out in one turn of Redis's loop
            pipe.publish(channel, "first").publish(channel, "second")
            pipe.execute()
        assert pubsub.get_message(timeout=2.0)["data"] == b"first"
        assert _buffered(parser)  # "second" came with it
        assert pubsub.get_message(timeout=0)["data"] == b"second"
        assert not _buffered(parser)
    finally:
        pubsub.close()
        client.close()
