"""The price rules' arithmetic and conditions, without servers (app.services.pricing)."""
from datetime import datetime, time, timedelta, timezone

import pytest

from app.services import pricing

# Friday 2030-01-18, 20:30 in Paris (19:30 UTC)
STARTS = datetime(2030, 1, 18, 19, 30, tzinfo=timezone.utc)


def rule(rule_id, adjust, priority=0, scope=None, **when):
    return {"id": rule_id, "priority": priority, "scope": scope or {}, "when": when, "adjust": adjust}


def context(*rules, prices=None, tz="Europe/Paris"):
    return {"starts_at": STARTS.isoformat(), "timezone": tz, "prices": prices or {"standard": 1000, "premium": 1500},
            "currency": "EUR", "rules": sorted(rules, key=lambda r: (r["priority"], r["id"]))}


SALE = STARTS - timedelta(days=3)


def test_without_rules_the_category_prices_apply():
    assert pricing.tiers(context(), SALE) == [(0, {"standard": 1000, "premium": 1500})]


def test_rules_apply_in_ascending_priority_each_on_the_running_price():
    plus_200 = rule(1, {"amount_cents": 200}, priority=2)
    minus_10 = rule(2, {"percent": -10}, priority=1)
    # -10% first (900), then +200: 1100; the other order would give 1080
    assert pricing.tiers(context(plus_200, minus_10), SALE)[0][1]["standard"] == 1100
    plus_200["priority"], minus_10["priority"] = 1, 2
    assert pricing.tiers(context(plus_200, minus_10), SALE)[0][1]["standard"] == 1080


def test_percent_rounds_half_up_to_the_cent():
    assert pricing.adjust(1005, {"adjust": {"percent": -50}}) == 503  # 502.5
    assert pricing.adjust(999, {"adjust": {"percent": 15}}) == 1149  # 1148.85
    assert pricing.adjust(1000, {"adjust": {"percent": -100}}) == 0


def test_a_price_never_goes_below_zero_even_in_the_middle():
    rules = [rule(1, {"amount_cents": -5000}, priority=1), rule(2, {"amount_cents": 300}, priority=2)]
    assert pricing.tiers(context(*rules), SALE)[0][1] == {"standard": 300, "premium": 300}


def test_a_category_scope_prices_that_category_only():
    premium_up = rule(1, {"percent": 20}, scope={"category": "premium"})
    assert pricing.tiers(context(premium_up), SALE)[0][1] == {"standard": 1000, "premium": 1800}


@pytest.mark.parametrize(("weekdays", "applies"), [([5], True), ([1, 2, 3, 4, 6, 7], False), ([5, 6], True)])
def test_weekdays_are_iso_numbers_of_the_local_start(weekdays, applies):
    assert pricing.matches_when({"weekdays": weekdays}, STARTS, "Europe/Paris", SALE) is applies


def test_the_weekday_is_the_city_s_not_utc():
    late = datetime(2030, 1, 18, 23, 30, tzinfo=timezone.utc)  # Friday in UTC, Saturday 00:30 in Paris
    assert pricing.matches_when({"weekdays": [6]}, late, "Europe/Paris", SALE)
    assert not pricing.matches_when({"weekdays": [6]}, late, "UTC", SALE)


@pytest.mark.parametrize(("start", "end", "applies"), [
    ("20:00", "23:00", True), ("20:30", "21:00", True), ("18:00", "20:30", False),
    ("21:00", None, False), (None, "21:00", True), ("22:00", "02:00", False), ("20:00", "02:00", True),
])
def test_time_of_day_is_the_start_in_the_city_s_time_zone(start, end, applies):
    when = {k: v for k, v in (("local_time_from", start), ("local_time_to", end)) if v}
    assert pricing.matches_when(when, STARTS, "Europe/Paris", SALE) is applies  # 20:30 local
    # in New York the same instant is 14:30: no evening window matches
    assert not pricing.matches_when({"local_time_from": "20:00", "local_time_to": "23:00"}, STARTS,
                                    "America/New_York", SALE)


def test_time_windows_wrap_past_midnight():
    assert pricing.in_time_window(time(1, 0), "22:00", "02:00")
    assert pricing.in_time_window(time(22, 0), "22:00", "02:00")
    assert not pricing.in_time_window(time(2, 0), "22:00", "02:00")


def test_days_before_max_is_last_minute_and_days_before_min_is_early_bird():
    assert pricing.matches_when({"days_before_max": 3}, STARTS, "UTC", STARTS - timedelta(days=3))
    assert not pricing.matches_when({"days_before_max": 3}, STARTS, "UTC", STARTS - timedelta(days=3, seconds=1))
    assert pricing.matches_when({"days_before_min": 14}, STARTS, "UTC", STARTS - timedelta(days=14))
    assert not pricing.matches_when({"days_before_min": 14}, STARTS, "UTC", STARTS - timedelta(days=13, hours=23))


def test_occupancy_rules_make_tiers_applied_from_their_threshold():
    busy = rule(1, {"percent": 15}, occupancy_min=80)
    fuller = rule(2, {"amount_cents": 100}, priority=1, occupancy_min=95)
    tiers = pricing.tiers(context(busy, fuller), SALE)
    assert tiers == [(0, {"standard": 1000, "premium": 1500}), (80, {"standard": 1150, "premium": 1725}),
                     (95, {"standard": 1250, "premium": 1825})]
    # 10 sellable seats: 7 taken is 70%, 8 is 80%
    assert pricing.tier_for(tiers, 7, 10)["standard"] == 1000
    assert pricing.tier_for(tiers, 8, 10)["standard"] == 1150
    # exact in integers: 79 of 99 is 79.8% (not 80), 80 of 100 is
    assert pricing.tier_for(tiers, 79, 99)["standard"] == 1000
    assert pricing.tier_for(tiers, 80, 100)["standard"] == 1150


def test_occupancy_counts_held_and_booked_of_the_seats_not_blocked():
    statuses = {1: "held", 2: "booked", 3: "blocked", 4: "blocked"}
    assert pricing.occupancy(statuses, 10) == (2, 8)


def test_rules_failing_a_time_condition_make_no_tier():
    evening_busy = rule(1, {"percent": 15}, occupancy_min=50, local_time_from="22:00")
    assert pricing.tiers(context(evening_busy), SALE) == [(0, {"standard": 1000, "premium": 1500})]
