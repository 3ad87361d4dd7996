"""Offline check-in (API.md "Operating"): Ed25519 codes a scanner verifies with the
JWKS alone, key rotation, scanners scoped to their theaters, the check-in list, and
batches of offline scans where the first scan of a ticket wins, even in parallel."""
from __future__ import annotations

import concurrent.futures
import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select, update

from app import db
from app.models import AuditEntry, Ticket, TicketKey, User, UserRole
from app.services import booking, ticket_keys, tickets
from tests.integration.booking_helpers import hold, reserve, statuses
from tests.unit.test_ticket_signatures import verify_with_jwks


def now() -> datetime:
    return datetime.now(timezone.utc)


def user_id(app, email) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def grant(app, email, role, theater_id) -> None:
    """A staff role, as the roles endpoint (another part) writes it: a user_roles row."""
    uid = user_id(app, email)
    with app.app_context(), db.unit_of_work():
        db.session.add(UserRole(user_id=uid, role=role, theater_id=theater_id))


def staff_member(api, app, email, role, theater_id) -> str:
    token = api.make_user(email)
    grant(app, email, role, theater_id)
    return token


def confirmed_codes(api, app, customer, showtime_id, count=None) -> list[str]:
    """A customer's confirmed reservation of ``count`` seats (all free ones by default): its codes."""
    seats = [seat for seat, status in statuses(api, showtime_id).items() if status == "available"][:count]
    held = hold(api, customer, showtime_id, seats)
    assert held.status_code == 201, held.json
    res = reserve(api, customer, held.json["id"]).json
    with app.app_context():
        assert booking.confirm_payment(res["id"]) == "confirmed"
    listed = api.get(f"/api/v1/reservations/{res['id']}/tickets", customer)
    return [t["code"] for t in listed.json]


def second_theater(api, admin) -> dict:
    """Theater B with a showtime of its own."""
    city = api.city(admin, name="Lyon")
    theater = api.theater(admin, city["id"], name="Bellecour")
    screen = api.screen(admin, theater["id"])
    movie = api.movie(admin, title="Ronin")
    return {"theater": theater["id"], "showtime": api.showtime(admin, movie["id"], screen["id"])["id"]}


def batch(api, token, *scans):
    return api.post("/api/v1/checkin/batch", {"scans": [{"code": c, "scanned_at": t.isoformat()} for c, t in scans]},
                    token)


@pytest.fixture
def scanner(api, app, show):
    """A scanner of the show's theater (theater A)."""
    return staff_member(api, app, "scanner@test.example", "scanner", show["theater"])


# --- codes and keys ----------------------------------------------------------------

