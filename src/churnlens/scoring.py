"""From model probabilities to what a CS team acts on: risk tiers and expected revenue at risk."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Columns carried from the feature rows into the predictions, for explanations, actions and reports.
CONTEXT_COLUMNS = ("segment", "days_since_last_activity", "open_tickets", "oldest_open_ticket_days",
                   "is_trial", "events_first_14d", "tenure_days")


def risk_tier(probability: pd.Series, tiers: dict[str, float]) -> pd.Series:
    """Name of the top tier whose lower bound the probability reaches (`tiers`: name -> bound)."""
    ordered = sorted(tiers.items(), key=lambda item: item[1], reverse=True)
    values = probability.to_numpy()
    conditions = [values >= bound for _, bound in ordered]
    names = [name for name, _ in ordered]
    return pd.Series(np.select(conditions, names, default=names[-1]), index=probability.index)


def expected_revenue(features: pd.DataFrame, window_days: int, horizon_days: int) -> pd.Series:
    """Revenue a customer is expected to bring over the horizon: recent net revenue, scaled.

    Uses `revenue_{window_days}d` (refunds included, never below zero) × horizon / window.
    """
    column = f"revenue_{window_days}d"
    if column not in features.columns:
        raise KeyError(f"feature '{column}' missing: "
                       "score.revenue_window_days must be one of features.windows")
    recent = features[column].astype("float64").fillna(0.0).clip(lower=0.0)
    return recent * (horizon_days / window_days)


def score_frame(features: pd.DataFrame, probability: np.ndarray, *, tiers: dict[str, float],
                window_days: int, horizon_days: int) -> pd.DataFrame:
    """One row per customer: probability, tier, expected revenue (at risk) and context columns."""
    proba = pd.Series(np.asarray(probability, dtype="float64"), index=features.index)
    revenue = expected_revenue(features, window_days, horizon_days)
    scores = pd.DataFrame({
        "customer_id": features["customer_id"].astype(str),
        "churn_probability": proba,
        "risk_tier": risk_tier(proba, tiers),
        "expected_revenue": revenue,
        "expected_revenue_at_risk": proba * revenue,
    })
    for column in CONTEXT_COLUMNS:
        if column in features.columns:
            scores[column] = features[column]
    return scores.sort_values("customer_id", kind="stable").reset_index(drop=True)
