"""ChurnClassifier: learns, calibrates on held-out rows, round-trips through joblib."""

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnlens.metrics import evaluate
from churnlens.model import (
    CALIBRATIONS,
    ChurnClassifier,
    SigmoidCalibrator,
    booster_of,
    choose_calibration,
    feature_names,
)

SMALL_LGBM = {"n_estimators": 120, "learning_rate": 0.1, "num_leaves": 7,
              "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1}


def synthetic(n: int, seed: int, intercept: float = -1.5) -> tuple[pd.DataFrame, np.ndarray]:
    """Learnable churn: long inactivity, low usage and trial plans churn more."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(["trial", "basic", "pro"], n)
    days = rng.exponential(20, n)
    events = rng.poisson(30, n).astype(float)
    noise = rng.normal(size=n)
    logit = intercept + 0.06 * (days - 20) - 0.05 * (events - 30) + 0.8 * (seg == "trial")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    events[rng.random(n) < 0.05] = np.nan
    X = pd.DataFrame({"segment": seg, "days_since_last_activity": days, "events_90d": events,
                      "noise": noise})
    return X, y


def fit(X, y, Xv, yv, Xc, yc, **kwargs) -> ChurnClassifier:
    groups = np.arange(len(yc)) // 2  # two rows per "customer"
    model = ChurnClassifier(lgbm_params=SMALL_LGBM, early_stopping_rounds=20, **kwargs)
    return model.fit(X, y, X_valid=Xv, y_valid=yv, X_calib=Xc, y_calib=yc, calib_groups=groups)


@pytest.fixture(scope="module")
def fitted():
    X, y = synthetic(3000, 0)
    Xv, yv = synthetic(1000, 1)
    Xc, yc = synthetic(2000, 2)
    Xt, yt = synthetic(2000, 3)
    return fit(X, y, Xv, yv, Xc, yc), Xt, yt


def test_beats_a_random_score(fitted):
    model, Xt, yt = fitted
    p = model.predict_proba(Xt)[:, 1]
    random_auc = roc_auc_score(yt, np.random.default_rng(9).random(len(yt)))
    assert roc_auc_score(yt, p) > 0.75 > random_auc + 0.15
    assert model.best_iteration_ >= 1
    assert model.calibration_method_ in CALIBRATIONS
    assert set(CALIBRATIONS) <= set(model.calibration_scores_)


def test_predict_proba_shape_and_range(fitted):
    model, Xt, _ = fitted
    proba = model.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert ((proba > 0) & (proba < 1)).all()
    assert model.predict(Xt).shape == (len(Xt),)


def test_calibration_lowers_brier_on_held_out_rows():
    # trees learn on rows with a much higher churn rate (prior shift), so raw scores
    # are far too high; calibration rows and test rows share the low rate
    X, y = synthetic(3000, 0, intercept=0.5)
    Xv, yv = synthetic(1000, 1, intercept=0.5)
    Xc, yc = synthetic(2000, 2, intercept=-2.5)
    Xt, yt = synthetic(2000, 3, intercept=-2.5)
    for method in ("auto", "sigmoid", "isotonic"):
        model = fit(X, y, Xv, yv, Xc, yc, calibration=method)
        calibrated = evaluate(yt, model.predict_proba(Xt)[:, 1])
        raw = evaluate(yt, model.predict_proba_uncalibrated(Xt)[:, 1])
        assert calibrated["brier"] < raw["brier"] - 0.02, method
        assert calibrated["ece"] < raw["ece"] / 2, method
        if method != "auto":
            assert model.calibration_method_ == method


def test_auto_choice_prefers_sigmoid_unless_isotonic_clearly_wins():
    rng = np.random.default_rng(0)
    score = rng.normal(size=2000)
    groups = np.arange(2000) // 2
    # a true logistic link: Platt's 2 parameters are enough
    y = (rng.random(2000) < 1 / (1 + np.exp(-2 * score))).astype(int)
    method, scores = choose_calibration(score, y, groups, folds=2, seed=1)
    assert method == "sigmoid" and set(CALIBRATIONS) <= set(scores)
    assert scores["isotonic_gain"] == pytest.approx(scores["sigmoid"] - scores["isotonic"])
    # a step link no sigmoid can follow: isotonic wins by many standard errors
    y = (rng.random(2000) < np.where(score > 0.5, 0.9, 0.05)).astype(int)
    method, scores = choose_calibration(score, y, groups, folds=2, seed=1)
    assert method == "isotonic"
    assert scores["isotonic_gain"] > 3 * scores["isotonic_gain_se"] > 0
    assert choose_calibration(score, np.zeros(2000, int), None)[0] == "sigmoid"


def test_sigmoid_calibrator_single_class_is_constant():
    cal = SigmoidCalibrator().fit(np.array([0.1, 0.2, 0.3]), np.array([0, 0, 0]))
    assert (cal.predict(np.array([5.0, -5.0])) == 0.0).all()


def test_unknown_and_missing_segment_are_scored(fitted):
    model, Xt, _ = fitted
    odd = Xt.head(3).copy()
    odd["segment"] = ["enterprise", None, "pro"]
    proba = model.predict_proba(odd)[:, 1]
    assert np.isfinite(proba).all()
    matrix = model.transform(odd)
    assert np.isnan(matrix["segment"].iloc[0]) and np.isnan(matrix["segment"].iloc[1])
    assert (matrix.dtypes == "float64").all()


def test_model_matrix_matches_the_ordinal_encoder_and_float_casts(fitted):
    model, Xt, _ = fitted
    odd = Xt.head(6).copy()
    odd["segment"] = ["enterprise", None, "pro", np.nan, "trial", "basic"]
    odd["events_90d"] = pd.array([1, None, 3, 4, 5, 6], dtype="Int64")  # nullable ints
    pre = model.preprocessor_
    matrix = pre.matrix(odd)
    encoded = pre.encoder_.transform(odd[["segment"]].astype(object).where(
        odd[["segment"]].notna(), None).to_numpy())
    assert np.array_equal(matrix[:, pre.feature_names_.index("segment")], encoded.ravel(),
                          equal_nan=True)
    events = matrix[:, pre.feature_names_.index("events_90d")]
    assert np.array_equal(events, [1, np.nan, 3, 4, 5, 6], equal_nan=True)
    assert matrix.dtype == np.float64


def test_raw_score_uses_the_best_iteration_like_lightgbm(fitted):
    model, Xt, _ = fitted
    expected = model.lgbm_.predict(model.transform(Xt), raw_score=True)
    assert np.allclose(model.raw_score(Xt), expected, rtol=0, atol=1e-12)


def test_extra_columns_are_ignored_and_order_is_fixed(fitted):
    model, Xt, _ = fitted
    shuffled = Xt[list(reversed(Xt.columns))].assign(customer_id="x")
    assert np.array_equal(model.predict_proba(shuffled), model.predict_proba(Xt))
    assert feature_names(model) == list(Xt.columns)


def test_joblib_round_trip(fitted, tmp_path):
    model, Xt, _ = fitted
    joblib.dump(model, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    assert np.array_equal(loaded.predict_proba(Xt), model.predict_proba(Xt))
    assert loaded.calibration_method_ == model.calibration_method_


def test_booster_of_gives_the_raw_scores(fitted):
    model, Xt, _ = fitted
    booster = booster_of(model)
    assert isinstance(booster, lgb.Booster)
    assert booster.feature_name() == model.feature_names
    # the booster defaults to the early-stopping best iteration, as the model does
    raw = booster.predict(model.transform(Xt), raw_score=True)
    assert np.allclose(raw, model.raw_score(Xt))
    contrib = booster.predict(model.transform(Xt.head(5)), pred_contrib=True)
    assert np.allclose(contrib.sum(axis=1), model.raw_score(Xt.head(5)))


def test_fit_is_deterministic():
    X, y = synthetic(800, 5)
    Xv, yv = synthetic(300, 6)
    Xc, yc = synthetic(400, 7)
    a = fit(X, y, Xv, yv, Xc, yc).predict_proba(X)
    b = fit(X, y, Xv, yv, Xc, yc).predict_proba(X)
    assert np.array_equal(a, b)