def test_a_code_verifies_with_only_the_published_key_set(api, app, client, user, show):
    code = confirmed_codes(api, app, user, show["showtime"], 1)[0]
    r = client.get("/api/v1/tickets/keys")  # no token: the set is public
    assert r.status_code == 200 and "public" in r.headers["Cache-Control"] and r.headers["ETag"]
    (key,) = r.json["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}  # no "d": nothing private
    assert (key["kty"], key["crv"], key["use"], key["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
    claims = verify_with_jwks(json.loads(r.data), code)
    assert claims is not None and claims["kid"] == key["kid"] and claims["showtime_id"] == show["showtime"]
    assert claims["starts_at"].isoformat() == show["showtime_obj"]["starts_at"].replace("Z", "+00:00")
    with app.app_context():
        ticket = db.session.scalar(select(Ticket).where(Ticket.code == code))
        assert (claims["ticket_id"], claims["reservation_id"], claims["seat_id"]) == (
            ticket.id, ticket.reservation_id, ticket.seat_id)


def test_forged_codes_are_refused_by_the_server_and_by_the_key_set(api, app, admin, scanner, user, show):
    code = confirmed_codes(api, app, user, show["showtime"], 1)[0]
    jwks = api.get("/api/v1/tickets/keys").json
    version, kid, payload, signature = code.split(".")
    other_seat = payload_of(payload, seat_delta=1)
    stranger = Ed25519PrivateKey.generate()
    stranger_kid = ticket_keys.kid_of(stranger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    with app.app_context():
        claims = tickets.read_code(code)
    fields = {"ticket_id": claims.ticket_id, "reservation_id": claims.reservation_id,
              "showtime_id": claims.showtime_id, "seat_id": claims.seat_id, "starts_at": claims.starts_at}
    forgeries = {
        "changed payload": f"{version}.{kid}.{other_seat}.{signature}",
        "unknown kid": tickets.make_code(ticket_keys.SigningKey(stranger_kid, stranger), **fields),
        "known kid, wrong key": tickets.make_code(ticket_keys.SigningKey(kid, stranger), **fields),
    }
    for what, forged in forgeries.items():
        assert verify_with_jwks(jwks, forged) is None, what
        r = api.post("/api/v1/checkin", {"code": forged}, scanner)
        assert r.status_code == 422 and r.json["code"] == "invalid_ticket", what
        result = batch(api, scanner, (forged, now())).json["results"][0]
        assert result["status"] == "invalid" and result["ticket_id"] is None, what
        assert api.get(f"/api/v1/tickets/{forged}/qr.png").status_code == 404, what
    assert api.post("/api/v1/checkin", {"code": code}, scanner).json["status"] == "admitted"  # the genuine one


def payload_of(payload: str, *, seat_delta: int) -> str:
    ticket, reservation, showtime, seat, starts = tickets._unb64(payload).decode().split(":")
    return tickets._b64(f"{ticket}:{reservation}:{showtime}:{int(seat) + seat_delta}:{starts}".encode())


def test_private_keys_are_sealed_at_rest_and_never_published(api, app, user, show):
    confirmed_codes(api, app, user, show["showtime"], 1)
    with app.app_context():
        key = db.session.scalar(select(TicketKey))
        sealed = key.private_key_encrypted
        settings = app.extensions["marquee"].settings
        seed = AESGCM(settings.ticket_keys_encryption_key).decrypt(sealed[:12], sealed[12:], key.kid.encode())
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert public == key.public_key and seed not in sealed
        with pytest.raises(InvalidTag):  # another environment's key, or the row's blob under another kid
            AESGCM(b"\0" * 32).decrypt(sealed[:12], sealed[12:], key.kid.encode())
        with pytest.raises(InvalidTag):
            AESGCM(settings.ticket_keys_encryption_key).decrypt(sealed[:12], sealed[12:], b"another-kid")
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action.startswith("ticket_key."))).all()
        assert [e.action for e in entries] == ["ticket_key.create"]
        assert tickets._b64(seed) not in json.dumps([e.after for e in entries])
    assert tickets._b64(seed) not in api.get("/api/v1/tickets/keys").get_data(as_text=True)


def test_the_first_key_is_made_once_by_parallel_first_uses(app):
    barrier = threading.Barrier(6)

    def first_use(_):
        with app.app_context():
            barrier.wait()
            try:
                return ticket_keys.current().kid
            finally:
                db.session.remove()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        kids = set(pool.map(first_use, range(6)))
    with app.app_context():
        assert len(kids) == 1 and db.session.scalar(select(func.count()).select_from(TicketKey)) == 1


# --- rotation ----------------------------------------------------------------------

def test_rotation_signs_new_tickets_with_the_new_key_and_old_ones_still_check_in(api, app, admin, scanner, user,
                                                                                  other, show):
    old_codes = confirmed_codes(api, app, user, show["showtime"], 2)
    old_kid = old_codes[0].split(".")[1]
    assert api.post("/api/v1/tickets/keys", token=scanner).status_code == 403
    r = api.post("/api/v1/tickets/keys", token=admin, headers={"Idempotency-Key": "rotate-1"})
    assert r.status_code == 201 and r.json["retired_kid"] == old_kid
    replay = api.post("/api/v1/tickets/keys", token=admin, headers={"Idempotency-Key": "rotate-1"})
    assert replay.json == r.json  # the same rotation answered again, not a second one
    new_kid = r.json["key"]["kid"]
    assert new_kid != old_kid and "d" not in r.json["key"]

    new_code = confirmed_codes(api, app, other, show["showtime"], 1)[0]
    assert new_code.split(".")[1] == new_kid
    jwks = api.get("/api/v1/tickets/keys").json
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_kid]  # current first
    assert verify_with_jwks(jwks, old_codes[0]) and verify_with_jwks(jwks, new_code)
    assert api.post("/api/v1/checkin", {"code": old_codes[0]}, scanner).json["status"] == "admitted"
    assert batch(api, scanner, (old_codes[1], now()), (new_code, now())).json["counts"]["admitted"] == 2

    with app.app_context():
        retired = db.session.scalar(select(TicketKey).where(TicketKey.kid == old_kid))
        assert retired.private_key_encrypted is None and retired.retired_at is not None  # erased
        ends_at = datetime.fromisoformat(show["showtime_obj"]["ends_at"])
        assert retired.signed_until == ends_at
        assert [k.kid for k in ticket_keys.published(at=ends_at)] == [new_kid, old_kid]
        # Once the last show it signed for has ended, the old key leaves the set; the
        # server still knows it, so late uploads of scans of that show are judged.
        assert [k.kid for k in ticket_keys.published(at=ends_at + timedelta(seconds=1))] == [new_kid]
        assert tickets.read_code(old_codes[0]) is not None
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "ticket_key.rotate"))
        assert entry.actor_id == db.session.scalar(select(User.id).where(User.email == "admin@test.example"))
        assert (entry.before["kid"], entry.after["kid"]) == (old_kid, new_kid)


