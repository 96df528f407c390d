import numpy as np
import pandas as pd

from churnlens.explain import (
    global_importance,
    select_for_explanation,
    shap_contributions,
    top_reasons,
)
from model_fixtures import FEATURES, churn_rows, fitted_model


def test_contributions_add_up_to_the_raw_score():
    model = fitted_model()
    rows = churn_rows(50, seed=99)
    contributions = shap_contributions(model, rows)
    booster_raw = model.raw_score(rows[FEATURES])
    base = booster_raw - contributions.sum(axis=1).to_numpy()
    assert np.allclose(base, base[0])  # sum of contributions + expected value = raw score


def test_long_inactive_customer_gets_an_inactivity_reason_first():
    model = fitted_model()
    rows = pd.DataFrame({"customer_id": ["00001"], "days_since_last_activity": [115.0],
                         "events_change_30d": [0.5], "revenue_180d": [100.0], "segment": ["pro"]})
    reasons = top_reasons(shap_contributions(model, rows), rows)
    assert reasons.loc[0, "reason_1"] == "no activity for 115 days"
    assert "usage" not in str(reasons.loc[0].tolist())  # rising usage is never a reason


def test_only_risk_raising_contributions_become_reasons():
    contributions = pd.DataFrame({"days_since_last_activity": [-0.4], "events_change_30d": [0.2]})
    rows = pd.DataFrame({"days_since_last_activity": [3.0], "events_change_30d": [-0.5]})
    reasons = top_reasons(contributions, rows)
    assert reasons.iloc[0].tolist() == ["usage down 50% vs previous 30 days", None, None]


def test_selection_is_at_risk_plus_a_fixed_size_seeded_sample():
    ids = pd.Series([f"{i:03d}" for i in range(100)])
    mask = select_for_explanation(["005", "050"], ids, sample_size=10, seed=1)
    assert mask.sum() == 12 and mask[5] and mask[50]
    assert mask.equals(select_for_explanation(["005", "050"], ids, sample_size=10, seed=1))


def test_global_importance_ranks_by_mean_absolute_value():
    contributions = pd.DataFrame({"a": [0.1, -0.1], "b": [1.0, -3.0]})
    assert global_importance(contributions)["feature"].tolist() == ["b", "a"]


def test_each_story_is_told_once():
    contributions = pd.DataFrame({"days_since_last_activity": [0.9], "days_since_last_event": [0.8],
                                  "active_days_7d": [0.7], "open_tickets": [0.5]})
    rows = pd.DataFrame({"days_since_last_activity": [40.0], "days_since_last_event": [40.0],
                         "active_days_7d": [0], "open_tickets": [1],
                         "oldest_open_ticket_days": [12]})
    reasons = top_reasons(contributions, rows)
    assert reasons.iloc[0].tolist() == [
        "no activity for 40 days", "1 support ticket open for 12+ days", None
    ]


def test_inactivity_is_not_told_twice_by_usage_or_purchases():
    contributions = pd.DataFrame({"days_since_last_activity": [0.9], "events_change_30d": [0.8],
                                  "days_since_last_purchase": [0.7], "last_nps": [0.1]})
    rows = pd.DataFrame({"days_since_last_activity": [29.0], "events_change_30d": [-1.0],
                         "days_since_last_purchase": [29.0], "last_nps": [4]})
    assert top_reasons(contributions, rows).iloc[0].tolist() == [
        "no activity for 29 days", "last NPS answer 4/10 (detractor)", None
    ]
