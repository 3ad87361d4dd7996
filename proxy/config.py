"""The proxy's settings: one dataclass, read from an optional TOML file and then from
``PROXY_*`` environment variables (the environment wins). Every limit has a default that
suits the local stack; DESIGN.md, "The proxy", says what each one is for.

The backend list is the only part that can change while the proxy runs: SIGHUP or
``POST /reload`` on the admin port re-reads it from the same file and environment.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

STRATEGIES = ("round_robin", "least_connections")


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
    backends: tuple[BackendSpec, ...] = ()
    strategy: str = "round_robin"

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
    backlog: int = 2048

    # Timeouts (seconds)
    client_header_timeout: float = 10.0  # to send a whole request head (408 after)
    client_body_timeout: float = 30.0  # between two pieces of a request body
    keepalive_timeout: float = 75.0  # an idle client connection is closed after this
    send_timeout: float = 60.0  # a client that reads nothing of its response for this long
    connect_timeout: float = 3.0  # to a backend (504 after)
    read_timeout: float = 60.0  # between two pieces of a backend's response (504 after)
    drain_timeout: float = 30.0  # SIGTERM: in-flight requests get this long to finish

    # Upstream keep-alive pool (per backend); keep idle_timeout below the backends' own
    pool_size: int = 64
    pool_idle_timeout: float = 4.0

    access_log: bool = True
    log_level: str = "INFO"
    admin_token: str = ""  # when set, admin writes need "Authorization: Bearer <token>"
    source: str = ""  # the TOML file it came from, re-read on reload

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}")
        if not self.backends:
            raise ConfigError("no backends: set PROXY_BACKENDS or [[backends]] in the config file")
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ConfigError("a backend is listed twice")
        if self.max_tries < 1 or self.health_rise < 1 or self.health_fall < 1:
            raise ConfigError("max_tries, health_rise and health_fall must be at least 1")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{f.name} must not be negative")
        if self.panic_threshold > 1:
            raise ConfigError("panic_threshold is a share: between 0 and 1")
        if not self.health_path.startswith("/"):
            raise ConfigError("health_path must start with /")

    def with_backends(self, backends) -> "ProxyConfig":
        return replace(self, backends=tuple(backends))


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
    for f in fields(ProxyConfig):
        key = "PROXY_" + f.name.upper()
        if f.name in ("backends", "source") or key not in env:
            continue
        values[f.name] = env[key]
    values["backends"] = _backends(values.get("backends"), env.get("PROXY_BACKENDS"))
    known = {f.name: f for f in fields(ProxyConfig)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    for name, value in list(values.items()):
        if name == "backends":
            continue
        values[name] = _coerce(name, _KINDS[known[name].type], value)
    values["source"] = path
    return ProxyConfig(**values)


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

