"""The user's own account: profile edits, an export of everything held on them, and
erasure.

Export and erasure go table by table through two registries, so a table that holds
something of a user needs one line each (``EXPORTS.register(...)``,
``ERASERS.register(...)``), with the helpers below for the usual cases:
``rows_of(Model)`` exports a user's rows, ``delete_rows(Model)`` / ``blank(Model,
column=value)`` erase them.

What erasure keeps: payments, tickets and reservations (the accounts must keep them,
by law), linked to the same user row, now anonymised (no name, no email, no usable
password). What it does, in order (each step its own transaction, so that Redis
follows each commit as it does everywhere else; a failure part-way leaves the account
usable and the request can simply be repeated):

1. the caller's live holds are released, their waitlist entries left, and their
   reservations still awaiting payment cancelled (the seats go back on sale; a charge
   already in flight is refunded by the payment rules, as for any cancellation);
2. personal data are removed: review texts, the recipients of the emails sent, the
   unused reset tokens (and any still in clear in the outbox), review texts still
   waiting in the outbox;
3. the user row is anonymised (a unique placeholder address, so the real one can
   register again) and every session of the user ends at once.

The last admin cannot erase itself (409 ``last_admin``): nobody could run the site.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import and_, func, inspect, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from app import db
from app.models import (
    LIVE_WAITLIST_STATUSES,
    Email,
    NotificationPreference,
    PasswordResetToken,
    Payment,
    Reminder,
    Reservation,
    ReservationSeat,
    ReservationStatus,
    Review,
    Ticket,
    User,
    UserRole,
    WaitlistEntry,
)
from app.services import auth, booking, errors, seats, waitlist

ERASED_DOMAIN = "erased.invalid"  # RFC 2606: never a real mailbox
ERASED_NAME = "Erased user"
UNUSABLE_PASSWORD = "!erased"  # not an argon2 hash: no password ever matches it


class LastAdmin(errors.Conflict):
    code, title = "last_admin", "The last admin cannot erase itself"


# --- profile --------------------------------------------------------------------

def update_profile(user_id: int, *, name: str | None = None, email: str | None = None,
                   current_password: str | None = None) -> User:
    """Change the caller's name and/or email. A new email needs the current password
    (``WrongPassword``; 422 when missing) and must be free (``EmailTaken``); the reset
    tokens mailed to the old address stop working."""
    try:
        with db.unit_of_work():
            user = _locked_user(user_id)
            new_email = auth.normalize_email(email) if email is not None else user.email
            if new_email != user.email:
                if current_password is None:
                    raise errors.Invalid("Changing the email needs the current password",
                                         errors={"current_password": ["Required to change the email."]})
                auth.confirm_password(user, current_password)
                user.email = new_email
                auth.void_reset_tokens(user.id)
            if name is not None:
                user.name = name.strip()
            db.session.flush()
    except IntegrityError as exc:
        raise errors.EmailTaken("An account with this email already exists") from exc
    return user


def _locked_user(user_id: int) -> User:
    user = db.session.scalar(select(User).where(User.id == user_id).with_for_update())
    if user is None or user.erased_at is not None:
        raise errors.TokenRevoked("This account no longer exists")
    return user


# --- the registries -------------------------------------------------------------

Collector = Callable[[User], Any]  # what the export says of one table (JSON-ready)
Eraser = Callable[[User], None]  # removes the user's personal data from one table


class Registry(dict):
    """``name -> function``, run in the order registered."""

    def register(self, name: str, function: Callable) -> Callable:
        self[name] = function
        return function


EXPORTS: Registry = Registry()
ERASERS: Registry = Registry()


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _row(obj, exclude: tuple[str, ...] = ()) -> dict:
    return {attr.key: _plain(getattr(obj, attr.key))
            for attr in inspect(type(obj)).column_attrs if attr.key not in exclude}


def _owned(model, column: str):
    """The rows of ``model`` that belong to a user: by ``column``, or by their
    reservation's user when ``column`` is ``reservation_id``."""
    def where(user: User):
        if column == "reservation_id":
            return model.reservation_id.in_(select(Reservation.id).where(Reservation.user_id == user.id))
        return getattr(model, column) == user.id
    return where


def rows_of(model, column: str = "user_id", *, exclude: tuple[str, ...] = ()) -> Collector:
    """Export: the user's rows of ``model``, every column but ``exclude``, in id order."""
    owned = _owned(model, column)

    def collect(user: User) -> list[dict]:
        return [_row(obj, exclude) for obj in db.session.scalars(select(model).where(owned(user))
                                                                 .order_by(*inspect(model).primary_key))]
    return collect


def delete_rows(model, column: str = "user_id") -> Eraser:
    """Erasure: the user's rows of ``model`` go."""
    owned = _owned(model, column)

    def erase(user: User) -> None:
        with db.unit_of_work():
            db.session.execute(model.__table__.delete().where(owned(user)))
    return erase


def blank(model, column: str = "user_id", **values) -> Eraser:
    """Erasure: the user's rows of ``model`` stay, with ``values`` over their personal
    columns (a value may be a function of the user)."""
    owned = _owned(model, column)

    def erase(user: User) -> None:
        with db.unit_of_work():
            db.session.execute(update(model).where(owned(user)).values(
                {key: value(user) if callable(value) else value for key, value in values.items()}))
    return erase


# --- export ---------------------------------------------------------------------

def export(user_id: int) -> dict:
    """Everything held on the caller, table by table (``EXPORTS``)."""
    user = auth.get_profile(user_id)
    return {"user_id": user.id, "exported_at": datetime.now(timezone.utc).isoformat(),
            "data": {name: collect(user) for name, collect in EXPORTS.items()}}


