"""Evaluation metrics and curve data for churn probabilities.

All functions take `y` (0/1) and `p` (probability of churn). Rankings (top decile, lift,
equal-count bins) sort by descending / ascending `p` with a stable sort, so ties keep the
input order and results are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

METRIC_KEYS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece",
               "top_decile_precision", "top_decile_lift")
LOG_LOSS_EPS = 1e-15


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y and p differ in length: {len(y)} vs {len(p)}")
    return y, p


def _two_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def equal_count_bins(p: np.ndarray, n_bins: int = 10) -> list[np.ndarray]:
    """Indices of `p` sorted ascending and cut into `n_bins` groups of (nearly) equal size."""
    order = np.argsort(p, kind="stable")
    return [b for b in np.array_split(order, min(n_bins, len(p))) if len(b)]


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """Mean |mean(p) - mean(y)| over equal-count bins, weighted by bin size."""
    y, p = _arrays(y, p)
    if len(y) == 0:
        return float("nan")
    gaps = [len(b) * abs(p[b].mean() - y[b].mean()) for b in equal_count_bins(p, n_bins)]
    return float(sum(gaps) / len(y))


def top_fraction(p: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Indices of the `ceil(fraction * n)` highest scores."""
    k = max(1, math.ceil(fraction * len(p)))
    return np.argsort(-p, kind="stable")[:k]


def top_decile_precision(y, p) -> float:
    y, p = _arrays(y, p)
    return float(y[top_fraction(p)].mean()) if len(y) else float("nan")


def top_decile_lift(y, p) -> float | None:
    y, p = _arrays(y, p)
    rate = y.mean() if len(y) else 0.0
    return float(top_decile_precision(y, p) / rate) if rate > 0 else None


def evaluate(y, p) -> dict[str, float | None]:
    """The metrics.json block: ranking, probability and top-decile metrics.

    `roc_auc`, `pr_auc` (and lift when nobody churned) are None for a single-class `y`.
    """
    y, p = _arrays(y, p)
    ranked = _two_classes(y)
    clipped = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if ranked else None,
        "pr_auc": float(average_precision_score(y, p)) if ranked else None,
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "top_decile_precision": top_decile_precision(y, p),
        "top_decile_lift": top_decile_lift(y, p),
    }


# -- curves --------------------------------------------------------------------------------
def calibration_curve(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Equal-count reliability bins: bin, mean_predicted, observed_rate, count."""
    y, p = _arrays(y, p)
    rows = [{"bin": i + 1, "mean_predicted": float(p[b].mean()),
             "observed_rate": float(y[b].mean()), "count": int(len(b))}
            for i, b in enumerate(equal_count_bins(p, n_bins))]
    return pd.DataFrame(rows, columns=["bin", "mean_predicted", "observed_rate", "count"])


def lift_curve(y, p, n_bins: int = 10) -> pd.DataFrame:
    """By decile of descending score: decile, count, churn_rate, lift, cumulative_gain.

    cumulative_gain = share of all churners found in the top `decile` deciles.
    """
    y, p = _arrays(y, p)
    order = np.argsort(-p, kind="stable")
    base, total = (y.mean(), y.sum()) if len(y) else (0.0, 0.0)
    rows, found = [], 0.0
    for i, idx in enumerate(b for b in np.array_split(order, min(n_bins, len(y))) if len(b)):
        found += y[idx].sum()
        rate = float(y[idx].mean())
        rows.append({"decile": i + 1, "count": int(len(idx)), "churn_rate": rate,
                     "lift": rate / base if base > 0 else None,
                     "cumulative_gain": float(found / total) if total > 0 else None})
    return pd.DataFrame(rows, columns=["decile", "count", "churn_rate", "lift", "cumulative_gain"])


def pr_curve(y, p, max_points: int = 200) -> pd.DataFrame:
    """Precision-recall points (recall ascending), thinned to at most `max_points`."""
    y, p = _arrays(y, p)
    if not _two_classes(y):
        return pd.DataFrame(columns=["recall", "precision"])
    precision, recall, _ = precision_recall_curve(y, p)
    frame = pd.DataFrame({"recall": recall, "precision": precision}).iloc[::-1]
    if len(frame) > max_points:
        keep = np.unique(np.linspace(0, len(frame) - 1, max_points).round().astype(int))
        frame = frame.iloc[keep]
    return frame.reset_index(drop=True)
