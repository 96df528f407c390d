"""Baselines the model has to beat, with the same `predict_proba(X)` interface.

* `RecencyBaseline`: "the longer since the last activity, the likelier the churn" -
  `days_since_last_activity` mapped to a probability by an isotonic fit on the
  calibration slice (so its Brier / ECE are comparable to the model's).
* `LogisticBaseline`: logistic regression on recency / frequency / monetary features
  (signed log1p, median-imputed, standardised), fitted on the training slice.
* `PriorBaseline`: the training-slice churn rate for everyone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

RECENCY = "days_since_last_activity"
RFM_CANDIDATES = (
    "days_since_last_activity",
    "events_90d",
    "purchases_90d",
    "active_days_90d",
    "revenue_180d",
)
PROBA_CLIP = 1e-4


def _two_columns(p1: np.ndarray) -> np.ndarray:
    p1 = np.clip(np.asarray(p1, dtype=float), PROBA_CLIP, 1.0 - PROBA_CLIP)
    return np.column_stack([1.0 - p1, p1])


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """log1p that keeps the sign (net revenue can be negative)."""
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.log1p(np.abs(x))


class RecencyBaseline(ClassifierMixin, BaseEstimator):
    """Isotonic (increasing) map from days since the last activity to churn probability."""

    def __init__(self, column: str = RECENCY) -> None:
        self.column = column

    def _recency(self, X: pd.DataFrame) -> np.ndarray:
        days = pd.to_numeric(X[self.column], errors="coerce").to_numpy(dtype=float)
        return np.where(np.isnan(days), self.fill_, days)

    def fit(self, X: pd.DataFrame, y) -> RecencyBaseline:
        days = pd.to_numeric(X[self.column], errors="coerce").to_numpy(dtype=float)
        self.fill_ = float(np.nanmax(days)) if np.isfinite(days).any() else 0.0
        self.iso_ = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True,
                                       out_of_bounds="clip")
        self.iso_.fit(self._recency(X), np.asarray(y, dtype=float))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return _two_columns(self.iso_.predict(self._recency(X)))


class LogisticBaseline(ClassifierMixin, BaseEstimator):
    """Logistic regression on the RFM columns present among `RFM_CANDIDATES`."""

    def __init__(self, columns: tuple[str, ...] = RFM_CANDIDATES, seed: int = 0) -> None:
        self.columns = columns
        self.seed = seed

    def fit(self, X: pd.DataFrame, y) -> LogisticBaseline:
        self.columns_ = [c for c in self.columns if c in X.columns]
        if not self.columns_:
            raise ValueError(f"none of the RFM columns {list(self.columns)} is present")
        self.pipeline_ = Pipeline([
            ("log", FunctionTransformer(signed_log1p)),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("lr", LogisticRegression(C=1.0, max_iter=1000, random_state=self.seed)),
        ])
        self.pipeline_.fit(self._matrix(X), np.asarray(y, dtype=int))
        self.classes_ = np.array([0, 1])
        return self

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.columns_].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return _two_columns(self.pipeline_.predict_proba(self._matrix(X))[:, 1])


class PriorBaseline(ClassifierMixin, BaseEstimator):
    """Everyone gets the training churn rate."""

    def fit(self, X: pd.DataFrame, y) -> PriorBaseline:
        self.rate_ = float(np.mean(np.asarray(y, dtype=float)))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return _two_columns(np.full(len(X), self.rate_))


def fit_baselines(train: pd.DataFrame, calib: pd.DataFrame, label: str = "label",
                  seed: int = 0) -> dict[str, BaseEstimator]:
    """Fit all baselines: logistic and prior on `train`, recency on `calib`."""
    return {
        "recency": RecencyBaseline().fit(calib, calib[label]),
        "logistic": LogisticBaseline(seed=seed).fit(train, train[label]),
        "prior": PriorBaseline().fit(train, train[label]),
    }
