"""The proxy's settings: one dataclass, read from an optional TOML file and then from
``PROXY_*`` environment variables (the environment wins). Every limit has a default that
suits the local stack; DESIGN.md, "The proxy", says what each one is for.

Backends come in named pools, and ordered routes send a path to a pool::

    default_pool = "app"              # the pool of every path no route matches
    [pools.app]
    backends = ["127.0.0.1:8001", "127.0.0.1:8002"]
    strategy = "least_connections"
    [pools.live]
    backends = ["127.0.0.1:8004"]
    read_timeout = 10                 # any of POOL_SETTINGS; the rest come from the top level
    [[routes]]
    path = "/api/v1/showtimes/*/seats/events"
    pool = "live"

The top-level values of ``POOL_SETTINGS`` (and their ``PROXY_*`` variables) are what every
pool inherits. The flat form of old, top-level ``backends`` (or ``PROXY_BACKENDS``) and no
``[pools]``, is one pool named by ``default_pool`` ("default"); ``PROXY_BACKENDS`` replaces
the default pool's backends whatever the file says.

Pools and routes are the part that can change while the proxy runs: SIGHUP or
``POST /reload`` on the admin port re-reads them from the same file and environment; a
configuration that does not load changes nothing.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace

from proxy.routes import PatternError, Route

STRATEGIES = ("round_robin", "least_connections")
# What a pool may set for itself (each one's meaning is at its ProxyConfig field)
POOL_SETTINGS = (
    "strategy", "health_path", "health_interval", "health_timeout", "health_rise", "health_fall",
    "passive_failures", "slow_start", "panic_threshold", "max_tries", "connect_timeout", "read_timeout",
    "stream_idle_timeout", "max_connections_per_backend", "pool_size", "pool_idle_timeout",
)


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class BackendSpec:
    host: str
    port: int
    weight: int = 1

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> "BackendSpec":
        """``host:port`` or ``host:port=weight``."""
        address, _, weight = text.strip().partition("=")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"backend {text!r}: expected host:port[=weight]")
        return cls(host.strip("[]"), int(port), _weight(weight or "1", text))


def _weight(value, where) -> int:
    try:
        weight = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"backend {where!r}: weight must be an integer") from None
    if not 1 <= weight <= 100:
        raise ConfigError(f"backend {where!r}: weight must be between 1 and 100")
    return weight


@dataclass(frozen=True)
class ProxyConfig:
    # Where it listens
    host: str = "127.0.0.1"
    port: int = 8000
    admin_host: str = "127.0.0.1"
    admin_port: int = 8090
    backends: tuple[BackendSpec, ...] = ()  # the default pool's
    strategy: str = "round_robin"
    default_pool: str = "default"
    pools: tuple["PoolConfig", ...] = ()  # empty: one pool, ``default_pool``, of these settings
    routes: tuple[Route, ...] = ()  # in order; the first whose path matches picks the pool

    # Active health checks (GET health_path on a fresh connection)
    health_path: str = "/health"
    health_interval: float = 2.0
    health_timeout: float = 1.0
    health_rise: int = 2  # consecutive passes to return to rotation
    health_fall: int = 3  # consecutive failures to leave it
    passive_failures: int = 1  # connect errors/timeouts in a row that eject a backend at once
    slow_start: float = 10.0  # seconds over which a returning backend ramps to its full weight
    # below this share of backends passing their checks, use them all (0: never)
    panic_threshold: float = 0.5

    # Retries (on another backend, only where safe)
    max_tries: int = 3
    retry_body_limit: int = 64 * 1024  # an idempotent request's body kept for a retry up to this

    # Limits. The proxy is the layer that refuses, with its problem document: the app's
    # gunicorn (gunicorn.conf.py, LIMIT_REQUEST_*) takes whatever passes these, so no client
    # meets gunicorn's HTML error pages. Raise one here, raise its partner there:
    #   max_request_line (the target as sent): forwarded as "<method> <target> HTTP/1.1",
    #     at most 11 + 1 + 8000 + 9 = 8021 bytes (UNSUBSCRIBE is the longest method the
    #     parser takes) <= limit_request_line, 8190, the most gunicorn allows.
    #   max_header_bytes (each field counted as name + value + 4, as "name: value" CRLF):
    #     one field can fill it, and X-Forwarded-For and Via grow by the hop appended, so
    #     limit_request_field_size is this + 1 KiB.
    #   max_headers: the proxy adds up to 4 (X-Forwarded-For, X-Forwarded-Proto,
    #     X-Request-ID, Via), so limit_request_fields is this + 10.
    max_request_line: int = 8000  # 414 past it
    max_header_bytes: int = 32 * 1024  # 431 past it (request line excluded)
    max_headers: int = 100  # 431 past it
    max_body_bytes: int = 10 * 1024 * 1024  # 413 past it (0: no limit)
    max_connections: int = 20000  # 503 past it
    max_connections_per_backend: int = 0  # requests at one backend at once (0: no limit)
    backlog: int = 2048

    # Timeouts (seconds)
    client_header_timeout: float = 10.0  # to send a whole request head (408 after)
    client_body_timeout: float = 30.0  # between two pieces of a request body
    keepalive_timeout: float = 75.0  # an idle client connection is closed after this
    send_timeout: float = 60.0  # a client that reads nothing of its response for this long
    connect_timeout: float = 3.0  # to a backend (504 after)
    read_timeout: float = 60.0  # between two pieces of a backend's response (504 after)
    # A stream (a text/event-stream response) is exempt from read_timeout: it is closed
    # after this long without a byte (0: never). Keep it above the backends' heartbeat
    # interval (the live process: 15 s at most), or heartbeats will not keep streams open.
    stream_idle_timeout: float = 45.0
    drain_timeout: float = 30.0  # SIGTERM: in-flight requests get this long to finish

    # Upstream keep-alive pool (per backend); keep idle_timeout below the backends' own
    pool_size: int = 64
    pool_idle_timeout: float = 4.0

    access_log: bool = True
    log_level: str = "INFO"
    admin_token: str = ""  # when set, admin writes need "Authorization: Bearer <token>"
    source: str = ""  # the TOML file it came from, re-read on reload

    def __post_init__(self) -> None:
        _check_pool_settings(self)
        if not self.pools:  # the flat form: these settings are the one pool's
            inherited = {key: getattr(self, key) for key in POOL_SETTINGS}
            object.__setattr__(self, "pools", (PoolConfig(self.default_pool, self.backends, **inherited),))
        names = [pool.name for pool in self.pools]
        if self.default_pool not in names:
            raise ConfigError(f"default_pool: no pool named {self.default_pool!r} (pools: {', '.join(names)})")
        if len(set(names)) != len(names):
            raise ConfigError("a pool is defined twice")
        for route in self.routes:
            if route.pool not in names:
                raise ConfigError(f"route {route.path}: no pool named {route.pool!r}")
        _check_backends_in_one_pool(self.pools)
        object.__setattr__(self, "backends", self.pool(self.default_pool).backends)

    def pool(self, name: str) -> "PoolConfig":
        return next(pool for pool in self.pools if pool.name == name)

    def with_routing(self, fresh: "ProxyConfig") -> "ProxyConfig":
        """These settings with ``fresh``'s pools and routes (what a reload changes)."""
        return replace(self, backends=fresh.backends, default_pool=fresh.default_pool,
                       pools=fresh.pools, routes=fresh.routes)


