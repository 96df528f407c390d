"""The churn model: preprocessing + LightGBM with early stopping + probability calibration.

`ChurnClassifier.fit` uses three disjoint row sets (see `churnlens.split`): the training rows
grow the trees, the validation rows stop boosting early, the calibration rows fit the map
from LightGBM's raw score to a probability. Calibration never sees a training row.

With `calibration="auto"` both a sigmoid (Platt) and an isotonic calibrator are scored by
out-of-fold Brier within the calibration slice (2 folds grouped by customer); isotonic is
chosen only when it beats sigmoid by more than one standard error of the paired difference
(sigmoid is the safer default and keeps the ranking), and the choice is refitted on the
whole slice.

`segment` (and any other string column) is ordinal-encoded, unknown or missing values
become NaN, and the code is passed to LightGBM as a plain number: with a handful of plans a
tree isolates any of them in two splits, and the model matrix stays all-float, which keeps
SHAP on `booster_of(model)` simple: `TreeExplainer(booster_of(m)).shap_values(m.transform(X))`.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import OrdinalEncoder

CALIBRATIONS = ("sigmoid", "isotonic")
PROBA_CLIP = 1e-4  # keeps log loss finite where isotonic would say exactly 0 or 1
FIXED_LGBM = {"deterministic": True, "force_row_wise": True, "n_jobs": 2, "verbose": -1}


class Preprocessor:
    """Column selection + ordinal codes for string columns (unknown/missing -> NaN)."""

    def fit(self, X: pd.DataFrame) -> Preprocessor:
        self.feature_names_ = [str(c) for c in X.columns]
        self.categorical_ = [c for c in self.feature_names_ if not _is_numeric(X[c])]
        self.encoder_ = None
        if self.categorical_:
            self.encoder_ = OrdinalEncoder(handle_unknown="use_encoded_value",
                                           unknown_value=np.nan, encoded_missing_value=np.nan)
            self.encoder_.fit(_as_strings(X[self.categorical_]))
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.matrix(X), columns=self.feature_names_, index=X.index, copy=False)

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """The float64 model matrix, filled column by column (one copy of the data)."""
        out = np.empty((len(X), len(self.feature_names_)), dtype="float64", order="F")
        for i, col in enumerate(self.feature_names_):
            if col not in self.categorical_:
                out[:, i] = _floats(X[col])
        for col, categories in zip(self.categorical_, self._categories(), strict=True):
            out[:, self.feature_names_.index(col)] = _codes(X[col], categories)
        return out

    def _categories(self) -> list[np.ndarray]:
        return list(self.encoder_.categories_) if self.encoder_ is not None else []


def _codes(col: pd.Series, categories: np.ndarray) -> np.ndarray:
    """`OrdinalEncoder` codes as float64 (unknown or missing -> NaN), by an index lookup."""
    present = col.notna().to_numpy()
    found = pd.Index(categories).get_indexer(col.astype(object).where(present, "").astype(str))
    codes = found.astype("float64")
    codes[(found < 0) | ~present] = np.nan
    return codes


def _floats(col: pd.Series) -> np.ndarray:
    """A column as float64 (missing and unparseable values -> NaN), without a copy when possible."""
    if col.dtype == np.float64:
        return col.to_numpy()
    if _is_numeric(col):
        return col.to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def _as_strings(frame: pd.DataFrame) -> np.ndarray:
    """Object array of strings with None for missing (what OrdinalEncoder handles)."""
    arr = frame.astype(object).to_numpy()
    return np.where(pd.isna(arr), None, arr.astype(str)).astype(object)


class SigmoidCalibrator:
    """Platt scaling on LightGBM's raw score (log-odds)."""

    def fit(self, score: np.ndarray, y: np.ndarray) -> SigmoidCalibrator:
        y = np.asarray(y, dtype=int)
        self.constant_ = float(y.mean()) if len(np.unique(y)) < 2 else None
        if self.constant_ is None:
            self.lr_ = LogisticRegression(C=1e4).fit(np.asarray(score).reshape(-1, 1), y)
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        if self.constant_ is not None:
            return np.full(len(score), self.constant_)
        return self.lr_.predict_proba(np.asarray(score).reshape(-1, 1))[:, 1]


