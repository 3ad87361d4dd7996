"""Vouchers on real PostgreSQL, Redis and RabbitMQ: the admin's endpoints, redemption at
checkout, never more than max_uses (nor max_uses_per_user) under parallel checkouts, uses
given back by cancellation, failed payment and expiry, and no guessing codes."""
import concurrent.futures
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app import db
from app.models import AuditEntry, User, Voucher
from app.services import booking, errors, vouchers
from tests.helpers import PASSWORD
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import relay, status_of, work_until

VOUCHERS = "/api/v1/vouchers"


def voucher(api, admin, status=201, **body):
    """Create a voucher (10% off unless said otherwise; a field given as None is left out)."""
    body = {k: v for k, v in {"code": "WINTER10", "percent_off": 10, **body}.items() if v is not None}
    r = api.post(VOUCHERS, body, admin)
    assert r.status_code == status, r.json
    return r.json


def uses(app, code) -> int:
    with app.app_context():
        found = db.session.scalar(select(Voucher.uses).where(Voucher.code == code.lower()))
        db.session.rollback()
        return found


def checkout(api, token, showtime_id, seats, code=None, payment_token="tok_visa"):
    h = hold(api, token, showtime_id, seats)
    assert h.status_code == 201, h.json
    body = {"hold_id": h.json["id"], "payment_token": payment_token}
    if code is not None:
        body["voucher_code"] = code
    return h.json, api.post("/api/v1/reservations", body, token)


def big_show(api, admin, seats):
    """A showtime tomorrow on one row of ``seats`` standard seats at 1000 cents, single seats holdable."""
    theater = api.theater(admin, api.city(admin)["id"])
    screen = api.screen(admin, theater["id"], layout={"rows": [{"label": "A", "seats": ["standard"] * seats}]})
    movie = api.movie(admin)
    show = api.showtime(admin, movie["id"], screen["id"], prices={"standard": 1000}, orphan_seats="allow")
    return {"theater": theater["id"], "movie": movie["id"], "showtime": show["id"]}


def customers(api, app, count, prefix="v"):
    for i in range(count):
        r = api.post("/api/v1/auth/register", {"email": f"{prefix}{i}@example.com", "password": PASSWORD, "name": "V"})
        assert r.status_code == 201
    with app.app_context():
        return db.session.scalars(select(User.id).where(User.email.like(f"{prefix}%@example.com"))
                                  .order_by(User.id)).all()


def in_parallel(app, calls, threads=40):
    """Run the calls at once, each on a thread with its own session (up to ``threads`` at a
    time, released together; the app's pools bound the rest): each one's result or the
    domain error it raised."""
    start = threading.Event()

    def run(call):
        start.wait()
        with app.app_context():
            try:
                return call()
            except errors.DomainError as exc:
                return exc

    with concurrent.futures.ThreadPoolExecutor(min(threads, len(calls))) as pool:
        futures = [pool.submit(run, call) for call in calls]
        start.set()
        return [f.result() for f in futures]


# --- the admin's endpoints ----------------------------------------------------------

def test_an_admin_creates_reads_changes_and_deletes_a_voucher_each_write_audited(api, app, admin, show):
    created = voucher(api, admin, max_uses=5, max_uses_per_user=1, scope={"theater_id": show["theater"]},
                      valid_until="2031-01-01T00:00:00+00:00")
    assert created["code"] == "winter10" and created["uses"] == 0 and created["percent_off"] == 10
    assert created["scope"] == {"theater_id": show["theater"]}
    assert api.get(f"{VOUCHERS}/{created['id']}", admin).json == created
    assert [v["id"] for v in api.get(f"{VOUCHERS}?code=Winter10", admin).json] == [created["id"]]
    changed = api.patch(f"{VOUCHERS}/{created['id']}", {"amount_off_cents": 300, "currency": "EUR"}, admin)
    assert changed.status_code == 200, changed.json
    assert changed.json["amount_off_cents"] == 300 and "percent_off" not in changed.json
    assert api.delete(f"{VOUCHERS}/{created['id']}", admin).status_code == 204
    assert api.get(f"{VOUCHERS}/{created['id']}", admin).status_code == 404
    with app.app_context():
        actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.object_type == "voucher")
                                     .order_by(AuditEntry.id)).all()
    assert actions == ["voucher.create", "voucher.update", "voucher.delete"]


