"""GET/PUT /api/v1/users/me/notifications: defaults, replacement, validation, owner only."""
import pytest

from app import db
from app.models import NotificationPreference

URL = "/api/v1/users/me/notifications"
DEFAULTS = {"email": True, "sms": False, "push": False, "reminders": True, "reminder_minutes": 120, "phone": None}
VALID = {"email": False, "sms": True, "push": True, "reminders": True, "reminder_minutes": 45, "phone": "+33612345678"}


def put(api, token, body):
    return api.call("PUT", URL, token, json=body)


def test_nothing_stored_gives_the_defaults(api, user):
    r = api.get(URL, user)
    assert r.status_code == 200 and r.json == DEFAULTS


def test_put_replaces_and_get_reads_back_for_the_owner_only(api, app, user, other):
    r = put(api, user, VALID)
    assert r.status_code == 200 and r.json == VALID
    assert api.get(URL, user).json == VALID
    assert api.get(URL, other).json == DEFAULTS  # /me: another user's stay their own
    replaced = {**VALID, "sms": False, "phone": None, "reminder_minutes": 10080}
    assert put(api, user, replaced).json == replaced
    assert api.get(URL, user).json == replaced
    with app.app_context():
        assert db.session.query(NotificationPreference).count() == 1


@pytest.mark.parametrize("change, field", [
    ({"phone": "0612345678"}, "phone"),                  # no country code
    ({"phone": "+33 6 12 34 56 78"}, "phone"),            # spaces
    ({"phone": "+0612345678"}, "phone"),                 # no country starts with 0
    ({"phone": "+1234567890123456"}, "phone"),           # 16 digits
    ({"reminder_minutes": 4}, "reminder_minutes"),
    ({"reminder_minutes": 10081}, "reminder_minutes"),
    ({"reminder_minutes": "60"}, "reminder_minutes"),    # a string is not a number
    ({"reminder_minutes": 60.5}, "reminder_minutes"),
    ({"sms": "yes"}, "sms"),
    ({"email": 1}, "email"),
    ({"sms": True, "phone": None}, "phone"),             # sms needs a phone
    ({"pager": True}, "pager"),                          # unknown field
])
def test_invalid_preferences_are_422_by_field_and_change_nothing(api, user, change, field):
    assert put(api, user, VALID).status_code == 200
    body = {**VALID, **change}
    r = put(api, user, body)
    assert r.status_code == 422, r.json
    assert r.json["code"] == "validation_error" and field in r.json["errors"]
    assert api.get(URL, user).json == VALID


def test_sms_without_any_phone_field_is_422_on_phone(api, user):
    body = {k: v for k, v in VALID.items() if k != "phone"}
    r = put(api, user, body)
    assert r.status_code == 422 and "phone" in r.json["errors"]
    assert api.get(URL, user).json == DEFAULTS


def test_a_missing_field_is_422(api, user):
    body = {k: v for k, v in VALID.items() if k != "reminder_minutes"}
    r = put(api, user, body)
    assert r.status_code == 422 and "reminder_minutes" in r.json["errors"]


def test_without_a_token_401(api):
    assert api.get(URL).status_code == 401
    r = put(api, None, VALID)
    assert r.status_code == 401 and r.json["code"]


def test_a_body_that_is_not_json_is_415(api, user):
    r = api.call("PUT", URL, user, data="email=true", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415


def test_an_unknown_query_parameter_is_400(api, user):
    r = api.get(URL + "?verbose=1", user)
    assert r.status_code == 400 and r.json["code"] == "unknown_parameter"
