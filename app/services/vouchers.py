"""Vouchers: discount codes an admin hands out, redeemed at checkout.

A voucher is never used more than ``max_uses`` times, even by parallel checkouts
(DESIGN.md, invariant 11): the redemption happens in the reservation's own unit of work,
under the voucher row's lock (``SELECT ... FOR UPDATE``), by a conditional
``UPDATE vouchers SET uses = uses + 1 WHERE uses < max_uses`` (a CHECK constraint is
the last guard); ``max_uses_per_user`` counts the user's live redemptions under the same
lock. A reservation that ends unpaid (payment failed, expired) or is cancelled gives its
use back, exactly once (``give_back``: its redemption row is marked returned under the
reservation's row lock).

Codes are case-insensitive: stored lower-case, compared lower-case. Wrong codes are
not enumerable: each user's failed attempts are counted in a window (the login's Redis
counter, ``count_failure.lua``); past ``VOUCHER_MAX_FAILURES`` every attempt is a 429
with ``Retry-After``, a valid code included.

The discount: ``percent_off`` of the seats' total (rounded half up to the cent) or
``amount_off_cents`` (in the voucher's ``currency``; never more than the total); the
reservation's ``total_cents`` = sum of its seats' prices - ``discount_cents``, never
below 0.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app import db
from app.bootstrap import marquee
from app.models import Movie, Showtime, Theater, Voucher, VoucherRedemption
from app.services import attempts, audit, errors
from app.services.pagination import page_of


class VoucherInvalid(errors.Conflict):
    code, title = "voucher_invalid", "This voucher cannot be used"


class VoucherCodeTaken(errors.Conflict):
    code, title = "voucher_code_taken", "A voucher with this code exists"


def normalize(code: str) -> str:
    return code.strip().lower()


def voucher_view(voucher: Voucher) -> dict:
    scope = {"theater_id": voucher.theater_id, "movie_id": voucher.movie_id, "showtime_id": voucher.showtime_id}
    out = {
        "id": voucher.id, "code": voucher.code, "max_uses": voucher.max_uses,
        "max_uses_per_user": voucher.max_uses_per_user, "uses": voucher.uses,
        "valid_from": voucher.valid_from, "valid_until": voucher.valid_until,
        "scope": {k: v for k, v in scope.items() if v is not None},
        "created_at": voucher.created_at, "updated_at": voucher.updated_at,
    }
    if voucher.percent_off is not None:
        out["percent_off"] = voucher.percent_off
    else:
        out["amount_off_cents"], out["currency"] = voucher.amount_off_cents, voucher.currency
    return out


# --- the admin's vouchers --------------------------------------------------------

COLUMNS = ("code", "percent_off", "amount_off_cents", "currency", "max_uses", "max_uses_per_user", "valid_from",
           "valid_until", "theater_id", "movie_id", "showtime_id")
SCOPE_MODELS = {"theater_id": Theater, "movie_id": Movie, "showtime_id": Showtime}


def _columns(data: dict) -> dict:
    out = {k: v for k, v in data.items() if k in COLUMNS}
    if "scope" in data:
        out.update({k: None for k in SCOPE_MODELS} | (data["scope"] or {}))
    if "code" in out:
        out["code"] = normalize(out["code"])
    if out.get("percent_off") is not None:
        out["amount_off_cents"] = out["currency"] = None
    elif out.get("amount_off_cents") is not None:
        out["percent_off"] = None
    return out


def _check(voucher: Voucher) -> None:
    """What the schema cannot see: the scope exists, the window is a window, an amount
    has its currency. 422 naming the field."""
    found = {f"scope.{key}": [f"No such {key[:-3]}: {getattr(voucher, key)}"]
             for key, model in SCOPE_MODELS.items()
             if getattr(voucher, key) is not None and db.session.get(model, getattr(voucher, key)) is None}
    if voucher.valid_from and voucher.valid_until and voucher.valid_until <= voucher.valid_from:
        found["valid_until"] = ["Must be after valid_from"]
    if voucher.amount_off_cents is not None and not voucher.currency:
        found["currency"] = ["Required with amount_off_cents"]
    if voucher.max_uses is not None and voucher.max_uses < voucher.uses:
        found["max_uses"] = [f"Already used {voucher.uses} times"]
    if found:
        raise errors.Invalid("This voucher is not valid", errors=found)


def _flush_unique() -> None:
    try:
        db.session.flush()
    except IntegrityError as exc:
        if "uq_vouchers_code" in str(exc.orig):
            raise VoucherCodeTaken("A voucher with this code exists (codes are case-insensitive)") from exc
        raise


def create_voucher(actor_id: int, data: dict) -> dict:
    with db.unit_of_work():
        voucher = Voucher(**_columns(data), uses=0)
        _check(voucher)
        db.session.add(voucher)
        _flush_unique()
        db.session.refresh(voucher)
        audit.record("voucher.create", actor_id=actor_id, object_type="voucher", object_id=voucher.id,
                     after=audit.snapshot(voucher))
    return voucher_view(voucher)


def get_voucher(voucher_id: int) -> dict:
    voucher = db.session.get(Voucher, voucher_id)
    if voucher is None:
        raise errors.NotFound(f"Voucher {voucher_id} does not exist")
    return voucher_view(voucher)


def list_vouchers(page: int, page_size: int, *, code: str | None = None) -> tuple[list[dict], int]:
    """Newest first; ``code``: the one with this code (any case)."""
    query = select(Voucher)
    if code is not None:
        query = query.where(Voucher.code == normalize(code))
    items, total = page_of(query, [Voucher.id.desc()], page, page_size)
    return [voucher_view(v) for v in items], total


def _lock(voucher_id: int) -> Voucher:
    voucher = db.session.scalar(select(Voucher).where(Voucher.id == voucher_id).with_for_update())
    if voucher is None:
        raise errors.NotFound(f"Voucher {voucher_id} does not exist")
    return voucher


def update_voucher(actor_id: int, voucher_id: int, data: dict) -> dict:
    """Change what ``data`` names (under the row's lock, so ``max_uses`` is checked
    against the uses as they are)."""
    with db.unit_of_work():
        voucher = _lock(voucher_id)
        before = audit.snapshot(voucher)
        for key, value in _columns(data).items():
            setattr(voucher, key, value)
        voucher.updated_at = func.now()
        _check(voucher)
        _flush_unique()
        db.session.refresh(voucher)
        audit.record("voucher.update", actor_id=actor_id, object_type="voucher", object_id=voucher.id,
                     before=before, after=audit.snapshot(voucher))
    return voucher_view(voucher)


def delete_voucher(actor_id: int, voucher_id: int) -> None:
    """Delete a voucher never redeemed (409 ``in_use`` otherwise: its redemptions are
    money history; set ``valid_until`` to retire it)."""
    with db.unit_of_work():
        voucher = _lock(voucher_id)
        if db.session.scalar(select(VoucherRedemption.id).where(VoucherRedemption.voucher_id == voucher_id).limit(1)):
            raise errors.InUse("This voucher has been redeemed; end it with valid_until instead")
        audit.record("voucher.delete", actor_id=actor_id, object_type="voucher", object_id=voucher.id,
                     before=audit.snapshot(voucher))
        db.session.delete(voucher)


# --- checkout --------------------------------------------------------------------

def _failures_key(user_id: int) -> str:
    return marquee().redis.key("voucher-failures", user_id)


def count_attempt(user_id: int) -> None:
    """Count an attempt before checking the code, so parallel guesses cannot slip past
    the limit: 429 past ``VOUCHER_MAX_FAILURES`` in the window, a valid code included.
    ``attempt_succeeded`` un-counts it."""
    settings = marquee().settings
    attempts.limit(_failures_key(user_id), settings.voucher_window_seconds, settings.voucher_max_failures,
                   "Too many failed voucher codes; try again later")


def attempt_succeeded(user_id: int) -> None:
    attempts.uncount(_failures_key(user_id))


def discount_for(voucher: Voucher, subtotal_cents: int) -> int:
    if voucher.percent_off is not None:
        return min((subtotal_cents * voucher.percent_off * 2 + 100) // 200, subtotal_cents)
    return min(voucher.amount_off_cents, subtotal_cents)


def _refusal(voucher: Voucher | None, showtime: dict, currency: str, at: datetime) -> str | None:
    if voucher is None:
        return "No such voucher"
    if voucher.valid_from is not None and at < voucher.valid_from:
        return "This voucher is not valid yet"
    if voucher.valid_until is not None and at >= voucher.valid_until:
        return "This voucher has expired"
    for key in ("theater_id", "movie_id", "showtime_id"):
        if getattr(voucher, key) is not None and getattr(voucher, key) != showtime[key]:
            return "This voucher is not valid for this showtime"
    if voucher.amount_off_cents is not None and voucher.currency != currency:
        return f"This voucher is for payments in {voucher.currency}"
    return None


def redeem(user_id: int, code: str, showtime: dict, subtotal_cents: int, currency: str,
           at: datetime) -> tuple[Voucher, int]:
    """Take one use of the voucher for this checkout, in the caller's unit of work:
    ``(voucher, discount_cents)``, or ``VoucherInvalid`` (nothing taken). ``showtime``:
    its ``theater_id``, ``movie_id`` and ``showtime_id``. The caller then records the
    redemption with ``record_redemption`` in the same unit of work."""
    voucher = db.session.scalar(select(Voucher).where(Voucher.code == normalize(code)).with_for_update())
    refusal = _refusal(voucher, showtime, currency, at)
    if refusal:
        raise VoucherInvalid(refusal)
    if voucher.max_uses_per_user is not None:
        mine = db.session.scalar(select(func.count()).select_from(VoucherRedemption).where(
            VoucherRedemption.voucher_id == voucher.id, VoucherRedemption.user_id == user_id,
            VoucherRedemption.returned_at.is_(None)))
        if mine >= voucher.max_uses_per_user:
            raise VoucherInvalid("You have used this voucher as many times as it allows")
    taken = db.session.execute(
        update(Voucher)
        .where(Voucher.id == voucher.id, or_(Voucher.max_uses.is_(None), Voucher.uses < Voucher.max_uses))
        .values(uses=Voucher.uses + 1)
        .returning(Voucher.uses)
    ).first()
    if taken is None:
        raise VoucherInvalid("This voucher has been used up")
    return voucher, discount_for(voucher, subtotal_cents)


def record_redemption(voucher: Voucher, reservation_id: int, user_id: int, discount_cents: int) -> None:
    db.session.add(VoucherRedemption(voucher_id=voucher.id, reservation_id=reservation_id, user_id=user_id,
                                     discount_cents=discount_cents))


def give_back(reservation_id: int, at: datetime) -> None:
    """The reservation ended unpaid or was cancelled: its voucher use (if any) is free
    again. In the caller's unit of work, under the reservation's row lock: exactly once."""
    returned = db.session.execute(
        update(VoucherRedemption)
        .where(VoucherRedemption.reservation_id == reservation_id, VoucherRedemption.returned_at.is_(None))
        .values(returned_at=at)
        .returning(VoucherRedemption.voucher_id)
    ).scalars().all()
    for voucher_id in returned:
        db.session.execute(update(Voucher).where(Voucher.id == voucher_id).values(uses=Voucher.uses - 1))
