"""The caller's notification preferences (reminders are sent by the scheduler and the worker)."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app.api import Blueprint
from app.api.schemas import StrictSchema
from app.api.security import current_user_id, login_required
from app.models.notifications import REMINDER_MINUTES_MAX, REMINDER_MINUTES_MIN
from app.services import reminders as reminder_service

notifications = Blueprint("notifications", __name__, url_prefix="/api/v1/users/me",
                          description="Notification preferences and reminders")
blueprints = [notifications]

E164 = r"^\+[1-9][0-9]{6,14}$"


class StrictBoolean(fields.Boolean):
    """A JSON boolean only: not "yes", not 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class NotificationPreferencesSchema(Schema):
    email = fields.Boolean(metadata={"description": "Reminders by email (tickets, receipts and account emails always go by email)"})
    sms = fields.Boolean(metadata={"description": "SMS reminders (needs phone)"})
    push = fields.Boolean(metadata={"description": "Push reminders"})
    reminders = fields.Boolean(metadata={"description": "Any reminder at all"})
    reminder_minutes = fields.Integer(metadata={"description": "How long before the showtime a reminder goes"})
    phone = fields.String(allow_none=True, metadata={"description": "E.164, e.g. +33612345678"})


class NotificationPreferencesInSchema(StrictSchema):
    email = StrictBoolean(required=True)
    sms = StrictBoolean(required=True)
    push = StrictBoolean(required=True)
    reminders = StrictBoolean(required=True)
    reminder_minutes = fields.Integer(required=True, strict=True,
                                      validate=validate.Range(min=REMINDER_MINUTES_MIN, max=REMINDER_MINUTES_MAX))
    phone = fields.String(load_default=None, allow_none=True,
                          validate=validate.Regexp(E164, error="Must be an E.164 number, e.g. +33612345678"))


PREFERENCES = {"email": True, "sms": True, "push": False, "reminders": True, "reminder_minutes": 120,
               "phone": "+33612345678"}


@notifications.route("/notifications")
class NotificationPreferences(MethodView):
    @login_required
    @notifications.response(200, NotificationPreferencesSchema, example=PREFERENCES)
    def get(self):
        """The caller's notification preferences (the defaults until changed)"""
        return reminder_service.get_preferences(current_user_id())

    @login_required
    @notifications.arguments(NotificationPreferencesInSchema, example=PREFERENCES)
    @notifications.response(200, NotificationPreferencesSchema, example=PREFERENCES)
    def put(self, data):
        """Replace the caller's notification preferences (SMS needs a phone number)"""
        return reminder_service.set_preferences(current_user_id(), **data)