def _live_holds(user: User) -> list[dict]:
    return [{"id": hold.id, "showtime_id": hold.showtime_id, "seat_ids": list(hold.seat_ids),
             "expires_at": hold.expires_at, "state": hold.state}
            for hold in seats.holds_of(user.id)]


EXPORTS.register("profile", lambda user: _row(user, exclude=("password_hash",)))
EXPORTS.register("reservations", rows_of(Reservation))
EXPORTS.register("reservation_seats", rows_of(ReservationSeat, "reservation_id"))
EXPORTS.register("payments", rows_of(Payment, "reservation_id"))
EXPORTS.register("tickets", rows_of(Ticket, "reservation_id"))
EXPORTS.register("holds", _live_holds)
EXPORTS.register("waitlist_entries", rows_of(WaitlistEntry))
EXPORTS.register("reviews", rows_of(Review))
EXPORTS.register("emails", rows_of(Email))
EXPORTS.register("password_reset_tokens", rows_of(PasswordResetToken, exclude=("token_hash",)))
EXPORTS.register("notification_preferences", rows_of(NotificationPreference))
EXPORTS.register("reminders", rows_of(Reminder))
EXPORTS.register("user_roles", rows_of(UserRole))
# Waiting-room queue places live in Redis only, for the hours of an on-sale: not exported.


# --- erasure --------------------------------------------------------------------

def erase(user_id: int, password: str) -> None:
    """Erase the caller's personal data (see the module's docstring); the password
    confirms it (``WrongPassword``). ``LastAdmin`` for the only admin."""
    with db.unit_of_work():
        user = _locked_with_admins(user_id)
        auth.confirm_password(user, password)
        _check_not_last_admin(user)
    for eraser in ERASERS.values():
        eraser(user)
    auth.end_sessions(user.id)


def lock_with_admins(user_id: int) -> None:
    """Lock the user's row with every live admin's in one statement, in id order: two
    admins erasing (or demoting: ``roles.set_roles``) themselves or each other at once
    wait for each other instead of deadlocking, and the second sees the first gone."""
    db.session.execute(select(User.id).where(or_(User.id == user_id, and_(User.role == "admin",
                                                                          User.erased_at.is_(None))))
                       .order_by(User.id).with_for_update())


def _locked_with_admins(user_id: int) -> User:
    lock_with_admins(user_id)
    return _locked_user(user_id)


def is_last_admin(user: User) -> bool:
    """Whether ``user`` is the only live admin (under ``lock_with_admins``)."""
    if user.role != "admin":
        return False
    admins = db.session.scalars(select(User.id).where(User.role == "admin", User.erased_at.is_(None))).all()
    return admins == [user.id]


def _check_not_last_admin(user: User) -> None:
    """Under ``lock_with_admins``."""
    if is_last_admin(user):
        raise LastAdmin("The last admin cannot erase itself; make another admin first")


def _release_holds(user: User) -> None:
    for hold in seats.holds_of(user.id):
        try:
            booking.release_hold(user.id, hold.id)
        except errors.DomainError:
            pass  # ended meanwhile, or being reserved: that reservation is cancelled next


def _leave_waitlists(user: User) -> None:
    with db.unit_of_work():  # a read, ended before each leave's own transaction
        entries = db.session.scalars(select(WaitlistEntry.id).where(
            WaitlistEntry.user_id == user.id, WaitlistEntry.status.in_(LIVE_WAITLIST_STATUSES))).all()
    for entry_id in entries:
        waitlist.leave(user.id, entry_id)


def _cancel_unpaid(user: User) -> None:
    with db.unit_of_work():
        pending = db.session.scalars(select(Reservation.id).where(
            Reservation.user_id == user.id, Reservation.status == ReservationStatus.PENDING_PAYMENT)).all()
    for reservation_id in pending:
        try:
            booking.cancel_reservation(user.id, reservation_id)
        except errors.DomainError:
            pass  # confirmed, expired or started meanwhile: kept, as paid ones are


def _scrub_outbox(user: User) -> None:
    """Review texts and reset tokens still waiting in the outbox (an unindexed scan of
    the outbox: erasures are rare)."""
    with db.unit_of_work():
        db.session.execute(text(
            "UPDATE outbox SET payload = jsonb_set(payload - 'token', '{text}', '\"\"', false) "
            "WHERE payload->>'user_id' = :user_id AND (payload ? 'token' OR payload ? 'text')"),
            {"user_id": str(user.id)})


def _placeholder_email(user: User) -> str:
    return f"erased-{user.id}-{secrets.token_hex(8)}@{ERASED_DOMAIN}"


def _anonymise(user: User) -> None:
    with db.unit_of_work():
        row = _locked_with_admins(user.id)
        _check_not_last_admin(row)
        row.email, row.name, row.password_hash = _placeholder_email(row), ERASED_NAME, UNUSABLE_PASSWORD
        row.role, row.erased_at = "user", func.now()
        db.session.execute(update(Email).where(Email.user_id == row.id).values(to_address=row.email))


ERASERS.register("holds", _release_holds)
ERASERS.register("waitlist_entries", _leave_waitlists)
ERASERS.register("reservations", _cancel_unpaid)
ERASERS.register("reviews", blank(Review, text=""))
ERASERS.register("password_reset_tokens", delete_rows(PasswordResetToken))
ERASERS.register("notification_preferences", delete_rows(NotificationPreference))  # the phone; reminders stop
ERASERS.register("outbox", _scrub_outbox)
ERASERS.register("user_roles", delete_rows(UserRole))  # an erased account holds no staff role
ERASERS.register("users", _anonymise)  # last: emails follow the placeholder address