@dataclass(frozen=True)
class PoolConfig:
    """One backend pool: its backends and its own ``POOL_SETTINGS``."""

    name: str
    backends: tuple[BackendSpec, ...]
    strategy: str
    health_path: str
    health_interval: float
    health_timeout: float
    health_rise: int
    health_fall: int
    passive_failures: int
    slow_start: float
    panic_threshold: float
    max_tries: int
    connect_timeout: float
    read_timeout: float
    stream_idle_timeout: float
    max_connections_per_backend: int
    pool_size: int
    pool_idle_timeout: float

    def __post_init__(self) -> None:
        if not self.backends:
            raise ConfigError(f"pool {self.name}: no backends (PROXY_BACKENDS, backends = [...] "
                              f"or [pools.{self.name}] backends in the config file)")
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ConfigError(f"pool {self.name}: a backend is listed twice")
        _check_pool_settings(self, f"pool {self.name}: ")

    def describe(self) -> dict:
        return {"name": self.name, "backends": [b.name for b in self.backends],
                **{key: getattr(self, key) for key in POOL_SETTINGS}}


def _check_pool_settings(settings, where: str = "") -> None:
    """The rules a pool's settings obey, on a pool or on the top-level values pools inherit."""
    if settings.strategy not in STRATEGIES:
        raise ConfigError(f"{where}strategy must be one of {', '.join(STRATEGIES)}")
    if settings.max_tries < 1 or settings.health_rise < 1 or settings.health_fall < 1:
        raise ConfigError(f"{where}max_tries, health_rise and health_fall must be at least 1")
    for name, value in vars(settings).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{where}{name} must not be negative")
    if settings.panic_threshold > 1:
        raise ConfigError(f"{where}panic_threshold is a share: between 0 and 1")
    if not settings.health_path.startswith("/"):
        raise ConfigError(f"{where}health_path must start with /")


