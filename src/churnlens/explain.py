"""SHAP explanations of the churn score, turned into each customer's three main reasons.

Contributions come from `ChurnClassifier.contributions`: LightGBM's own TreeSHAP
(`pred_contrib=True`, identical to `shap.TreeExplainer` on the booster and no slower) for the
gradient-boosted side, exact linear terms for the logistic side, weighted as in the blend. They
are in log-odds of the uncalibrated score; calibration is monotone, so the ranking of reasons is
the same.
Cost is bounded by explaining only the at-risk list plus a fixed-size sample of the rest.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from churnlens.model import booster_of
from churnlens.reasons import describe, story

N_REASONS = 3
REASON_COLUMNS = [f"reason_{i}" for i in range(1, N_REASONS + 1)]


def select_for_explanation(at_risk_ids: Iterable[str], all_ids: pd.Series, sample_size: int,
                           seed: int) -> pd.Series:
    """Boolean mask over `all_ids`: the at-risk customers plus a seeded sample of the others."""
    chosen = all_ids.isin(set(at_risk_ids))
    rest = all_ids[~chosen]
    if sample_size > 0 and len(rest):
        sample = rest.sample(n=min(sample_size, len(rest)), random_state=seed)
        chosen |= all_ids.index.isin(sample.index)
    return chosen


def shap_contributions(estimator, features: pd.DataFrame) -> pd.DataFrame:
    """Per-feature SHAP values (log-odds) for each row; columns = the model's features."""
    rows = features[estimator.feature_names]
    if hasattr(estimator, "contributions"):
        return estimator.contributions(rows)
    matrix = estimator.transform(rows)
    values = booster_of(estimator).predict(matrix, pred_contrib=True)
    return pd.DataFrame(np.asarray(values)[:, :-1], columns=matrix.columns, index=features.index)


def top_reasons(contributions: pd.DataFrame, features: pd.DataFrame,
                k: int = N_REASONS) -> pd.DataFrame:
    """The `k` strongest risk-raising contributions of each row as sentences (None if fewer).

    Each story (activity, purchases, support, ...) is told once, by its strongest feature; a
    sentence that only restates inactivity ("no purchase for 46 days" after "no activity for 46
    days", "usage down 100%") counts as the activity story (`churnlens.reasons.story`).
    """
    names = np.asarray(contributions.columns)
    values = contributions.to_numpy()
    order = np.argsort(-values, axis=1, kind="stable")
    records = features.to_dict("records")
    rows = []
    for i, row in enumerate(records):
        sentences: list[str] = []
        told: set[str] = set()
        for j in order[i]:
            if values[i, j] <= 0 or len(sentences) == k:
                break
            feature = str(names[j])
            sentence = describe(feature, row)
            if not sentence:
                continue
            told_by = story(feature, sentence, row)
            if told_by not in told:
                sentences.append(sentence)
                told.add(told_by)
        rows.append(sentences + [None] * (k - len(sentences)))
    return pd.DataFrame(rows, columns=REASON_COLUMNS[:k], index=features.index, dtype="object")


def global_importance(contributions: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP| per feature, largest first (`feature`, `mean_abs_shap`)."""
    importance = contributions.abs().mean().sort_values(ascending=False, kind="stable")
    return pd.DataFrame({"feature": importance.index, "mean_abs_shap": importance.to_numpy()})
