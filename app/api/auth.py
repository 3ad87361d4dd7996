"""Accounts and sessions."""
from __future__ import annotations

from flask.views import MethodView
from flask_jwt_extended import get_jwt, jwt_required
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.api import Blueprint
from app.api import schemas as s
from app.api.schemas import LoginSchema, RegisterSchema, StrictSchema, TokenPairSchema, UserSchema
from app.api.security import BEARER, client_address, current_user_id, login_required
from app.services import accounts, mfa
from app.services import auth as auth_service

# --- schemas of the account endpoints --------------------------------------------

# The password policy is registration's, whatever the way a password is set.
_PASSWORD_POLICY = RegisterSchema._declared_fields["password"].validators


def _new_password() -> fields.String:
    return fields.String(required=True, load_only=True, validate=_PASSWORD_POLICY,
                         metadata={"description": "The new password (the policy of registration: 8 to 256 characters)"})


def _current_password(required: bool = True) -> fields.String:
    return fields.String(required=required, load_only=True, validate=validate.Length(min=1, max=256),
                         metadata={"description": "The account's current password, to confirm it is its owner"})


class ProfileUpdateSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    email = fields.Email(validate=validate.Length(max=254),
                         metadata={"description": "A new address: needs `current_password`; 409 `email_taken`"})
    current_password = _current_password(required=False)

    @validates_schema
    def something_to_change(self, data, **kwargs):
        if "name" not in data and "email" not in data:
            raise ValidationError("Give a name or an email to change.", "_schema")


class PasswordChangeSchema(StrictSchema):
    current_password = _current_password()
    new_password = _new_password()


class PasswordResetRequestSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))


class PasswordResetConfirmSchema(StrictSchema):
    token = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128),
                          metadata={"description": "The token of the reset email"})
    new_password = _new_password()


class EraseSchema(StrictSchema):
    password = _current_password()


class AcceptedSchema(Schema):
    status = fields.String(required=True)
    detail = fields.String(required=True)


class ExportSchema(Schema):
    user_id = fields.Integer(required=True)
    exported_at = fields.String(required=True, metadata={"description": "ISO 8601, UTC"})
    data = fields.Dict(keys=fields.String(), values=fields.Raw(), required=True, metadata={
        "description": "One entry per table holding something of the caller: `profile` (an object); "
                       "`reservations`, `reservation_seats`, `payments`, `tickets`, `holds` (live, from Redis), "
                       "`waitlist_entries`, `reviews`, `emails` (metadata: no bodies are kept), "
                       "`password_reset_tokens` (no token or hash), each a list of rows with their columns."})


RESET_ACCEPTED = {"status": "accepted",
                  "detail": "If an account uses this address, an email with a link to reset its password is on "
                            "its way; the link works once, for a limited time."}
PASSWORD_CHANGE_IN = {"current_password": "correct horse battery staple", "new_password": "a new long passphrase"}
EXPORT = {"user_id": 5, "exported_at": "2026-11-22T21:30:00+00:00",
          "data": {"profile": s.USER, "reservations": [], "reservation_seats": [], "payments": [], "tickets": [],
                   "holds": [], "waitlist_entries": [], "reviews": [], "emails": [], "password_reset_tokens": []}}


class LoginAnswerSchema(TokenPairSchema):
    """The pair, or (MFA on) the challenge."""

    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    mfa_required = fields.Boolean(metadata={"description": "true: send mfa_token and a code to /auth/mfa/verify"})
    mfa_token = fields.String(metadata={"description": "single use, for expires_in seconds"})


blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign-up, sign-in and sessions")
users_blp = Blueprint("users", __name__, url_prefix="/api/v1/users", description="Profiles")


@blp.route("/register")
class Register(MethodView):
    @blp.arguments(RegisterSchema, example=s.REGISTER_IN)
    @blp.response(201, UserSchema, example=s.USER)
    @blp.alt_response(409, response="CONFLICT", description="email_taken")
    def post(self, data):
        """Create a customer account"""
        return auth_service.register(data["email"], data["password"], data["name"])


@blp.route("/login")
class Login(MethodView):
    @blp.arguments(LoginSchema, example=s.LOGIN_IN)
    @blp.response(200, LoginAnswerSchema, example=s.TOKEN_PAIR, description=(
        "The token pair; for an account with multi-factor authentication on, "
        "`{mfa_required: true, mfa_token, expires_in}` instead: POST it with a code to /auth/mfa/verify"))
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def post(self, data):
        """Sign in: an access token and a refresh token (or a second-factor challenge)"""
        return mfa.sign_in(data["email"], data["password"], client_address()).as_dict()