def _check_backends_in_one_pool(pools) -> None:
    """A backend is one process: its in-flight count (least-connections, the connection
    limit), its ejection and its drain would be split, and wrong, across two pools."""
    seen: dict[str, str] = {}
    for pool in pools:
        for backend in pool.backends:
            if backend.name in seen:
                raise ConfigError(f"backend {backend.name} is in pools {seen[backend.name]} and {pool.name}: "
                                  "a backend belongs to one pool")
            seen[backend.name] = pool.name


def _coerce(name: str, kind, raw):
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {raw!r} is not a valid {kind.__name__}") from None


_KINDS = {"str": str, "int": int, "float": float, "bool": bool}
_KNOWN = {f.name: f for f in fields(ProxyConfig)}
_STRUCTURED = ("backends", "pools", "routes", "source")  # never from a PROXY_* variable


def load(path: str | None = None, environ=None) -> ProxyConfig:
    """Settings from the TOML file at ``path`` (or ``PROXY_CONFIG``), then ``PROXY_*``."""
    env = os.environ if environ is None else environ
    path = path or env.get("PROXY_CONFIG") or ""
    values: dict = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        values.update(data)
    for name in _KNOWN:
        key = "PROXY_" + name.upper()
        if name not in _STRUCTURED and key in env:
            values[name] = env[key]
    tables, routes = values.pop("pools", {}), values.pop("routes", [])
    file_backends, env_backends = values.pop("backends", None), env.get("PROXY_BACKENDS")
    values = _coerced(values, "")
    values["source"] = path
    if not tables:  # the flat form
        return ProxyConfig(**values, backends=_backends(file_backends, env_backends), routes=_routes(routes))
    inherited = {key: values.get(key, _KNOWN[key].default) for key in POOL_SETTINGS}
    _check_pool_settings(SimpleNamespace(**inherited))  # a bad top-level value is named as such
    default = values.get("default_pool", _KNOWN["default_pool"].default)
    pools = _pools(tables, inherited, default, file_backends, env_backends)
    return ProxyConfig(**values, pools=pools, routes=_routes(routes))


def _coerced(values: dict, where: str) -> dict:
    unknown = set(values) - set(_KNOWN) - set(_STRUCTURED)
    if unknown:
        raise ConfigError(f"{where}unknown settings: {', '.join(sorted(unknown))}")
    return {name: _coerce(where + name, _KINDS[_KNOWN[name].type], value) for name, value in values.items()}


def _pools(tables, inherited: dict, default: str, file_backends, env_backends) -> tuple:
    """``[pools.<name>]`` tables as pools; top-level or PROXY_BACKENDS backends are the default pool's."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError("pools: expected tables, [pools.<name>] with backends = [...]")
    if file_backends is not None and default in tables:
        raise ConfigError(f"backends is set at the top level and in [pools.{default}]: set it in one place")
    if default not in tables and (file_backends is not None or env_backends):
        tables = {default: {}, **tables}  # the default pool first, as status lists them
    pools = []
    for name, table in tables.items():
        own = dict(table)
        listed = own.pop("backends", None)
        unknown = set(own) - set(POOL_SETTINGS)
        if unknown:
            raise ConfigError(f"pool {name}: unknown settings: {', '.join(sorted(unknown))}")
        if name == default:
            listed, env = (listed if listed is not None else file_backends), env_backends
        else:
            env = None
        settings = {**inherited, **_coerced(own, f"pool {name}: ")}
        pools.append(PoolConfig(name, _backends(listed, env), **settings))
    return tuple(pools)


def _routes(items) -> tuple[Route, ...]:
    if not isinstance(items, list):
        raise ConfigError("routes: expected [[routes]] tables with path and pool")
    routes = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"path", "pool"} or not isinstance(item["pool"], str):
            raise ConfigError(f"route {item!r}: expected path = \"/...\" and pool = \"<name>\", nothing else")
        try:
            routes.append(Route(item["path"], item["pool"]))
        except PatternError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(routes)


def _backends(from_file, from_env) -> tuple[BackendSpec, ...]:
    if from_env:
        return tuple(BackendSpec.parse(item) for item in from_env.split(",") if item.strip())
    specs = []
    for item in from_file or ():
        if isinstance(item, str):
            specs.append(BackendSpec.parse(item))
        elif isinstance(item, dict) and "address" in item:
            spec = BackendSpec.parse(item["address"])
            specs.append(BackendSpec(spec.host, spec.port, _weight(item.get("weight", 1), item["address"])))
        else:
            raise ConfigError(f"backend {item!r}: expected \"host:port\" or {{address=..., weight=...}}")
    return tuple(specs)

