"""Authentication and authorization decorators that also document themselves."""
from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from functools import wraps

from flask import current_app, g, request
from flask_jwt_extended import get_jwt, verify_jwt_in_request

from app.bootstrap import marquee
from app.services import errors, staff
from app.services.auth import is_token_revoked


class VerifiedTokens:
    """Access tokens this process has verified, by their ``Authorization`` header.

    flask-jwt-extended decodes and checks a token on every request (base64, JSON,
    HMAC, claims): a fifth of a signed-in request's CPU. What it checks of a given
    token string never changes but its expiry and its revocation, so a token seen
    before is accepted again after only those two checks; anything else (a new
    token, an expired or revoked one) goes through the library, whose answers and
    errors stay the only ones. Bounded: the least recently used are forgotten."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._tokens: OrderedDict[str, tuple[dict, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, header: str) -> tuple[dict, dict] | None:
        with self._lock:
            verified = self._tokens.get(header)
            if verified is not None:
                self._tokens.move_to_end(header)
            return verified

    def put(self, header: str, verified: tuple[dict, dict]) -> None:
        with self._lock:
            self._tokens[header] = verified
            if len(self._tokens) > self.size:
                self._tokens.popitem(last=False)


def _verify_access_token() -> None:
    """``verify_jwt_in_request()``, without decoding again a token verified before."""
    verified: VerifiedTokens = current_app.extensions["verified_tokens"]
    header = request.headers.get("Authorization")
    seen = verified.get(header) if header else None
    if seen is not None and seen[1].get("exp", 0) > time.time() and not is_token_revoked(seen[1]):
        # What verify_jwt_in_request leaves for get_jwt() (flask-jwt-extended 4.7,
        # pinned; no user loader): tests/integration/test_auth.py reads it back.
        g._jwt_extended_jwt_user = None
        g._jwt_extended_jwt_header, g._jwt_extended_jwt = seen
        g._jwt_extended_jwt_location = "headers"
        return
    jwt_header, jwt_data = verify_jwt_in_request()
    if header:
        verified.put(header, (jwt_header, jwt_data))

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
        _verify_access_token()
        return func(*args, **kwargs)

    return _document(wrapper, [(401, "UNAUTHORIZED")])


def admin_required(func):
    """Role ``admin`` (401 anonymous, 403 for other roles)."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        _verify_access_token()
        if not is_admin():
            raise errors.Forbidden("This action needs the admin role")
        require_staff_mfa()
        return func(*args, **kwargs)

    return _document(wrapper, [(401, "UNAUTHORIZED"), (403, "FORBIDDEN")])


def staff_required(func):
    """Staff: an admin, or a user with a role at some theater (401 anonymous, 403 for a
    customer). The view gets the caller as ``actor`` (a ``staff.Actor``, keyword) and
    hands it to its service, which decides from the object which theater's role it
    needs (``staff.require``): a manager of another theater gets a 403 there."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        _verify_access_token()
        actor = current_actor()
        if not staff.is_staff(actor):
            raise errors.Forbidden("This action needs the admin role or a staff role at a theater")
        require_staff_mfa()
        return func(*args, actor=actor, **kwargs)

    return _document(wrapper, [(401, "UNAUTHORIZED"), (403, "FORBIDDEN")])


def current_actor() -> staff.Actor:
    """The verified caller as the services take it. ``is_admin`` comes from the token:
    a change of a user's admin role ends their sessions (``roles.set_roles``)."""
    return staff.Actor(user_id=current_user_id(), is_admin=is_admin())


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def require_staff_mfa() -> None:
    """With ``REQUIRE_STAFF_MFA``, a write by staff (an admin, or anyone holding a
    manager or scanner role) needs an access token issued through a second factor
    (``amr`` holding ``otp``): 403 ``mfa_required`` otherwise. Reads stay open, and so
    does setting MFA up (its endpoints need only a signed-in user)."""
    if not marquee().settings.require_staff_mfa or request.method in _READS:
        return
    claims = get_jwt()
    if "otp" in (claims.get("amr") or ()):
        return
    if claims.get("role") == "admin" or staff.is_staff(staff.Actor(int(claims["sub"]))):
        raise errors.MfaRequired("Staff must sign in with a second factor to make changes: "
                                 "set it up at /api/v1/auth/mfa/setup, then sign in again")


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
