import numpy as np
import pandas as pd
import pytest

from churnlens.scoring import (
    active_customers,
    expected_revenue,
    risk_tier,
    score_frame,
    win_back_value,
)

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


def test_active_customers_split_at_the_horizon():
    frame = pd.DataFrame({
        "days_since_last_activity": [0.0, 89, 90, 400, np.nan, np.nan, np.nan],
        "tenure_days": [10.0, 100, 100, 500, 30, 200, np.nan],
    })
    # a missing activity date (never active) is lapsed, unless the signup is younger than 90 days
    assert active_customers(frame, 90).tolist() == [True, True, False, False, True, False, False]
    assert active_customers(frame.drop(columns="tenure_days"), 90).tolist() == [
        True, True, False, False, False, False, False]
    assert active_customers(pd.DataFrame({"x": [1, 2]}), 90).tolist() == [True, True]


def test_win_back_value_is_revenue_per_horizon_over_the_active_life():
    features = pd.DataFrame({
        "revenue_total": [1200.0, 80.0, -30.0, np.nan],
        "tenure_days": [500.0, 200.0, 300.0, 400.0],
        "days_since_last_activity": [140.0, 195.0, 100.0, 100.0],
        "revenue_180d": [0.0, 0.0, 0.0, 0.0],
    })
    # 1200 over 360 active days -> 300 per 90 days; one early basket of 80 (active for 5 days,
    # counted as one horizon) -> 80; net refunds and no revenue -> 0
    assert win_back_value(features, 90).tolist() == pytest.approx([300.0, 80.0, 0.0, 0.0])


def test_win_back_value_falls_back_to_the_longest_revenue_window():
    features = pd.DataFrame({
        "revenue_90d": [0.0, 0.0, 0.0, 0.0],
        "revenue_180d": [280.0, 50.0, 0.0, 120.0],
        "revenue_change_90d": [9.0, 9.0, 9.0, 9.0],   # not a window
        "tenure_days": [400.0, 400.0, 400.0, 100.0],
        "days_since_last_activity": [40.0, 170.0, 300.0, 40.0],
    })
    # 280 over the 140 active days of the 180-day window -> 60 per 30 days; 50 over 10 days
    # (less than one horizon) -> 50; lapsed beyond the window -> 0; a 100-day-old customer
    # with 120 over 60 days -> 60
    assert win_back_value(features, 30).tolist() == pytest.approx([60.0, 50.0, 0.0, 60.0])
    assert win_back_value(pd.DataFrame({"tenure_days": [5.0]}), 90).tolist() == [0.0]


def test_score_frame_marks_active_customers_and_their_win_back_value():
    features = pd.DataFrame({"customer_id": ["a", "b"], "revenue_90d": [90.0, 0.0],
                             "revenue_180d": [180.0, 90.0], "tenure_days": [300.0, 300.0],
                             "days_since_last_activity": [3.0, 120.0]})
    scores = score_frame(features, np.array([0.2, 0.9]), tiers=TIERS, window_days=90,
                         horizon_days=90)
    assert scores["active"].tolist() == [True, False]
    assert scores["expected_revenue"].tolist() == [90.0, 0.0]
    assert scores["win_back_value"].tolist() == pytest.approx([180.0 * 90 / 177, 90.0])
