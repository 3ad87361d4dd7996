"""HTTP entry points: thin views that validate, call a service, and dump.

This module holds what every view shares: how a request is read (``RequestParser``:
what a JSON body must be, how deep it may nest, which numbers it may carry), which
query parameters an endpoint takes (anything else is a 400 ``unknown_parameter``),
the pagination metadata, the ETag of a 304, and the problem documents of the errors
raised on the way.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Response, current_app, request
from flask_smorest.etag import _get_etag_ctx
from flask_smorest.exceptions import NotModified
from flask_smorest.pagination import PaginationMetadataSchema
from flask_smorest.utils import prepare_response
from marshmallow import ValidationError
from marshmallow import fields as ma_fields
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from app.api.problems import PROBLEM_MIMETYPE, flatten_validation_messages, problem, validation_detail
from app.services import errors

# --- what a JSON body may be ------------------------------------------------

# The largest integer PostgreSQL stores (bigint); JSON numbers past it are refused.
MAX_INTEGER = 2**63 - 1
MAX_ID = MAX_INTEGER
_NUMBER_ERROR = "Number out of range: integers between -(2^63-1) and 2^63-1, finite decimals"

# A JSON string (escapes included), or an unterminated one up to the end of the body:
# possessive, so a body of a million quotes and backslashes costs one pass.
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND_OF_BRACKET = bytes.maketrans(b"{}", b"[]")


def json_nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than ``limit``,
    found without parsing it (so that no parser ever recurses that deep). Works on
    the UTF-8 bytes: brackets, quotes and backslashes are ASCII and never part of a
    multi-byte character. Every pass costs C-speed string operations only."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    # Each pass removes the innermost pairs, one level of nesting: a balanced text
    # nests deeper than `limit` when something is left after `limit` passes.
    brackets = brackets.translate(_ONE_KIND_OF_BRACKET)
    for depth in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if shorter == brackets:  # unbalanced: what is left opens and never closes
            return depth + shorter.count(b"[") > limit
        if not shorter:
            return False
        brackets = shorter
    return True


class _OutOfRange:
    """Stands for a JSON number that fits no column (past 2^63, or a decimal that
    overflows to infinity) until the request is refused, naming where it was."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _NotJson(ValueError):
    pass


def _parse_int(text: str) -> int | _OutOfRange:
    if len(text) <= 20:
        value = int(text)
        if -MAX_INTEGER <= value <= MAX_INTEGER:
            return value
    return _OutOfRange(text)


def _parse_float(text: str) -> float | _OutOfRange:
    value = float(text)
    return value if math.isfinite(value) else _OutOfRange(text)


def _refuse_constant(name: str):
    raise _NotJson(f"{name} is not JSON (JSON has no NaN or Infinity)")


