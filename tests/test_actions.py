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
