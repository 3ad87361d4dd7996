"""Multi-factor authentication (TOTP) for staff and anyone who turns it on."""
from __future__ import annotations

from flask import Response, url_for
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app.api import Blueprint
from app.api import schemas as s
from app.api.schemas import StrictSchema
from app.api.security import admin_required, client_address, current_user_id, login_required
from app.services import mfa

blp = Blueprint("mfa", __name__, url_prefix="/api/v1/auth/mfa",
                description="Multi-factor authentication: TOTP codes from an authenticator app, recovery codes")
users_blp = Blueprint("user_mfa", __name__, url_prefix="/api/v1/users",
                      description="Multi-factor authentication: an admin's reset of a user's factor")
blueprints = [blp, users_blp]

_CODE = fields.String(required=True, validate=validate.Length(min=6, max=32),
                      metadata={"description": "six digits from the app, or a recovery code"})


class CodeSchema(StrictSchema):
    code = _CODE


class VerifySchema(StrictSchema):
    mfa_token = fields.String(required=True, validate=validate.Length(min=20, max=128))
    code = _CODE


class StatusSchema(Schema):
    enabled = fields.Boolean()
    pending = fields.Boolean(metadata={"description": "set up, waiting for its first code"})
    enabled_at = fields.DateTime(allow_none=True)
    recovery_codes_left = fields.Integer()


class SetupSchema(Schema):
    secret = fields.String(metadata={"description": "base32, for typing into the app by hand"})
    otpauth_uri = fields.String()
    qr_url = fields.String(metadata={"description": "the otpauth URI as an SVG QR code (Bearer needed)"})


class RecoveryCodesSchema(Schema):
    enabled = fields.Boolean()
    recovery_codes = fields.List(fields.String(), metadata={
        "description": "single-use codes, shown only this once: store them safely"})


@blp.route("")
class MfaStatus(MethodView):
    @login_required
    @blp.response(200, StatusSchema, example={"enabled": True, "pending": False,
                                              "enabled_at": "2026-11-22T09:00:00+00:00", "recovery_codes_left": 9})
    def get(self):
        """Whether the caller's second factor is on, pending, and how many recovery codes are left"""
        return mfa.status(current_user_id())


@blp.route("/setup")
class Setup(MethodView):
    @login_required
    @blp.response(201, SetupSchema, example={
        "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "otpauth_uri": "otpauth://totp/Marquee:ada%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Marquee",
        "qr_url": "/api/v1/auth/mfa/qr.svg"})
    @blp.alt_response(409, response="CONFLICT", description="mfa_already_enabled")
    def post(self):
        """Start setting up TOTP: a new secret, pending until confirmed with a code"""
        answer = mfa.setup(current_user_id(), ip=client_address())
        return {**answer, "qr_url": url_for("mfa.qr_svg")}


@blp.route("/qr.svg", endpoint="qr_svg")
@login_required
@blp.response(200, content_type="image/svg+xml")
@blp.alt_response(404, response="NOT_FOUND", description="no set-up pending")
def qr_svg():
    """The pending secret's otpauth URI as a QR code for the authenticator app"""
    return Response(mfa.qr_image(current_user_id(), "svg"), mimetype="image/svg+xml",
                    headers={"Cache-Control": "no-store"})


@blp.route("/confirm")
class Confirm(MethodView):
    @login_required
    @blp.arguments(CodeSchema, example={"code": "492039"})
    @blp.response(200, RecoveryCodesSchema, example={"enabled": True, "recovery_codes": [
        "k7mq2-x9ptr", "a3hwn-c8dzs", "f2bv7-q4yke", "m9rtx-j3cwa", "p6dsn-h2vkq",
        "t4wzc-r8ebm", "y3qkp-n7fxd", "e8hms-b2tjw", "w5cnr-k9aqz", "s2vfd-m6hpx"]})
    @blp.alt_response(401, response="UNAUTHORIZED", description="mfa_invalid: the code is not right")
    @blp.alt_response(409, response="CONFLICT", description="nothing pending")
    def post(self, data):
        """Turn TOTP on with a first code; answers ten recovery codes, shown once"""
        return {"enabled": True, "recovery_codes": mfa.confirm(current_user_id(), data["code"], ip=client_address())}


@blp.route("/disable")
class Disable(MethodView):
    @login_required
    @blp.arguments(CodeSchema, example={"code": "492039"})
    @blp.response(204)
    @blp.alt_response(401, response="UNAUTHORIZED", description="mfa_invalid")
    @blp.alt_response(409, response="CONFLICT", description="mfa_not_enabled")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def post(self, data):
        """Turn TOTP off with a current code or a recovery code"""
        mfa.disable(current_user_id(), data["code"], ip=client_address())


@blp.route("/verify")
class Verify(MethodView):
    @blp.arguments(VerifySchema, example={"mfa_token": "hY3k0mX8wqL2nVb7rT4sZ9pJc6dF1gK5aE3uW0yHi2o", "code": "492039"})
    @blp.response(200, s.TokenPairSchema, example=s.TOKEN_PAIR)
    @blp.alt_response(401, response="UNAUTHORIZED", description="mfa_invalid")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def post(self, data):
        """Sign-in's second step: the login's mfa_token and a code give the token pair"""
        return mfa.verify_sign_in(data["mfa_token"], data["code"], client_address()).as_dict()


@users_blp.route("/<int:user_id>/mfa")
class UserMfaReset(MethodView):
    @admin_required
    @users_blp.response(204)
    @users_blp.alt_response(404, response="NOT_FOUND")
    @users_blp.alt_response(409, response="CONFLICT", description="mfa_not_enabled")
    def delete(self, user_id):
        """Remove a user's second factor (lost device and recovery codes); their sessions end"""
        mfa.reset(current_user_id(), user_id, ip=client_address())
