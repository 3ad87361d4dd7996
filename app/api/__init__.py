"""HTTP entry points: thin views that validate, call a service, and dump."""
from __future__ import annotations

import flask_smorest
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from app.api.problems import PROBLEM_MIMETYPE, flatten_validation_messages, problem, validation_detail
from app.services import errors


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, as every view module of Marquee uses it (one place
    to adjust argument parsing and pagination for all of them)."""


class Api(flask_smorest.Api):
    """flask-smorest's Api, speaking RFC 9457 problem documents for every error."""

    def _register_responses(self):
        from http import HTTPStatus

        from app.api.schemas import ProblemSchema

        for status in HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["schema"] = ProblemSchema
            prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": ProblemSchema}
        prepare_response(response, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def _register_pagination_header(self):
        # A header value is a string: the pagination metadata is JSON inside it.
        from flask_smorest.pagination import PAGINATION_HEADER

        header = {
            "description": PAGINATION_HEADER.get("description", "Pagination metadata"),
            "content": {"application/json": {"schema": PAGINATION_HEADER["schema"]}},
        }
        self.spec.components.header("PAGINATION", header, lazy=True)

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        status = error.code or 500
        extra = {}
        title = None
        detail = data.get("message") or error.description
        messages = data.get("messages")
        if messages is not None:
            flat = flatten_validation_messages(messages)
            if status == 400 and "json" in messages and not isinstance(messages["json"], dict):
                # webargs could not parse the body at all.
                return problem(
                    400, code="malformed_json", title="Malformed JSON",
                    detail="The request body is not valid JSON",
                )
            extra["errors"] = flat
            detail = validation_detail(flat)
            title = errors.Invalid.title  # the same title as a service's 422
        if status == 500:
            detail = "An unexpected error occurred; it has been logged"
        headers = dict(data.get("headers") or {})
        if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        return problem(status, title=title, detail=detail, headers=headers, **extra)


def register_blueprints(api: Api) -> None:
    from app.api import auth, booking, catalog, ops, payments, reviews, tickets, waitlist  # noqa: F401

    api.register_blueprint(auth.blp)
    api.register_blueprint(auth.users_blp)
    for module in (catalog, booking, waitlist, reviews, tickets, payments):
        for blp in module.blueprints:
            api.register_blueprint(blp)