def test_a_key_is_published_until_the_end_of_the_latest_show_it_signed_for(api, app, admin, user, other, show):
    """Tickets of a later show raise the key's horizon; tickets of an earlier one sold after
    do not lower it."""
    later = api.showtime(admin, show["movie"], show["screen"],
                         starts_at=(now() + timedelta(days=3)).replace(microsecond=0))
    confirmed_codes(api, app, user, later["id"], 1)
    confirmed_codes(api, app, other, show["showtime"], 1)
    with app.app_context():
        assert db.session.scalar(select(TicketKey.signed_until)) == datetime.fromisoformat(later["ends_at"])


def test_a_retired_key_leaves_the_set_when_its_shows_are_over(api, app, admin, user, show):
    """Through HTTP, with a show that is over: the key that signed its tickets is
    published until the show's end, then no more."""
    codes = confirmed_codes(api, app, user, show["showtime"], 1)
    old_kid = codes[0].split(".")[1]
    api.post("/api/v1/tickets/keys", token=admin)
    assert old_kid in [k["kid"] for k in api.get("/api/v1/tickets/keys").json["keys"]]
    with app.app_context(), db.unit_of_work():  # the show is over: it ended a minute ago, as it would tomorrow
        db.session.execute(update(TicketKey).where(TicketKey.kid == old_kid)
                           .values(signed_until=datetime.now(timezone.utc) - timedelta(minutes=1)))
    assert old_kid not in [k["kid"] for k in api.get("/api/v1/tickets/keys").json["keys"]]


def test_a_key_that_signed_nothing_leaves_at_once_and_rotation_from_the_cli(api, app):
    first = api.get("/api/v1/tickets/keys").json["keys"][0]["kid"]
    out = app.test_cli_runner().invoke(args=["rotate-ticket-key"])
    assert out.exit_code == 0 and f"retired {first}" in out.output
    keys = api.get("/api/v1/tickets/keys").json["keys"]
    assert len(keys) == 1 and keys[0]["kid"] != first and keys[0]["kid"] in out.output
    listed = [json.loads(line) for line in app.test_cli_runner().invoke(args=["ticket-keys"]).output.splitlines()]
    assert [(k["kid"], k["can_sign"]) for k in listed] == [(first, False), (keys[0]["kid"], True)]


def test_parallel_rotations_each_retire_the_one_before(app):
    with app.app_context():
        first = ticket_keys.current().kid
    barrier = threading.Barrier(4)

    def rotate(_):
        with app.app_context():
            barrier.wait()
            try:
                new, old = ticket_keys.rotate(actor_id=None)
                return new.kid, old.kid
            finally:
                db.session.remove()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pairs = list(pool.map(rotate, range(4)))
    # A chain: each rotation retired the key the one before it made.
    retired = {old for _new, old in pairs}
    made = {new for new, _old in pairs}
    assert len(retired) == 4 and first in retired and len(made - retired) == 1
    with app.app_context():
        current = db.session.scalars(select(TicketKey.kid).where(TicketKey.retired_at.is_(None))).all()
        assert current == list(made - retired) and ticket_keys.current().kid == current[0]


