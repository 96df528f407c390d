import numpy as np
import pandas as pd
import pytest

from churnlens.scoring import expected_revenue, risk_tier, score_frame

TIERS = {"high": 0.5, "medium": 0.25, "low": 0.0}


def test_risk_tier_uses_lower_bounds_highest_first():
    proba = pd.Series([0.0, 0.249, 0.25, 0.5, 0.99])
    assert risk_tier(proba, TIERS).tolist() == ["low", "low", "medium", "high", "high"]


def test_expected_revenue_scales_recent_revenue_and_ignores_net_refunds():
    features = pd.DataFrame({"revenue_180d": [180.0, -50.0, np.nan]})
    assert expected_revenue(features, 180, 90).tolist() == [90.0, 0.0, 0.0]


def test_expected_revenue_needs_the_window_feature():
    with pytest.raises(KeyError, match="revenue_30d"):
        expected_revenue(pd.DataFrame({"revenue_180d": [1.0]}), 30, 90)


def test_score_frame_revenue_at_risk_is_probability_times_expected_revenue():
    features = pd.DataFrame({"customer_id": ["002", "001"], "revenue_180d": [360.0, 100.0],
                             "segment": ["pro", "trial"], "open_tickets": [1, 0]})
    scores = score_frame(features, np.array([0.5, 0.1]), tiers=TIERS, window_days=180,
                         horizon_days=90)
    assert scores["customer_id"].tolist() == ["001", "002"]  # sorted, ids stay strings
    assert scores["expected_revenue_at_risk"].tolist() == pytest.approx([0.1 * 50.0, 0.5 * 180.0])
    assert scores["risk_tier"].tolist() == ["low", "high"]
    assert scores["segment"].tolist() == ["trial", "pro"]