@blp.route("/refresh")
class Refresh(MethodView):
    @jwt_required(refresh=True)
    @blp.response(200, TokenPairSchema, example=s.TOKEN_PAIR)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.doc(security=BEARER)
    def post(self):
        """Exchange the refresh token (as Bearer) for a new pair; the old one stops working"""
        return auth_service.rotate_refresh_token(get_jwt()).as_dict()


@blp.route("/logout")
class Logout(MethodView):
    @login_required
    @blp.response(204)
    def post(self):
        """Revoke the access token in hand at once, and end its session"""
        auth_service.logout(get_jwt())


@blp.route("/password")
class Password(MethodView):
    @login_required
    @blp.arguments(PasswordChangeSchema, example=PASSWORD_CHANGE_IN)
    @blp.response(200, TokenPairSchema, example=s.TOKEN_PAIR, description=(
        "The password is changed and every session of the account has ended at once, on every instance, "
        "this one's included: the answer is a new token pair for the caller, who stays signed in."))
    @blp.alt_response(403, response="FORBIDDEN", description="wrong_password (401 stays for a bad token)")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS",
                      description="too many wrong passwords for the account (counted as failed sign-ins)")
    def post(self, data):
        """Change the password: every other session ends at once; a new pair for this one"""
        return auth_service.change_password(current_user_id(), data["current_password"], data["new_password"],
                                            amr=get_jwt().get("amr") or ("pwd",)).as_dict()


@blp.route("/password-reset")
class PasswordReset(MethodView):
    @blp.arguments(PasswordResetRequestSchema, example={"email": "ada@example.com"})
    @blp.response(202, AcceptedSchema, example=RESET_ACCEPTED, description=(
        "Always this answer, whether the address belongs to an account or not (and in the same time): the "
        "email, if any, is sent later. Its token works once, for PASSWORD_RESET_TTL_SECONDS (30 minutes)."))
    @blp.alt_response(429, response="TOO_MANY_REQUESTS",
                      description="too many requests for this address or from this client (Retry-After)")
    def post(self, data):
        """Ask for a password reset email (always 202: never says whether the address is known)"""
        auth_service.request_password_reset(data["email"], client_address())
        return RESET_ACCEPTED


@blp.route("/password-reset/confirm")
class PasswordResetConfirm(MethodView):
    @blp.arguments(PasswordResetConfirmSchema, example={"token": "q3Zt0m6Jx1yqYbK9Qx7nVfX3aLr2pC8sWdE5uHkT4oM",
                                                         "new_password": "a new long passphrase"})
    @blp.response(204, description="The password is set; every session of the account has ended")
    @blp.alt_response(400, response="BAD_REQUEST",
                      description="reset_token_invalid: unknown, already used, voided by a newer one, or expired")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    def post(self, data):
        """Set a new password with the emailed token (works once); every session ends"""
        auth_service.confirm_password_reset(data["token"], data["new_password"])


@users_blp.route("/me")
class Me(MethodView):
    @login_required
    @users_blp.response(200, UserSchema, example=s.USER)
    def get(self):
        """The caller's own profile"""
        return auth_service.get_profile(current_user_id())

    @login_required
    @users_blp.arguments(ProfileUpdateSchema, example={"name": "Ada King"})
    @users_blp.response(200, UserSchema, example=s.USER)
    @users_blp.alt_response(403, response="FORBIDDEN", description="wrong_password (changing the email)")
    @users_blp.alt_response(409, response="CONFLICT", description="email_taken")
    @users_blp.alt_response(422, response="UNPROCESSABLE_ENTITY",
                            description="validation_error (a new email without current_password)")
    @users_blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def patch(self, data):
        """Change the caller's name, or email (with the current password)"""
        return accounts.update_profile(current_user_id(), **data)

    @login_required
    @users_blp.arguments(EraseSchema, example={"password": "correct horse battery staple"})
    @users_blp.response(204, description=(
        "Personal data erased or anonymised (name, email, password, review texts, email recipients); "
        "payments, tickets and reservations kept for the accounts, linked to the anonymised account; live "
        "holds released, waitlist entries left, unpaid reservations cancelled; every session ended. The "
        "email address can register again."))
    @users_blp.alt_response(403, response="FORBIDDEN", description="wrong_password")
    @users_blp.alt_response(409, response="CONFLICT", description="last_admin")
    @users_blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @users_blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def delete(self, data):
        """Erase the caller's account (the password in the body confirms it)"""
        accounts.erase(current_user_id(), data["password"])


@users_blp.route("/me/export")
class MyExport(MethodView):
    @login_required
    @users_blp.response(200, ExportSchema, example=EXPORT)
    def get(self):
        """Everything held on the caller, as JSON"""
        return accounts.export(current_user_id())


@users_blp.after_request
def _export_never_stored(response):
    """Profiles and exports are personal: never kept by a shared cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.after_request
def _never_stored(response):
    """Answers that carry tokens (or refuse them) are never cached (RFC 6749, 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
