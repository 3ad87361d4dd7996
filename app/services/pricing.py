"""Price rules: what a seat costs now.

The price of a seat is its showtime's category price (``showtimes.prices``) adjusted by
the price rules that match. A rule matches a seat when

- its scope does: each of ``theater_id``, ``movie_id``, ``showtime_id`` and ``category``
  it names equals the seat's (a scope left empty matches every seat);
- and its conditions do (``when``), each it names:
  ``weekdays`` (ISO numbers, 1 Monday .. 7 Sunday) and ``local_time_from`` /
  ``local_time_to`` (``HH:MM``, from inclusive, to exclusive; from after to wraps past
  midnight) on the showtime's start in its city's time zone; ``days_before_max`` (the sale
  is at most N days before the start: last-minute) and ``days_before_min`` (at least N
  days before: early bird), counted in exact 24-hour days from the moment of sale;
  ``occupancy_min``: at least this percent of the showtime's sellable seats are taken.

Occupancy counts the seats held or booked (held by a hold, a reservation awaiting its
payment, or a confirmed one) among the sellable seats: every seat of the screen but
those blocked by an admin. A hold sees the occupancy *before* it takes its own seats,
decided by the Lua script that takes them (``hold_prices`` in ``seat_state.lua``), so
that in a rush exactly the holds taken at or past the threshold pay its price.

Rules combine in ascending ``priority`` (ties by id), each on the running price: a
percent multiplies it (rounded half up to the cent), an amount adds to it; the price
never goes below 0 (clamped at each step). Stacking, not "highest priority only": an
early-bird discount and a weekend surcharge are both meant to count, and an order fixed
by the admin makes the result predictable (``-10%`` then ``+200`` differs from ``+200``
then ``-10%``, and the admin chooses which).

A hold's prices are fixed when it takes its seats (``hold_pricing``): its record in
Redis carries them, and the reservation charges exactly them, whatever rules change
meanwhile.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select

from app import db
from app.adapters.seat_store import HoldPricing
from app.bootstrap import marquee
from app.models import City, Movie, PriceRule, Screen, Showtime, Theater
from app.services import audit, errors
from app.services.pagination import page_of

# What a showtime's prices depend on: a write to any makes the cached context stale.
NAMESPACES = ("showtimes", "screens", "price_rules")
DAY = timedelta(days=1)


# --- the rules as plain values ------------------------------------------------

def rule_view(rule: PriceRule) -> dict:
    """A rule as JSON (the API's shape and the cached one)."""
    when = {
        "weekdays": rule.weekdays,
        "local_time_from": rule.local_time_from.strftime("%H:%M") if rule.local_time_from else None,
        "local_time_to": rule.local_time_to.strftime("%H:%M") if rule.local_time_to else None,
        "days_before_max": rule.days_before_max,
        "days_before_min": rule.days_before_min,
        "occupancy_min": rule.occupancy_min,
    }
    scope = {"theater_id": rule.theater_id, "movie_id": rule.movie_id, "showtime_id": rule.showtime_id,
             "category": rule.category}
    adjust = {"percent": rule.percent} if rule.percent is not None else {"amount_cents": rule.amount_cents}
    return {"id": rule.id, "name": rule.name, "priority": rule.priority,
            "scope": {k: v for k, v in scope.items() if v is not None},
            "when": {k: v for k, v in when.items() if v is not None},
            "adjust": adjust, "created_at": rule.created_at, "updated_at": rule.updated_at}


def adjust(price: int, rule: dict) -> int:
    """One rule on the running price: never below 0."""
    change = rule["adjust"]
    if "percent" in change:
        price = (price * (100 + change["percent"]) * 2 + 100) // 200  # half up, in integers
    else:
        price = price + change["amount_cents"]
    return max(price, 0)


def _clock(text: str) -> time:
    return time.fromisoformat(text)


def in_time_window(local: time, start: str | None, end: str | None) -> bool:
    """``start`` inclusive, ``end`` exclusive; ``start`` after ``end`` wraps past midnight."""
    if start is None and end is None:
        return True
    if start is None:
        return local < _clock(end)
    if end is None:
        return local >= _clock(start)
    low, high = _clock(start), _clock(end)
    return low <= local < high if low <= high else (local >= low or local < high)


def matches_when(when: dict, starts_at: datetime, timezone_name: str, at: datetime) -> bool:
    """The rule's conditions but occupancy, for a sale at ``at`` of a showtime starting at
    ``starts_at`` (local to its city's ``timezone_name``)."""
    local = starts_at.astimezone(ZoneInfo(timezone_name))
    if when.get("weekdays") and local.isoweekday() not in when["weekdays"]:
        return False
    if not in_time_window(local.time().replace(tzinfo=None), when.get("local_time_from"), when.get("local_time_to")):
        return False
    ahead = starts_at - at
    if when.get("days_before_max") is not None and ahead > when["days_before_max"] * DAY:
        return False
    return not (when.get("days_before_min") is not None and ahead < when["days_before_min"] * DAY)


def tiers(context: dict, at: datetime) -> list[tuple[int, dict[str, int]]]:
    """The showtime's category prices for a sale at ``at``, by occupancy: ``[(percent,
    {category: price})]`` ascending from 0, each applying from that percent of sellable
    seats taken on (until the next). Rules that match but for occupancy are applied in
    their order, each where its ``occupancy_min`` is reached."""
    starts_at = datetime.fromisoformat(context["starts_at"])
    rules = [r for r in context["rules"]
             if matches_when(r["when"], starts_at, context["timezone"], at)]
    thresholds = sorted({0} | {r["when"].get("occupancy_min", 0) for r in rules})
    out = []
    for pct in thresholds:
        prices = {}
        for category, base in context["prices"].items():
            price = base
            for rule in rules:
                if rule["when"].get("occupancy_min", 0) <= pct and rule["scope"].get("category") in (None, category):
                    price = adjust(price, rule)
            prices[category] = price
        out.append((pct, prices))
    return out


def occupancy(statuses: dict[int, str], seat_count: int) -> tuple[int, int]:
    """``(occupied, capacity)`` from a seat map's statuses: held or booked seats, and
    every seat but the blocked ones (as ``hold_prices`` in ``seat_state.lua`` counts)."""
    blocked = sum(1 for status in statuses.values() if status == "blocked")
    return len(statuses) - blocked, seat_count - blocked


def tier_for(price_tiers: list[tuple[int, dict[str, int]]], occupied: int, capacity: int) -> dict[str, int]:
    """The prices at this occupancy: the last tier whose percent it reaches (exactly as
    the hold scripts choose, in integers: ``occupied * 100 >= percent * capacity``)."""
    chosen = price_tiers[0][1] if price_tiers else {}
    for pct, prices in price_tiers:
        if occupied * 100 >= pct * capacity:
            chosen = prices
    return chosen


# --- a showtime's rules, loaded once -------------------------------------------------

def _contexts_query(showtime_ids: list[int]) -> dict[int, dict]:
    """One query whatever the number of showtimes: each with its places, prices and
    every rule whose scope takes it in (the scope's category is applied per seat)."""
    rows = db.session.execute(
        select(Showtime.id, Showtime.starts_at, Showtime.prices, Showtime.currency, Showtime.movie_id,
               Theater.id, City.timezone, PriceRule)
        .join(Screen, Screen.id == Showtime.screen_id)
        .join(Theater, Theater.id == Screen.theater_id)
        .join(City, City.id == Theater.city_id)
        .outerjoin(PriceRule, and_(
            or_(PriceRule.theater_id.is_(None), PriceRule.theater_id == Theater.id),
            or_(PriceRule.movie_id.is_(None), PriceRule.movie_id == Showtime.movie_id),
            or_(PriceRule.showtime_id.is_(None), PriceRule.showtime_id == Showtime.id),
        ))
        .where(Showtime.id.in_(showtime_ids))
        .order_by(Showtime.id, PriceRule.priority, PriceRule.id)
    ).all()
    out: dict[int, dict] = {}
    for showtime_id, starts_at, prices, currency, movie_id, theater_id, timezone_name, rule in rows:
        entry = out.setdefault(showtime_id, {
            "showtime_id": showtime_id, "theater_id": theater_id, "movie_id": movie_id,
            "starts_at": starts_at.isoformat(), "timezone": timezone_name, "prices": prices, "currency": currency,
            "rules": []})
        if rule is not None:
            view = rule_view(rule)
            entry["rules"].append({k: view[k] for k in ("id", "priority", "scope", "when", "adjust")})
    return out


def context(showtime_id: int) -> dict | None:
    """What the showtime's prices are computed from (its base prices, time zone and the
    rules that may apply), through the cache: a rule, showtime or theater write makes
    it stale. None for an unknown showtime."""
    return marquee().cache.get_or_compute(NAMESPACES, "price-context", showtime_id,
                                          lambda: _contexts_query([showtime_id]).get(showtime_id), local=True)


def contexts(showtime_ids: Iterable[int]) -> dict[int, dict]:
    """``context`` of several showtimes in two queries (the GraphQL gateway's batches)."""
    ids = sorted(set(showtime_ids))
    return _contexts_query(ids) if ids else {}


def hold_pricing(showtime_id: int, at: datetime) -> HoldPricing:
    """What the hold scripts need to fix a new hold's prices (see the module's docstring)."""
    found = context(showtime_id)
    if found is None:
        return HoldPricing([], "")
    return HoldPricing(tiers(found, at), found["currency"])


def prices_now(found: dict | None, statuses: dict[int, str], seat_count: int, at: datetime) -> dict[str, int]:
    """The category prices a hold taken now would pay: for seat maps (one computation per
    showtime, whatever the number of seats)."""
    if found is None:
        return {}
    return tier_for(tiers(found, at), *occupancy(statuses, seat_count))



# --- the admin's rules ---------------------------------------------------------

RULE_COLUMNS = ("name", "priority", "theater_id", "movie_id", "showtime_id", "category", "weekdays",
                "local_time_from", "local_time_to", "days_before_max", "days_before_min", "occupancy_min",
                "percent", "amount_cents")


def _columns(data: dict) -> dict:
    """The API's nested shape as columns (only what ``data`` names)."""
    out = {k: data[k] for k in ("name", "priority") if k in data}
    for part in ("scope", "when"):
        if part in data:
            out.update(data[part] or {})
    if "adjust" in data:
        out["percent"], out["amount_cents"] = data["adjust"].get("percent"), data["adjust"].get("amount_cents")
    for key in ("local_time_from", "local_time_to"):
        if isinstance(out.get(key), str):
            out[key] = _clock(out[key])
    return out


def _check_scope(columns: dict) -> None:
    """Named theaters, movies and showtimes exist: 422 naming the field otherwise."""
    models = {"theater_id": Theater, "movie_id": Movie, "showtime_id": Showtime}
    unknown = {f"scope.{key}": [f"No such {key[:-3]}: {columns[key]}"]
               for key, model in models.items()
               if columns.get(key) is not None and db.session.get(model, columns[key]) is None}
    if unknown:
        raise errors.Invalid("The rule's scope names something that does not exist", errors=unknown)


def _invalidate() -> None:
    marquee().cache.invalidate("price_rules")


def create_rule(actor_id: int, data: dict) -> dict:
    """A new rule (admin), audited in its unit of work; prices change at once (cache)."""
    columns = _columns(data)
    with db.unit_of_work():
        _check_scope(columns)
        rule = PriceRule(**{k: columns.get(k) for k in RULE_COLUMNS if columns.get(k) is not None})
        db.session.add(rule)
        db.session.flush()
        audit.record("price_rule.create", actor_id=actor_id, object_type="price_rule", object_id=rule.id,
                     after=audit.snapshot(rule))
    _invalidate()
    return rule_view(rule)


def get_rule(rule_id: int) -> dict:
    rule = db.session.get(PriceRule, rule_id)
    if rule is None:
        raise errors.NotFound(f"Price rule {rule_id} does not exist")
    return rule_view(rule)


def list_rules(page: int, page_size: int, *, showtime_id: int | None = None) -> tuple[list[dict], int]:
    """Rules in the order they apply (priority, then id); ``showtime_id``: those scoped to it."""
    query = select(PriceRule)
    if showtime_id is not None:
        query = query.where(PriceRule.showtime_id == showtime_id)
    items, total = page_of(query, [PriceRule.priority, PriceRule.id], page, page_size)
    return [rule_view(r) for r in items], total


def update_rule(actor_id: int, rule_id: int, data: dict) -> dict:
    """Change what ``data`` names (``scope``, ``when`` and ``adjust`` are replaced whole)."""
    with db.unit_of_work():
        rule = db.session.scalar(select(PriceRule).where(PriceRule.id == rule_id).with_for_update())
        if rule is None:
            raise errors.NotFound(f"Price rule {rule_id} does not exist")
        before = audit.snapshot(rule)
        columns = _columns(data)
        if "scope" in data:
            columns = {**dict.fromkeys(("theater_id", "movie_id", "showtime_id", "category")), **columns}
        if "when" in data:
            columns = {**dict.fromkeys(("weekdays", "local_time_from", "local_time_to", "days_before_max",
                                        "days_before_min", "occupancy_min")), **columns}
        _check_scope(columns)
        for key, value in columns.items():
            setattr(rule, key, value)
        rule.updated_at = func.now()
        db.session.flush()
        db.session.refresh(rule)
        audit.record("price_rule.update", actor_id=actor_id, object_type="price_rule", object_id=rule.id,
                     before=before, after=audit.snapshot(rule))
    _invalidate()
    return rule_view(rule)


def delete_rule(actor_id: int, rule_id: int) -> None:
    with db.unit_of_work():
        rule = db.session.scalar(select(PriceRule).where(PriceRule.id == rule_id).with_for_update())
        if rule is None:
            raise errors.NotFound(f"Price rule {rule_id} does not exist")
        audit.record("price_rule.delete", actor_id=actor_id, object_type="price_rule", object_id=rule.id,
                     before=audit.snapshot(rule))
        db.session.delete(rule)
    _invalidate()
