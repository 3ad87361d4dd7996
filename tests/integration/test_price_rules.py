"""Price rules on real PostgreSQL, Redis and RabbitMQ: the admin's endpoints, seat maps
that show rule prices, holds that fix their prices in the script that takes the seats,
and reservations (and payments) that charge exactly what the hold showed."""
import concurrent.futures
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import select

from app import db
from app.models import AuditEntry, Payment
from tests.helpers import PASSWORD
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import relay, status_of, work_until

RULES = "/api/v1/price-rules"


def rule(api, admin, body, status=201):
    r = api.post(RULES, {"name": "A rule", **body}, admin)
    assert r.status_code == status, r.json
    return r.json


def seat_prices(api, showtime_id) -> dict[int, int]:
    return {s["id"]: s["price_cents"] for s in api.get(f"/api/v1/showtimes/{showtime_id}/seats").json["seats"]}


def one_row_show(api, admin, seats=10, *, city=None, starts_at=None):
    """A showtime on a screen of one row of ``seats`` standard seats (1000 cents), where
    single seats may be held anywhere (no orphan rule)."""
    city = city or api.city(admin)
    theater = api.theater(admin, city["id"])
    screen = api.screen(admin, theater["id"], layout={"rows": [{"label": "A", "seats": ["standard"] * seats}]})
    movie = api.movie(admin)
    show = api.showtime(admin, movie["id"], screen["id"], starts_at, prices={"standard": 1000},
                        orphan_seats="allow")
    return {"theater": theater["id"], "movie": movie["id"], "showtime": show["id"]}


# --- the admin's endpoints ------------------------------------------------------------

def test_an_admin_creates_reads_changes_and_deletes_a_rule_each_write_audited(api, app, admin, show):
    created = rule(api, admin, {"scope": {"theater_id": show["theater"], "category": "premium"},
                                "when": {"weekdays": [5, 6], "local_time_from": "18:00", "occupancy_min": 80},
                                "adjust": {"percent": 15}, "priority": 3})
    assert created["scope"] == {"theater_id": show["theater"], "category": "premium"}
    assert created["when"] == {"weekdays": [5, 6], "local_time_from": "18:00", "occupancy_min": 80}
    assert created["adjust"] == {"percent": 15} and created["priority"] == 3
    assert api.get(f"{RULES}/{created['id']}", admin).json == created
    listed = api.get(RULES, admin)
    assert [r["id"] for r in listed.json] == [created["id"]] and "X-Pagination" in listed.headers

    changed = api.patch(f"{RULES}/{created['id']}", {"adjust": {"amount_cents": -200}, "when": {}}, admin)
    assert changed.status_code == 200, changed.json
    assert changed.json["adjust"] == {"amount_cents": -200} and changed.json["when"] == {}
    assert changed.json["scope"] == created["scope"]  # not named: kept

    assert api.delete(f"{RULES}/{created['id']}", admin).status_code == 204
    assert api.get(f"{RULES}/{created['id']}", admin).status_code == 404
    with app.app_context():
        actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.object_type == "price_rule")
                                     .order_by(AuditEntry.id)).all()
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "price_rule.update"))
        assert entry.before["percent"] == 15 and entry.after["amount_cents"] == -200
    assert actions == ["price_rule.create", "price_rule.update", "price_rule.delete"]


@pytest.mark.parametrize(("body", "field"), [
    ({"adjust": {}}, "adjust._schema"),
    ({"adjust": {"percent": 10, "amount_cents": 100}}, "adjust._schema"),
    ({"adjust": {"percent": -101}}, "adjust.percent"),
    ({"when": {"weekdays": [8]}, "adjust": {"percent": 1}}, "when.weekdays.0"),
    ({"when": {"weekdays": [1, 1]}, "adjust": {"percent": 1}}, "when.weekdays"),
    ({"when": {"local_time_from": "25:00"}, "adjust": {"percent": 1}}, "when.local_time_from"),
    ({"when": {"occupancy_min": 0}, "adjust": {"percent": 1}}, "when.occupancy_min"),
    ({"when": {"occupancy_min": 101}, "adjust": {"percent": 1}}, "when.occupancy_min"),
    ({"scope": {"theater_id": 999999}, "adjust": {"percent": 1}}, "scope.theater_id"),
    ({"scope": {"movie_id": 999999}, "adjust": {"percent": 1}}, "scope.movie_id"),
    ({"scope": {"category": "Bad Category"}, "adjust": {"percent": 1}}, "scope.category"),
    ({"scope": {"colour": "red"}, "adjust": {"percent": 1}}, "scope.colour"),
    ({"when": {}}, "adjust"),
])
def test_invalid_rules_are_422_naming_the_field_and_write_nothing(api, app, admin, show, body, field):
    r = api.post(RULES, {"name": "Bad", **body}, admin)
    assert r.status_code == 422, r.json
    assert r.json["code"] == "validation_error" and field in r.json["errors"], r.json
    assert api.get(RULES, admin).json == []


