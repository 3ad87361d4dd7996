"""Routes and pools as configured: path patterns (``*`` one segment, a final ``**`` the
rest, the query string no part), the first matching route wins, and a configuration that
cannot work is refused at load with a message that names what is wrong."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from proxy.config import BackendSpec, ConfigError, load
from proxy.pools import Router
from proxy.routes import Route, path_segments
from tests.proxy.conftest import EVENTS, ROOT, write_pools

APP, LIVE = "127.0.0.1:8001,127.0.0.1:8002", "127.0.0.1:8004"


def matches(pattern: str, target: bytes) -> bool:
    return Route(pattern, "p").matches(path_segments(target))


@pytest.mark.parametrize("target, expected", [
    (b"/api/v1/showtimes/12/seats/events", True),
    (b"/api/v1/showtimes/12/seats/events?since=1-0&x=/a/b", True),  # the query plays no part
    (b"/api/v1/showtimes/12/seats/events#frag", True),
    (b"/api/v1/showtimes/12/seats", False),
    (b"/api/v1/showtimes/12/seats/events/", False),
    (b"/api/v1/showtimes/12/seats/events/more", False),
    (b"/api/v1/showtimes/1/2/seats/events", False),  # * is one segment
    (b"/api/v1/showtimes//seats/events", False),  # ... never an empty one
    (b"/api/v1/showtimes/../seats/events", False),  # ... nor . or ..
    (b"/api/v1/showtimes/./seats/events", False),
    (b"/API/v1/showtimes/12/seats/events", False),  # paths are case-sensitive
    (b"/whoami?next=/api/v1/showtimes/12/seats/events", False),
    (b"*", False),
])
def test_a_star_is_one_segment_of_the_path_without_its_query(target, expected):
    assert matches(EVENTS, target) is expected


def test_a_final_double_star_is_any_rest():
    assert all(matches("/admin/**", t) for t in (b"/admin", b"/admin/", b"/admin/a/b/c?q=1"))
    assert not matches("/admin/**", b"/administration")
    assert matches("/**", b"/") and matches("/**", b"/anything/at/all")
    assert matches("/", b"/") and not matches("/", b"/a")


def test_the_first_matching_route_wins_and_the_rest_go_to_the_default_pool(tmp_path):
    routes = (("/api/v1/showtimes/1/seats/events", "app"), (EVENTS, "live"), ("/api/v1/showtimes/2/**", "app"))
    router = Router(load(str(write_pools(tmp_path / "p.toml", APP, LIVE, routes)), environ={}))
    assert router.route(b"/api/v1/showtimes/1/seats/events").name == "app"  # before the * route
    assert router.route(b"/api/v1/showtimes/2/seats/events").name == "live"  # the ** route comes after
    assert router.route(b"/api/v1/showtimes/2/seats").name == "app"
    assert router.route(b"/nowhere/in/particular").name == "app"  # the default pool


@pytest.mark.parametrize("pattern, why", [
    ("api/v1/x", "must start with /"),
    ("/api/v1/show*", "* stands alone"),
    ("/api/**/x", "* stands alone"),
    ("/api//x", "empty, . or .. segment"),
    ("/api/../x", "empty, . or .. segment"),
    ("/api/x?since=1", "printable ASCII only"),
    ("/api/x y", "printable ASCII only"),
    ("/api/caf\u00e9", "printable ASCII only"),
    ("/api/(a|b)", None),  # no regular expressions: parentheses are plain characters
])
def test_a_route_pattern_that_is_not_one_is_refused_at_load(tmp_path, pattern, why):
    path = write_pools(tmp_path / "p.toml", APP, LIVE, routes=((pattern, "live"),))
    if why is None:
        assert not load(str(path), environ={}).routes[0].matches(path_segments(b"/api/a"))
        return
    with pytest.raises(ConfigError, match="route path.*" + re.escape(why)):
        load(str(path), environ={})


@pytest.mark.parametrize("change, message", [
    ({"routes": ((EVENTS, "nowhere"),)}, "route /api/v1/showtimes/\\*/seats/events: no pool named 'nowhere'"),
    ({"live": ""}, "pool live: no backends"),
    ({"live": "127.0.0.1:8002"}, "backend 127.0.0.1:8002 is in pools app and live"),
    ({"live_pool": {"strategy": "random"}}, "pool live: strategy must be one of"),
    ({"live_pool": {"read_timeout": -1}}, "pool live: read_timeout must not be negative"),
    ({"live_pool": {"health_path": "health"}}, "pool live: health_path must start with /"),
    ({"live_pool": {"listen_port": 1}}, "pool live: unknown settings: listen_port"),
    ({"live_pool": {"read_timeout": "soon"}}, "pool live: read_timeout: 'soon' is not a valid float"),
    ({"strategy": "random"}, "^strategy must be one of"),  # a top-level value is named as such
])
def test_a_configuration_that_cannot_work_is_refused_with_its_reason(tmp_path, change, message):
    args = {"app": APP, "live": LIVE, **change}
    path = write_pools(tmp_path / "p.toml", args.pop("app"), args.pop("live"), **args)
    with pytest.raises(ConfigError, match=message):
        load(str(path), environ={})


def test_pools_that_cannot_be_told_apart_are_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('default_pool = "app"\n[pools.live]\nbackends = ["h:1"]\n')
    with pytest.raises(ConfigError, match="default_pool: no pool named 'app'"):
        load(str(path), environ={})
    path.write_text('default_pool = "app"\nbackends = ["h:1"]\n[pools.app]\nbackends = ["h:2"]\n')
    with pytest.raises(ConfigError, match=r"backends is set at the top level and in \[pools.app\]"):
        load(str(path), environ={})
    path.write_text('pools = ["a"]\n')
    with pytest.raises(ConfigError, match="pools: expected tables"):
        load(str(path), environ={})
    path.write_text('backends = ["h:1"]\n[[routes]]\npath = "/x"\npool = "default"\nweight = 2\n')
    with pytest.raises(ConfigError, match="expected path .* and pool .*, nothing else"):
        load(str(path), environ={})
    path.write_text('backends = ["h:1"]\n[[routes]]\npath = "/x"\npool = "live"\n')  # the flat form too
    with pytest.raises(ConfigError, match="no pool named 'live'"):
        load(str(path), environ={})


def test_pools_inherit_the_top_level_settings_and_the_environment_but_for_their_own(tmp_path):
    path = write_pools(tmp_path / "p.toml", APP, LIVE, live_pool={"read_timeout": 15, "strategy": "round_robin"},
                       strategy="least_connections", health_interval=5)
    config = load(str(path), environ={"PROXY_READ_TIMEOUT": "7", "PROXY_HEALTH_TIMEOUT": "0.5"})
    app, live = config.pool("app"), config.pool("live")
    assert (app.strategy, app.read_timeout, app.health_interval, app.health_timeout) == ("least_connections", 7, 5, 0.5)
    assert (live.strategy, live.read_timeout, live.health_interval, live.health_timeout) == ("round_robin", 15, 5, 0.5)
    assert [b.name for b in config.backends] == APP.split(",")  # the default pool's, as before pools


def test_proxy_backends_replaces_the_default_pools_backends(tmp_path):
    path = write_pools(tmp_path / "p.toml", APP, LIVE)
    config = load(str(path), environ={"PROXY_BACKENDS": "10.0.0.9:80=3"})
    assert config.pool("app").backends == (BackendSpec("10.0.0.9", 80, 3),)
    assert [b.name for b in config.pool("live").backends] == [LIVE]
    flat = load(environ={"PROXY_BACKENDS": "10.0.0.9:80"})  # no file: one pool, "default"
    assert [pool.name for pool in flat.pools] == ["default"] and flat.routes == ()


def test_the_stacks_file_sends_event_streams_and_queue_status_to_the_live_process_and_the_rest_to_the_app():
    config = load(str(ROOT / "scripts" / "proxy.toml"), environ={})
    router = Router(config)
    assert router.route(b"/api/v1/showtimes/42/seats/events?since=1-0").name == "live"
    assert router.route(b"/api/v1/showtimes/42/seats").name == "app"
    assert router.route(b"/api/v1/showtimes/42/queue/status").name == "live"  # waiting costs the app nothing
    assert router.route(b"/api/v1/showtimes/42/queue").name == "app"  # joining is the app's
    live, app = config.pool("live"), config.pool("app")
    assert [b.name for b in live.backends] == ["127.0.0.1:8004"] and live.health_path == "/health"
    assert [b.name for b in app.backends] == ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]
    assert app.strategy == "least_connections"
    assert live.stream_idle_timeout > 15  # the live process's heartbeats come at least every 15 s


def test_the_proxy_does_not_start_on_a_configuration_that_cannot_work(tmp_path):
    path = write_pools(tmp_path / "p.toml", APP, LIVE, routes=((EVENTS, "nowhere"),))
    started = subprocess.run([sys.executable, "-m", "proxy", "--config", str(path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    assert started.returncode == 2
    assert "no pool named 'nowhere'" in started.stderr
