"""From model probabilities to what a CS team acts on: risk tiers and expected revenue at risk.

Every customer is scored. `active` splits them the way the CS outputs do: active customers
(activity within `label.horizon_days` before the cutoff) may leave and go to the at-risk list;
lapsed ones go to the win-back list, valued by `win_back_value` (their revenue per horizon
while they were active, since their recent revenue is zero).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from churnlens import labels

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


def active_customers(frame: pd.DataFrame, horizon_days: int) -> pd.Series:
    """True for customers with activity (transaction or event) within `horizon_days` before the
    cutoff, i.e. `days_since_last_activity < horizon_days`: not lost through inactivity at the
    cutoff (`churnlens.labels.lapsed`, whatever `label.definition` says).

    A missing `days_since_last_activity` (never active) counts as lapsed, except for a new
    signup whose `tenure_days` is still below the horizon. Without a
    `days_since_last_activity` column nobody can be told apart: everyone counts as active.
    """
    if "days_since_last_activity" not in frame.columns:
        return pd.Series(True, index=frame.index, dtype=bool)
    days = pd.to_numeric(frame["days_since_last_activity"], errors="coerce").astype("float64")
    tenure = None
    if "tenure_days" in frame.columns:
        tenure = pd.to_numeric(frame["tenure_days"], errors="coerce").astype("float64").to_numpy()
    lapsed = labels.lapsed(days.to_numpy(), horizon_days, tenure)
    return pd.Series(~lapsed, index=frame.index, dtype=bool)


REVENUE_WINDOW = re.compile(r"^revenue_(\d+)d$")


def win_back_value(features: pd.DataFrame, horizon_days: int) -> pd.Series:
    """Revenue over one horizon a customer is expected to bring if they come back: their net
    revenue per horizon over the part of their life we can see them active, that part counted
    as at least one horizon (so one big early basket is not scaled up).

    With lifetime features (`revenue_total` and `tenure_days`): `revenue_total` over the days
    from signup to the last activity (`tenure_days - days_since_last_activity`). Otherwise the
    longest `revenue_{W}d` window: its revenue over the active days inside the window
    (`min(W, tenure_days) - days_since_last_activity`); a customer lapsed longer than W then
    has no visible revenue and a value of 0. Net refunds count as 0.
    """
    horizon = float(horizon_days)
    if "revenue_total" in features.columns and "tenure_days" in features.columns:
        revenue = features["revenue_total"]
        observed = pd.to_numeric(features["tenure_days"], errors="coerce").astype("float64")
    else:
        windows = sorted(int(m[1]) for c in features.columns
                         if (m := REVENUE_WINDOW.match(str(c))))
        if not windows:
            return pd.Series(0.0, index=features.index, dtype="float64")
        longest = windows[-1]
        revenue = features[f"revenue_{longest}d"]
        observed = pd.Series(float(longest), index=features.index, dtype="float64")
        if "tenure_days" in features.columns:
            tenure = pd.to_numeric(features["tenure_days"], errors="coerce").astype("float64")
            observed = observed.where(~(tenure < longest), tenure)
    revenue = pd.to_numeric(revenue, errors="coerce").astype("float64").fillna(0.0).clip(lower=0.0)
    if "days_since_last_activity" in features.columns:
        lapse = pd.to_numeric(features["days_since_last_activity"], errors="coerce")
        observed = observed - lapse.astype("float64").fillna(0.0)
    span = observed.fillna(horizon).clip(lower=horizon)
    return revenue * (horizon / span)


def score_frame(features: pd.DataFrame, probability: np.ndarray, *, tiers: dict[str, float],
                window_days: int, horizon_days: int) -> pd.DataFrame:
    """One row per customer: probability, tier, expected revenue (at risk), `active`,
    `win_back_value` and context columns."""
    proba = pd.Series(np.asarray(probability, dtype="float64"), index=features.index)
    revenue = expected_revenue(features, window_days, horizon_days)
    scores = pd.DataFrame({
        "customer_id": features["customer_id"].astype(str),
        "churn_probability": proba,
        "risk_tier": risk_tier(proba, tiers),
        "expected_revenue": revenue,
        "expected_revenue_at_risk": proba * revenue,
        "active": active_customers(features, horizon_days),
        "win_back_value": win_back_value(features, horizon_days),
    })
    for column in CONTEXT_COLUMNS:
        if column in features.columns:
            scores[column] = features[column]
    return scores.sort_values("customer_id", kind="stable").reset_index(drop=True)
