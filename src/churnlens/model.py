"""The churn model: LightGBM and a simple logistic candidate, cross-fitted, blended, calibrated.

`ChurnClassifier.fit(X, y, groups=customer_ids)` spends no time slice on tuning. It splits the
training rows into `cv_folds` folds that keep each customer whole and, on the
held-out folds:

1. grows LightGBM with early stopping per fold (`group_folds`); the number of trees shipped is
   the one with the lowest mean held-out log loss (early stopping on a *later cutoff of the same
   customers* would leak through their overlapping label windows; whole customers held out do
   not);
2. fits the logistic candidate (`churnlens.baselines.LogisticBaseline`, RFM + tenure) per fold;
3. the gate: picks the weight `w` of LightGBM in the blend `w * lightgbm + (1 - w) * logistic`
   (log-odds; `w` in `BLEND_WEIGHTS`, 1 = LightGBM alone, 0 = logistic alone) with the lowest
   out-of-fold log loss after calibration; the simpler side wins ties;
4. calibrates the chosen score on the out-of-fold scores (`ScoreCalibrator`, an estimator of
   its own): sigmoid (Platt) unless isotonic beats it by more than one standard error
   (`calibration="auto"`).

Then LightGBM (with the chosen number of trees) and the logistic candidate are refitted on all
rows. `out_of_fold_` keeps the held-out figures of each candidate for the metrics and MLflow.

`segment` (and any other string column) is a LightGBM categorical feature. Its codes number
the training values from the most frequent down (ties: the first seen), never by name, so
renaming plans changes no code and no tree; unknown or missing values become NaN, and the model
matrix stays all-float.
`contributions(X)` gives each feature's additive share of the blended log-odds (TreeSHAP for
LightGBM, exact linear terms for the logistic side), which is what the reasons are built from.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from churnlens.baselines import LogisticBaseline

CALIBRATIONS = ("sigmoid", "isotonic")
PROBA_CLIP = 1e-4  # keeps log loss finite where isotonic would say exactly 0 or 1
FIXED_LGBM = {"deterministic": True, "force_row_wise": True, "verbose": -1}
# LightGBM threads per fit, by the rows of the `ChurnClassifier.fit` call (its fold fits and its
# refit use the same count). `deterministic=True` gives the same trees whatever the thread count
# (LightGBM's documentation of the parameter; on the sample the fits' predictions and trees are
# byte-identical with 1 and 2 threads, only `lightgbm.txt`'s `[num_threads: ...]` line differs).
# Below `SMALL_FIT_ROWS` one thread is faster: a boosting round on tens of thousands of rows takes
# a few ms, and every parallel region makes a sleeping OpenMP thread wake up (OMP_WAIT_POLICY=
# PASSIVE, the CLI's default), which cost the sample's train stage 19 s against 10-11 s with
# spinning threads on an idle machine; one thread never waits, idle or loaded. Above it, where a
# round's histograms take tens of ms, the second core pays.
SMALL_FIT_ROWS = 100_000
DEFAULT_TREES = 100  # LGBMClassifier's n_estimators when lgbm_params gives none
LGBM_THREADS = 2  # above SMALL_FIT_ROWS
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # weight of LightGBM in the blended log-odds
SCORER_NAMES = {0.0: "logistic", 1.0: "lightgbm"}  # anything in between is "blend"


def lgbm_threads(n_rows: int) -> int:
    """LightGBM threads for a fit on `n_rows` rows (1 below `SMALL_FIT_ROWS`)."""
    return 1 if n_rows < SMALL_FIT_ROWS else LGBM_THREADS


class CategoryCodes:
    """The values of each string column in code order (`categories_`, one array per column)."""

    def __init__(self, categories: list[np.ndarray]) -> None:
        self.categories_ = categories


def categories_by_frequency(col: pd.Series) -> np.ndarray:
    """A column's distinct values (as strings, missing left out), most frequent first, ties in
    order of first appearance: an order that renaming the values cannot change."""
    values = col[col.notna()].astype(str)
    counts = values.value_counts(sort=False)
    first_seen = pd.Series(np.arange(len(counts)), index=pd.unique(values)).reindex(counts.index)
    order = np.lexsort((first_seen.to_numpy(), -counts.to_numpy()))
    return np.array(counts.index.to_numpy()[order], dtype=object)


class Preprocessor:
    """Column selection + category codes for string columns (unknown/missing -> NaN)."""

    def fit(self, X: pd.DataFrame) -> Preprocessor:
        self.feature_names_ = [str(c) for c in X.columns]
        self.categorical_ = [c for c in self.feature_names_ if not _is_numeric(X[c])]
        self.encoder_ = None
        if self.categorical_:
            self.encoder_ = CategoryCodes([categories_by_frequency(X[c])
                                           for c in self.categorical_])
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
    """Positions in `categories` as float64 (unknown or missing -> NaN), by an index lookup."""
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



class SigmoidCalibrator(BaseEstimator):
    """Platt scaling of a raw score (log-odds): `fit(score, y)`, `predict(score)` -> P(y = 1).

    `score` is one value per row (1-D, or a single column). A single-class `y` gives that
    class's rate (`constant_`) instead of a logistic fit (`lr_`).
    """

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


class IsotonicCalibrator(BaseEstimator):
    """Monotone step function of the raw score, clipped outside the fitted range (`iso_`)."""

    def fit(self, score: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        self.iso_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self.iso_.fit(_score_column(score), np.asarray(y, dtype=float))
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        return self.iso_.predict(_score_column(score))


def _score_column(score: np.ndarray) -> np.ndarray:
    """A raw score as a 1-D float array (a single column is flattened)."""
    score = np.asarray(score, dtype=float)
    return score.ravel() if score.ndim == 2 and score.shape[1] == 1 else score


def make_calibrator(method: str):
    if method == "sigmoid":
        return SigmoidCalibrator()
    if method == "isotonic":
        return IsotonicCalibrator()
    raise ValueError(f"unknown calibration method {method!r}; expected one of {CALIBRATIONS}")


class ScoreCalibrator(BaseEstimator):
    """Calibration as an estimator: `fit(score, y, groups=None)`, `predict(score)` -> P(y = 1).

    `method`: "sigmoid", "isotonic" or "auto" (sigmoid unless isotonic's out-of-fold Brier over
    `folds` folds of whole `groups` beats it by more than one standard error,
    `choose_calibration`). Fitted: `method_` (the one used), `scores_` (the comparison, empty
    unless "auto" compared) and `calibrator_` (a `SigmoidCalibrator` or `IsotonicCalibrator`
    fitted on all rows). `sklearn.clone` gives an unfitted copy.
    """

    def __init__(self, method: str = "auto", folds: int = 2, seed: int = 0) -> None:
        self.method = method
        self.folds = folds
        self.seed = seed

    def fit(self, score: np.ndarray, y, groups=None) -> ScoreCalibrator:
        score, y = _score_column(score), _labels(y)
        if self.method == "auto":
            self.method_, self.scores_ = choose_calibration(score, y, groups, int(self.folds),
                                                            self.seed)
        else:
            self.method_, self.scores_ = self.method, {}
        self.calibrator_ = make_calibrator(self.method_).fit(score, y)
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        return self.calibrator_.predict(_score_column(score))


def group_folds(groups: np.ndarray, n_folds: int, seed: int = 0
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, held-out) row indices for `n_folds` folds that keep every group whole.

    Groups are shuffled (seeded) and dealt round-robin, so folds hold about as many groups each.
    Linear in the rows (sklearn's shuffled `GroupKFold` took 140 s on 190k rows / 23k groups).
    """
    codes = pd.factorize(pd.Series(groups), sort=True)[0]
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} groups, got {n_groups}")
    fold_of_group = np.empty(n_groups, dtype=int)
    fold_of_group[np.random.default_rng(seed).permutation(n_groups)] = (
        np.arange(n_groups) % n_folds)
    fold = fold_of_group[codes]
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_folds)]


