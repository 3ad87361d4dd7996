"""Authentication and authorization decorators that also document themselves."""
from __future__ import annotations

import ipaddress
from functools import wraps

from flask import request
from flask_jwt_extended import get_jwt, verify_jwt_in_request

from app.bootstrap import marquee
from app.services import errors

BEARER = [{"bearerAuth": []}]


def _document(func, statuses):
    doc = func.__dict__.setdefault("_apidoc", {})
    manual = doc.setdefault("manual_doc", {})
    manual["security"] = BEARER
    responses = manual.setdefault("responses", {})
    for status, name in statuses:
        responses[status] = name
    return func


def login_required(func):
    """Any signed-in user (401 otherwise)."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        return func(*args, **kwargs)

    return _document(wrapper, [(401, "UNAUTHORIZED")])


def admin_required(func):
    """Role ``admin`` (401 anonymous, 403 for other roles)."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        if not is_admin():
            raise errors.Forbidden("This action needs the admin role")
        return func(*args, **kwargs)

    return _document(wrapper, [(401, "UNAUTHORIZED"), (403, "FORBIDDEN")])


def is_admin() -> bool:
    """Whether the verified caller has the admin role."""
    return get_jwt().get("role") == "admin"


def current_user_id() -> int:
    return int(get_jwt()["sub"])


def client_address() -> str:
    """The client's address: the peer, or (only when the peer is a trusted proxy)
    the nearest untrusted hop of ``X-Forwarded-For``."""
    trusted = marquee().settings.trusted_proxies
    return resolve_client_address(
        request.remote_addr or "0.0.0.0", request.headers.get("X-Forwarded-For"), trusted
    )


def resolve_client_address(peer: str, forwarded_for: str | None, trusted) -> str:
    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not forwarded_for or not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    # Walk from the nearest hop outward, skipping our own proxies.
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # garbage in the header: do not trust any of it
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer
