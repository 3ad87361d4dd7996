"""Issue 11, "Richer reads": showtimes a client can print in one call, the caller's
holds and waitlist entries, reservations that say how their payment went, tickets
that say what they are for, emails a mail system trusts, and a spec whose examples
are right. Real PostgreSQL, Redis, RabbitMQ and SMTP behind every test."""
import json
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
from sqlalchemy import event

from app import db
from app.services import booking
from tests.integration.booking_helpers import hold, reserve, seat_ids
from tests.integration.broker_helpers import relay, status_of, work_until


def _page(r) -> dict:
    return json.loads(r.headers["X-Pagination"])


# --- showtimes ----------------------------------------------------------------

def test_a_showtime_names_its_movie_theater_city_and_local_start(api, show):
    item = api.get(f"/api/v1/showtimes/{show['showtime']}").json
    assert item["movie"] == {"id": show["movie"], "title": "Heat", "duration_minutes": 120, "rating": None}
    assert item["theater"] == {"id": show["theater"], "name": "Opera"}
    assert item["city"] == {"id": show["city"], "name": "Paris", "timezone": "Europe/Paris"}
    starts_at = datetime.fromisoformat(item["starts_at"])
    local = datetime.fromisoformat(item["starts_at_local"])
    assert local == starts_at and local.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert item["seats_available"] == 6
    (listed,) = api.get(f"/api/v1/showtimes?city_id={show['city']}").json
    assert listed == item


def test_seats_available_follow_a_hold_and_its_release_at_once(api, user, show):
    path, listing = f"/api/v1/showtimes/{show['showtime']}", "/api/v1/showtimes"
    assert api.get(path).json["seats_available"] == 6 and api.get(listing).json[0]["seats_available"] == 6
    first = api.get(path)
    s1, s2, *_ = seat_ids(api, show["showtime"])
    h = hold(api, user, show["showtime"], [s1, s2]).json
    # The static part is cached; the count is not.
    assert api.get(path).json["seats_available"] == 4 and api.get(listing).json[0]["seats_available"] == 4
    assert api.get(path).headers["ETag"] != first.headers["ETag"]
    reserve(api, user, h["id"])
    assert api.get(path).json["seats_available"] == 4  # awaiting payment: still taken
    assert api.get(listing).json[0]["seats_available"] == 4
    h2 = hold(api, user, show["showtime"], [seat_ids(api, show["showtime"])[2]]).json
    assert api.get(path).json["seats_available"] == 3
    assert api.delete(f"/api/v1/holds/{h2['id']}", user).status_code == 204
    assert api.get(path).json["seats_available"] == 4 and api.get(listing).json[0]["seats_available"] == 4


def test_a_started_showtime_has_no_seats_available(api, admin, show):
    past = api.showtime(admin, show["movie"], show["screen"],
                        datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=5))
    assert api.get(f"/api/v1/showtimes/{past['id']}").json["seats_available"] == 0


def test_local_start_follows_daylight_saving_time(api, admin):
    """New York moves its clocks on 14 March 2027: the same UTC evening hour reads
    an hour later in local time after the change."""
    city = api.city(admin, name="New York", country="United States", timezone="America/New_York")
    theater = api.theater(admin, city["id"], name="Angelika")
    screen = api.screen(admin, theater["id"])
    movie = api.movie(admin)
    before = api.showtime(admin, movie["id"], screen["id"], datetime(2027, 3, 13, 23, 0, tzinfo=timezone.utc))
    after = api.showtime(admin, movie["id"], screen["id"], datetime(2027, 3, 14, 23, 0, tzinfo=timezone.utc))
    assert api.get(f"/api/v1/showtimes/{before['id']}").json["starts_at_local"] == "2027-03-13T18:00:00-05:00"
    assert api.get(f"/api/v1/showtimes/{after['id']}").json["starts_at_local"] == "2027-03-14T19:00:00-04:00"
    listed = api.get(f"/api/v1/showtimes?theater_id={theater['id']}").json
    assert [s["starts_at_local"] for s in listed] == ["2027-03-13T18:00:00-05:00", "2027-03-14T19:00:00-04:00"]


def test_the_showtime_list_costs_the_same_queries_for_one_or_many(api, admin, app, user):
    """No N+1: a page of many showtimes costs as many SQL statements as a page of one."""
    ids = api.catalog(admin)
    base = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
    for i in range(1, 8):
        api.showtime(admin, ids["movie"], ids["screen"], base + timedelta(hours=3 * i))
    hold(api, user, ids["showtime"], seat_ids(api, ids["showtime"])[:1])
    ext = app.extensions["marquee"]
    engine = ext.engine
    statements = []

    def count(*_args):
        statements.append(1)

    def queries(path):
        ext.cache.invalidate("showtimes")  # the static part computed again, too
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            r = api.get(path)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert r.status_code == 200
        return len(r.json), len(statements)

    one, many = queries("/api/v1/showtimes?page_size=1"), queries("/api/v1/showtimes?page_size=8")
    assert one[0] == 1 and many[0] == 8
    assert many[1] == one[1]


# --- the caller's holds and waitlist entries ----------------------------------

def test_get_holds_lists_only_the_callers_live_holds_newest_first(api, admin, app, user, other, show):
    later = api.showtime(admin, show["movie"], show["screen"],
                         datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3))
    s1, s2, *_ = seat_ids(api, show["showtime"])
    first = hold(api, user, show["showtime"], [s1]).json
    time.sleep(1.1)  # expiries are to the second
    second = hold(api, user, later["id"], [seat_ids(api, later["id"])[0]]).json
    theirs = hold(api, other, show["showtime"], [s2]).json
    r = api.get("/api/v1/holds", user)
    assert r.status_code == 200 and r.json == [second, first]
    assert _page(r)["total"] == 2
    assert api.get("/api/v1/holds", other).json == [theirs]
    paged = api.get("/api/v1/holds?page=2&page_size=1", user)
    assert paged.json == [first] and _page(paged)["total"] == 2
    assert api.get("/api/v1/holds").status_code == 401
    # A released hold and a hold that became a reservation are gone from the list.
    assert api.delete(f"/api/v1/holds/{first['id']}", user).status_code == 204
    assert reserve(api, user, second["id"]).status_code == 202
    assert api.get("/api/v1/holds", user).json == []


def test_an_expired_hold_leaves_the_list(api, app, user, show):
    ext = app.extensions["marquee"]
    original = ext.settings
    ext.settings = replace(original, hold_ttl_seconds=1)
    try:
        h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    finally:
        ext.settings = original
    assert [x["id"] for x in api.get("/api/v1/holds", user).json] == [h["id"]]
    deadline = time.monotonic() + 5
    while api.get("/api/v1/holds", user).json and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.get("/api/v1/holds", user).json == []
    while api.get(f"/api/v1/holds/{h['id']}", user).status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.1)  # Redis ends the hold itself (its expires_at is rounded down to the second)
    # Ended, not unknown: reserving it still says it expired.
    assert reserve(api, user, h["id"]).json["code"] == "hold_expired"


def test_a_stale_index_entry_never_lists_another_users_hold(api, app, user, other, show):
    """The per-user index is only an index: what it names is checked against the hold."""
    theirs = hold(api, other, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    store = app.extensions["marquee"].seats
    store.index_hold(_user_id(app, "user@test.example"), theirs["id"],
                     datetime.fromisoformat(theirs["expires_at"]), 60)
    assert api.get("/api/v1/holds", user).json == []


def _user_id(app, email):
    from sqlalchemy import select

    from app.models import User

    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def test_get_waitlist_lists_only_the_callers_live_entries(api, admin, user, other, show):
    later = api.showtime(admin, show["movie"], show["screen"],
                         datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3))
    a = api.post(f"/api/v1/showtimes/{show['showtime']}/waitlist", {"seats": 7}, user).json
    b = api.post(f"/api/v1/showtimes/{later['id']}/waitlist", {"seats": 8}, user).json
    c = api.post(f"/api/v1/showtimes/{show['showtime']}/waitlist", {"seats": 9}, other).json
    r = api.get("/api/v1/waitlist", user)
    assert r.status_code == 200 and [e["id"] for e in r.json] == [b["id"], a["id"]]
    assert r.json[1] == {**a, "position": 1} and _page(r)["total"] == 2
    assert [e["id"] for e in api.get("/api/v1/waitlist?page=2&page_size=1", user).json] == [a["id"]]
    assert [(e["id"], e["position"]) for e in api.get("/api/v1/waitlist", other).json] == [(c["id"], 2)]
    assert api.delete(f"/api/v1/waitlist/{b['id']}", user).status_code == 204
    assert [e["id"] for e in api.get("/api/v1/waitlist", user).json] == [a["id"]]


# --- reservations ---------------------------------------------------------------

def test_a_reservation_answers_with_its_location_and_links(api, user, show):
    h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    r = reserve(api, user, h["id"])
    assert r.status_code == 202
    res = r.json
    assert r.headers["Location"].endswith(f"/api/v1/reservations/{res['id']}")
    assert res["links"] == {"self": f"/api/v1/reservations/{res['id']}",
                            "tickets": f"/api/v1/reservations/{res['id']}/tickets"}
    assert res["payment_status"] == "pending" and res["failure_reason"] is None
    assert datetime.fromisoformat(res["expires_at"]) > datetime.now(timezone.utc)
    assert api.get(res["links"]["self"], user).json == res


def test_a_confirmed_reservation_has_no_deadline_and_says_paid(api, app, user, show, broker):
    h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    res = reserve(api, user, h["id"]).json
    relay(app, broker)
    work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")
    read = api.get(f"/api/v1/reservations/{res['id']}", user).json
    assert read["status"] == "confirmed" and read["expires_at"] is None
    assert read["payment_status"] == "succeeded" and read["failure_reason"] is None
    assert api.get("/api/v1/reservations", user).json == [read]
    api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user)
    cancelled = api.get(f"/api/v1/reservations/{res['id']}", user).json
    assert cancelled["status"] == "cancelled" and cancelled["payment_status"] == "refund_pending"
    relay(app, broker)
    work_until(app, lambda c: api.get(f"/api/v1/reservations/{res['id']}", user).json["payment_status"]
               == "refunded")


@pytest.mark.parametrize(("token", "reason"), [("tok_declined", "declined"), ("tok_mastercard", "unknown_token")])
def test_a_failed_payment_says_why(api, app, user, show, broker, token, reason):
    h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    res = reserve(api, user, h["id"], token).json
    relay(app, broker)
    work_until(app, lambda c: status_of(app, res["id"]) == "payment_failed")
    read = api.get(f"/api/v1/reservations/{res['id']}", user).json
    assert read["status"] == "payment_failed" and read["expires_at"] is None
    assert read["payment_status"] == "declined" and read["failure_reason"] == reason


def test_a_declined_webhook_without_a_reason_says_declined(api, app, user, show):
    h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    res = reserve(api, user, h["id"]).json
    with app.app_context():
        booking.fail_payment(res["id"], payment={"kind": "charge", "status": "declined", "amount_cents": 1000,
                                                 "currency": "EUR", "gateway_ref": "ch_x",
                                                 "idempotency_key": f"reservation-{res['id']}"})
    read = api.get(f"/api/v1/reservations/{res['id']}", user).json
    assert (read["payment_status"], read["failure_reason"]) == ("declined", "declined")


@pytest.mark.parametrize("hold_id", ["../../x", "garbage", "1.00000000000000000000000000000000",
                                     "999999.0123456789abcdef0123456789abcdef"])
def test_reserving_a_hold_that_never_was_is_not_found(api, user, show, hold_id):
    r = reserve(api, user, hold_id)
    assert r.status_code == 404 and r.json["code"] == "not_found"
    assert api.get("/api/v1/reservations", user).json == []


def test_reserving_a_hold_again_names_its_reservation_to_its_owner_only(api, user, other, show):
    h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    res = reserve(api, user, h["id"]).json
    r = reserve(api, user, h["id"])
    assert r.status_code == 409 and r.json["code"] == "hold_reserved" and r.json["reservation_id"] == res["id"]
    r = reserve(api, other, h["id"])
    assert r.status_code == 404 and "reservation_id" not in r.json and "reservation" not in r.json["detail"]
    assert len(api.get("/api/v1/reservations", user).json) == 1


# --- ETags ------------------------------------------------------------------------

def test_each_read_of_ones_own_carries_an_etag_and_a_304_carries_it_too(api, user, show):
    h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    other_show = show["showtime"]
    api.post(f"/api/v1/showtimes/{other_show}/waitlist", {"seats": 7}, user)
    res = reserve(api, user, h["id"]).json
    h2 = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[1:2]).json
    for path in (f"/api/v1/reservations/{res['id']}", "/api/v1/reservations", f"/api/v1/holds/{h2['id']}",
                 "/api/v1/holds", "/api/v1/waitlist", f"/api/v1/showtimes/{show['showtime']}",
                 "/api/v1/showtimes"):
        first = api.get(path, user)
        assert first.status_code == 200 and first.headers.get("ETag"), path
        again = api.get(path, user, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304, path
        assert again.headers.get("ETag") == first.headers["ETag"], path
        assert again.get_data() == b"", path


def test_a_reservations_etag_changes_with_its_payment(api, app, user, show):
    h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json
    res = reserve(api, user, h["id"]).json
    path = f"/api/v1/reservations/{res['id']}"
    etag = api.get(path, user).headers["ETag"]
    with app.app_context():
        booking.confirm_payment(res["id"])
    assert api.get(path, user, headers={"If-None-Match": etag}).status_code == 200


# --- tickets and emails -----------------------------------------------------------------

def _confirmed(api, app, user, show, broker):
    h = hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:2]).json
    res = reserve(api, user, h["id"]).json
    relay(app, broker)
    work_until(app, lambda c: status_of(app, res["id"]) == "confirmed")
    return res


def test_tickets_say_which_show_they_are_for(api, app, user, show, broker):
    res = _confirmed(api, app, user, show, broker)
    tickets = api.get(f"/api/v1/reservations/{res['id']}/tickets", user).json
    assert len(tickets) == 2 and len({t["id"] for t in tickets}) == 2
    starts_at = show["showtime_obj"]["starts_at"]
    for ticket in tickets:
        assert isinstance(ticket["id"], int) and ticket["reservation_id"] == res["id"]
        assert ticket["movie"] == {"id": show["movie"], "title": "Heat"}
        assert ticket["theater"] == {"id": show["theater"], "name": "Opera"}
        assert ticket["showtime"]["id"] == show["showtime"] and ticket["showtime"]["timezone"] == "Europe/Paris"
        assert datetime.fromisoformat(ticket["showtime"]["starts_at"]) == datetime.fromisoformat(starts_at)
        local = datetime.fromisoformat(ticket["showtime"]["starts_at_local"])
        assert local == datetime.fromisoformat(starts_at) and local.utcoffset() != timedelta(0)