# --- who may check in ---------------------------------------------------------------

def test_scanners_check_in_only_their_theaters_tickets(api, app, admin, scanner, user, other, show):
    b = second_theater(api, admin)
    code_a = confirmed_codes(api, app, user, show["showtime"], 1)[0]
    code_b = confirmed_codes(api, app, other, b["showtime"], 1)[0]

    r = api.post("/api/v1/checkin", {"code": code_b}, scanner)
    assert r.status_code == 403 and r.json["code"] == "forbidden"
    result = batch(api, scanner, (code_b, now())).json["results"][0]
    assert result["status"] == "forbidden" and result["ticket_id"] is None and result["seat_label"] is None
    assert api.get(f"/api/v1/showtimes/{b['showtime']}/checkin-list", scanner).status_code == 403
    assert api.get("/api/v1/showtimes/999999/checkin-list", scanner).status_code == 404

    # A plain customer: 403 everywhere, before any code is judged.
    assert api.post("/api/v1/checkin", {"code": code_a}, user).status_code == 403
    assert batch(api, user, (code_a, now())).status_code == 403
    assert api.get(f"/api/v1/showtimes/{show['showtime']}/checkin-list", user).status_code == 403
    # A scanner writes nothing of the catalog.
    assert api.post("/api/v1/movies", {"title": "X", "duration_minutes": 90, "genres": ["crime"],
                                       "language": "en"}, scanner).status_code == 403
    assert api.patch(f"/api/v1/theaters/{show['theater']}", {"name": "Mine"}, scanner).status_code == 403

    # A manager of B checks B's tickets in; the scanner of A, A's.
    manager_b = staff_member(api, app, "manager@test.example", "manager", b["theater"])
    assert api.post("/api/v1/checkin", {"code": code_b}, manager_b).json["status"] == "admitted"
    first = api.post("/api/v1/checkin", {"code": code_a}, scanner)
    assert first.status_code == 200 and first.json["checked_in_by"] == user_id(app, "scanner@test.example")
    again = api.post("/api/v1/checkin", {"code": code_a}, admin)
    assert again.status_code == 409 and again.json["code"] == "already_checked_in"
    assert again.json["by"] == user_id(app, "scanner@test.example")


# --- the check-in list --------------------------------------------------------------

def test_the_checkin_list_gives_every_code_with_its_state_and_an_etag(api, app, scanner, user, other, show):
    kept = confirmed_codes(api, app, user, show["showtime"], 2)
    cancelled_res = _reservation_of(app, confirmed_codes(api, app, other, show["showtime"], 1)[0])
    assert api.post(f"/api/v1/reservations/{cancelled_res}/cancel", token=other).status_code == 202
    path = f"/api/v1/showtimes/{show['showtime']}/checkin-list"

    first = api.get(path + "?page_size=100", scanner)
    assert first.status_code == 200 and json.loads(first.headers["X-Pagination"])["total"] == 3
    by_code = {t["code"]: t for t in first.json}
    assert set(kept) <= set(by_code) and [t["status"] for t in first.json].count("cancelled") == 1
    assert all(not t["checked_in"] and t["checked_in_at"] is None for t in first.json)
    assert [t["seat_label"] for t in first.json if t["code"] in kept] == ["A1", "A2"]
    unchanged = api.get(path + "?page_size=100", scanner, headers={"If-None-Match": first.headers["ETag"]})
    assert unchanged.status_code == 304

    api.post("/api/v1/checkin", {"code": kept[0]}, scanner)
    changed = api.get(path + "?page_size=100", scanner, headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and {t["code"]: t["checked_in"] for t in changed.json}[kept[0]] is True
    paged = api.get(path + "?page=2&page_size=2", scanner)
    assert [t["ticket_id"] for t in paged.json] == [first.json[2]["ticket_id"]]
    assert api.get(path + "?pagesize=2", scanner).status_code == 400  # unknown parameter


def _reservation_of(app, code) -> int:
    with app.app_context():
        return db.session.scalar(select(Ticket.reservation_id).where(Ticket.code == code))


# --- batches of offline scans -------------------------------------------------------

def test_each_scan_of_a_batch_gets_its_own_answer_in_order(api, app, admin, scanner, user, other, show):
    b = second_theater(api, admin)
    valid, to_cancel = confirmed_codes(api, app, user, show["showtime"], 2)
    theirs = confirmed_codes(api, app, other, b["showtime"], 1)[0]
    with app.app_context(), db.unit_of_work():
        db.session.execute(update(Ticket).where(Ticket.code == to_cancel).values(status="cancelled"))
    at = now()
    r = batch(api, scanner, (valid, at), ("v2.nope", at), (to_cancel, at), (theirs, at),
              (valid, at + timedelta(hours=1)), (valid, at - timedelta(hours=1)))
    assert r.status_code == 200
    assert [x["status"] for x in r.json["results"]] == ["admitted", "invalid", "cancelled", "forbidden", "invalid",
                                                       "invalid"]
    assert "future" in r.json["results"][4]["detail"] and "before" in r.json["results"][5]["detail"]
    assert r.json["counts"] == {"admitted": 1, "conflict": 0, "invalid": 3, "cancelled": 1, "forbidden": 1}
    admitted = r.json["results"][0]
    assert datetime.fromisoformat(admitted["checked_in_at"]) == at
    assert admitted["by"] == user_id(app, "scanner@test.example") and admitted["seat_label"] == "A1"
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "ticket.check_in"))
        assert entry.after["admitted"] == [admitted["ticket_id"]] and entry.after["forbidden"] == 1