def _numbers_out_of_range(value: Any, path: str, found: dict[str, list[str]]) -> None:
    """Collect the paths (``seat_ids.0``) of the numbers that fit no column; the depth
    was checked first, so this recursion is shallow."""
    if isinstance(value, _OutOfRange):
        found.setdefault(path or "_schema", []).append(_NUMBER_ERROR)
    elif isinstance(value, dict):
        for key, item in value.items():
            _numbers_out_of_range(item, f"{path}.{key}" if path else str(key), found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _numbers_out_of_range(item, f"{path}.{index}" if path else str(index), found)


def parse_json_body(body: bytes, max_depth: int) -> Any:
    """The JSON document in a request body, or an abort with a problem document:
    400 ``malformed_json`` (not UTF-8, not JSON, NaN/Infinity), 400 ``json_too_deep``
    (nesting past ``max_depth``), 422 ``validation_error`` (a number past 2^63)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        abort(400, code="malformed_json", title="Malformed JSON",
              message=f"The request body is not UTF-8 text (invalid byte at offset {exc.start})")
    if json_nesting_exceeds(body, max_depth):
        _too_deep(max_depth)
    out_of_range = []

    def parse_int(text: str):
        value = _parse_int(text)
        if isinstance(value, _OutOfRange):
            out_of_range.append(value)
        return value

    def parse_float(text: str):
        value = _parse_float(text)
        if isinstance(value, _OutOfRange):
            out_of_range.append(value)
        return value

    try:
        document = json.loads(text, parse_int=parse_int, parse_float=parse_float,
                              parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        abort(400, code="malformed_json", title="Malformed JSON",
              message=f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except _NotJson as exc:
        abort(400, code="malformed_json", title="Malformed JSON", message=f"The request body is not valid JSON: {exc}")
    except RecursionError:  # the depth check above should make this unreachable
        _too_deep(max_depth)
    if out_of_range:
        found: dict[str, list[str]] = {}
        _numbers_out_of_range(document, "", found)
        abort(422, messages={"json": found})
    return document


def _too_deep(max_depth: int):
    abort(400, code="json_too_deep", title="JSON nested too deep",
          message=f"Arrays and objects in the request body may nest at most {max_depth} levels deep")


def _max_json_depth() -> int:
    from app.bootstrap import marquee

    return marquee().settings.max_json_depth


class RequestParser(FlaskParser):
    """webargs' parser, strict about request bodies: where JSON is expected, a body
    of another media type is a 415 (webargs would ignore it and report every field
    missing), JSON must be UTF-8, and ``parse_json_body`` decides what JSON is."""

    JSON_CHARSETS = ("utf-8", "utf8")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._schemas: dict[type, ma.Schema] = {}

    def _get_schema(self, argmap, req) -> ma.Schema:
        """One instance of each schema class, made once: webargs would build one a
        request (fields deep-copied each time). Schemas hold no per-load state."""
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            return schema if schema is not None else self._schemas.setdefault(argmap, argmap())
        return super()._get_schema(argmap, req)

    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not body and not req.mimetype:
            # Every body Marquee takes is required (an empty PATCH is `{}`, not nothing).
            raise ValidationError({"_schema": ["A request body is required: a JSON object (application/json)"]})
        if not is_json_request(req):
            abort(415, message=f"The request body must be application/json, not {req.mimetype or 'untyped'}")
        charset = req.mimetype_params.get("charset")
        if charset is not None and charset.strip().lower() not in self.JSON_CHARSETS:
            abort(415, message=f"JSON bodies are UTF-8; charset={charset} is not supported")
        if not body:
            raise ValidationError({"_schema": ["The request body is empty: send a JSON object"]})
        return parse_json_body(body, _max_json_depth())


# --- query parameters an endpoint knows ---------------------------------------

def _schema_names(schema) -> set[str]:
    if isinstance(schema, type):
        schema = schema()
    if isinstance(schema, dict):  # webargs also takes a dict of fields
        return {field.data_key or name for name, field in schema.items()
                if isinstance(field, ma_fields.Field)}
    return {field.data_key or name for name, field in schema.load_fields.items()}


def declared_query_parameters(doc: dict) -> set[str]:
    """The query parameters an operation declares (flask-smorest's ``_apidoc``): its
    query schemas' fields, plus ``page``/``page_size`` where it paginates."""
    names: set[str] = set()
    params = [p for p in doc.get("arguments", {}).get("parameters", []) if isinstance(p, dict)]
    pagination = doc.get("pagination")
    if pagination:
        params.append(pagination["parameters"])
    for param in params:
        if param.get("in") in ("query", "querystring"):
            names |= _schema_names(param["schema"])
    for param in doc.get("manual_doc", {}).get("parameters", []):
        if isinstance(param, dict) and param.get("in") == "query":
            names.add(param["name"])
    return names


def _view_method(view_func, method: str):
    view_class = getattr(view_func, "view_class", None)
    if view_class is None:
        return view_func
    method = method.lower()
    func = getattr(view_class, method, None)
    if func is None and method == "head":
        func = getattr(view_class, "get", None)
    return func


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, as every view module of Marquee uses it (one place
    to adjust argument parsing and pagination for all of them).

    - Bodies and query strings go through ``RequestParser``.
    - A query parameter the operation does not declare is a 400 ``unknown_parameter``
      naming it: a typo (``moive_id``) must not silently return everything.
    - ``X-Pagination`` always says which page this is, even past the last one.
    - A 304 carries its ETag.
    """

    ARGUMENTS_PARSER = RequestParser()
    PAGINATION_ARGUMENTS_PARSER = RequestParser()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._known_query: dict[tuple[str, str], set[str] | None] = {}
        self.before_request(self._refuse_unknown_query_parameters)

    def _known_query_parameters(self, endpoint: str, method: str) -> set[str] | None:
        key = (endpoint, method)
        if key not in self._known_query:
            func = _view_method(current_app.view_functions[endpoint], method)
            doc = getattr(func, "_apidoc", None) if func is not None else None
            self._known_query[key] = None if doc is None else declared_query_parameters(doc)
        return self._known_query[key]

    def _refuse_unknown_query_parameters(self):
        if not request.args or request.method == "OPTIONS" or request.endpoint is None:
            return None
        known = self._known_query_parameters(request.endpoint, request.method)
        if known is None:
            return None
        unknown = sorted(set(request.args) - known)
        if not unknown:
            return None
        takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
        named = ", ".join(repr(name[:100]) for name in unknown[:10])
        return problem(400, code="unknown_parameter", title="Unknown query parameter",
                       detail=f"Unknown query parameter {named} for {request.method} {request.path[:200]}: {takes}",
                       parameters=[name[:100] for name in unknown[:10]])

    @staticmethod
    def _make_pagination_metadata(page, page_size, item_count):
        """flask-smorest's metadata, but ``page`` (and ``page_size``) always: past the
        last page too, where ``previous_page`` points back at the last one."""
        meta: dict[str, int] = {"total": item_count, "page": page, "page_size": page_size}
        if item_count == 0:
            meta["total_pages"] = 0
        else:
            last_page = (item_count - 1) // page_size + 1
            meta.update(total_pages=last_page, first_page=1, last_page=last_page)
            if page > 1:
                meta["previous_page"] = min(page - 1, last_page)
            if page < last_page:
                meta["next_page"] = page + 1
        return PaginationMetadata().dump(meta)

    def _check_not_modified(self, etag):
        if request.method in self.METHODS_CHECKING_NOT_MODIFIED and etag in request.if_none_match:
            raise NotModifiedWithETag(etag)


class PaginationMetadata(PaginationMetadataSchema):
    page_size = ma_fields.Int(metadata={"description": "Items per page."})


class NotModifiedWithETag(NotModified):
    """304, remembering the ETag it matched (RFC 9110: a 304 carries it)."""

    def __init__(self, etag: str) -> None:
        super().__init__()
        self.etag = etag


def paged(pagination_parameters, items_and_total):
    """A service's ``(items, total)`` as a paginated view returns it: the total goes to
    ``X-Pagination``, the items to the body."""
    items, total = items_and_total
    pagination_parameters.item_count = total
    return items


def page_args(pagination_parameters) -> dict:
    """``page`` and ``page_size`` as the services' list functions take them."""
    return {"page": pagination_parameters.page, "page_size": pagination_parameters.page_size}


# --- path ids -----------------------------------------------------------------

class IdConverter(IntegerConverter):
    """``<int:...>`` in Marquee's routes: ids, so 1 to 2^63-1 (PostgreSQL's bigint);
    anything else matches no route (a 404), where Werkzeug's would take 0 and numbers
    no column holds."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = 1, max: int | None = MAX_ID,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


# --- the Api ------------------------------------------------------------------

SPEC_DESCRIPTION = """\
Marquee's HTTP API. Every error is an RFC 9457 problem document
(`application/problem+json`) with a stable `code`.

Requests, for every operation:
- A query parameter the operation does not declare is refused: `400 unknown_parameter`,
  naming it in `parameters`.
- Where a JSON body is expected, a body of another media type is `415
  unsupported_media_type` (`application/json`, with `charset=utf-8` or none, and
  `application/*+json` are accepted).
- A body that is not UTF-8 JSON (NaN and Infinity included) is `400 malformed_json`;
  arrays and objects nested deeper than `MAX_JSON_DEPTH` (default 32) levels are `400
  json_too_deep`; a number past 2^63-1 (or a decimal overflowing to infinity) is `422
  validation_error` naming its field; a body past `MAX_CONTENT_LENGTH` (default 1 MiB) is
  `413 payload_too_large`.
- Path ids are integers from 1 to 2^63-1; any other path is `404 not_found`.
- `405 method_not_allowed` carries `Allow`.
"""


class Api(flask_smorest.Api):
    """flask-smorest's Api, speaking RFC 9457 problem documents for every error."""

    def __init__(self, app=None, *, spec_kwargs=None, **kwargs) -> None:
        spec_kwargs = {"info": {"description": SPEC_DESCRIPTION}, **(spec_kwargs or {})}
        super().__init__(app, spec_kwargs=spec_kwargs, **kwargs)

    def init_app(self, app, *args, **kwargs):
        # Routes are bound to their converters as blueprints register: before that.
        app.url_map.converters["int"] = IdConverter
        super().init_app(app, *args, **kwargs)

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
            "content": {"application/json": {"schema": PaginationMetadata}},
        }
        self.spec.components.header("PAGINATION", header, lazy=True)

    def handle_http_exception(self, error: HTTPException):
        status = error.code or 500
        if status == 304:
            return _not_modified(error)
        data = getattr(error, "data", None) or {}
        extra: dict[str, Any] = {}
        title = data.get("title")
        detail = data.get("message") or _detail_of(error, status)
        messages = data.get("messages")
        if messages is not None:
            flat = flatten_validation_messages(messages)
            extra["errors"] = flat
            detail = validation_detail(flat)
            title = errors.Invalid.title  # the same title as a service's 422
        if status == 500:
            detail = "An unexpected error occurred; it has been logged"
        headers = dict(data.get("headers") or {})
        if status == 405 and getattr(error, "valid_methods", None):
            headers["Allow"] = ", ".join(error.valid_methods)
        return problem(status, code=data.get("code"), title=title, detail=detail, headers=headers, **extra)


def _detail_of(error: HTTPException, status: int) -> str | None:
    """A detail that says what happened to this request, where Werkzeug's would not."""
    path = request.path if len(request.path) <= 200 else request.path[:200] + "..."
    if status == 404 and request.url_rule is None:
        return f"No resource at {path}"
    if status == 405:
        allowed = ", ".join(getattr(error, "valid_methods", None) or ())
        return f"{request.method} is not allowed on {path}" + (f"; allowed: {allowed}" if allowed else "")
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return f"The request body is larger than {limit} bytes" if limit else None
    return error.description


def _not_modified(error: HTTPException) -> Response:
    response = Response(status=304)
    etag = getattr(error, "etag", None) or _get_etag_ctx().get("etag")
    if etag:
        response.set_etag(etag)
    return response


def register_blueprints(api: Api) -> None:
    from app.api import (  # noqa: F401
        auth,
        booking,
        catalog,
        mfa,
        notifications,
        ops,
        payments,
        reports,
        reviews,
        search,
        selling,
        staff,
        tickets,
        waiting_room,
        waitlist,
        webhooks,
    )

    api.register_blueprint(auth.blp)
    api.register_blueprint(auth.users_blp)
    for module in (catalog, booking, waiting_room, waitlist, reviews, tickets, payments, notifications, search,
                   staff, selling, mfa, reports, webhooks):
        for blp in module.blueprints:
            api.register_blueprint(blp)