def out_of_fold_predictions(score: np.ndarray, y: np.ndarray, groups: np.ndarray,
                            method: str, folds: int = 2, seed: int = 0) -> np.ndarray:
    """`method` fitted on k-1 folds and applied to the held-out fold; folds keep groups whole."""
    oof = np.empty(len(y), dtype=float)
    for fit_idx, held_idx in group_folds(groups, folds, seed):
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


def scorer_name(weight: float) -> str:
    """"lightgbm", "logistic" or "blend" for a LightGBM weight."""
    return SCORER_NAMES.get(float(weight), "blend")


def best_iteration(curves: list[list[float]]) -> int:
    """1-based round with the lowest mean held-out loss over folds (common length)."""
    length = min(len(c) for c in curves)
    mean = np.mean([c[:length] for c in curves], axis=0)
    return int(np.argmin(mean)) + 1


def choose_blend_weight(tree: np.ndarray, linear: np.ndarray, y: np.ndarray,
                        weights: tuple[float, ...] = BLEND_WEIGHTS) -> tuple[float, dict]:
    """The LightGBM weight whose sigmoid-calibrated blend has the lowest log loss on the
    out-of-fold scores; a weight nearer the simple side wins ties (within 1e-4)."""
    losses = {}
    for w in weights:
        score = w * tree + (1.0 - w) * linear
        p = SigmoidCalibrator().fit(score, y).predict(score)
        losses[float(w)] = float(log_loss(y, np.clip(p, PROBA_CLIP, 1 - PROBA_CLIP),
                                          labels=[0, 1]))
    best = min(losses.values())
    chosen = min(w for w, loss in losses.items() if loss <= best + 1e-4)
    return chosen, losses