def test_a_patch_naming_an_unknown_showtime_is_422_and_changes_nothing(api, admin, show):
    created = rule(api, admin, {"adjust": {"percent": 5}})
    r = api.patch(f"{RULES}/{created['id']}", {"scope": {"showtime_id": 999999}}, admin)
    assert r.status_code == 422 and "scope.showtime_id" in r.json["errors"]
    assert api.get(f"{RULES}/{created['id']}", admin).json == created


def test_rules_are_for_admins_only(api, admin, user, show):
    created = rule(api, admin, {"adjust": {"percent": 5}})
    for method, path, body in [("post", RULES, {"name": "x", "adjust": {"percent": 1}}), ("get", RULES, None),
                               ("get", f"{RULES}/{created['id']}", None),
                               ("patch", f"{RULES}/{created['id']}", {"priority": 1}),
                               ("delete", f"{RULES}/{created['id']}", None)]:
        args = (path, body, user) if body is not None else (path, user)
        assert getattr(api, method)(*args).status_code == 403, (method, path)
        anonymous = (path, body) if body is not None else (path,)
        assert getattr(api, method)(*anonymous).status_code == 401
    assert api.get(f"{RULES}/{created['id']}", admin).json["adjust"] == {"percent": 5}


def test_unknown_rules_are_404(api, admin):
    assert api.get(f"{RULES}/424242", admin).json["code"] == "not_found"
    assert api.patch(f"{RULES}/424242", {"priority": 1}, admin).status_code == 404
    assert api.delete(f"{RULES}/424242", admin).status_code == 404


def test_unknown_query_parameters_are_400(api, admin):
    assert api.get(f"{RULES}?showtime=1", admin).json["code"] == "unknown_parameter"


# --- prices on the seat map and in holds ----------------------------------------------

def test_the_seat_map_and_a_hold_show_rule_prices_and_the_hold_keeps_them(api, admin, user, show):
    seats = api.get(f"/api/v1/showtimes/{show['showtime']}/seats").json["seats"]
    premium = [s["id"] for s in seats if s["category"] == "premium"]
    standard = [s["id"] for s in seats if s["category"] == "standard"]
    rule(api, admin, {"scope": {"category": "premium"}, "adjust": {"percent": 20}})
    prices = seat_prices(api, show["showtime"])
    assert {prices[s] for s in premium} == {1800} and {prices[s] for s in standard} == {1000}

    h = hold(api, user, show["showtime"], [premium[0], standard[0]])
    assert h.status_code == 201, h.json
    assert h.json["seats"] == [{"id": premium[0], "price_cents": 1800}, {"id": standard[0], "price_cents": 1000}]
    assert h.json["total_cents"] == 2800 and h.json["currency"] == "EUR"
    assert set(h.json) >= {"id", "showtime_id", "seat_ids", "expires_at"}
    rule(api, admin, {"adjust": {"amount_cents": 500}})  # after the hold: new holds only
    again = api.get(f"/api/v1/holds/{h.json['id']}", user)
    assert again.json == h.json
    assert seat_prices(api, show["showtime"])[standard[1]] == 1500
    assert api.get("/api/v1/holds", user).json[0]["total_cents"] == 2800


def test_best_available_holds_carry_their_prices_too(api, admin, user, show):
    rule(api, admin, {"adjust": {"amount_cents": -250}})
    h = api.post(f"/api/v1/showtimes/{show['showtime']}/holds", {"quantity": 2, "category": "standard"}, user)
    assert h.status_code == 201, h.json
    assert [s["price_cents"] for s in h.json["seats"]] == [750, 750] and h.json["total_cents"] == 1500


