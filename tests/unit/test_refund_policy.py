"""The refund policy's arithmetic and validation, alone (services.refunds)."""
import pytest

from app.services import errors
from app.services.refunds import RefundPolicy, validated


def test_no_policy_is_the_site_cutoff_and_a_whole_refund():
    policy = RefundPolicy.of(None, 60)
    assert policy.cutoff_minutes == 60 and policy.refund(1234) == 1234


def test_the_percent_fee_rounds_down_in_the_customers_favour():
    policy = RefundPolicy.of({"cutoff_minutes": 0, "fee_percent": 15}, 60)
    assert policy.fee(999) == 149  # 149.85
    assert policy.refund(999) == 850


def test_percent_and_fixed_fees_add_up_and_never_exceed_the_charge():
    policy = RefundPolicy.of({"cutoff_minutes": 0, "fee_percent": 10, "fee_cents": 100}, 60)
    assert policy.refund(1500) == 1250
    assert policy.refund(50) == 0  # the fee is capped at what was charged
    assert policy.refund(0) == 0


def test_a_hundred_percent_keeps_everything():
    assert RefundPolicy.of({"cutoff_minutes": 5, "fee_percent": 100}, 60).refund(1000) == 0


def test_validated_keeps_only_given_fields():
    assert validated({"cutoff_minutes": 30, "fee_percent": None, "fee_cents": 0}) == {"cutoff_minutes": 30,
                                                                                       "fee_cents": 0}
    assert validated(None) is None


@pytest.mark.parametrize(("policy", "field"), [
    ({}, "refund_policy.cutoff_minutes"),
    ({"cutoff_minutes": True}, "refund_policy.cutoff_minutes"),
    ({"cutoff_minutes": 30, "fee_percent": 100.5}, "refund_policy.fee_percent"),
    ({"cutoff_minutes": 30, "fee_cents": -3}, "refund_policy.fee_cents"),
    ({"cutoff_minutes": 30, "extra": 1}, "refund_policy.extra"),
    ([], "refund_policy"),
])
def test_validated_refuses_with_the_field_path(policy, field):
    with pytest.raises(errors.Invalid) as refused:
        validated(policy)
    assert field in refused.value.extra["errors"]
