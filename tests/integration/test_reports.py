"""Reports against real PostgreSQL, Redis, RabbitMQ and gunicorn: after a rush of
bookings paid, declined, cancelled and refunded through the real worker, the sales
report equals the payments table; days are the theater's local days; a manager
sees only their theaters; CSV says what JSON says, and no cell is a formula."""
import concurrent.futures
import csv
import io
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select, text

from app import db
from app.bootstrap import marquee
from app.models import Payment, Reservation, ReservationSeat, UserRole
from app.services import booking
from tests.helpers import wait_until
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import relay, running_consumer

SALES = "/api/v1/reports/sales"
OCCUPANCY = "/api/v1/reports/occupancy"
GROUPS = ("day", "week", "month", "movie", "theater", "showtime")


def _all_rows(api, token, path, **params):
    """Every row of a paginated report, page after page; and the last body."""
    rows, page = [], 1
    while True:
        r = api.get(path, token, query_string={**params, "page": page, "page_size": 100})
        assert r.status_code == 200, r.json
        body = r.json
        chunk = body["rows"] if isinstance(body, dict) else body
        rows += chunk
        if len(chunk) < 100:
            return rows, body
        page += 1


def _csv_rows(api, token, path, **params) -> list[dict]:
    r = api.get(path, token, query_string={**params, "format": "csv"})
    assert r.status_code == 200 and r.mimetype == "text/csv", r.data[:300]
    return list(csv.DictReader(io.StringIO(r.data.decode())))


def _truth(app) -> dict:
    """What the payments table (and the live reservations) say, summed by hand."""
    with app.app_context():
        def total(kind):
            return int(db.session.scalar(select(func.coalesce(func.sum(Payment.amount_cents), 0)).where(
                Payment.kind == kind, Payment.status == "succeeded")))
        tickets = db.session.scalar(select(func.count()).select_from(ReservationSeat).join(
            Reservation, Reservation.id == ReservationSeat.reservation_id).where(Reservation.status == "confirmed"))
        discounts = db.session.scalar(select(func.coalesce(func.sum(Reservation.discount_cents), 0)).where(
            Reservation.id.in_(select(Payment.reservation_id).where(Payment.kind == "charge",
                                                                     Payment.status == "succeeded"))))
        gross, refunds = total("charge"), total("refund")
        db.session.rollback()
    return {"currency": "EUR", "gross_cents": gross, "discount_cents": int(discounts), "refund_cents": refunds,
            "net_cents": gross - refunds, "tickets": tickets}


def _figures_sum(rows) -> dict:
    keys = ("gross_cents", "discount_cents", "refund_cents", "net_cents", "tickets")
    return {"currency": "EUR", **{k: sum(int(r[k]) for r in rows) for k in keys}}


def _statuses(app, ids):
    with app.app_context():
        rows = dict(db.session.execute(select(Reservation.id, Reservation.status).where(Reservation.id.in_(ids))).all())
        db.session.rollback()
        return rows


def _refund_count(app) -> int:
    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(Payment).where(Payment.kind == "refund"))
        db.session.rollback()
        return n