def test_a_rule_changed_between_hold_and_reservation_does_not_change_the_charge(api, app, admin, user, show,
                                                                                 broker):
    seat = seat_ids(api, show["showtime"])[0]
    surcharge = rule(api, admin, {"adjust": {"percent": 10}})
    h = hold(api, user, show["showtime"], [seat]).json
    assert h["total_cents"] == 1100
    api.patch(f"{RULES}/{surcharge['id']}", {"adjust": {"percent": 50}}, admin)
    rule(api, admin, {"adjust": {"amount_cents": -900}, "priority": 9})
    assert seat_prices(api, show["showtime"])[seat_ids(api, show["showtime"])[1]] == 600  # 1000 +50% -900

    r = reserve(api, user, h["id"])
    assert r.status_code == 202, r.json
    assert r.json["total_cents"] == 1100 and r.json["discount_cents"] == 0
    assert [s["price_cents"] for s in r.json["seats"]] == [1100]
    relay(app, broker)
    work_until(app, lambda c: status_of(app, r.json["id"]) == "confirmed")
    with app.app_context():
        charged = db.session.execute(select(Payment.amount_cents, Payment.currency).where(
            Payment.reservation_id == r.json["id"], Payment.kind == "charge")).one()
    assert tuple(charged) == (h["total_cents"], "EUR")


def test_rules_combine_in_ascending_priority_each_on_the_running_price(api, admin, show):
    seat = seat_ids(api, show["showtime"])[0]  # standard, 1000
    plus = rule(api, admin, {"adjust": {"amount_cents": 200}, "priority": 2})
    minus = rule(api, admin, {"adjust": {"percent": -10}, "priority": 1})
    assert seat_prices(api, show["showtime"])[seat] == 1100  # 1000 -10% = 900, +200
    api.patch(f"{RULES}/{plus['id']}", {"priority": 0}, admin)
    assert seat_prices(api, show["showtime"])[seat] == 1080  # 1000 +200 = 1200, -10%
    api.patch(f"{RULES}/{minus['id']}", {"adjust": {"amount_cents": -5000}}, admin)
    assert seat_prices(api, show["showtime"])[seat] == 0  # never below 0
    assert [r["id"] for r in api.get(RULES, admin).json] == [plus["id"], minus["id"]]


def test_weekdays_and_time_of_day_are_the_showtime_s_in_its_city_s_time_zone(api, admin):
    tokyo = api.city(admin, name="Tokyo", country="Japan", timezone="Asia/Tokyo")
    # Friday 16:30 UTC is Saturday 01:30 in Tokyo
    starts = datetime(2030, 1, 18, 16, 30, tzinfo=timezone.utc)
    ids = one_row_show(api, admin, 4, city=tokyo, starts_at=starts)
    seat = seat_ids(api, ids["showtime"])[0]
    rule(api, admin, {"name": "Friday in UTC", "when": {"weekdays": [5]}, "adjust": {"amount_cents": 1}})
    rule(api, admin, {"name": "UTC afternoon", "when": {"local_time_from": "16:00", "local_time_to": "17:00"},
                      "adjust": {"amount_cents": 10}})
    rule(api, admin, {"name": "Saturday night in Tokyo", "when": {"weekdays": [6], "local_time_from": "23:00",
                                                                  "local_time_to": "02:00"},
                      "adjust": {"amount_cents": 100}, "scope": {"theater_id": ids["theater"]}})
    assert seat_prices(api, ids["showtime"])[seat] == 1100


def test_days_before_max_and_days_before_min_count_from_the_sale(api, admin, user):
    soon = one_row_show(api, admin, 4, starts_at=(datetime.now(timezone.utc) + timedelta(days=1)).replace(
        microsecond=0))
    later = one_row_show(api, admin, 4, city=api.city(admin, name="Lyon"),
                         starts_at=(datetime.now(timezone.utc) + timedelta(days=20)).replace(microsecond=0))
    rule(api, admin, {"name": "Last minute", "when": {"days_before_max": 2}, "adjust": {"percent": -20}})
    rule(api, admin, {"name": "Early bird", "when": {"days_before_min": 14}, "adjust": {"percent": -30}})
    assert set(seat_prices(api, soon["showtime"]).values()) == {800}
    assert set(seat_prices(api, later["showtime"]).values()) == {700}
    assert hold(api, user, later["showtime"], seat_ids(api, later["showtime"])[:1]).json["total_cents"] == 700


def test_blocked_seats_are_not_sellable_and_do_not_count_in_occupancy(api, admin, user, other):
    ids = one_row_show(api, admin, 10)
    seats = seat_ids(api, ids["showtime"])
    rule(api, admin, {"name": "Busy", "when": {"occupancy_min": 80}, "adjust": {"percent": 15}})
    r = api.post(f"/api/v1/showtimes/{ids['showtime']}/blocked-seats", {"seat_ids": seats[5:]}, admin)
    assert r.status_code == 201, r.json
    assert set(seat_prices(api, ids["showtime"]).values()) == {1000}
    first = hold(api, user, ids["showtime"], seats[:4]).json  # 0 of 5 sellable taken
    assert first["total_cents"] == 4000
    # 4 of 5 sellable seats taken: 80%
    assert seat_prices(api, ids["showtime"])[seats[4]] == 1150
    assert hold(api, other, ids["showtime"], [seats[4]]).json["total_cents"] == 1150



