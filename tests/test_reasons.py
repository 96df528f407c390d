import math

import pytest

from churnlens.reasons import describe


def test_usage_drop_is_a_percentage_vs_previous_window():
    assert (describe("events_change_30d", {"events_change_30d": -0.62})
            == "usage down 62% vs previous 30 days")


def test_usage_increase_tells_no_risk_story():
    assert describe("events_change_30d", {"events_change_30d": 0.4}) is None


def test_recency_and_tickets_read_as_plain_words():
    assert (describe("days_since_last_purchase", {"days_since_last_purchase": 74.0})
            == "no purchase for 74 days")
    row = {"open_tickets": 2, "oldest_open_ticket_days": 12}
    assert describe("open_tickets", row) == "2 support tickets open for 12+ days"


def test_trial_without_key_action():
    assert (describe("is_trial", {"is_trial": 1, "events_first_14d": 0})
            == "trial user with no key action yet")
    assert describe("is_trial", {"is_trial": 0}) is None


def test_windowed_features_and_missing_values():
    assert (describe("active_days_30d", {"active_days_30d": 2})
            == "active on only 2 of the last 30 days")
    assert (describe("days_since_last_event", {"days_since_last_event": math.nan})
            == "has never used the product")
    assert describe("last_nps", {"last_nps": 3}) == "last NPS answer 3/10 (detractor)"
    assert describe("last_nps", {"last_nps": 10}) is None


def test_zero_counts_read_naturally():
    assert (describe("active_days_7d", {"active_days_7d": 0})
            == "not active on any of the last 7 days")
    assert describe("events_30d", {"events_30d": 0}) == "no product usage in the last 30 days"


def test_features_of_one_story_share_a_family():
    from churnlens.reasons import family

    assert family("days_since_last_event") == family("active_days_7d") == family("events_90d")
    assert family("tickets_90d") == family("open_tickets")
    assert family("revenue_180d") != family("events_180d")


def test_values_that_tell_no_risk_story_give_no_sentence():
    assert describe("tenure_days", {"tenure_days": 400}) is None
    assert describe("tenure_days", {"tenure_days": 40}) == "customer for only 40 days"
    assert describe("events_first_14d", {"events_first_14d": 136}) is None
    assert describe("revenue_180d", {"revenue_180d": 2376.99}) is None
    assert describe("revenue_90d", {"revenue_90d": 0.0}) == "no net revenue in the last 90 days"


def test_plan_and_trial_are_one_story():
    from churnlens.reasons import family

    assert family("segment") == family("is_trial")


def test_lifetime_features_read_as_plain_words():
    """Every feature the SQL makes has a sentence (never the raw 'name = value' fallback)."""
    from churnlens.feature_sql import feature_names
    from churnlens.reasons import family

    assert describe("purchase_days_total", {"purchase_days_total": 1}) == (
        "only 1 purchase day in their whole history")
    assert describe("purchases_total", {"purchases_total": 0}) == "no purchases ever"
    assert describe("purchases_total", {"purchases_total": 40}) is None
    row = {"avg_days_between_purchases": 30, "days_since_last_purchase": 120}
    assert describe("avg_days_between_purchases", row) == (
        "no purchase for 120 days, usually buys every 30 days")
    assert describe("avg_days_between_purchases", {"avg_days_between_purchases": 20}) is None
    assert describe("days_since_first_purchase", {}) == "has never made a purchase"
    assert family("purchase_days_total") == family("days_since_last_purchase")
    assert family("events_total") == family("days_since_last_activity")
    samples = {"segment": "basic", **{name: 0.0 for name in feature_names([7, 30, 90, 180])}}
    for name in feature_names([7, 30, 90, 180]):
        sentence = describe(name, samples)
        assert sentence is None or " = " not in sentence, name


def test_absence_that_only_restates_inactivity_is_the_activity_story():
    from churnlens.reasons import sentence_story, story

    row = {"days_since_last_activity": 46, "days_since_last_purchase": 46,
           "events_change_30d": -1.0, "purchases_30d": 0, "revenue_change_90d": -1.0}
    for feature in ("days_since_last_purchase", "events_change_30d", "purchases_30d"):
        sentence = describe(feature, row)
        assert story(feature, sentence, row) == "activity" == sentence_story(sentence, row)
    # 90 days without revenue is more than 46 days of inactivity: its own (purchases) story
    assert story("revenue_change_90d", describe("revenue_change_90d", row), row) == "purchases"
    assert story("events_change_30d", "usage down 62% vs previous 30 days", row) == "usage_trend"


@pytest.mark.parametrize("feature,value", [
    ("days_since_last_activity", 40), ("days_since_last_event", 12), ("events_change_30d", -0.5),
    ("revenue_change_90d", -0.5), ("open_tickets", 2), ("oldest_open_ticket_days", 9),
    ("is_trial", 1), ("events_first_14d", 0), ("events_first_14d", 2), ("last_nps", 3),
    ("tenure_days", 40), ("inactive_flag", 1), ("purchases_total", 0), ("purchases_total", 2),
    ("active_days_total", 3), ("events_total", 0), ("revenue_total", 0),
    ("avg_days_between_purchases", 90), ("days_since_first_purchase", 20),
    ("days_to_first_event", 9), ("events_7d", 0), ("events_30d", 3), ("active_days_30d", 2),
    ("event_types_30d", 1), ("purchases_90d", 1), ("revenue_30d", 0), ("refunds_30d", 2),
    ("tickets_30d", 2), ("segment", "pro"),
])
def test_sentence_story_agrees_with_the_feature_family(feature, value):
    from churnlens.reasons import family, sentence_story

    row = {feature: value, "days_since_last_activity": 1}
    sentence = describe(feature, row)
    assert sentence, feature
    assert sentence_story(sentence, row) == family(feature), sentence
