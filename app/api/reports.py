"""Reports: sales and occupancy, for an admin or a manager (their theaters only).

JSON answers are paginated like every list (``page``, ``page_size``, ``X-Pagination``);
``?format=csv`` is the whole report as ``text/csv`` (a header row, one row a group or
showtime, ``page`` and ``page_size`` ignored). A CSV cell of text that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``, so that a
movie titled ``=HYPERLINK(...)`` is never a formula in a spreadsheet.
"""
from __future__ import annotations

import csv
import hashlib
import io

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app.api import MAX_ID, Blueprint, page_args, paged
from app.api import fields as mfields
from app.api.schemas import InputSchema
from app.api.security import current_actor, login_required
from app.services import reports

blp = Blueprint("reports", __name__, url_prefix="/api/v1/reports",
                description="Sales and occupancy (admin, or a manager for their theaters)")
blueprints = [blp]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ReportQuerySchema(InputSchema):
    from_ = mfields.Date(required=True, data_key="from",
                         metadata={"description": "First local day (the theater's time zone), included"})
    to = mfields.Date(required=True, metadata={"description": f"Last local day, included; at most "
                                                              f"{reports.MAX_RANGE_DAYS} days from `from`"})
    theater_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID), metadata={
        "description": "Only this theater (403 for a manager who does not manage it)"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]),
                           metadata={"description": "`csv`: the whole report as text/csv"})


class SalesQuerySchema(ReportQuerySchema):
    group_by = fields.String(load_default="day", validate=validate.OneOf(reports.GROUPS), metadata={
        "description": "day, week (ISO, from Monday) and month are local to each theater's time zone"})


class FiguresSchema(Schema):
    currency = fields.String(metadata={"description": "Figures are per currency, never added across currencies"})
    gross_cents = fields.Integer(metadata={"description": "Successful charges (after vouchers)"})
    discount_cents = fields.Integer(metadata={"description": "Voucher discounts of the reservations charged"})
    refund_cents = fields.Integer(metadata={"description": "Successful refunds"})
    net_cents = fields.Integer(metadata={"description": "gross_cents - refund_cents"})
    tickets = fields.Integer(metadata={"description": "Tickets sold less tickets cancelled in the period"})


class SalesRowSchema(FiguresSchema):
    key = fields.String(metadata={"description": "The group: a date (day; week: its Monday), YYYY-MM (month), or "
                                                 "the movie's, theater's or showtime's id"})
    label = fields.String(metadata={"description": "The group in words (a title, a name, a showtime)"})


class SalesReportSchema(Schema):
    from_ = fields.Date(data_key="from")
    to = fields.Date()
    group_by = fields.String()
    rows = fields.List(fields.Nested(SalesRowSchema), metadata={"description": "This page of the groups"})
    totals = fields.List(fields.Nested(FiguresSchema), metadata={"description": "All the groups, one a currency"})


class OccupancyRowSchema(Schema):
    showtime_id = fields.Integer()
    starts_at = mfields.DateTime()
    timezone = fields.String()
    movie_id = fields.Integer()
    movie_title = fields.String()
    theater_id = fields.Integer()
    theater_name = fields.String()
    screen_id = fields.Integer()
    screen_name = fields.String()
    capacity = fields.Integer(metadata={"description": "Seats of the screen"})
    sold = fields.Integer(metadata={"description": "Seats of confirmed reservations"})
    held = fields.Integer(metadata={"description": "Seats held now or awaiting payment (Redis); 0 once started"})
    blocked = fields.Integer(metadata={"description": "Seats blocked by staff (Redis); 0 once started"})
    available = fields.Integer()
    occupancy_percent = fields.Float(metadata={"description": "sold / capacity, in percent"})


SALES_EXAMPLE = {"from": "2026-11-01", "to": "2026-11-30", "group_by": "day",
                 "rows": [{"key": "2026-11-02", "label": "2026-11-02", "currency": "EUR", "gross_cents": 24000,
                           "discount_cents": 1200, "refund_cents": 2200, "net_cents": 21800, "tickets": 18}],
                 "totals": [{"currency": "EUR", "gross_cents": 24000, "discount_cents": 1200, "refund_cents": 2200,
                             "net_cents": 21800, "tickets": 18}]}