def test_seat_map_prices_cost_the_same_statements_whatever_the_number_of_seats(api, app, admin, statements):
    small, big = one_row_show(api, admin, 4), one_row_show(api, admin, 40, city=api.city(admin, name="Lyon"))
    rule(api, admin, {"when": {"occupancy_min": 50}, "adjust": {"percent": 15}})
    rule(api, admin, {"scope": {"category": "standard"}, "adjust": {"amount_cents": -100}, "priority": 1})
    cache = app.extensions["marquee"].cache

    def cost(showtime_id):
        api.get(f"/api/v1/showtimes/{showtime_id}/seats")  # the first read in an hour rebuilds Redis
        for namespace in ("showtimes", "screens", "price_rules"):
            cache.invalidate(namespace)  # nothing cached: every read goes to PostgreSQL
        statements.clear()
        answer = api.get(f"/api/v1/showtimes/{showtime_id}/seats").json
        assert {s["price_cents"] for s in answer["seats"]} == {900}
        cold = len(statements)
        statements.clear()
        api.get(f"/api/v1/showtimes/{showtime_id}/seats")
        return cold, len(statements)

    assert cost(small["showtime"]) == cost(big["showtime"])
    assert cost(big["showtime"])[1] == 0  # warm: the rules come from the cache


# --- occupancy under a rush -------------------------------------------------------------

def _tokens(base: str, count: int) -> list[str]:
    def make(i):
        session = requests.Session()
        email = f"occupancy{i}@example.com"
        session.post(base + "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "O"})
        return session.post(base + "/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()[
            "access_token"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(make, range(count)))


def test_the_occupancy_rule_switches_exactly_at_its_threshold_under_a_rush(api, app, admin, live_server):
    """Thirty customers at once each hold one seat of a 30-seat showtime with +15% from 50%
    occupancy: the holds that took their seat while 15 or more were taken (as the hold
    script counted them) pay 1150, the others 1000; each count from 0 to 29 was seen
    exactly once (the script took them one after another)."""
    size = 30
    ids = one_row_show(api, admin, size)
    seats = seat_ids(api, ids["showtime"])
    rule(api, admin, {"name": "Busy", "when": {"occupancy_min": 50}, "adjust": {"percent": 15}})
    tokens = _tokens(live_server, size)
    barrier = threading.Barrier(size)

    def customer(i):
        session = requests.Session()
        barrier.wait()
        return session.post(f"{live_server}/api/v1/showtimes/{ids['showtime']}/holds", json={"seat_ids": [seats[i]]},
                            headers={"Authorization": f"Bearer {tokens[i]}"}, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(size) as pool:
        answers = list(pool.map(customer, range(size)))
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers if a.status_code != 201]
    store = app.extensions["marquee"].seats
    paid = {}
    for a in answers:
        kept = store.get_hold(a.json()["id"])
        assert kept.capacity == size and kept.total_cents == a.json()["total_cents"]
        paid[kept.occupied] = a.json()["total_cents"]
    assert sorted(paid) == list(range(size))
    assert paid == {count: 1150 if count >= size // 2 else 1000 for count in range(size)}


def test_the_occupancy_threshold_holds_for_parallel_service_calls_too(api, app, admin):
    """The same rush without HTTP in between (threads calling the booking service, each on
    its own session): the holds meet at the script nearly at once, so an occupancy read
    anywhere but in the script that takes the seats would be stale for many of them."""
    from app.models import User
    from app.services import booking

    size = 30
    ids = one_row_show(api, admin, size)
    seats = seat_ids(api, ids["showtime"])
    rule(api, admin, {"name": "Busy", "when": {"occupancy_min": 50}, "adjust": {"percent": 15}})
    for i in range(size):
        api.post("/api/v1/auth/register", {"email": f"svc{i}@example.com", "password": PASSWORD, "name": "S"})
    with app.app_context():
        users = db.session.scalars(select(User.id).where(User.email.like("svc%")).order_by(User.id)).all()
    barrier = threading.Barrier(size)

    def customer(i):
        with app.app_context():
            barrier.wait()
            return booking.hold_seats(users[i], ids["showtime"], [seats[i]])

    with concurrent.futures.ThreadPoolExecutor(size) as pool:
        holds = list(pool.map(customer, range(size)))
    assert sorted(h.occupied for h in holds) == list(range(size))
    assert {h.occupied: h.total_cents for h in holds} == {
        count: 1150 if count >= size // 2 else 1000 for count in range(size)}