def out_of_fold_summary(scores: dict[str, np.ndarray], y: np.ndarray,
                        blend_losses: dict[float, float], weight: float) -> dict[str, Any]:
    """Held-out (customers left out) log loss and ROC AUC of each candidate."""
    from sklearn.metrics import roc_auc_score

    two = len(np.unique(y)) == 2
    return {
        "log_loss": {"lightgbm": blend_losses.get(1.0), "logistic": blend_losses.get(0.0),
                     "model": blend_losses[float(weight)]},
        "roc_auc": {name: float(roc_auc_score(y, s)) if two else None
                    for name, s in scores.items()},
        "rows": int(len(y)),
    }


class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM + logistic candidate, cross-fitted by customer, blended and calibrated.

    A scikit-learn estimator: the constructor only stores its arguments, so `sklearn.clone`
    gives an unfitted copy, and `fit(X, y)` or `fit(X, y, groups=customer_ids)` needs nothing
    else (without `groups` every row is its own customer).
    """

    def __init__(self, lgbm_params: dict | None = None, seed: int = 7,
                 early_stopping_rounds: int | None = 50, calibration: str = "auto",
                 cv_folds: int = 4, blend_weights: tuple[float, ...] = BLEND_WEIGHTS) -> None:
        self.lgbm_params = lgbm_params
        self.seed = seed
        self.early_stopping_rounds = early_stopping_rounds
        self.calibration = calibration
        self.cv_folds = cv_folds
        self.blend_weights = blend_weights

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y, groups=None) -> ChurnClassifier:
        """Cross-fit on folds of whole `groups` (customers), then refit on all rows."""
        y = _labels(y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        self.preprocessor_ = Preprocessor().fit(X)
        self.classes_ = np.array([0, 1])
        matrix = self.preprocessor_.matrix(X)
        folds = self._folds(y, groups)
        tree_oof, linear_oof = self._cross_fit(X, matrix, y, folds)
        self.blend_weight_, self.blend_losses_ = choose_blend_weight(
            tree_oof, linear_oof, y, tuple(self.blend_weights))
        score = self.blend_weight_ * tree_oof + (1.0 - self.blend_weight_) * linear_oof
        self._fit_calibration(score, y, groups)
        self.tree_calibrator_ = SigmoidCalibrator().fit(tree_oof, y)
        self.out_of_fold_ = out_of_fold_summary(
            {"lightgbm": tree_oof, "logistic": linear_oof, "model": score}, y,
            self.blend_losses_, self.blend_weight_)
        self.lgbm_ = lgb.LGBMClassifier(**self._lgbm_params(self.best_iteration_, len(y)))
        self.lgbm_.fit(matrix, y, feature_name=self.feature_names,
                       categorical_feature=self.preprocessor_.categorical_)
        self.linear_ = LogisticBaseline(seed=self.seed).fit(X, y)
        return self

    def _lgbm_params(self, n_estimators: int | None = None, n_rows: int = 0) -> dict:
        """LightGBM's parameters: `lgbm_params`, then `FIXED_LGBM`, the seed and the threads for
        a fit on `n_rows` rows (`lgbm_threads`); `n_estimators` when given."""
        params = {**(self.lgbm_params or {}), **FIXED_LGBM, "random_state": self.seed,
                  "n_jobs": lgbm_threads(n_rows)}
        if n_estimators is not None:
            params["n_estimators"] = int(n_estimators)
        return params

    def _fold_params(self, curves: list[list[float]], n_rows: int) -> dict:
        """A fold fit's parameters: `n_estimators` at most the length of the shortest held-out
        curve of the folds fitted before (see `_cross_fit`)."""
        params = self._lgbm_params(n_rows=n_rows)
        if curves:
            params["n_estimators"] = min(int(params.get("n_estimators", DEFAULT_TREES)),
                                         min(len(c) for c in curves))
        return params

    def _folds(self, y: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        n_groups = len(pd.unique(groups))
        if n_groups < 2:
            raise ValueError("cross-fitting needs at least 2 customers")
        return group_folds(groups, min(int(self.cv_folds), n_groups), self.seed)

    def _cross_fit(self, X, matrix, y, folds) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold LightGBM raw scores (at the chosen tree count) and logistic log-odds.

        `best_iteration` reads the folds' held-out curves only up to the shortest one, so a fold
        grows at most as many rounds as the shortest curve so far (`n_estimators` capped): the
        rounds it would add beyond could never count. The trees, curves and tree count are the
        same as without the cap (a tree does not depend on how many come after it)."""
        boosters, curves = [], []
        linear_oof = np.empty(len(y), dtype=float)
        for fit_idx, held_idx in folds:
            model = lgb.LGBMClassifier(**self._fold_params(curves, len(y)))
            callbacks = ([lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)]
                         if self.early_stopping_rounds else [])
            model.fit(matrix[fit_idx], y[fit_idx], feature_name=self.feature_names,
                      categorical_feature=self.preprocessor_.categorical_,
                      eval_X=(matrix[held_idx],), eval_y=(y[held_idx],),
                      eval_metric="binary_logloss", callbacks=callbacks)
            boosters.append(model.booster_)
            curves.append(model.evals_result_["valid_0"]["binary_logloss"])
            linear = LogisticBaseline(seed=self.seed).fit(X.iloc[fit_idx], y[fit_idx])
            linear_oof[held_idx] = linear.decision_function(X.iloc[held_idx])
        self.best_iteration_ = best_iteration(curves)
        tree_oof = np.empty(len(y), dtype=float)
        for booster, (_, held_idx) in zip(boosters, folds, strict=True):
            tree_oof[held_idx] = booster.predict(matrix[held_idx], raw_score=True,
                                                 num_iteration=self.best_iteration_)
        return tree_oof, linear_oof

    def _fit_calibration(self, score: np.ndarray, y: np.ndarray, groups: np.ndarray) -> None:
        calibration = ScoreCalibrator(self.calibration, folds=2, seed=self.seed).fit(
            score, y, groups=groups)
        self.calibration_method_ = calibration.method_
        self.calibration_scores_ = calibration.scores_
        self.calibrator_ = calibration.calibrator_

    # -- prediction ----------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return list(self.preprocessor_.feature_names_)

    @property
    def scorer_(self) -> str:
        """What the model ships: "lightgbm", "logistic" or "blend"."""
        return scorer_name(self.blend_weight_)

    @property
    def booster_(self) -> lgb.Booster:
        return self.lgbm_.booster_

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The all-float model matrix LightGBM (and SHAP on the booster) sees."""
        return self.preprocessor_.transform(X)

    def tree_score(self, X: pd.DataFrame) -> np.ndarray:
        """LightGBM's log-odds."""
        score = self.lgbm_.booster_.predict(self.preprocessor_.matrix(X), raw_score=True)
        return np.asarray(score, dtype=float)

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """The uncalibrated blended log-odds (only the side with weight > 0 is computed)."""
        w = self.blend_weight_
        return self._blend(self.tree_score(X) if w > 0 else None,
                           self.linear_.decision_function(X) if w < 1 else None, len(X))

    def _blend(self, tree: np.ndarray | None, linear: np.ndarray | None,
               n: int) -> np.ndarray:
        """`w * tree + (1 - w) * linear` over `n` rows, leaving out a side whose weight is 0."""
        w = self.blend_weight_
        score = np.zeros(n, dtype=float)
        if w > 0:
            score += w * tree
        if w < 1:
            score += (1.0 - w) * linear
        return score

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each feature's additive share of `raw_score` (without the constant), per row."""
        w = self.blend_weight_
        out = pd.DataFrame(0.0, index=X.index, columns=self.feature_names)
        if w > 0:
            values = self.booster_.predict(self.preprocessor_.matrix(X), pred_contrib=True)
            out += w * np.asarray(values)[:, :-1]
        if w < 1:
            linear = self.linear_.contributions(X)
            out[linear.columns] += (1.0 - w) * linear.to_numpy()
        return out

    def candidate_proba(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """Calibrated churn probability of each candidate alone: LightGBM and logistic."""
        return {"lightgbm": self._tree_proba(self.tree_score(X)),
                "logistic": self.linear_.predict_proba(X)[:, 1]}

    def evaluation_proba(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """What the evaluation reports, with LightGBM and the logistic side predicted once:
        the shipped `model`, its `uncalibrated` blend and `lightgbm` alone."""
        tree = self.tree_score(X)
        linear = self.linear_.decision_function(X) if self.blend_weight_ < 1 else None
        blend = self._blend(tree, linear, len(X))
        return {"model": np.clip(self.calibrator_.predict(blend), PROBA_CLIP, 1.0 - PROBA_CLIP),
                "uncalibrated": 1.0 / (1.0 + np.exp(-blend)),
                "lightgbm": self._tree_proba(tree)}

    def _tree_proba(self, tree: np.ndarray) -> np.ndarray:
        return np.clip(self.tree_calibrator_.predict(tree), PROBA_CLIP, 1.0 - PROBA_CLIP)

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
