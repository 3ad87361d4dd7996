"""The GraphQL gateway at /graphql: the same services, auth, idempotency and error
codes as REST; data loaders; limits checked before anything runs; GraphiQL offline."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema

from app.api.graphql.limits import MAX_ALIASES, MAX_DEPTH
from app.api.graphql.schema import schema as graphql_schema
from app.services import booking
from tests.integration.booking_helpers import hold, reserve, seat_ids

HOLD = """mutation Hold($showtime: ID!, $seats: [ID!], $quantity: Int) {
  hold(showtimeId: $showtime, seatIds: $seats, quantity: $quantity) { id showtimeId seatIds expiresAt }
}"""
RESERVE = """mutation Reserve($hold: ID!, $token: String!) {
  reserve(holdId: $hold, paymentToken: $token) { id status showtimeId totalCents currency expiresAt paymentStatus
    seats { id label category priceCents } }
}"""
FIFTY = """query Page {
  showtimes(pageSize: %d) {
    items { id startsAt startsAtLocal seatsAvailable
      movie { id title durationMinutes rating }
      theater { id name }
      city { id name timezone }
      seatMap { version seats { id label row number category priceCents status x y } } }
    pageInfo { total }
  }
}"""


def gql(api, query, variables=None, token=None, **kw):
    r = api.post("/graphql", {"query": query, "variables": variables or {}}, token, **kw)
    assert r.status_code == 200, r.data
    return r.json


def codes(answer) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors", [])]



# --- the same state through REST and GraphQL ----------------------------------------

def _comparable(reservation: dict) -> dict:
    """A reservation without what differs between two made one after the other."""
    return {k: v for k, v in reservation.items() if k not in ("id", "created_at", "expires_at", "links")}


def test_hold_and_reserve_through_graphql_leave_the_state_rest_leaves(api, admin, user, other, show):
    showtime = show["showtime"]
    s1, s2, *_ = seat_ids(api, showtime)
    # Through REST...
    rest_hold = hold(api, other, showtime, [s1])
    assert rest_hold.status_code == 201
    rest = reserve(api, other, rest_hold.json["id"]).json
    # ...and through GraphQL.
    held = gql(api, HOLD, {"showtime": showtime, "seats": [str(s2)]}, user)["data"]["hold"]
    assert held["seatIds"] == [str(s2)] and held["showtimeId"] == str(showtime)
    assert api.get(f"/api/v1/holds/{held['id']}", user).json["seat_ids"] == [s2]
    made = gql(api, RESERVE, {"hold": held["id"], "token": "tok_visa"}, user)["data"]["reserve"]
    via_rest = api.get(f"/api/v1/reservations/{made['id']}", user).json
    assert via_rest["status"] == made["status"] == "pending_payment"
    assert via_rest["total_cents"] == made["totalCents"] and via_rest["expires_at"] == made["expiresAt"]
    assert [s["id"] for s in via_rest["seats"]] == [int(s["id"]) for s in made["seats"]]
    other_view = api.get(f"/api/v1/reservations/{rest['id']}", other).json
    assert _comparable(via_rest) | {"user_id": 0, "seats": []} == _comparable(other_view) | {"user_id": 0, "seats": []}
    # The seat map says the same both ways: both seats taken.
    rest_map = {s["id"]: s["status"] for s in api.get(f"/api/v1/showtimes/{showtime}/seats").json["seats"]}
    graph_map = gql(api, "query($id: ID!) { showtime(id: $id) { seatsAvailable seatMap { seats { id status } } } }",
                    {"id": showtime})["data"]["showtime"]
    assert {int(s["id"]): s["status"] for s in graph_map["seatMap"]["seats"]} == rest_map
    assert rest_map[s1] == rest_map[s2] != "available"  # both pending payment, alike
    assert graph_map["seatsAvailable"] == api.get(f"/api/v1/showtimes/{showtime}").json["seats_available"]
    # The caller's list is the REST list.
    listed = gql(api, "{ reservations { items { id status } pageInfo { total } } }", token=user)["data"]
    assert [int(r["id"]) for r in listed["reservations"]["items"]] == [r["id"] for r in
                                                                       api.get("/api/v1/reservations", user).json]


def test_best_available_and_release_through_graphql(api, user, show):
    held = gql(api, HOLD, {"showtime": show["showtime"], "quantity": 2}, user)["data"]["hold"]
    assert len(held["seatIds"]) == 2
    answer = gql(api, "mutation($id: ID!) { releaseHold(id: $id) }", {"id": held["id"]}, user)
    assert answer == {"data": {"releaseHold": True}}
    assert api.get(f"/api/v1/holds/{held['id']}", user).status_code == 404
    assert all(s["status"] == "available" for s in api.get(f"/api/v1/showtimes/{show['showtime']}/seats").json["seats"])


def test_idempotency_key_answers_the_first_answer_and_refuses_another_body(api, user, show):
    s1, s2, *_ = seat_ids(api, show["showtime"])
    key = {"headers": {"Idempotency-Key": "gql-hold-1"}}
    first = gql(api, HOLD, {"showtime": show["showtime"], "seats": [str(s1)]}, user, **key)
    again = gql(api, HOLD, {"showtime": show["showtime"], "seats": [str(s1)]}, user, **key)
    assert again == first and "errors" not in first
    other_body = gql(api, HOLD, {"showtime": show["showtime"], "seats": [str(s2)]}, user, **key)
    assert codes(other_body) == ["idempotency_key_reused"]
    # An error is remembered too: the same reserve twice answers the same refusal.
    bad = {"headers": {"Idempotency-Key": "gql-reserve-1"}}
    refused = gql(api, RESERVE, {"hold": "nope", "token": "tok_visa"}, user, **bad)
    assert codes(refused) == ["not_found"]
    assert gql(api, RESERVE, {"hold": "nope", "token": "tok_visa"}, user, **bad) == refused


# --- owners only ------------------------------------------------------------------------

def test_another_users_reservation_is_invisible(api, user, other, show):
    made = reserve(api, user, hold(api, user, show["showtime"], seat_ids(api, show["showtime"])[:1]).json["id"]).json
    query = "query($id: ID!) { reservation(id: $id) { id status } }"
    theirs = gql(api, query, {"id": made["id"]}, other)
    assert theirs["data"] == {"reservation": None}
    assert codes(theirs) == ["not_found"] and theirs["errors"][0]["path"] == ["reservation"]
    # Exactly what an id that exists for no one answers.
    assert codes(gql(api, query, {"id": 999999}, other)) == ["not_found"]
    assert api.get(f"/api/v1/reservations/{made['id']}", other).status_code == 404
    assert gql(api, "{ reservations { items { id } } }", token=other)["data"]["reservations"]["items"] == []
    assert gql(api, query, {"id": made["id"]}, user)["data"]["reservation"]["id"] == str(made["id"])


def test_anonymous_reads_the_catalog_but_not_its_own(api, show):
    answer = gql(api, "{ movies { items { title } } cities { items { name } } theaters { items { name city { name } } } }")
    assert "errors" not in answer and answer["data"]["movies"]["items"] == [{"title": "Heat"}]
    mine = gql(api, "{ me { email } }")
    assert mine["data"] is None and codes(mine) == ["token_missing"]
    bad = gql(api, "{ me { email } }", token="not.a.token")
    assert codes(bad) == ["token_invalid"]
    held = gql(api, HOLD, {"showtime": show["showtime"], "quantity": 1})
    assert codes(held) == ["token_missing"]


def test_a_revoked_token_is_refused_as_rest_refuses_it(api, user):
    assert gql(api, "{ me { email } }", token=user)["data"]["me"]["email"] == "user@test.example"
    assert api.post("/api/v1/auth/logout", token=user).status_code == 204
    assert codes(gql(api, "{ me { email } }", token=user)) == ["token_revoked"]


# --- errors carry REST's codes ------------------------------------------------------------

def test_errors_carry_rest_codes_and_fields(api, user, other, show):
    s1, *_ = seat_ids(api, show["showtime"])
    assert "errors" not in gql(api, HOLD, {"showtime": show["showtime"], "seats": [str(s1)]}, other)
    taken = gql(api, HOLD, {"showtime": show["showtime"], "seats": [str(s1)]}, user)
    assert taken["data"] is None
    error = taken["errors"][0]
    assert error["extensions"]["code"] == "seats_unavailable" and error["extensions"]["seat_ids"] == [s1]
    assert error["extensions"]["status"] == 409
    invalid = gql(api, HOLD, {"showtime": show["showtime"], "seats": ["x"]}, user)
    assert codes(invalid) == ["validation_error"] and "seat_ids.0" in invalid["errors"][0]["extensions"]["errors"]
    both = gql(api, HOLD, {"showtime": show["showtime"], "seats": [str(s1)], "quantity": 2}, user)
    assert codes(both) == ["validation_error"] and "_schema" in both["errors"][0]["extensions"]["errors"]
    expired = gql(api, RESERVE, {"hold": "1.0123456789abcdef", "token": "tok_visa"}, user)
    assert codes(expired) == ["not_found"]
    token = gql(api, RESERVE, {"hold": "h", "token": "visa"}, user)
    assert codes(token) == ["validation_error"] and "payment_token" in token["errors"][0]["extensions"]["errors"]
    assert codes(gql(api, "{ showtime(id: 424242) { id } }")) == ["not_found"]
    assert codes(gql(api, '{ showtimes(movieId: "abc") { items { id } } }')) == ["validation_error"]
    assert codes(gql(api, "{ showtimes(pageSize: 101) { items { id } } }")) == ["validation_error"]


def test_a_hold_in_a_waiting_room_needs_the_admission_token(api, admin, user, show):
    opens = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    r = api.call("PUT", f"/api/v1/showtimes/{show['showtime']}/waiting-room", admin,
                 json={"opens_at": opens, "admit_per_minute": 60, "max_active": 10, "session_seconds": 600})
    assert r.status_code == 200, r.json
    refused = gql(api, HOLD, {"showtime": show["showtime"], "quantity": 1}, user)
    assert codes(refused) == ["admission_required"]
    assert refused["errors"][0]["extensions"]["queue_url"] == f"/api/v1/showtimes/{show['showtime']}/queue"


# --- data loaders: a fixed number of SQL statements ----------------------------------------

def test_fifty_showtimes_with_everything_cost_the_statements_of_five(api, admin, app, user, statements):
    ids = api.catalog(admin)
    base = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
    for i in range(1, 50):
        movie = api.movie(admin, title=f"Movie {i}") if i % 2 else {"id": ids["movie"]}
        api.showtime(admin, movie["id"], ids["screen"], base + timedelta(hours=3 * i))
    hold(api, user, ids["showtime"], seat_ids(api, ids["showtime"])[:1])
    cache = app.extensions["marquee"].cache

    def cost(size: int) -> int:
        answer = gql(api, FIFTY % size)  # the first read of a showtime in an hour rebuilds Redis
        cache.invalidate("showtimes")  # nothing cached either: every read goes to PostgreSQL
        cache.invalidate("screens")
        statements.clear()
        assert gql(api, FIFTY % size) == answer
        assert "errors" not in answer and len(answer["data"]["showtimes"]["items"]) == size
        assert all(len(item["seatMap"]["seats"]) == 6 for item in answer["data"]["showtimes"]["items"])
        return len(statements)

    five, fifty = cost(5), cost(50)
    assert fifty == five, (five, fifty)
    assert five <= 10


def test_a_page_of_reservations_with_their_tickets_costs_the_statements_of_one(api, app, user, show, statements):
    """The tickets of a page of confirmed reservations load together, and they are the ones
    REST hands out."""
    seats = seat_ids(api, show["showtime"])
    made = []
    for seat in seats[:5]:
        made.append(reserve(api, user, hold(api, user, show["showtime"], [seat]).json["id"]).json["id"])
        with app.app_context():
            assert booking.confirm_payment(made[-1]) == "confirmed"
    query = "{ reservations(pageSize: %d) { items { id status tickets { code seatLabel qrUrl } } } }"

    def cost(size: int) -> tuple[int, list]:
        statements.clear()
        answer = gql(api, query % size, token=user)
        assert "errors" not in answer, answer
        return len(statements), answer["data"]["reservations"]["items"]

    (one, _), (five, items) = cost(1), cost(5)
    assert five == one, (one, five)
    assert sorted(int(item["id"]) for item in items) == sorted(made)
    for item in items:
        rest = api.get(f"/api/v1/reservations/{item['id']}/tickets", user).json
        rest_tickets = rest["tickets"] if isinstance(rest, dict) else rest
        assert [(t["code"], t["seat_label"]) for t in rest_tickets] == \
               [(t["code"], t["seatLabel"]) for t in item["tickets"]]


# --- limits, before anything runs ------------------------------------------------------

def test_a_too_deep_query_is_refused_before_it_runs(api, show, statements):
    nested = "{ __schema { types { " + "ofType { " * MAX_DEPTH + "name" + " }" * MAX_DEPTH + " } } }"
    answer = gql(api, nested)
    assert answer["data"] is None and codes(answer) == ["query_too_deep"]
    assert answer["errors"][0]["extensions"]["max_depth"] == MAX_DEPTH
    assert statements == []
    # Introspection stays on: GraphiQL's own query passes.
    from graphql import get_introspection_query

    assert "errors" not in gql(api, get_introspection_query(descriptions=True))


def test_a_too_costly_query_is_refused_before_it_runs(api, show, statements):
    fields = "id seatMap { seats { id label status priceCents x y } } movie { title } theater { name }"
    costly = "{ " + " ".join(f"a{i}: showtimes(pageSize: 100) {{ items {{ {fields} }} }}" for i in range(5)) + " }"
    answer = gql(api, costly)
    assert answer["data"] is None and codes(answer) == ["query_too_costly"]
    assert statements == []
    aliases = "{ " + " ".join(f"a{i}: cities(pageSize: 1) {{ pageInfo {{ total }} }}" for i in range(MAX_ALIASES + 1)) + " }"
    assert codes(gql(api, aliases)) == ["too_many_aliases"]
    assert statements == []


def test_fragments_are_measured_too(api, statements):
    query = """{ ...A } fragment A on Query { x: showtimes(pageSize: 100) { items { ...B } }
                                              y: showtimes(pageSize: 100) { items { ...B } } }
               fragment B on Showtime { movie { title } theater { name } city { name } seatMap { seats { ...C } } }
               fragment C on Seat { id label row number category priceCents status x y }"""
    assert codes(gql(api, query)) == ["query_too_costly"]
    query = """{ ...A } fragment A on Query { showtimes(pageSize: 40) { items { ...B } } }
               fragment B on Showtime { movie { title } theater { name } city { name } seatMap { seats { ...C } } }
               fragment C on Seat { id label row number category priceCents status x y }"""
    assert "errors" not in gql(api, query)  # within the budget
    statements.clear()
    bomb = "{ ...F0 } " + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40)) + \
        " fragment F40 on Query { cities { pageInfo { total } } }"
    assert codes(gql(api, bomb)) == ["query_too_costly"]
    assert statements == []


# --- hostile input answers cleanly ------------------------------------------------------

@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b"query { movies { items { id } } }", "text/plain", 415, "unsupported_media_type"),
    (b"{not json", "application/json", 400, "malformed_json"),
    (b"[" * 5000 + b"]" * 5000, "application/json", 400, "json_too_deep"),
    (b'{"query": 42}', "application/json", 400, "bad_request"),
    (b'{"variables": {}}', "application/json", 400, "bad_request"),
    (b'{"query": "{ cities { pageInfo { total } } }", "variables": [1]}', "application/json", 400, "bad_request"),
    (b"\xff\xfe", "application/json", 400, "malformed_json"),
    (b'{"query": "' + b"a" * 70_000 + b'"}', "application/json", 413, "payload_too_large"),
])
def test_requests_that_are_not_graphql_are_problem_documents(client, body, content_type, status, code):
    r = client.post("/graphql", data=body, headers={"Content-Type": content_type})
    assert r.status_code == status, r.data[:300]
    assert r.mimetype == "application/problem+json" and r.json["code"] == code


@pytest.mark.parametrize(("query", "variables", "code"), [
    ("{ movies { items { id } ", None, "syntax_error"),
    ("{ movies { nope } }", None, "invalid_query"),
    ("{ " + "a: cities { pageInfo { total } } " * 1200 + "}", None, "query_too_large"),
    ("query($id: ID!) { showtime(id: $id) { id } }", {"id": {"x": 1}}, "invalid_variables"),
    ("query($size: Int!) { cities(pageSize: $size) { pageInfo { total } } }", {"size": "ten"}, "invalid_variables"),
    ("query($size: Int!) { cities(pageSize: $size) { pageInfo { total } } }", {"size": 2**40}, "invalid_variables"),
    ("query($id: ID!) { showtime(id: $id) { id } }", {"id": "9" * 40}, "validation_error"),
    ("query($id: ID!) { showtime(id: $id) { id } }", {"id": "-1"}, "validation_error"),
    ('{ showtimes(date: "yesterday") { items { id } } }', None, "validation_error"),
    ('{ theaters(near: "north pole") { items { id } } }', None, "validation_error"),
    ('{ movies(q: "%_\\\\\' OR 1=1 --") { items { id } } }', None, None),
    ("mutation { releaseHold(id: \"x\") }", None, "token_missing"),
])
def test_strange_queries_answer_with_a_code(api, query, variables, code):
    answer = gql(api, query, variables)
    if code is None:
        assert "errors" not in answer
    else:
        assert codes(answer) and set(codes(answer)) == {code}, answer


def test_a_mutation_over_get_is_refused(api):
    r = api.get("/graphql?query=mutation%20%7B%20releaseHold(id%3A%20%22x%22)%20%7D")
    assert r.status_code == 400 and r.json["code"] == "bad_request" and "GET" in r.json["detail"]
    r = api.get("/graphql?query=%7B%20cities%20%7B%20pageInfo%20%7B%20total%20%7D%20%7D%20%7D")
    assert r.status_code == 200 and r.json == {"data": {"cities": {"pageInfo": {"total": 0}}}}


# --- GraphiQL, offline ---------------------------------------------------------------

def test_graphiql_is_served_with_local_assets_only(client):
    r = client.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "GraphiQL" in page
    assert re.findall(r"https?://", page) == []
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) == 4 and all(a.startswith("/graphql/static/") for a in assets)
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200 and len(served.data) > 1000, asset
        served.close()


# --- generated documents: never an unexplained error -------------------------------------


# Every code an answer may carry; internal_error is not among them.
EXPLAINED = {"not_found", "validation_error", "token_missing", "token_invalid", "invalid_query", "invalid_variables",
             "query_too_deep", "query_too_costly", "too_many_aliases", "query_too_large", "syntax_error",
             "seats_unavailable", "not_enough_seats", "hold_exists", "orphan_seat", "accessible_seat",
             "showtime_started", "hold_expired", "hold_in_use", "hold_reserved", "admission_required"}


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=from_schema(str(graphql_schema)), signed_in=st.booleans())
def test_generated_queries_and_mutations_get_explained_answers(client, user, show, document, signed_in):
    """Queries and mutations hypothesis-graphql builds from the schema (any field, any
    argument value the types allow), signed in or not: 200 with data or coded errors."""
    headers = {"Authorization": f"Bearer {user}"} if signed_in else {}
    r = client.post("/graphql", json={"query": document}, headers=headers)
    assert r.status_code == 200, r.data[:500]
    for error in r.json.get("errors", []):
        assert error["extensions"]["code"] in EXPLAINED, (document, error)


def test_cors_origins_reach_graphql_too():
    """A browser front end on an allowed origin talks to /graphql as to REST."""
    from dataclasses import replace

    from app.config import Settings
    from app.web import create_app

    application = create_app(replace(Settings.from_env(), cors_origins=("https://app.example",)))
    client = application.test_client()
    preflight = client.options("/graphql", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key, Admission-Token"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    r = client.post("/graphql", json={"query": "{ cities { pageInfo { total } } }"},
                    headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in client.post(
        "/graphql", json={"query": "{ cities { pageInfo { total } } }"}, headers={"Origin": "https://evil.example"}).headers
