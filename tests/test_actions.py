"""Suggested-action rules: first match wins; an open ticket never gets a promotion."""

import pandas as pd
import pytest

from churnlens import actions as act
from churnlens.errors import ChurnlensError

OPEN = "Resolve the open support ticket first; no promotion"


def _scores(**overrides):
    """Five customers, one per rule, plus a high-value trial-inactive one with an open ticket."""
    base = pd.DataFrame(
        {
            "customer_id": ["t", "o", "i", "h", "n", "x"],
            "segment": ["trial", "basic", "basic", "pro", "basic", "trial"],
            "open_tickets": [1, 0, 0, 0, 0, 0],
            "is_trial": [True, True, False, False, False, False],
            "events_first_14d": [0, 0, 5, 5, 5, 3],
            "days_since_last_activity": [40, 2, 45, 3, 1, 2],
            "expected_revenue": [5000.0, 10, 20, 900, 30, 40],
        }
    )
    for column, values in overrides.items():
        base[column] = values
    return base


def _actions(scores, **kwargs):
    kwargs = {"inactive_days": 30, "high_value_quantile": 0.7} | kwargs
    return dict(zip(scores["customer_id"], act.suggest_actions(scores, **kwargs), strict=True))


def test_each_rule_in_order():
    got = _actions(_scores())
    assert got["t"] == OPEN  # open ticket beats trial, inactive and high value
    assert got["o"] == "Onboarding call"
    assert got["i"] == "Reactivation campaign"
    assert got["h"] == "Personal outreach by the CSM"
    assert got["n"] == "Nurture"
    assert got["x"] == "Nurture"  # a trial user who did use the product


def test_open_ticket_never_promotional_even_when_everything_else_matches():
    scores = _scores(open_tickets=[1, 1, 1, 1, 1, 1])
    assert set(_actions(scores).values()) == {OPEN}


def test_open_ticket_from_ticket_table_ids():
    scores = _scores(open_tickets=[0, 0, 0, 0, 0, 0])
    got = _actions(scores, open_ticket_ids={"h", "i"})
    assert got["h"] == OPEN and got["i"] == OPEN and got["n"] == "Nurture"


def test_trial_not_activated_with_missing_events_and_segment_fallback():
    scores = _scores(events_first_14d=[None, None, 5, 5, 5, 0]).drop(columns="is_trial")
    got = _actions(scores)
    assert got["x"] == "Onboarding call"  # segment trial, 0 events
    assert got["o"] == "Nurture"  # segment basic: not a trial


def test_inactive_threshold_is_inclusive():
    scores = _scores(days_since_last_activity=[0, 0, 30, 0, 29, 0])
    got = _actions(scores)
    assert got["i"] == "Reactivation campaign" and got["n"] == "Nurture"


def test_high_value_is_above_quantile_of_all_scored():
    scores = _scores(expected_revenue=[1.0, 1, 1, 1, 1, 1])
    assert "Personal outreach by the CSM" not in _actions(scores).values()
    assert _actions(_scores(), high_value_quantile=0.9)["h"] == "Nurture"


def test_missing_helper_columns_fall_back_to_nurture():
    scores = pd.DataFrame({"customer_id": ["a", "b"]})
    assert set(_actions(scores).values()) == {"Nurture"}


def test_rules_from_params_form():
    rules = act.parse_rules(
        [
            {"when": ["open_ticket", "high_value"], "action": "CSM call about the ticket"},
            {"when": "open_ticket", "action": "Fix ticket"},
            {"when": "high_value", "action": "VIP"},
            {"when": "always", "action": "Wait"},
        ]
    )
    got = _actions(_scores(open_tickets=[1, 0, 0, 1, 0, 0]), rules=rules)
    assert got["t"] == "CSM call about the ticket"
    assert got["h"] == "CSM call about the ticket"
    assert got["o"] == "Wait"


def test_default_rules_parse_to_the_constant():
    rules = act.parse_rules(None)
    assert [(r.when[0], r.action) for r in rules] == list(act.DEFAULT_RULES)