def test_codes_are_case_insensitive_and_unique(api, admin, user, show):
    voucher(api, admin, code="Spring-5")
    again = voucher(api, admin, status=409, code="SPRING-5")
    assert again["code"] == "voucher_code_taken"
    _, r = checkout(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1], code="sPrInG-5")
    assert r.status_code == 202, r.json
    assert r.json["discount_cents"] == 100 and r.json["total_cents"] == 900


@pytest.mark.parametrize(("body", "field"), [
    ({"percent_off": None}, "percent_off"),
    ({"amount_off_cents": 100, "currency": "EUR"}, "_schema"),
    ({"percent_off": 101}, "percent_off"),
    ({"code": "x"}, "code"),
    ({"max_uses": 0}, "max_uses"),
    ({"valid_from": "2030-01-02T00:00:00+00:00", "valid_until": "2030-01-01T00:00:00+00:00"}, "valid_until"),
    ({"valid_from": "2030-01-02T00:00:00"}, "valid_from"),
    ({"scope": {"showtime_id": 999999}}, "scope.showtime_id"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_vouchers_are_422_naming_the_field_and_write_nothing(api, admin, body, field):
    r = api.post(VOUCHERS, {"code": "WINTER10", "percent_off": 10, **body}, admin)
    assert r.status_code == 422, r.json
    assert field in r.json["errors"], r.json
    assert api.get(VOUCHERS, admin).json == []


def test_an_amount_needs_its_currency(api, admin):
    r = api.post(VOUCHERS, {"code": "FIVE", "amount_off_cents": 500}, admin)
    assert r.status_code == 422 and "currency" in r.json["errors"]


def test_vouchers_are_for_admins_only_and_unknown_ones_are_404(api, admin, user):
    created = voucher(api, admin)
    assert api.get(VOUCHERS, user).status_code == 403
    assert api.post(VOUCHERS, {"code": "MINE", "percent_off": 100}, user).status_code == 403
    assert api.get(f"{VOUCHERS}/{created['id']}", user).status_code == 403
    assert api.patch(f"{VOUCHERS}/{created['id']}", {"max_uses": 1}, user).status_code == 403
    assert api.delete(f"{VOUCHERS}/{created['id']}", user).status_code == 403
    assert api.get(VOUCHERS).status_code == 401
    assert api.get(f"{VOUCHERS}/424242", admin).status_code == 404
    assert api.patch(f"{VOUCHERS}/424242", {"max_uses": 1}, admin).status_code == 404
    assert api.delete(f"{VOUCHERS}/424242", admin).status_code == 404


def test_a_redeemed_voucher_is_not_deleted_and_max_uses_stays_above_uses(api, admin, user, show):
    created = voucher(api, admin)
    checkout(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1], code="winter10")
    assert api.delete(f"{VOUCHERS}/{created['id']}", admin).json["code"] == "in_use"
    r = api.patch(f"{VOUCHERS}/{created['id']}", {"max_uses": None}, admin)
    assert r.status_code == 200 and r.json["uses"] == 1


# --- checkout -----------------------------------------------------------------------

def test_the_reservation_charges_the_seats_less_the_discount_never_below_zero(api, app, admin, user, other, show,
                                                                               broker):
    voucher(api, admin, code="BIG", amount_off_cents=5000, currency="EUR", percent_off=None)
    seats = seat_ids(api, show["showtime"])
    h, r = checkout(api, user, show["showtime"], seats[:2], code="big")
    assert h["total_cents"] == 2000
    assert r.json["discount_cents"] == 2000 and r.json["total_cents"] == 0
    assert [s["price_cents"] for s in r.json["seats"]] == [1000, 1000]
    voucher(api, admin, code="THIRD", percent_off=33)
    h, r = checkout(api, other, show["showtime"], seats[2:3], code="THIRD")  # premium 1500: 495 off
    assert (r.json["discount_cents"], r.json["total_cents"]) == (495, 1005)
    assert api.get(f"/api/v1/reservations/{r.json['id']}", other).json["discount_cents"] == 495


@pytest.mark.parametrize("case", ["unknown", "not_yet", "expired", "other_showtime", "other_currency", "used_up"])
def test_an_unusable_voucher_is_409_and_the_hold_stays_usable(api, app, admin, user, other, show, case):
    seats = seat_ids(api, show["showtime"])
    now = datetime.now(timezone.utc)
    bodies = {
        "unknown": None,
        "not_yet": {"valid_from": (now + timedelta(hours=1)).isoformat()},
        "expired": {"valid_until": (now - timedelta(seconds=1)).isoformat()},
        "other_showtime": {"scope": {"movie_id": api.movie(admin, title="Other")["id"]}},
        "other_currency": {"percent_off": None, "amount_off_cents": 100, "currency": "USD"},
        "used_up": {"max_uses": 1},
    }
    if bodies[case] is not None:
        voucher(api, admin, code="TRYME", **bodies[case])
    if case == "used_up":
        assert checkout(api, other, show["showtime"], seats[4:5], code="tryme")[1].status_code == 202
    h, r = checkout(api, user, show["showtime"], seats[:1], code="TRYME")
    assert r.status_code == 409 and r.json["code"] == "voucher_invalid", r.json
    assert api.get(f"/api/v1/holds/{h['id']}", user).json == h  # still held, same prices
    again = reserve(api, user, h["id"])
    assert again.status_code == 202 and again.json["total_cents"] == 1000
    assert uses(app, "tryme") == (1 if case == "used_up" else None if case == "unknown" else 0)


def test_a_hundred_parallel_checkouts_use_a_ten_use_voucher_ten_times(api, app, admin):
    """100 customers check out at once (40 threads, each call on its own session) with a voucher
    limited to 10 uses: exactly 10 reservations are discounted, the 90 others are refused
    and keep their holds; a cancellation frees a use that an 11th customer then takes."""
    show = big_show(api, admin, 101)
    seats = seat_ids(api, show["showtime"])
    voucher(api, admin, code="TEN", max_uses=10)
    users = customers(api, app, 101)
    with app.app_context():
        holds = [booking.hold_seats(users[i], show["showtime"], [seats[i]]) for i in range(101)]
    results = in_parallel(app, [lambda i=i: booking.reserve(users[i], holds[i].id, "tok_visa", voucher_code="ten")
                                for i in range(100)])
    won = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 10 and all(r["discount_cents"] == 100 and r["total_cents"] == 900 for r in won)
    assert len(refused) == 90 and all(isinstance(r, vouchers.VoucherInvalid) for r in refused), refused[:3]
    assert uses(app, "ten") == 10
    with app.app_context():
        loser = next(i for i, r in enumerate(results) if isinstance(r, Exception))
        assert booking.get_hold(users[loser], holds[loser].id).state == "held"
        with pytest.raises(vouchers.VoucherInvalid):
            booking.reserve(users[100], holds[100].id, "tok_visa", voucher_code="TEN")
        booking.cancel_reservation(won[0]["user_id"], won[0]["id"])
        booking.cancel_reservation(won[0]["user_id"], won[0]["id"])  # again: harmless, given back once
    assert uses(app, "ten") == 9
    with app.app_context():
        eleventh = booking.reserve(users[100], holds[100].id, "tok_visa", voucher_code="Ten")
    assert eleventh["discount_cents"] == 100 and uses(app, "ten") == 10


def test_one_user_s_parallel_checkouts_respect_the_per_user_limit(api, app, admin, user, show):
    """Six checkouts of one customer at once (six showtimes: one live hold per showtime)
    with a voucher allowing two uses each: exactly two are discounted."""
    voucher(api, admin, code="TWICE", max_uses_per_user=2)
    starts = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
    showtimes = [show["showtime"]] + [
        api.showtime(admin, show["movie"], show["screen"], starts + timedelta(hours=4 * i))["id"] for i in range(5)]
    with app.app_context():
        me = db.session.scalar(select(User.id).where(User.email == "user@test.example"))
        holds = [booking.hold_seats(me, s, seat_ids(api, s)[:1]) for s in showtimes]
    results = in_parallel(app, [lambda h=h: booking.reserve(me, h.id, "tok_visa", voucher_code="twice")
                                for h in holds])
    assert sum(not isinstance(r, Exception) for r in results) == 2
    assert sum(isinstance(r, vouchers.VoucherInvalid) for r in results) == 4
    assert uses(app, "twice") == 2


def test_a_declined_payment_and_an_expired_reservation_give_the_use_back(api, app, admin, user, other, show,
                                                                          broker):
    voucher(api, admin, code="ONCE", max_uses=1)
    seats = seat_ids(api, show["showtime"])
    _, declined = checkout(api, user, show["showtime"], seats[:1], code="once", payment_token="tok_declined")
    assert declined.status_code == 202 and uses(app, "once") == 1
    relay(app, broker)
    work_until(app, lambda c: status_of(app, declined.json["id"]) == "payment_failed")
    assert uses(app, "once") == 0

    _, unpaid = checkout(api, other, show["showtime"], seats[1:2], code="ONCE")
    assert unpaid.status_code == 202 and uses(app, "once") == 1
    with app.app_context():
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        assert booking.expire_unpaid_reservations(now=later) == 1
        assert booking.expire_unpaid_reservations(now=later) == 0
    assert status_of(app, unpaid.json["id"]) == "expired" and uses(app, "once") == 0
    _, third = checkout(api, user, show["showtime"], seats[3:4], code="once")
    assert third.status_code == 202 and third.json["discount_cents"] == 100


def test_guessing_codes_is_rate_limited_even_for_a_valid_one(api, app, admin, user, other, show):
    voucher(api, admin, code="REAL")
    seats = seat_ids(api, show["showtime"])
    h = hold(api, user, show["showtime"], seats[:1]).json
    limit = app.extensions["marquee"].settings.voucher_max_failures
    for i in range(limit):
        r = api.post("/api/v1/reservations", {"hold_id": h["id"], "payment_token": "tok_visa",
                                              "voucher_code": f"GUESS{i}"}, user)
        assert r.json["code"] == "voucher_invalid"
    r = api.post("/api/v1/reservations", {"hold_id": h["id"], "payment_token": "tok_visa", "voucher_code": "REAL"},
                 user)
    assert r.status_code == 429 and r.json["code"] == "rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= app.extensions["marquee"].settings.voucher_window_seconds
    # another customer is not held back by this one's guesses
    _, theirs = checkout(api, other, show["showtime"], seats[1:2], code="real")
    assert theirs.status_code == 202 and theirs.json["discount_cents"] == 100
    # and the guesser can still buy without a code
    assert reserve(api, user, h["id"]).status_code == 202


def test_graphql_holds_and_reserves_through_the_same_prices_and_vouchers(api, admin, user, show):
    api.post("/api/v1/price-rules", {"name": "Up", "adjust": {"amount_cents": 100}}, admin)
    voucher(api, admin, code="GQL", percent_off=50)
    seat = seat_ids(api, show["showtime"])[0]
    held = api.post("/graphql", {"query": """mutation ($s: ID!, $seats: [ID!]) {
        hold(showtimeId: $s, seatIds: $seats) { id totalCents currency } }""",
                                 "variables": {"s": show["showtime"], "seats": [str(seat)]}}, user).json
    assert held["data"]["hold"]["totalCents"] == 1100 and held["data"]["hold"]["currency"] == "EUR"
    made = api.post("/graphql", {"query": """mutation ($h: ID!) {
        reserve(holdId: $h, paymentToken: "tok_visa", voucherCode: "gql") { totalCents discountCents } }""",
                                 "variables": {"h": held["data"]["hold"]["id"]}}, user).json
    assert made["data"]["reserve"] == {"totalCents": 550, "discountCents": 550}