def test_within_a_batch_the_earliest_scan_wins_and_later_uploads_conflict(api, app, admin, scanner, user, show):
    code = confirmed_codes(api, app, user, show["showtime"], 1)[0]
    early = now()
    late = early + timedelta(seconds=40)
    r = batch(api, scanner, (code, late), (code, early))
    assert [x["status"] for x in r.json["results"]] == ["conflict", "admitted"]
    assert r.json["results"][0]["checked_in_at"] == r.json["results"][1]["checked_in_at"]
    assert datetime.fromisoformat(r.json["results"][1]["checked_in_at"]) == early
    second_scanner = staff_member(api, app, "door2@test.example", "scanner", show["theater"])
    later = batch(api, second_scanner, (code, early - timedelta(seconds=1))).json["results"][0]
    assert later["status"] == "conflict" and later["by"] == user_id(app, "scanner@test.example")
    assert datetime.fromisoformat(later["checked_in_at"]) == early


def test_an_upload_sent_again_is_answered_the_same(api, app, scanner, user, show):
    """A scanner that lost the answer to an upload sends it again: its own scans are
    still `admitted` (not conflicts with themselves), and nothing changes."""
    codes = confirmed_codes(api, app, user, show["showtime"], 2)
    scans = [(codes[0], now()), (codes[1], now() + timedelta(seconds=30))]
    first = batch(api, scanner, *scans).json
    again = batch(api, scanner, *scans).json
    assert [r["status"] for r in again["results"]] == ["admitted", "admitted"]
    assert [r["checked_in_at"] for r in again["results"]] == [r["checked_in_at"] for r in first["results"]]
    rescanned = batch(api, scanner, (codes[0], now() + timedelta(seconds=60))).json["results"][0]  # a second scan, not a repeat
    assert rescanned["status"] == "conflict"
    with app.app_context():
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "ticket.check_in")
                                     .order_by(AuditEntry.id)).all()
        assert [len(e.after["admitted"]) for e in entries] == [2, 0, 0]


def test_batches_are_bounded(api, scanner):
    r = api.post("/api/v1/checkin/batch", {"scans": [{"code": "x", "scanned_at": now().isoformat()}] * 501}, scanner)
    assert r.status_code == 422 and r.json["code"] == "validation_error" and "scans" in r.json["errors"]
    assert api.post("/api/v1/checkin/batch", {"scans": []}, scanner).status_code == 422
    naive = api.post("/api/v1/checkin/batch", {"scans": [{"code": "x", "scanned_at": "2026-12-04T19:00:00"}]},
                     scanner)
    assert naive.status_code == 422 and "scans.0.scanned_at" in naive.json["errors"]
    full = api.post("/api/v1/checkin/batch", {"scans": [{"code": "x", "scanned_at": now().isoformat()}] * 500},
                    scanner)
    assert full.status_code == 200 and full.json["counts"]["invalid"] == 500


