"""Selling (admin): price rules and vouchers. Every write is audited."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from app.api import Blueprint, page_args, paged
from app.api import schemas as s
from app.api.idempotency import idempotent
from app.api.security import admin_required, current_user_id
from app.services import pricing, vouchers

price_rules = Blueprint("price_rules", __name__, url_prefix="/api/v1/price-rules",
                        description="Price rules (admin): the price of a seat is its showtime's category price "
                                    "adjusted by the rules that match, in ascending priority, each on the running "
                                    "price, never below 0; a hold fixes its prices")
voucher_blp = Blueprint("vouchers", __name__, url_prefix="/api/v1/vouchers",
                        description="Vouchers (admin): discount codes redeemed with POST /reservations "
                                    "(voucher_code), never more than max_uses times")
blueprints = [price_rules, voucher_blp]

SCOPE_422 = "validation_error (errors per field; a scope naming an unknown theater, movie or showtime is a 422 " \
            "naming that field)"


@price_rules.route("")
class PriceRules(MethodView):
    @admin_required
    @price_rules.etag
    @price_rules.arguments(s.PriceRuleQuerySchema, location="query")
    @price_rules.response(200, s.PriceRuleSchema(many=True), example=[s.PRICE_RULE])
    @price_rules.paginate()
    def get(self, args, pagination_parameters):
        """Price rules in the order they apply (priority, then id)"""
        return paged(pagination_parameters, pricing.list_rules(**page_args(pagination_parameters),
                                                               showtime_id=args.get("showtime_id")))

    @admin_required
    @idempotent
    @price_rules.arguments(s.PriceRuleSchema, example=s.PRICE_RULE_IN)
    @price_rules.response(201, s.PriceRuleSchema, example=s.PRICE_RULE, headers={
        "Location": {"description": "The rule", "schema": {"type": "string"}}})
    @price_rules.alt_response(422, response="UNPROCESSABLE_ENTITY", description=SCOPE_422)
    def post(self, data):
        """Create a price rule: seat maps and new holds follow it at once; existing holds keep their prices"""
        rule = pricing.create_rule(current_user_id(), data)
        return rule, 201, {"Location": url_for("price_rules.PriceRuleById", rule_id=rule["id"])}


@price_rules.route("/<int:rule_id>")
class PriceRuleById(MethodView):
    @admin_required
    @price_rules.etag
    @price_rules.response(200, s.PriceRuleSchema, example=s.PRICE_RULE)
    @price_rules.alt_response(404, response="NOT_FOUND")
    def get(self, rule_id):
        """One price rule"""
        return pricing.get_rule(rule_id)

    @admin_required
    @price_rules.arguments(s.PriceRulePatchSchema, example={"adjust": {"percent": 20}})
    @price_rules.response(200, s.PriceRuleSchema, example=s.PRICE_RULE)
    @price_rules.alt_response(404, response="NOT_FOUND")
    @price_rules.alt_response(422, response="UNPROCESSABLE_ENTITY", description=SCOPE_422)
    def patch(self, data, rule_id):
        """Change a price rule (scope, when and adjust are replaced whole)"""
        return pricing.update_rule(current_user_id(), rule_id, data)

    @admin_required
    @price_rules.response(204)
    @price_rules.alt_response(404, response="NOT_FOUND")
    def delete(self, rule_id):
        """Delete a price rule"""
        pricing.delete_rule(current_user_id(), rule_id)


@voucher_blp.route("")
class Vouchers(MethodView):
    @admin_required
    @voucher_blp.etag
    @voucher_blp.arguments(s.VoucherQuerySchema, location="query")
    @voucher_blp.response(200, s.VoucherSchema(many=True), example=[s.VOUCHER])
    @voucher_blp.paginate()
    def get(self, args, pagination_parameters):
        """Vouchers, newest first, with their uses"""
        return paged(pagination_parameters, vouchers.list_vouchers(**page_args(pagination_parameters),
                                                                   code=args.get("code")))

    @admin_required
    @idempotent
    @voucher_blp.arguments(s.VoucherSchema, example=s.VOUCHER_IN)
    @voucher_blp.response(201, s.VoucherSchema, example=s.VOUCHER, headers={
        "Location": {"description": "The voucher", "schema": {"type": "string"}}})
    @voucher_blp.alt_response(409, response="CONFLICT", description="voucher_code_taken (codes are case-insensitive)")
    @voucher_blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description=SCOPE_422)
    def post(self, data):
        """Create a voucher"""
        voucher = vouchers.create_voucher(current_user_id(), data)
        return voucher, 201, {"Location": url_for("vouchers.VoucherById", voucher_id=voucher["id"])}


@voucher_blp.route("/<int:voucher_id>")
class VoucherById(MethodView):
    @admin_required
    @voucher_blp.etag
    @voucher_blp.response(200, s.VoucherSchema, example=s.VOUCHER)
    @voucher_blp.alt_response(404, response="NOT_FOUND")
    def get(self, voucher_id):
        """One voucher, with its uses"""
        return vouchers.get_voucher(voucher_id)

    @admin_required
    @voucher_blp.arguments(s.VoucherPatchSchema, example={"max_uses": 1000})
    @voucher_blp.response(200, s.VoucherSchema, example=s.VOUCHER)
    @voucher_blp.alt_response(404, response="NOT_FOUND")
    @voucher_blp.alt_response(409, response="CONFLICT", description="voucher_code_taken")
    @voucher_blp.alt_response(422, response="UNPROCESSABLE_ENTITY", description=SCOPE_422 + "; max_uses below uses")
    def patch(self, data, voucher_id):
        """Change a voucher"""
        return vouchers.update_voucher(current_user_id(), voucher_id, data)

    @admin_required
    @voucher_blp.response(204)
    @voucher_blp.alt_response(404, response="NOT_FOUND")
    @voucher_blp.alt_response(409, response="CONFLICT", description="in_use: it has been redeemed (end it with "
                                                                    "valid_until)")
    def delete(self, voucher_id):
        """Delete a voucher never redeemed"""
        vouchers.delete_voucher(current_user_id(), voucher_id)
