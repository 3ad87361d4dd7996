"""Staff roles scoped to theaters (API.md "Roles"): who may do what where.

``users.role`` stays ``user`` or ``admin``; an admin may do everything everywhere.
A ``manager`` of a theater writes that theater's catalog (the theater, its screens,
their showtimes) and reads its reports; a ``scanner`` checks in its tickets. Roles
live in ``user_roles`` and are read at each check (not carried in tokens), so a
revoked role stops working at once.

Services take an ``Actor`` (who is asking), never a token: the views build it.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app import db
from app.models import StaffRole, UserRole
from app.services import errors


@dataclass(frozen=True)
class Actor:
    user_id: int
    is_admin: bool = False


def theater_ids(user_id: int, *roles: str) -> set[int]:
    """The theaters where ``user_id`` holds any of ``roles`` (all staff roles if none given)."""
    query = select(UserRole.theater_id).where(UserRole.user_id == user_id)
    if roles:
        query = query.where(UserRole.role.in_(roles))
    return set(db.session.scalars(query))


def scope(actor: Actor, *roles: str) -> set[int] | None:
    """The theaters ``actor`` may act on with ``roles``: None means all (an admin)."""
    return None if actor.is_admin else theater_ids(actor.user_id, *roles)


def can(actor: Actor, theater_id: int | None, *roles: str) -> bool:
    if actor.is_admin:
        return True
    if theater_id is None:
        return False
    return db.session.scalar(select(UserRole.id).where(
        UserRole.user_id == actor.user_id, UserRole.theater_id == theater_id,
        UserRole.role.in_(roles or tuple(StaffRole)),
    ).limit(1)) is not None


def require(actor: Actor, theater_id: int | None, *roles: str) -> None:
    """403 ``forbidden`` unless ``actor`` is an admin or holds one of ``roles`` at ``theater_id``."""
    if not can(actor, theater_id, *roles):
        raise errors.Forbidden("This action needs the admin role or a staff role at this theater")


def is_staff(actor: Actor) -> bool:
    return actor.is_admin or db.session.scalar(
        select(UserRole.id).where(UserRole.user_id == actor.user_id).limit(1)) is not None
