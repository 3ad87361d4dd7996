"""Reports (API.md "Operating": Reports): sales and occupancy, for an admin, or a
manager for their theaters only.

Sales read ``sales_daily`` (by showtime) or ``sales_theater_daily`` (by theater;
migration 0019), which triggers keep equal to the sums of the ``payments`` table in
the transaction of each payment: ``gross`` is the successful
charges (what customers paid, after any voucher), ``discounts`` the vouchers' discounts
of the reservations charged, ``refunds`` the successful refunds, ``net`` = gross -
refunds, ``tickets`` the net change of live tickets (+seats on confirmation, -seats on
cancellation). Each figure falls on the local day (the theater's city time zone) of
the payment or change it comes from, and on the showtime it is for. One aggregate
query a report (``GROUPING SETS``: the rows and the totals together), one row per
group and currency: amounts in different currencies are never added up.

``from`` and ``to`` are local dates, both included, at most ``MAX_RANGE_DAYS`` apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import text

from app import db
from app.services import errors, seats, staff

GROUPS = ("day", "week", "month", "movie", "theater", "showtime")
MAX_RANGE_DAYS = 400

# group_by -> (summary read, key, joins the key needs, label, joins naming the grouped
# rows ``g``). Only these fixed strings reach the SQL.
_SHOWTIME = "JOIN showtimes st ON st.id = s.showtime_id"
_SCREEN = "JOIN screens sc ON sc.id = st.screen_id"
_BY_THEATER, _BY_SHOWTIME = "sales_theater_daily", "sales_daily"
_GROUPING = {
    "day": (_BY_THEATER, "s.day", (), "NULL::text", ""),
    "week": (_BY_THEATER, "date_trunc('week', s.day)::date", (), "NULL::text", ""),
    "month": (_BY_THEATER, "date_trunc('month', s.day)::date", (), "NULL::text", ""),
    "theater": (_BY_THEATER, "s.theater_id", (), "t.name", "LEFT JOIN theaters t ON t.id = g.key"),
    "movie": (_BY_SHOWTIME, "st.movie_id", (_SHOWTIME,), "m.title", "LEFT JOIN movies m ON m.id = g.key"),
    "showtime": (_BY_SHOWTIME, "s.showtime_id", (),
                 "m.title || ', ' || t.name || ', ' || to_char(st.starts_at AT TIME ZONE c.timezone, "
                 "'YYYY-MM-DD HH24:MI')",
                 "LEFT JOIN showtimes st ON st.id = g.key LEFT JOIN screens sc ON sc.id = st.screen_id "
                 "LEFT JOIN movies m ON m.id = st.movie_id LEFT JOIN theaters t ON t.id = sc.theater_id "
                 "LEFT JOIN cities c ON c.id = t.city_id"),
}


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # included


def period(start: date, end: date) -> Period:
    """422 unless ``start`` <= ``end`` and the range spans at most ``MAX_RANGE_DAYS`` days."""
    if end < start:
        raise errors.Invalid("to is before from", errors={"to": ["Must not be before from."]})
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise errors.Invalid(f"At most {MAX_RANGE_DAYS} days a report",
                             errors={"to": [f"At most {MAX_RANGE_DAYS} days after from."]})
    return Period(start, end)


def theaters_in_scope(actor: staff.Actor, theater_id: int | None) -> list[int] | None:
    """The theaters the report may cover: None for all (an admin, unfiltered).
    403 for someone who manages no theater, or asks for a theater they do not manage
    (theaters are public, so naming one hides nothing)."""
    allowed = staff.scope(actor, "manager")
    if allowed is not None and not allowed:
        raise errors.Forbidden("Reports need the admin role or a manager role at a theater")
    if theater_id is not None:
        if allowed is not None and theater_id not in allowed:
            raise errors.Forbidden(f"You do not manage theater {theater_id}")
        return [theater_id]
    return None if allowed is None else sorted(allowed)


def _key_text(group_by: str, key) -> str:
    if group_by == "month":
        return key.strftime("%Y-%m")
    if isinstance(key, date):
        return key.isoformat()
    return str(key)


def _figures(row) -> dict:
    gross, discounts, refunds, tickets = (int(v or 0) for v in (row.gross, row.discounts, row.refunds, row.tickets))
    return {"currency": row.currency, "gross_cents": gross, "discount_cents": discounts, "refund_cents": refunds,
            "net_cents": gross - refunds, "tickets": tickets}


def sales(actor: staff.Actor, when: Period, group_by: str = "day", *, theater_id: int | None = None,
          page: int = 1, page_size: int | None = None) -> dict:
    """Sales from ``when.start`` to ``when.end`` (local days), grouped by ``group_by``:
    ``{"rows": [{key, label, currency, gross_cents, discount_cents, refund_cents,
    net_cents, tickets}], "totals": [the same without key and label, a currency each],
    "groups": how many rows in all}``, rows in key order, the ``page``-th ``page_size``
    of them (all of them when ``page_size`` is None)."""
    if group_by not in GROUPS:
        raise errors.Invalid("Unknown grouping", errors={"group_by": [f"Must be one of: {', '.join(GROUPS)}."]})
    theaters = theaters_in_scope(actor, theater_id)
    source, key, joins, label, label_joins = _GROUPING[group_by]
    joins = list(joins)
    where = ["s.day BETWEEN :start AND :end"]
    if theaters is not None and source == _BY_THEATER:
        where.append("s.theater_id = ANY(:theaters)")
    elif theaters is not None:
        joins = list(dict.fromkeys([*joins, _SHOWTIME, _SCREEN]))
        where.append("sc.theater_id = ANY(:theaters)")
    # One statement: aggregate once (the groups and the totals per currency in one pass),
    # then take the page of groups and name only those (labels are looked up for the
    # rows answered, not joined into every summary row); the totals carry the count.
    sql = f"""
        WITH g AS MATERIALIZED (
            SELECT {key} AS key, s.currency, GROUPING({key}) AS is_total,
                   sum(s.gross_cents) AS gross, sum(s.discount_cents) AS discounts,
                   sum(s.refund_cents) AS refunds, sum(s.tickets) AS tickets
              FROM {source} s {' '.join(joins)}
             WHERE {' AND '.join(where)}
             GROUP BY GROUPING SETS (({key}, s.currency), (s.currency))),
        page AS (
            SELECT * FROM g WHERE is_total = 0 ORDER BY key, currency LIMIT :limit OFFSET :offset)
        (SELECT g.key, g.currency, g.is_total, g.gross, g.discounts, g.refunds, g.tickets, {label} AS label,
                NULL::bigint AS groups
           FROM page g {label_joins}
          ORDER BY g.key, g.currency)
        UNION ALL
        (SELECT key, currency, is_total, gross, discounts, refunds, tickets, NULL,
                (SELECT count(*) FROM g WHERE is_total = 0)
           FROM g WHERE is_total = 1 ORDER BY currency)
    """  # noqa: S608 - every piece is one of the fixed strings above; values are bound
    offset = 0 if page_size is None else (page - 1) * page_size
    result = db.session.execute(text(sql), {"start": when.start, "end": when.end, "theaters": theaters,
                                            "limit": page_size, "offset": offset})
    rows, totals, groups = [], [], 0
    for row in result:
        if row.is_total:
            totals.append(_figures(row))
            groups = int(row.groups)
        else:
            key_text = _key_text(group_by, row.key)
            rows.append({"key": key_text, "label": row.label or key_text, **_figures(row)})
    return {"from": when.start, "to": when.end, "group_by": group_by, "rows": rows, "totals": totals,
            "groups": groups}


def occupancy(actor: staff.Actor, when: Period, *, theater_id: int | None = None, page: int = 1,
              page_size: int | None = 50) -> tuple[list[dict], int]:
    """Showtimes starting from ``when.start`` to ``when.end`` (local days), by start:
    ``capacity`` (the screen's seats), ``sold`` (seats of confirmed reservations),
    ``held`` (seats held now or in reservations awaiting payment, from Redis, for
    showtimes not started; 0 after), ``blocked`` (by staff, likewise) and ``available``. ``page_size`` None: all of them
    (the CSV export). One PostgreSQL query, then one Redis read per live showtime of the page."""
    theaters = theaters_in_scope(actor, theater_id)
    sql = f"""
        SELECT st.id AS showtime_id, st.starts_at, c.timezone, st.movie_id, m.title AS movie_title,
               sc.theater_id, t.name AS theater_name, sc.id AS screen_id, sc.name AS screen_name,
               sc.seat_count AS capacity,
               coalesce((SELECT sum(sd.tickets) FROM sales_daily sd WHERE sd.showtime_id = st.id), 0) AS sold,
               count(*) OVER () AS total
          FROM showtimes st
          JOIN screens sc ON sc.id = st.screen_id
          JOIN theaters t ON t.id = sc.theater_id
          JOIN cities c ON c.id = t.city_id
          JOIN movies m ON m.id = st.movie_id
         WHERE {_showtimes_in_range(theaters)}
         ORDER BY st.starts_at, st.id
         LIMIT :limit OFFSET :offset
    """  # noqa: S608 - fixed strings only; values are bound
    # Any time zone is within a day of UTC: the UTC bounds narrow by the index, the local date decides.
    lo = datetime.combine(when.start - timedelta(days=1), datetime.min.time(), timezone.utc)
    hi = datetime.combine(when.end + timedelta(days=2), datetime.min.time(), timezone.utc)
    offset = 0 if page_size is None else (page - 1) * page_size
    result = db.session.execute(text(sql), {"start": when.start, "end": when.end, "lo": lo, "hi": hi,
                                            "theaters": theaters, "limit": page_size, "offset": offset}).all()
    total = int(result[0].total) if result else 0
    now = seats.now()
    out = []
    for row in result:
        held, blocked = _held_and_blocked(row.showtime_id) if row.starts_at > now else (0, 0)
        sold = int(row.sold)
        out.append({
            "showtime_id": row.showtime_id, "starts_at": row.starts_at, "timezone": row.timezone,
            "movie_id": row.movie_id, "movie_title": row.movie_title, "theater_id": row.theater_id,
            "theater_name": row.theater_name, "screen_id": row.screen_id, "screen_name": row.screen_name,
            "capacity": row.capacity, "sold": sold, "held": held, "blocked": blocked,
            "available": max(0, row.capacity - sold - held - blocked),
            "occupancy_percent": round(100 * sold / row.capacity, 1) if row.capacity else 0.0,
        })
    if not result and page > 1:  # past the end: the count still says how many there are
        total = _count_showtimes(theaters, when, lo, hi)
    return out, total


def _showtimes_in_range(theaters: list[int] | None) -> str:
    """The WHERE of showtimes starting on the local days asked for (fixed strings only)."""
    where = ["st.starts_at >= :lo", "st.starts_at < :hi",
             "(st.starts_at AT TIME ZONE c.timezone)::date BETWEEN :start AND :end"]
    if theaters is not None:
        where.append("sc.theater_id = ANY(:theaters)")
    return " AND ".join(where)


def _count_showtimes(theaters: list[int] | None, when: Period, lo: datetime, hi: datetime) -> int:
    sql = f"""SELECT count(*) FROM showtimes st JOIN screens sc ON sc.id = st.screen_id
              JOIN theaters t ON t.id = sc.theater_id JOIN cities c ON c.id = t.city_id
              WHERE {_showtimes_in_range(theaters)}"""  # noqa: S608 - fixed strings only
    return int(db.session.scalar(text(sql), {"start": when.start, "end": when.end, "lo": lo, "hi": hi,
                                             "theaters": theaters}))


def _held_and_blocked(showtime_id: int) -> tuple[int, int]:
    """Seats held now in Redis (holds, and reservations awaiting payment), and seats blocked."""
    statuses = list(seats.seat_statuses(showtime_id).values())
    return statuses.count("held"), statuses.count("blocked")
