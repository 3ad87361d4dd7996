"""Sending outbound webhooks over HTTP, safely (urllib3).

SSRF: a receiver's URL must be http(s) with a host whose addresses are all public.
The check runs when a webhook is created (``check_url``) and again at every
delivery, on the addresses the connection actually uses: the connection classes
below resolve the host themselves, refuse a non-public address and connect to the
very address they vetted, so a name that re-resolves to 127.0.0.1 after creation
(DNS rebinding) is refused. TLS still verifies the certificate against the host
name. Redirects are never followed (a 3xx is a failed attempt).
"""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, NewConnectionError


class RefusedAddress(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for a globally routable unicast address (IPv4-mapped IPv6 judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return public(mapped)
        if address.teredo is not None:
            return False
    if (address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
            or address.is_reserved or address.is_unspecified):
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return address.is_global  # also refuses shared (100.64/10), documentation and benchmark ranges


def resolve(host: str, port: int) -> list[tuple]:
    """getaddrinfo for a TCP connection: [(family, sockaddr), ...]."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # gaierror, bad IDNA labels, NUL in a name
        raise RefusedAddress(f"cannot resolve {host!r}: {exc}") from exc
    return [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]


def vetted(host: str, port: int, allow_private: bool) -> list[tuple]:
    """The host's addresses, all of them public unless ``allow_private``; else RefusedAddress."""
    found = resolve(host, port)
    if not found:
        raise RefusedAddress(f"{host!r} has no address")
    if not allow_private:
        for _family, sockaddr in found:
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if not public(address):
                raise RefusedAddress(f"{host!r} resolves to {address}, which is not a public address")
    return found


def check_url(url: str, allow_private: bool) -> str | None:
    """Why ``url`` may not receive webhooks, or None when it may."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"Not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "The URL must be http or https"
    if not parts.hostname:
        return "The URL has no host"
    if parts.username or parts.password:
        return "The URL may not carry credentials"
    try:
        vetted(parts.hostname, port or (443 if parts.scheme == "https" else 80), allow_private)
    except RefusedAddress as exc:
        return str(exc)
    return None


class _Vetting:
    """Mixin of the connection classes: connect only to a vetted address."""

    allow_private = False

    def _new_conn(self) -> socket.socket:
        try:
            candidates = vetted(self._dns_host, self.port, self.allow_private)
        except RefusedAddress as exc:
            raise NewConnectionError(self, str(exc)) from exc
        last: OSError | None = None
        for family, sockaddr in candidates:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                last = exc
                sock.close()
        raise NewConnectionError(self, f"Failed to connect: {last}")


class _VettedHTTPConnection(_Vetting, HTTPConnection):
    pass


class _VettedHTTPSConnection(_Vetting, HTTPSConnection):
    pass


class _PrivateHTTPConnection(_VettedHTTPConnection):
    allow_private = True


class _PrivateHTTPSConnection(_VettedHTTPSConnection):
    allow_private = True


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """POSTs one webhook body; never raises: every failure is an ``Outcome``. An attempt
    lasts at most ``timeout_seconds`` in all (a receiver dripping bytes does not hold it)."""

    def __init__(self, *, timeout_seconds: float, allow_private: bool) -> None:
        self.manager = urllib3.PoolManager(num_pools=50, maxsize=4, retries=False,
                                           timeout=urllib3.Timeout(total=timeout_seconds, connect=timeout_seconds,
                                                                   read=timeout_seconds))
        http, https = ((_PrivateHTTPConnection, _PrivateHTTPSConnection) if allow_private
                       else (_VettedHTTPConnection, _VettedHTTPSConnection))
        self.manager.pool_classes_by_scheme = {
            "http": type("VettedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("VettedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.perf_counter()
        try:
            response = self.manager.request("POST", url, body=body, redirect=False, retries=False,
                                            headers={"Content-Type": "application/json",
                                                     "User-Agent": "Marquee-Webhooks/1", **headers},
                                            preload_content=False)
            try:
                response.read(64 * 1024, decode_content=False)  # a little of the answer, then let go
            finally:
                response.release_conn()
            status, error = response.status, None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (HTTPError, OSError) as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"[:500]
        return Outcome(status, error, round((time.perf_counter() - started) * 1000))

    def close(self) -> None:
        self.manager.clear()