def test_after_a_rush_the_sales_report_equals_the_payments(api, app, admin, show, broker, smtp, live_server):
    """Six customers book two showtimes at once through gunicorn (some cards declined); the real
    worker charges them; half the paid ones are cancelled at once and refunded, with
    a fee, by the same worker. Totals equal the payments table, grouped rows sum to
    the totals whatever the grouping, and the CSV has the same rows."""
    layout = {"rows": [{"label": r, "seats": ["standard"] * 8} for r in "ABC"]}
    screen = api.screen(admin, show["theater"], layout=layout, name="Big")
    # two showtimes of one theater: charges race on the theater's summary row, not only the showtime's
    shows = [api.showtime(admin, show["movie"], screen["id"],
                          starts_at=(datetime.now(timezone.utc) + timedelta(days=days)).replace(microsecond=0))
             for days in (2, 3)]
    api.patch(f"/api/v1/theaters/{show['theater']}", {"refund_policy": {"cutoff_minutes": 0, "fee_percent": 20}},
              admin)
    seats = seat_ids(api, shows[0]["id"])  # the same screen
    users = [api.make_user(f"rush{i}@example.com") for i in range(6)]

    def customer(i):
        session, out = requests.Session(), []
        headers = {"Authorization": f"Bearer {users[i]}"}
        showtime_id, first = shows[i % 2]["id"], (i // 2) * 4
        for k in range(3):
            chosen = seats[first + k: first + k + 1] if k < 2 else seats[first + 2: first + 4]
            h = session.post(f"{live_server}/api/v1/showtimes/{showtime_id}/holds", json={"seat_ids": chosen},
                             headers=headers)
            assert h.status_code == 201, h.text
            token = "tok_declined" if (i + k) % 4 == 0 else "tok_visa"
            r = session.post(f"{live_server}/api/v1/reservations", json={"hold_id": h.json()["id"],
                                                                          "payment_token": token}, headers=headers)
            assert r.status_code == 202, r.text
            out.append((i, r.json()["id"]))
        return out

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        booked = [x for chunk in pool.map(customer, range(6)) for x in chunk]
    ids = [rid for _, rid in booked]
    with running_consumer(app):
        assert wait_until(lambda: relay(app, broker) >= 0 and all(
            s in ("confirmed", "payment_failed") for s in _statuses(app, ids).values()), timeout=30)
        states = _statuses(app, ids)
        paid = [(i, rid) for i, rid in booked if states[rid] == "confirmed"]
        assert 0 < len(paid) < len(booked)  # some declined

        def cancel(pair):
            i, rid = pair
            return requests.post(f"{live_server}/api/v1/reservations/{rid}/cancel",
                                 headers={"Authorization": f"Bearer {users[i]}"}).status_code

        cancelled = paid[::2]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            assert set(pool.map(cancel, cancelled)) == {202}
        assert wait_until(lambda: relay(app, broker) >= 0 and _refund_count(app) == len(cancelled), timeout=30)

    truth = _truth(app)
    with app.app_context():  # the refunds are the charges less the 20 % fee
        totals = db.session.scalars(select(Reservation.total_cents).where(
            Reservation.id.in_([rid for _, rid in cancelled]))).all()
        db.session.rollback()
    assert truth["refund_cents"] == sum(t - t * 20 // 100 for t in totals) > 0
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    window = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    for group_by in GROUPS:
        rows, body = _all_rows(api, admin, SALES, group_by=group_by, **window)
        assert body["totals"] == [truth], group_by
        assert _figures_sum(rows) == truth, group_by
        assert [{k: str(v) for k, v in row.items()} for row in rows] == _csv_rows(
            api, admin, SALES, group_by=group_by, **window), group_by
    occupancy, _ = _all_rows(api, admin, OCCUPANCY, **{**window, "to": (today + timedelta(days=3)).isoformat()})
    assert sum(r["sold"] for r in occupancy) == truth["tickets"]


def _paid_at(app, reservation_id: int, at: datetime, amount: int) -> None:
    """A charge the gateway confirmed at ``at`` (the service the worker calls, with that time)."""
    with app.app_context():
        booking.confirm_payment(reservation_id, now=at, payment={
            "kind": "charge", "status": "succeeded", "amount_cents": amount, "currency": "EUR",
            "gateway_ref": "ch_test", "idempotency_key": f"reservation-{reservation_id}", "created_at": at})
        db.session.remove()


def test_a_sale_at_2330_local_in_a_utc_minus_5_city_falls_on_its_local_day(api, app, admin, user):
    city = api.city(admin, name="Bogota", country="Colombia", timezone="America/Bogota")  # UTC-5, no DST
    theater = api.theater(admin, city["id"], name="Cine Bogota")
    screen = api.screen(admin, theater["id"])
    movie = api.movie(admin, title="Local")
    show = api.showtime(admin, movie["id"], screen["id"])
    res = reserve(api, user, hold(api, user, show["id"], seat_ids(api, show["id"])[:1]).json["id"]).json
    sold_at = datetime(2026, 3, 10, 23, 30, tzinfo=ZoneInfo("America/Bogota"))  # 04:30 UTC on the 11th
    with app.app_context():
        db.session.execute(text("UPDATE reservations SET created_at = :t - interval '1 minute', "
                                "expires_at = :t + interval '10 minutes' WHERE id = :id"),
                           {"t": sold_at, "id": res["id"]})
        db.session.commit()
    _paid_at(app, res["id"], sold_at, 1000)
    rows, body = _all_rows(api, admin, SALES, **{"from": "2026-03-09", "to": "2026-03-12", "group_by": "day"})
    assert [(r["key"], r["gross_cents"], r["tickets"]) for r in rows] == [("2026-03-10", 1000, 1)]
    month, _ = _all_rows(api, admin, SALES, **{"from": "2026-03-01", "to": "2026-03-31", "group_by": "week"})
    assert [r["key"] for r in month] == ["2026-03-09"]  # the Monday of the local day's ISO week


@pytest.fixture
def two_theaters(api, app, admin, show, user):
    """Theater A (the ``show`` fixture's) and B, a paid seat in each; a manager of A."""
    theater_b = api.theater(admin, show["city"], name="Rex")
    screen_b = api.screen(admin, theater_b["id"])
    show_b = api.showtime(admin, show["movie"], screen_b["id"])
    for showtime_id in (show["showtime"], show_b["id"]):
        res = reserve(api, user, hold(api, user, showtime_id, seat_ids(api, showtime_id)[:1]).json["id"]).json
        _paid_at(app, res["id"], datetime.now(timezone.utc), 1000)
    manager = api.make_user("manager@example.com")
    with app.app_context():
        manager_id = db.session.execute(text("SELECT id FROM users WHERE email = 'manager@example.com'")).scalar()
        db.session.add(UserRole(user_id=manager_id, role="manager", theater_id=show["theater"]))
        db.session.commit()
    return {"a": show["theater"], "b": theater_b["id"], "manager": manager, "show_b": show_b["id"]}


def _window():
    today = date.today()
    return {"from": (today - timedelta(days=2)).isoformat(), "to": (today + timedelta(days=2)).isoformat()}


def test_a_manager_sees_only_their_theaters(api, admin, two_theaters):
    manager = two_theaters["manager"]
    rows, body = _all_rows(api, manager, SALES, group_by="theater", **_window())
    assert [r["key"] for r in rows] == [str(two_theaters["a"])]
    assert body["totals"][0]["gross_cents"] == 1000
    _, everything = _all_rows(api, admin, SALES, group_by="theater", **_window())
    assert everything["totals"][0]["gross_cents"] == 2000
    occupancy, _ = _all_rows(api, manager, OCCUPANCY, **_window())
    assert {r["theater_id"] for r in occupancy} == {two_theaters["a"]}
    assert _all_rows(api, manager, SALES, theater_id=two_theaters["a"], **_window())[1]["totals"][0][
        "gross_cents"] == 1000


@pytest.mark.parametrize("path", [SALES, OCCUPANCY])
def test_a_manager_asking_for_another_theater_or_a_customer_is_refused(api, user, two_theaters, path):
    r = api.get(path, two_theaters["manager"], query_string={"theater_id": two_theaters["b"], **_window()})
    assert r.status_code == 403 and r.json["code"] == "forbidden"
    assert api.get(path, user, query_string=_window()).status_code == 403
    assert api.get(path, query_string=_window()).status_code == 401


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-05-02", "to": "2026-05-01"}, "to"),
    ({"from": "2025-01-01", "to": "2026-02-05"}, "to"),
    ({"to": "2026-05-01"}, "from"),
    ({"from": "2026-05-01", "to": "2026-05-02", "group_by": "year"}, "group_by"),
    ({"from": "2026-05-01", "to": "2026-05-02", "format": "xlsx"}, "format"),
    ({"from": "yesterday", "to": "2026-05-02"}, "from"),
])
def test_bad_ranges_and_options_are_422(api, admin, params, field):
    r = api.get(SALES, admin, query_string=params)
    assert r.status_code == 422 and field in r.json["errors"], r.json