class IsotonicCalibrator:
    """Monotone step function of the raw score, clipped outside the fitted range."""

    def fit(self, score: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        self.iso_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self.iso_.fit(np.asarray(score, dtype=float), np.asarray(y, dtype=float))
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        return self.iso_.predict(np.asarray(score, dtype=float))


def make_calibrator(method: str):
    if method == "sigmoid":
        return SigmoidCalibrator()
    if method == "isotonic":
        return IsotonicCalibrator()
    raise ValueError(f"unknown calibration method {method!r}; expected one of {CALIBRATIONS}")


def out_of_fold_predictions(score: np.ndarray, y: np.ndarray, groups: np.ndarray,
                            method: str, folds: int = 2, seed: int = 0) -> np.ndarray:
    """`method` fitted on k-1 folds and applied to the held-out fold; folds keep groups whole."""
    oof = np.empty(len(y), dtype=float)
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_idx, held_idx in splitter.split(score, y, groups):
        calibrator = make_calibrator(method).fit(score[fit_idx], y[fit_idx])
        oof[held_idx] = calibrator.predict(score[held_idx])
    return oof


def compare_calibrations(score: np.ndarray, y: np.ndarray, groups: np.ndarray | None,
                         folds: int = 2, seed: int = 0) -> dict[str, float]:
    """Out-of-fold Brier of each method, and isotonic's Brier gain over sigmoid with its
    standard error (clustered by group: rows of one customer are not independent)."""
    y = np.asarray(y, dtype=int)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    errors = {m: (out_of_fold_predictions(score, y, groups, m, folds, seed) - y) ** 2
              for m in CALIBRATIONS}
    gain = errors["sigmoid"] - errors["isotonic"]
    per_group = pd.Series(gain).groupby(groups).sum().to_numpy()
    se = float(np.std(per_group, ddof=1) * np.sqrt(len(per_group)) / len(y))
    return {**{m: float(e.mean()) for m, e in errors.items()},
            "isotonic_gain": float(gain.mean()), "isotonic_gain_se": se}


def choose_calibration(score: np.ndarray, y: np.ndarray, groups: np.ndarray | None,
                       folds: int = 2, seed: int = 0) -> tuple[str, dict[str, float]]:
    """Isotonic only if its out-of-fold Brier beats sigmoid's by more than one standard error.

    Sigmoid is the default (2 parameters, keeps the ranking); isotonic's steps tie scores,
    which costs ranking metrics, so it has to earn its place (one-standard-error rule).
    """
    n_groups = len(np.unique(groups)) if groups is not None else len(y)
    if n_groups < max(folds, 3) or len(np.unique(y)) < 2:
        return "sigmoid", {}
    scores = compare_calibrations(score, y, groups, folds, seed)
    wins = scores["isotonic_gain"] > scores["isotonic_gain_se"]
    return ("isotonic" if wins else "sigmoid"), scores


class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM churn classifier with early stopping and a calibrated `predict_proba`."""

    def __init__(self, lgbm_params: dict | None = None, seed: int = 7,
                 early_stopping_rounds: int | None = 50, calibration: str = "auto",
                 calib_folds: int = 2) -> None:
        self.lgbm_params = lgbm_params
        self.seed = seed
        self.early_stopping_rounds = early_stopping_rounds
        self.calibration = calibration
        self.calib_folds = calib_folds

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y, *, X_valid: pd.DataFrame, y_valid, X_calib: pd.DataFrame,
            y_calib, calib_groups=None) -> ChurnClassifier:
        """Grow trees on (X, y), stop early on the validation rows, calibrate on the calib rows."""
        self.preprocessor_ = Preprocessor().fit(X)
        self._fit_booster(X, y, X_valid, y_valid)
        self._fit_calibration(X_calib, y_calib, calib_groups)
        return self

    def _fit_booster(self, X, y, X_valid, y_valid) -> None:
        params = {**(self.lgbm_params or {}), **FIXED_LGBM, "random_state": self.seed}
        self.lgbm_ = lgb.LGBMClassifier(**params)
        callbacks = []
        if self.early_stopping_rounds:
            callbacks.append(lgb.early_stopping(int(self.early_stopping_rounds), verbose=False))
        self.lgbm_.fit(self.transform(X), _labels(y),
                       eval_X=(self.transform(X_valid),), eval_y=(_labels(y_valid),),
                       eval_metric="binary_logloss", callbacks=callbacks)
        self.classes_ = np.array([0, 1])
        best = self.lgbm_.best_iteration_
        self.best_iteration_ = int(best) if best else int(self.lgbm_.n_estimators)

    def _fit_calibration(self, X_calib, y_calib, groups) -> None:
        score, y = self.raw_score(X_calib), _labels(y_calib)
        groups = None if groups is None else np.asarray(groups)
        if self.calibration == "auto":
            method, scores = choose_calibration(score, y, groups, self.calib_folds, self.seed)
        else:
            method, scores = self.calibration, {}
        self.calibration_method_ = method
        self.calibration_scores_ = scores
        self.calibrator_ = make_calibrator(method).fit(score, y)

    # -- prediction ----------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return list(self.preprocessor_.feature_names_)

    @property
    def booster_(self) -> lgb.Booster:
        return self.lgbm_.booster_

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The all-float model matrix LightGBM (and SHAP on the booster) sees."""
        return self.preprocessor_.transform(X)

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated log-odds at the best iteration."""
        score = self.lgbm_.booster_.predict(self.preprocessor_.matrix(X), raw_score=True,
                                            num_iteration=self._iterations())
        return np.asarray(score, dtype=float)

    def _iterations(self) -> int | None:
        """Trees to use: the early-stopping best iteration, like `LGBMClassifier.predict`."""
        best = getattr(self.lgbm_, "best_iteration_", None)
        return best if best else None

    def predict_proba_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        return _two_columns(1.0 / (1.0 + np.exp(-self.raw_score(X))))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.calibrator_.predict(self.raw_score(X))
        return _two_columns(np.clip(p, PROBA_CLIP, 1.0 - PROBA_CLIP))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _labels(y: Any) -> np.ndarray:
    return np.asarray(y, dtype=int)


def _two_columns(p1: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p1, p1])


def booster_of(estimator: Any) -> lgb.Booster:
    """The LightGBM Booster inside a fitted `ChurnClassifier` (or any LGBM sklearn model)."""
    if hasattr(estimator, "lgbm_"):
        return estimator.lgbm_.booster_
    if hasattr(estimator, "booster_"):
        return estimator.booster_
    raise TypeError(f"{type(estimator).__name__} holds no LightGBM booster")


def feature_names(estimator: Any) -> list[str]:
    """Feature columns a fitted estimator expects, in order."""
    return list(estimator.feature_names)