@pytest.mark.parametrize(
    "spec",
    [
        [{"when": "high_value", "action": "Discount"}, {"when": "always", "action": "x"}],
        [{"when": "always", "action": "Promo"}],
        [{"when": "open_ticket", "action": "Fix"}],  # no fall-back
        [{"when": "open_ticket", "action": "Fix"}, {"when": "vip", "action": "y"},
         {"when": "always", "action": "x"}],
        [{"when": "open_ticket", "action": ""}, {"when": "always", "action": "x"}],
        [{"when": "open_ticket"}, {"when": "always", "action": "x"}],
        [],
    ],
)
def test_bad_rule_tables_are_rejected(spec):
    with pytest.raises(ChurnlensError):
        act.parse_rules(spec)


def test_trial_going_quiet_gets_onboarding_not_nurture():
    # issue 11.9: a trial at high risk, idle for 27 days (< inactive_days 30), used the product
    trial = [True, True, False, False, False, True]
    got = _actions(_scores(is_trial=trial, days_since_last_activity=[40, 2, 45, 3, 1, 27]))
    assert got["x"] == "Onboarding call"
    got = _actions(_scores(is_trial=trial, days_since_last_activity=[40, 2, 45, 3, 1, 13]))
    assert got["x"] == "Nurture"
    # idle for inactive_days or more: the inactive rule's reactivation, not onboarding
    got = _actions(_scores(is_trial=trial, days_since_last_activity=[40, 2, 45, 3, 1, 31]))
    assert got["x"] == "Reactivation campaign"


def _support(reasons, conditions, **row):
    return act.supporting_reasons(reasons, conditions, row, inactive_days=30,
                                  high_value_quantile=0.9)


def test_open_ticket_action_shows_the_ticket_replacing_the_weakest_reason():
    got = _support(["no activity for 24 days", "no purchase for 34 days",
                    "last NPS answer 2/10 (detractor)"], ("open_ticket",),
                   open_tickets=1, oldest_open_ticket_days=8, days_since_last_activity=24)
    assert got == ["1 support ticket open for 8+ days", "no activity for 24 days",
                   "no purchase for 34 days"]
    # a ticket without ticket features (known from the tickets table only)
    assert _support([], ("open_ticket",))[0] == "has an open support ticket"
    # already shown: unchanged
    shown = ["no activity for 29 days", "support ticket open for 40 days"]
    assert _support(shown, ("open_ticket",), open_tickets=2, oldest_open_ticket_days=40,
                    days_since_last_activity=29) == shown


def test_inactive_action_replaces_a_reason_of_the_same_story():
    got = _support(["last NPS answer 3/10 (detractor)", "no product usage in the last 7 days",
                    "customer for only 60 days"], ("inactive",), days_since_last_activity=35)
    assert got == ["last NPS answer 3/10 (detractor)", "no activity for 35 days",
                   "customer for only 60 days"]


def test_trial_and_high_value_facts():
    row = {"is_trial": 1, "events_first_14d": 0, "days_since_last_activity": 3}
    got = _support(["on the 'trial' plan", "no purchase for 50 days"], ("trial_not_activated",),
                   **row)
    assert got == ["trial user with no key action yet", "no purchase for 50 days"]
    quiet = {"is_trial": 1, "events_first_14d": 9, "days_since_last_activity": 27}
    got = _support(["no activity for 27 days", "customer for only 90 days",
                    "no purchase in the last 90 days"], ("trial_not_activated",), **quiet)
    assert got[0] == "trial user with no activity for 27 days"
    assert "no activity for 27 days" not in got and len(got) == 3
    got = _support(["a", "b", "c"], ("high_value",), expected_revenue=9000)
    assert got == ["among the top 10% of customers by expected revenue", "a", "b"]


def test_matched_conditions_name_the_facts_of_the_chosen_rule():
    scores = _scores()
    flags = act.customer_flags(scores, inactive_days=30, high_value_quantile=0.7)
    facts = dict(zip(scores["customer_id"], act.matched_conditions(flags), strict=True))
    assert facts == {"t": ("open_ticket",), "o": ("trial_not_activated",), "i": ("inactive",),
                     "h": ("high_value",), "n": (), "x": ()}


def test_supporting_reasons_drop_a_repeated_story():
    got = _support(["no activity for 29 days", "usage down 100% vs previous 30 days",
                    "no purchase for 29 days"], (), days_since_last_activity=29)
    assert got == ["no activity for 29 days"]