def test_an_unknown_parameter_is_400(api, admin):
    r = api.get(SALES, admin, query_string={"from": "2026-05-01", "to": "2026-05-02", "grup_by": "day"})
    assert r.status_code == 400 and r.json["code"] == "unknown_parameter"


def test_csv_cells_cannot_be_formulas(api, app, admin, user, show):
    movie = api.movie(admin, title='=HYPERLINK("http://evil.example","x")')
    screen = api.screen(admin, show["theater"], name="Two")
    hostile = api.showtime(admin, movie["id"], screen["id"])
    res = reserve(api, user, hold(api, user, hostile["id"], seat_ids(api, hostile["id"])[:1]).json["id"]).json
    _paid_at(app, res["id"], datetime.now(timezone.utc), 1000)
    rows = _csv_rows(api, admin, SALES, group_by="movie", **_window())
    assert [r["label"] for r in rows] == ['\'=HYPERLINK("http://evil.example","x")']
    occupancy = _csv_rows(api, admin, OCCUPANCY, **_window())
    assert {r["movie_title"] for r in occupancy} == {"Heat", '\'=HYPERLINK("http://evil.example","x")'}


def test_occupancy_counts_sold_held_and_capacity(api, app, admin, user, other, show):
    seats = seat_ids(api, show["showtime"])
    res = reserve(api, user, hold(api, user, show["showtime"], seats[:1]).json["id"]).json
    _paid_at(app, res["id"], datetime.now(timezone.utc), 1000)
    assert hold(api, other, show["showtime"], seats[1:3]).status_code == 201
    blocked = api.post(f"/api/v1/showtimes/{show['showtime']}/blocked-seats", {"seat_ids": seats[5:6]}, admin)
    assert blocked.status_code in (200, 201), blocked.json
    rows, _ = _all_rows(api, admin, OCCUPANCY, **_window())
    row = next(r for r in rows if r["showtime_id"] == show["showtime"])
    assert (row["capacity"], row["sold"], row["held"], row["blocked"], row["available"]) == (6, 1, 2, 1, 2)
    assert [{k: str(v) for k, v in r.items()} for r in rows] == _csv_rows(api, admin, OCCUPANCY, **_window())


