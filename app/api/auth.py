"""Accounts and sessions."""
from __future__ import annotations

from flask.views import MethodView
from flask_jwt_extended import get_jwt, jwt_required

from app.api import Blueprint
from app.api import schemas as s
from app.api.schemas import LoginSchema, RegisterSchema, TokenPairSchema, UserSchema
from app.api.security import BEARER, client_address, current_user_id, login_required
from app.services import auth as auth_service

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
    @blp.response(200, TokenPairSchema, example=s.TOKEN_PAIR)
    @blp.alt_response(401, response="UNAUTHORIZED")
    @blp.alt_response(429, response="TOO_MANY_REQUESTS")
    def post(self, data):
        """Sign in: an access token and a refresh token"""
        user = auth_service.authenticate(data["email"], data["password"], client_address())
        return auth_service.issue_tokens(user).as_dict()


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


@users_blp.route("/me")
class Me(MethodView):
    @login_required
    @users_blp.response(200, UserSchema, example=s.USER)
    def get(self):
        """The caller's own profile"""
        return auth_service.get_profile(current_user_id())


@blp.after_request
def _never_stored(response):
    """Answers that carry tokens (or refuse them) are never cached (RFC 6749, 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