def test_emails_carry_date_message_id_the_time_zone_and_absolute_qr_links(api, app, user, show, broker, smtp):
    res = _confirmed(api, app, user, show, broker)
    relay(app, broker)
    work_until(app, lambda c: smtp.messages)
    (message,) = smtp.messages
    sent = parsedate_to_datetime(message["Date"])
    assert abs((datetime.now(timezone.utc) - sent).total_seconds()) < 120
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@marquee.test>")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    local = datetime.fromisoformat(show["showtime_obj"]["starts_at"]).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert f"{local:%H:%M} (Europe/Paris)" in text and "(Europe/Paris)" in html
    base = app.extensions["marquee"].settings.public_base_url
    for ticket in api.get(f"/api/v1/reservations/{res['id']}/tickets", user).json:
        absolute = base + ticket["qr_url"]
        assert absolute.startswith("http") and absolute in text and f'src="{absolute}"' in html
    # A second email gets its own Message-ID.
    api.post(f"/api/v1/reservations/{res['id']}/cancel", token=user)
    relay(app, broker)
    work_until(app, lambda c: len(smtp.messages) == 2)
    assert smtp.messages[1]["Message-ID"] != message["Message-ID"] and smtp.messages[1]["Date"]


# --- the spec ---------------------------------------------------------------------

def _resolve(node, spec):
    """The schema with every $ref inlined and OpenAPI 3.0's ``nullable`` as JSON Schema says it."""
    if isinstance(node, list):
        return [_resolve(n, spec) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _resolve(target, spec)
    out = {k: _resolve(v, spec) for k, v in node.items() if k not in ("nullable", "example", "examples")}
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _examples(spec):
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                yield f"{method.upper()} {path} request", body
            for status, response in op["responses"].items():
                if "$ref" in response:
                    continue
                content = response.get("content", {}).get("application/json")
                if content is not None and str(status).startswith("2"):
                    yield f"{method.upper()} {path} {status}", content



def test_every_example_in_the_spec_is_valid_against_its_schema(client):
    import jsonschema_rs

    spec = client.get("/openapi.json").json
    checked = 0
    for where, content in _examples(spec):
        if "example" not in content:
            continue
        schema = _resolve(content["schema"], spec)
        errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(content["example"])]
        assert errors == [], f"{where}: {errors}"
        checked += 1
    assert checked >= 40


def test_every_operation_has_examples(client):
    spec = client.get("/openapi.json").json
    missing = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if not isinstance(op, dict):
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None and "example" not in body:
                missing.append(f"{method} {path} request")
            for status, response in op["responses"].items():
                content = response.get("content", {}).get("application/json") if "$ref" not in response else None
                if str(status).startswith("2") and content is not None and "example" not in content:
                    missing.append(f"{method} {path} {status}")
    assert missing == []


def test_a_bad_example_would_be_caught(client):
    """The validation above can fail: a showtime example with a made-up currency does."""
    import jsonschema_rs

    spec = client.get("/openapi.json").json
    content = spec["paths"]["/api/v1/showtimes/{showtime_id}"]["get"]["responses"]["200"]["content"]
    schema = _resolve(content["application/json"]["schema"], spec)
    bad = {**content["application/json"]["example"], "currency": "PEA!", "seats_available": "many"}
    assert len(list(jsonschema_rs.validator_for(schema).iter_errors(bad))) >= 2


def test_prices_are_an_object_with_a_number_of_properties(client, api, admin):
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    for name in ("Showtime", "ShowtimePatch"):
        prices = schemas[name]["properties"]["prices"]
        assert prices["type"] == "object" and (prices["minProperties"], prices["maxProperties"]) == (1, 50), name
        assert "minLength" not in prices and "maxLength" not in prices
    ids = api.catalog(admin)
    body = {"movie_id": ids["movie"], "screen_id": ids["screen"], "currency": "EUR",
            "starts_at": (datetime.now(timezone.utc) + timedelta(days=9)).replace(microsecond=0).isoformat()}
    for prices in ({}, {f"c{i}": 1 for i in range(51)}):
        r = api.post("/api/v1/showtimes", {**body, "prices": prices}, admin)
        assert r.status_code == 422 and "prices" in r.json["errors"]