def _json_or_csv(json_schema: dict, example, csv_example: str) -> dict:
    """The 200 of a report: JSON, or CSV with ``format=csv`` (both documented)."""
    return {"responses": {"200": {"content": {
        "application/json": {"schema": json_schema, "example": example},
        "text/csv": {"schema": {"type": "string"}, "example": csv_example}}}}}


OCCUPANCY_EXAMPLE = [{"showtime_id": 42, "starts_at": "2026-11-21T19:30:00+00:00", "timezone": "Europe/Paris",
                      "movie_id": 7, "movie_title": "Heat", "theater_id": 3, "theater_name": "Opera",
                      "screen_id": 5, "screen_name": "One", "capacity": 120, "sold": 84, "held": 6,
                      "blocked": 2, "available": 28, "occupancy_percent": 70.0}]
PROBLEMS = "validation_error: from/to missing, to before from, a range over " \
           f"{reports.MAX_RANGE_DAYS} days, an unknown group_by or format"




def _cell(value) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv(name: str, columns: list[str], rows: list[dict]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    body = out.getvalue().encode()
    blp.set_etag(hashlib.sha1(body).hexdigest())  # 304 when unchanged, as for JSON
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


SALES_COLUMNS = ["key", "label", "currency", "gross_cents", "discount_cents", "refund_cents", "net_cents", "tickets"]
OCCUPANCY_COLUMNS = ["showtime_id", "starts_at", "timezone", "movie_id", "movie_title", "theater_id", "theater_name",
                     "screen_id", "screen_name", "capacity", "sold", "held", "blocked", "available",
                     "occupancy_percent"]


@blp.route("/sales")
class Sales(MethodView):
    @login_required
    @blp.etag
    @blp.arguments(SalesQuerySchema, location="query")
    @blp.response(200, SalesReportSchema, example=SALES_EXAMPLE)
    @blp.doc(**_json_or_csv({"$ref": "#/components/schemas/SalesReport"}, SALES_EXAMPLE,
                            "key,label,currency,gross_cents,discount_cents,refund_cents,net_cents,tickets\n"
                            "2026-11-21,2026-11-21,EUR,125000,5000,12000,108000,98\n"))
    @blp.paginate()
    @blp.alt_response(403, response="FORBIDDEN",
                      description="forbidden: neither an admin nor a manager, or theater_id not managed")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description=PROBLEMS)
    def get(self, args, pagination_parameters):
        """Sales per day, week, month, movie, theater or showtime: gross, discounts, refunds, net, tickets.
        Equal to the sums of the payments; days in each theater's time zone; `format=csv` for the whole report"""
        csv_wanted = args["format"] == "csv"
        paging = {"page": 1, "page_size": None} if csv_wanted else page_args(pagination_parameters)
        report = reports.sales(current_actor(), reports.period(args["from_"], args["to"]), args["group_by"],
                               theater_id=args.get("theater_id"), **paging)
        paged(pagination_parameters, (None, report.pop("groups")))
        if csv_wanted:
            return _csv("sales", SALES_COLUMNS, report["rows"])
        return report


@blp.route("/occupancy")
class Occupancy(MethodView):
    @login_required
    @blp.etag
    @blp.arguments(ReportQuerySchema, location="query")
    @blp.response(200, OccupancyRowSchema(many=True))
    @blp.doc(**_json_or_csv({"type": "array", "items": {"$ref": "#/components/schemas/OccupancyRow"}},
                            OCCUPANCY_EXAMPLE, ",".join(OCCUPANCY_COLUMNS) + "\n"))
    @blp.paginate()
    @blp.alt_response(403, response="FORBIDDEN",
                      description="forbidden: neither an admin nor a manager, or theater_id not managed")
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description=PROBLEMS)
    def get(self, args, pagination_parameters):
        """Occupancy per showtime starting in the period (local days): capacity, sold, held, available.
        `format=csv` for all of them"""
        when = reports.period(args["from_"], args["to"])
        if args["format"] == "csv":
            rows, total = reports.occupancy(current_actor(), when, theater_id=args.get("theater_id"), page_size=None)
            paged(pagination_parameters, (None, total))
            return _csv("occupancy", OCCUPANCY_COLUMNS, [{**r, "starts_at": r["starts_at"].isoformat()}
                                                         for r in rows])
        return paged(pagination_parameters, reports.occupancy(current_actor(), when, theater_id=args.get("theater_id"),
                                                              **page_args(pagination_parameters)))