def test_discounts_are_those_of_the_reservations_charged(api, app, admin, user, show):
    """A voucher's discount (``discount_cents``, as checkout records it) shows beside the
    charge it reduced; a reservation never charged adds nothing."""
    seats = seat_ids(api, show["showtime"])
    charged = reserve(api, user, hold(api, user, show["showtime"], seats[:1]).json["id"]).json
    unpaid = reserve(api, user, hold(api, user, show["showtime"], seats[1:2]).json["id"]).json
    with app.app_context():
        db.session.execute(text("UPDATE reservations SET discount_cents = 250, total_cents = 750 WHERE id IN "
                                "(:a, :b)"), {"a": charged["id"], "b": unpaid["id"]})
        db.session.commit()
    _paid_at(app, charged["id"], datetime.now(timezone.utc), 750)
    _, body = _all_rows(api, admin, SALES, **_window())
    assert body["totals"] == [{"currency": "EUR", "gross_cents": 750, "discount_cents": 250, "refund_cents": 0,
                               "net_cents": 750, "tickets": 1}]
    assert body["totals"] == [_truth(app)]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_report_carries_an_etag_and_answers_304_while_nothing_changed(api, admin, show, fmt):
    params = {**_window(), "format": fmt}
    first = api.get(SALES, admin, query_string=params)
    assert first.status_code == 200 and first.headers.get("ETag")
    again = api.get(SALES, admin, query_string=params, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_sales_rows_are_paginated_with_the_totals_on_every_page(api, admin, two_theaters):
    import json

    seen = []
    for page in (1, 2, 3):
        r = api.get(SALES, admin, query_string={**_window(), "group_by": "showtime", "page": page, "page_size": 1})
        assert r.status_code == 200
        assert json.loads(r.headers["X-Pagination"])["total"] == 2
        assert r.json["totals"][0]["gross_cents"] == 2000
        seen += r.json["rows"]
    assert len(seen) == 2 and seen[0]["key"] != seen[1]["key"] and sum(r["gross_cents"] for r in seen) == 2000
    assert all(", Opera, " in r["label"] or ", Rex, " in r["label"] for r in seen)


def test_a_confirmation_does_not_hold_the_summary_rows_until_it_commits(api, app, admin, user, other, show):
    """Two charges of one showtime on one day, in two open transactions: the second
    commits while the first is still open (the summaries are added to at commit: with
    the triggers at the INSERT, the second waited on the first's row lock and ran into
    its lock timeout), and the report counts both."""
    seats = seat_ids(api, show["showtime"])
    ids = [reserve(api, token, hold(api, token, show["showtime"], [seat]).json["id"]).json["id"]
           for token, seat in ((user, seats[0]), (other, seats[2]))]
    insert = text("INSERT INTO payments (reservation_id, kind, status, amount_cents, currency, gateway_ref, "
                  "idempotency_key) VALUES (:id, 'charge', 'succeeded', 1000, 'EUR', 'ch_test', :key)")
    with app.app_context():
        engine = marquee().engine
        with engine.connect() as first, engine.connect() as second:
            first.execute(insert, {"id": ids[0], "key": f"lock-test-{ids[0]}"})  # open, not committed
            second.execute(text("SET lock_timeout = '2s'"))
            second.execute(insert, {"id": ids[1], "key": f"lock-test-{ids[1]}"})
            second.commit()  # would raise LockNotAvailable with the triggers at the INSERT
            first.commit()
    rows, _ = _all_rows(api, admin, SALES, **{"from": (date.today() - timedelta(days=1)).isoformat(),
                                              "to": (date.today() + timedelta(days=1)).isoformat(),
                                              "group_by": "showtime"})
    assert [(r["gross_cents"], r["discount_cents"]) for r in rows] == [(2000, 0)]


def test_a_sale_updates_its_showtimes_summary_row_in_place(api, app, user, other, show):
    """Each charge of a showtime adds to the same ``sales_daily`` row; no index holds the
    columns it changes, so the update is HOT (heap-only: no new index entries, the old
    version pruned on its page without VACUUM). With the summed columns in an index
    (``ix_sales_daily_day INCLUDE (...)`` before migration 0025) none was."""
    seats = seat_ids(api, show["showtime"])
    ids = [reserve(api, token, hold(api, token, show["showtime"], [seat]).json["id"]).json["id"]
           for token, seat in ((user, seats[0]), (other, seats[2]), (user, seats[4]))]
    insert = text("INSERT INTO payments (reservation_id, kind, status, amount_cents, currency, gateway_ref, "
                  "idempotency_key) VALUES (:id, 'charge', 'succeeded', 1000, 'EUR', 'ch_test', :key)")
    counts = text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'sales_daily'")
    with app.app_context(), marquee().engine.connect() as connection:
        connection.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # the summary triggers run at each INSERT
        # The view counts this backend's updates not yet reported (PostgreSQL reports them
        # at most once a second), so a pooled connection may show an earlier test's: what
        # counts is how far this transaction moves them.
        before = connection.execute(counts).one()
        for reservation_id in ids:
            connection.execute(insert, {"id": reservation_id, "key": f"hot-test-{reservation_id}"})
        after = connection.execute(counts).one()
        connection.rollback()
    updated, hot = after[0] - before[0], after[1] - before[1]
    assert (updated, hot) == (2, 2)  # the first charge made the row, the two others added to it
