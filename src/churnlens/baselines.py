"""Baselines the model has to beat, with the same `predict_proba(X)` interface.

* `RecencyBaseline`: "the longer since the last activity, the likelier the churn" -
  `days_since_last_activity` mapped to a probability by an isotonic fit on the
  training rows (so its Brier / ECE are comparable to the model's).
* `LogisticBaseline`: logistic regression on recency / frequency / monetary / tenure features
  (each both as signed log1p and raw, median-imputed, standardised), fitted on the training
  rows. It is also the simple candidate inside `churnlens.model.ChurnClassifier`, which is why
  it can say what each column adds to its log-odds (`contributions`).
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
    "days_since_last_activity",   # recency
    "tenure_days",                # age (BTYD's T)
    "purchase_days_total",        # frequency over the whole history
    "active_days_total",
    "revenue_total",              # monetary (with frequency: spend per purchase day, in logs)
    "active_days_90d",            # recent usage
    "events_90d",
    "purchases_90d",
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
    """Logistic regression on the RFM columns present among `RFM_CANDIDATES`.

    Each column enters twice, as signed log1p and raw: the log carries ratios (spend per
    purchase day is log revenue minus log frequency), the raw value lets the score keep rising
    with recency and age beyond the range seen in training, where trees stay flat.
    """

    def __init__(self, columns: tuple[str, ...] = RFM_CANDIDATES, seed: int = 0,
                 C: float = 1.0) -> None:
        self.columns = columns
        self.seed = seed
        self.C = C

    def fit(self, X: pd.DataFrame, y) -> LogisticBaseline:
        self.columns_ = [c for c in self.columns if c in X.columns]
        if not self.columns_:
            raise ValueError(f"none of the RFM columns {list(self.columns)} is present")
        self.pipeline_ = Pipeline([
            ("expand", FunctionTransformer(log_and_raw)),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("lr", LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)),
        ])
        self.pipeline_.fit(self._matrix(X), np.asarray(y, dtype=int))
        self.classes_ = np.array([0, 1])
        return self

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.columns_].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of churn."""
        return self.pipeline_.decision_function(self._matrix(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return _two_columns(self.pipeline_.predict_proba(self._matrix(X))[:, 1])

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each column's additive share of the log-odds (intercept left out), one row per row."""
        steps = self.pipeline_.named_steps
        z = steps["scale"].transform(steps["impute"].transform(
            steps["expand"].transform(self._matrix(X))))
        terms = z * steps["lr"].coef_[0]
        k = len(self.columns_)
        return pd.DataFrame(terms[:, :k] + terms[:, k:], columns=self.columns_, index=X.index)


def log_and_raw(x: np.ndarray) -> np.ndarray:
    """`[signed_log1p(x), x]` side by side (2 * n_columns)."""
    x = np.asarray(x, dtype=float)
    return np.hstack([signed_log1p(x), x])


class PriorBaseline(ClassifierMixin, BaseEstimator):
    """Everyone gets the training churn rate."""

    def fit(self, X: pd.DataFrame, y) -> PriorBaseline:
        self.rate_ = float(np.mean(np.asarray(y, dtype=float)))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return _two_columns(np.full(len(X), self.rate_))


def fit_baselines(train: pd.DataFrame, label: str = "label", seed: int = 0,
                  logistic: LogisticBaseline | None = None) -> dict[str, BaseEstimator]:
    """Fit every baseline on the training rows.

    `logistic`: a `LogisticBaseline(seed=seed)` already fitted on these rows and labels (the
    evaluation model's logistic side, `ChurnClassifier.linear_`, is that very fit), used as it is
    instead of fitting the same regression again."""
    y = train[label]
    return {
        "recency": RecencyBaseline().fit(train, y),
        "logistic": logistic if logistic is not None else LogisticBaseline(seed=seed).fit(train, y),
        "prior": PriorBaseline().fit(train, y),
    }
