"""Granting staff roles (API.md "Roles"): an admin replaces a user's roles at once.

A user's roles are ``admin`` (chain-wide: ``users.role``) and any number of ``manager``
and ``scanner`` roles, each at one theater (``user_roles``). ``set_roles`` replaces all
of them in one unit of work with its audit entry (``user.roles.set``, before and after).

Taking effect at once: theater roles are read at every check (``staff``), so a revoked
manager role stops working with the commit. The admin role is also carried in access
tokens (``role``), so a change of it ends every session of the user right after the
commit (``auth.end_sessions``, the cut-off a password change uses): a demoted admin's
tokens stop working on every app process before the answer goes out, and the next
sign-in carries the new role.

The last admin keeps the admin role (409 ``last_admin``): the admins' rows are locked
together first (``accounts.lock_with_admins``), so two admins demoting each other at
once cannot leave the site without one.
"""
from __future__ import annotations

from sqlalchemy import delete, select

from app import db
from app.models import StaffRole, Theater, User, UserRole
from app.services import accounts, audit, auth, errors, staff

ADMIN = "admin"
ROLES = (ADMIN, *(role.value for role in StaffRole))


class LastAdminRole(accounts.LastAdmin):
    title = "The last admin cannot lose the admin role"


def _roles_of(user: User) -> list[dict]:
    """The user's roles as the API shows them: ``admin`` first, then by role and theater."""
    rows = db.session.execute(select(UserRole.role, UserRole.theater_id).where(UserRole.user_id == user.id)
                              .order_by(UserRole.role, UserRole.theater_id)).all()
    admin = [{"role": ADMIN, "theater_id": None}] if user.role == ADMIN else []
    return admin + [{"role": role, "theater_id": theater_id} for role, theater_id in rows]


def _live_user(user_id: int) -> User:
    user = db.session.get(User, user_id, populate_existing=True)
    if user is None or user.erased_at is not None:
        raise errors.NotFound(f"User {user_id} does not exist")
    return user


def get_roles(user_id: int, *, actor: staff.Actor) -> dict:
    """The user's roles (admin only)."""
    staff.require(actor, None)
    return {"user_id": user_id, "roles": _roles_of(_live_user(user_id))}


def _validated(roles: list[dict]) -> list[tuple[str, int | None]]:
    """The wanted roles without repeats; 422 naming each entry's field that is wrong: an
    ``admin`` with a theater, a theater role without one, a theater that does not exist
    (the existing ones are share-locked, so none disappears before the commit)."""
    problems: dict[str, list[str]] = {}
    wanted: list[tuple[str, int | None]] = []
    for index, grant in enumerate(roles):
        role, theater_id = grant["role"], grant.get("theater_id")
        if role == ADMIN and theater_id is not None:
            problems[f"roles.{index}.theater_id"] = ["The admin role is chain-wide: no theater_id."]
        elif role != ADMIN and theater_id is None:
            problems[f"roles.{index}.theater_id"] = [f"The {role} role needs a theater_id."]
        elif (role, theater_id) not in wanted:
            wanted.append((role, theater_id))
    theater_ids = {theater_id for _, theater_id in wanted if theater_id is not None}
    known = set(db.session.scalars(select(Theater.id).where(Theater.id.in_(theater_ids))
                                   .with_for_update(read=True))) if theater_ids else set()
    for index, grant in enumerate(roles):
        theater_id = grant.get("theater_id")
        if theater_id is not None and theater_id not in known and f"roles.{index}.theater_id" not in problems:
            problems[f"roles.{index}.theater_id"] = [f"Unknown theater: {theater_id}"]
    if problems:
        raise errors.Invalid("Some of these roles cannot be granted", errors=problems)
    return wanted


def set_roles(user_id: int, roles: list[dict], *, actor: staff.Actor) -> dict:
    """Replace the user's roles with ``roles`` (``[{role, theater_id?}]``; admin only).
    ``NotFound`` for an unknown (or erased) user, ``Invalid`` for roles that cannot be
    granted, ``LastAdminRole`` when it would leave no admin. Answers the roles now held."""
    staff.require(actor, None)
    with db.unit_of_work():
        _live_user(user_id)
        accounts.lock_with_admins(user_id)
        user = _live_user(user_id)  # as it is now that its row is locked
        wanted = _validated(roles)
        before = _roles_of(user)
        new_role = ADMIN if (ADMIN, None) in wanted else "user"
        if user.role == ADMIN and new_role != ADMIN and accounts.is_last_admin(user):
            raise LastAdminRole("The last admin cannot lose the admin role; make another admin first")
        admin_changed = user.role != new_role
        user.role = new_role
        db.session.execute(delete(UserRole).where(UserRole.user_id == user_id))
        db.session.add_all([UserRole(user_id=user_id, role=role, theater_id=theater_id, granted_by=actor.user_id)
                            for role, theater_id in wanted if role != ADMIN])
        db.session.flush()
        after = _roles_of(user)
        audit.record("user.roles.set", actor_id=actor.user_id, object_type="user", object_id=user_id,
                     before={"roles": before}, after={"roles": after})
    if admin_changed:
        auth.end_sessions(user_id)
    return {"user_id": user_id, "roles": after}


def ensure_admin(email: str, password: str | None, name: str = "Administrator", *, via: str) -> tuple[User, bool]:
    """``auth.ensure_admin`` (the CLI's ``create-admin`` and ``bootstrap-admin``), audited:
    an account created or promoted to admin, or an admin's password set from the command
    line, records ``user.admin.ensure`` (no actor: whoever runs the command) right after
    that commit. A start-up that finds its admin already there records nothing."""
    with db.unit_of_work():
        previous = db.session.scalar(select(User.role).where(User.email == auth.normalize_email(email)))
    user, created = auth.ensure_admin(email, password, name)
    promoted = not created and previous != ADMIN
    password_set = bool(password) and not created
    if created or promoted or (password_set and via == "create-admin"):
        audit.record_event("user.admin.ensure", actor_id=None, object_type="user", object_id=user.id, via=via,
                           created=created, promoted=promoted, password_set=password_set)
    return user, created