def test_parallel_uploads_of_the_same_codes_admit_each_once(live_server, api, app, admin, user, show):
    """Eight uploads at once (two scanners, four doors each, real HTTP against gunicorn)
    of the same six codes: each code is admitted by exactly one scan, the others are
    conflicts naming it."""
    codes = confirmed_codes(api, app, user, show["showtime"])
    assert len(codes) == 6
    scanners = [staff_member(api, app, f"door{i}@test.example", "scanner", show["theater"]) for i in range(2)]
    barrier = threading.Barrier(8)
    at = now()

    def upload(i):
        scans = [{"code": code, "scanned_at": (at + timedelta(seconds=i)).isoformat()} for code in codes]
        barrier.wait()
        r = requests.post(live_server + "/api/v1/checkin/batch", json={"scans": scans}, timeout=30,
                          headers={"Authorization": f"Bearer {scanners[i % 2]}"})
        assert r.status_code == 200, r.text
        return r.json()["results"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        uploads = list(pool.map(upload, range(8)))
    for n, code in enumerate(codes):
        answers = [results[n] for results in uploads]
        admitted = [a for a in answers if a["status"] == "admitted"]
        assert len(admitted) == 1, (code, [a["status"] for a in answers])
        assert all(a["status"] == "conflict" and a["checked_in_at"] == admitted[0]["checked_in_at"]
                   and a["by"] == admitted[0]["by"] for a in answers if a is not admitted[0])
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Ticket)
                                 .where(Ticket.checked_in_at.is_not(None))) == 6


def test_two_scanners_uploading_one_code_at_once_one_admitted_one_conflict(live_server, api, app, admin, user,
                                                                           other, show):
    """Two doors, one code, uploaded at the same instant: one admitted, one conflict.
    Twenty rounds (a fresh ticket each), so that a lost race cannot hide by luck."""
    layout = {"rows": [{"label": row, "seats": ["standard"] * 10} for row in "AB"]}
    screen = api.screen(admin, show["theater"], layout=layout, name="Two")
    showtime = api.showtime(admin, show["movie"], screen["id"])["id"]
    codes = confirmed_codes(api, app, user, showtime, 10) + confirmed_codes(api, app, other, showtime, 10)
    doors = [staff_member(api, app, f"gate{i}@test.example", "scanner", show["theater"]) for i in range(2)]
    barrier = threading.Barrier(2)

    def upload(token, code, at):
        barrier.wait()
        return requests.post(live_server + "/api/v1/checkin/batch", timeout=30,
                             json={"scans": [{"code": code, "scanned_at": at.isoformat()}]},
                             headers={"Authorization": f"Bearer {token}"}).json()["results"][0]["status"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for code in codes:
            at = now()
            answers = sorted(pool.map(upload, doors, [code, code], [at, at]))
            assert answers == ["admitted", "conflict"], code


# --- codes from before Ed25519 ------------------------------------------------------

def test_codes_issued_before_ed25519_still_check_in(api, app, scanner, user, show):
    """A ticket issued before the migration keeps its HMAC code: verified by the
    server, listed for scanners, checked in once."""
    code = confirmed_codes(api, app, user, show["showtime"], 1)[0]
    with app.app_context(), db.unit_of_work():
        ticket = db.session.scalar(select(Ticket).where(Ticket.code == code))
        legacy = tickets.legacy_code(ticket.reservation_id, ticket.showtime_id, ticket.seat_id)
        ticket.code = legacy
    assert not legacy.startswith("v2.") and verify_with_jwks(api.get("/api/v1/tickets/keys").json, legacy) is None
    listed = api.get(f"/api/v1/showtimes/{show['showtime']}/checkin-list", scanner).json
    assert [t["code"] for t in listed] == [legacy]
    assert api.get(f"/api/v1/tickets/{legacy}/qr.png").status_code == 200
    assert api.post("/api/v1/checkin", {"code": legacy}, scanner).json["status"] == "admitted"
    assert batch(api, scanner, (legacy, now())).json["results"][0]["status"] == "conflict"
    payload, signature = legacy.split(".")
    forged = api.post("/api/v1/checkin", {"code": f"{payload}.{'A' * len(signature)}"}, scanner)
    assert forged.status_code == 422
