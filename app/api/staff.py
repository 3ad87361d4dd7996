"""Staff: who holds which role (admin, and manager or scanner at a theater), and the
audit log of every staff write and security event. Admin only."""
from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app.api import Blueprint, page_args, paged
from app.api import fields as mfields
from app.api.schemas import InputSchema, StrictSchema
from app.api.security import admin_required, current_actor
from app.services import audit, roles

staff = Blueprint("staff", __name__, url_prefix="/api/v1",
                  description="Staff roles and the audit log (admin)")
blueprints = [staff]

_ID = {"validate": validate.Range(min=1), "strict": True}


class RoleSchema(StrictSchema):
    role = fields.String(required=True, validate=validate.OneOf(roles.ROLES),
                         metadata={"description": "`admin` (chain-wide), or `manager` / `scanner` at a theater"})
    theater_id = fields.Integer(allow_none=True, load_default=None, **_ID,
                                metadata={"description": "Required for manager and scanner; none for admin"})


class RolesRequestSchema(StrictSchema):
    roles = fields.List(fields.Nested(RoleSchema), required=True, validate=validate.Length(max=500),
                        metadata={"description": "Every role the user is to hold (an empty list: a customer)"})


class RolesSchema(Schema):
    user_id = fields.Integer()
    roles = fields.List(fields.Nested(RoleSchema))


class AuditQuerySchema(InputSchema):
    actor_id = fields.Integer(validate=validate.Range(min=1))
    action = fields.String(validate=validate.Length(min=1, max=64),
                           metadata={"description": "An action (`theater.update`), or a prefix ending in `.` or "
                                                    "`*` (`theater.`, `auth.*`)"})
    since = mfields.DateTime(format="iso", metadata={"description": "ISO 8601 with an offset: entries at or after"})
    object_type = fields.String(validate=validate.Length(min=1, max=40))


class AuditEntrySchema(Schema):
    id = fields.Integer()
    at = mfields.DateTime(format="iso")
    actor_id = fields.Integer(allow_none=True)
    action = fields.String()
    object_type = fields.String(allow_none=True)
    object_id = fields.String(allow_none=True)
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)
    request_id = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)


ROLES_IN = {"roles": [{"role": "manager", "theater_id": 3}, {"role": "scanner", "theater_id": 4}]}
ROLES = {"user_id": 12, "roles": [{"role": "manager", "theater_id": 3}, {"role": "scanner", "theater_id": 4}]}
AUDIT_ENTRY = {"id": 981, "at": "2026-11-23T00:41:07.512000+00:00", "actor_id": 1, "action": "theater.update",
               "object_type": "theater", "object_id": "3", "before": {"name": "Opera"},
               "after": {"name": "Opéra Garnier"}, "request_id": "6f1c2b0e9a7d4c35", "ip": None}


@staff.route("/users/<int:user_id>/roles")
class UserRoles(MethodView):
    @admin_required
    @staff.response(200, RolesSchema, example=ROLES)
    @staff.alt_response(404, response="NOT_FOUND")
    def get(self, user_id):
        """A user's roles (admin)"""
        return roles.get_roles(user_id, actor=current_actor())

    @admin_required
    @staff.arguments(RolesRequestSchema, example=ROLES_IN)
    @staff.response(200, RolesSchema, example=ROLES)
    @staff.alt_response(404, response="NOT_FOUND")
    @staff.alt_response(409, response="CONFLICT", description="last_admin: it would leave no admin")
    @staff.alt_response(422, response="UNPROCESSABLE_ENTITY",
                        description="validation_error: an unknown role or theater, a theater role without "
                                    "theater_id, an admin role with one")
    def put(self, data, user_id):
        """Replace a user's roles (admin)

        At once: theater roles are checked at every request, and a change of the admin role
        ends the user's sessions (they sign in again with the new role)."""
        return roles.set_roles(user_id, data["roles"], actor=current_actor())


@staff.route("/audit-log")
class AuditLog(MethodView):
    @admin_required
    @staff.arguments(AuditQuerySchema, location="query")
    @staff.response(200, AuditEntrySchema(many=True), example=[AUDIT_ENTRY])
    @staff.paginate()
    def get(self, args, pagination_parameters):
        """The audit log, newest first (admin)

        Every staff write and security event: who, what, on which object, before and after,
        from which request and address."""
        return paged(pagination_parameters, audit.list_entries(**args, **page_args(pagination_parameters)))
