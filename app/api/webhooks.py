"""Outbound webhooks (admin): subscriptions and their delivery log."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app.api import Blueprint, page_args, paged
from app.api.schemas import StrictSchema
from app.api.security import admin_required, current_user_id
from app.models.webhooks import EVENTS
from app.services import outbound_webhooks

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks",
                description="Outbound webhooks (admin): Marquee POSTs signed events to your URL")
blueprints = [blp]


class WebhookInSchema(StrictSchema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048), metadata={
        "description": "http(s); its host must resolve only to public addresses",
        "example": "https://example.com/marquee-events"})
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)), required=True,
                         validate=validate.Length(min=1, max=len(EVENTS)),
                         metadata={"description": f"Some of {', '.join(EVENTS)}"})


class WebhookSchema(Schema):
    id = fields.Integer(dump_only=True)
    url = fields.String(dump_only=True)
    events = fields.List(fields.String(), dump_only=True)
    enabled = fields.Boolean(dump_only=True, metadata={
        "description": "False once WEBHOOK_DISABLE_AFTER attempts in a row failed; `POST .../enable` resumes"})
    consecutive_failures = fields.Integer(dump_only=True)
    disabled_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)


class CreatedWebhookSchema(WebhookSchema):
    secret = fields.String(dump_only=True, metadata={
        "description": "The signing secret, shown this once: verify `Marquee-Signature: t=<unix>,v1=<hex>` "
                       "as HMAC-SHA256 of `<t>.<body>` with it"})


class AttemptSchema(Schema):
    attempted_at = fields.DateTime(dump_only=True)
    status_code = fields.Integer(dump_only=True, allow_none=True)
    error = fields.String(dump_only=True, allow_none=True)
    duration_ms = fields.Integer(dump_only=True)


class DeliverySchema(Schema):
    id = fields.Integer(dump_only=True, metadata={"description": "Sent as the `Marquee-Delivery` header"})
    event_id = fields.String(dump_only=True, metadata={"description": "The event's `id` (the same for every webhook)"})
    event = fields.String(dump_only=True)
    status = fields.String(dump_only=True, metadata={"enum": ["pending", "delivered", "failed"]})
    attempts = fields.Integer(dump_only=True)
    last_status_code = fields.Integer(dump_only=True, allow_none=True)
    last_error = fields.String(dump_only=True, allow_none=True)
    next_attempt_at = fields.DateTime(dump_only=True, allow_none=True)
    delivered_at = fields.DateTime(dump_only=True, allow_none=True)
    created_at = fields.DateTime(dump_only=True)
    attempt_log = fields.List(fields.Nested(AttemptSchema), dump_only=True)


WEBHOOK_IN = {"url": "https://example.com/marquee-events", "events": ["reservation.confirmed", "payment.refunded"]}
WEBHOOK = {"id": 3, "url": "https://example.com/marquee-events", "events": ["reservation.confirmed", "payment.refunded"],
           "enabled": True, "consecutive_failures": 0, "disabled_at": None, "created_at": "2026-11-22T09:00:00+00:00"}
DELIVERY = {"id": 118, "event_id": "evt_5b0f3c8e9a2d4f7b8c1e6a9d3f2b7c4e", "event": "reservation.confirmed",
            "status": "delivered", "attempts": 2, "last_status_code": 200, "last_error": None, "next_attempt_at": None,
            "delivered_at": "2026-11-22T09:14:06+00:00", "created_at": "2026-11-22T09:14:01+00:00",
            "attempt_log": [{"attempted_at": "2026-11-22T09:14:01+00:00", "status_code": 500, "error": None,
                             "duration_ms": 12},
                            {"attempted_at": "2026-11-22T09:14:06+00:00", "status_code": 200, "error": None,
                             "duration_ms": 9}]}


@blp.route("")
class Webhooks(MethodView):
    @admin_required
    @blp.arguments(WebhookInSchema, example=WEBHOOK_IN)
    @blp.response(201, CreatedWebhookSchema, example={**WEBHOOK, "secret": "whsec_9Yc2mQ7rT1vX4bN8kL3pZ6wD0sF5hJ"}, headers={
        "Location": {"description": "The webhook", "schema": {"type": "string"}}})
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY",
                      description="validation_error: `url` not http(s) or not public, unknown `events`")
    def post(self, data):
        """Subscribe a URL to events; the answer carries the signing secret, once"""
        created = outbound_webhooks.create_webhook(current_user_id(), data["url"], data["events"])
        return created, 201, {"Location": url_for("webhooks.WebhookById", webhook_id=created["id"])}

    @admin_required
    @blp.response(200, WebhookSchema(many=True), example=[WEBHOOK])
    @blp.paginate()
    def get(self, pagination_parameters):
        """Every webhook, newest first"""
        return paged(pagination_parameters, outbound_webhooks.list_webhooks(**page_args(pagination_parameters)))


@blp.route("/<int:webhook_id>")
class WebhookById(MethodView):
    @admin_required
    @blp.response(200, WebhookSchema, example=WEBHOOK)
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, webhook_id):
        """One webhook (its secret is never shown again)"""
        return outbound_webhooks.get_webhook(webhook_id)

    @admin_required
    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND")
    def delete(self, webhook_id):
        """Delete a webhook and its deliveries (pending ones are never sent)"""
        outbound_webhooks.delete_webhook(current_user_id(), webhook_id)


@blp.route("/<int:webhook_id>/enable")
class EnableWebhook(MethodView):
    @admin_required
    @blp.response(200, WebhookSchema, example=WEBHOOK)
    @blp.alt_response(404, response="NOT_FOUND")
    def post(self, webhook_id):
        """Re-enable a disabled webhook: its pending deliveries resume, in order"""
        return outbound_webhooks.enable_webhook(current_user_id(), webhook_id)


@blp.route("/<int:webhook_id>/deliveries")
class Deliveries(MethodView):
    @admin_required
    @blp.response(200, DeliverySchema(many=True), example=[DELIVERY])
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate()
    def get(self, webhook_id, pagination_parameters):
        """A webhook's deliveries, newest first, each with its attempts (status code, error, duration)"""
        return paged(pagination_parameters,
                     outbound_webhooks.list_deliveries(webhook_id, **page_args(pagination_parameters)))
