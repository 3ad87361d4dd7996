"""The payment gateway's signed webhook."""
from __future__ import annotations

from functools import wraps

from flask import request
from flask.views import MethodView

from app.api import Blueprint
from app.api import schemas as s
from app.services import payments as payment_service

payments_blp = Blueprint("payments", __name__, url_prefix="/api/v1/payments", description="Payment gateway callbacks")
blueprints = [payments_blp]


def signed(func):
    """The gateway's signature is checked before anything else is read."""
    @wraps(func)
    def wrapper(*args, **kwargs):
        payment_service.verify_webhook(request.headers.get("Marquee-Signature"), request.get_data(cache=True))
        return func(*args, **kwargs)
    return wrapper


@payments_blp.route("/webhook")
class PaymentWebhook(MethodView):
    @signed
    @payments_blp.arguments(s.WebhookEventSchema, example=s.WEBHOOK_IN)
    @payments_blp.response(200, s.WebhookResultSchema, example=s.WEBHOOK_RESULT)
    @payments_blp.alt_response(400, response="BAD_REQUEST", description="invalid_signature, stale_timestamp")
    @payments_blp.doc(parameters=[{"in": "header", "name": "Marquee-Signature", "required": True,
                                   "schema": {"type": "string"},
                                   "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + body>"}])
    def post(self, event):
        """Gateway callback, signed with HMAC-SHA256; replays of a seen event are ignored"""
        return {"outcome": payment_service.handle_webhook(event)}
