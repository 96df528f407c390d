"""ChurnClassifier: cross-fits by customer, picks LightGBM, logistic or a blend, calibrates."""

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnlens.metrics import evaluate
from churnlens.model import (
    BLEND_WEIGHTS,
    CALIBRATIONS,
    ChurnClassifier,
    SigmoidCalibrator,
    booster_of,
    categories_by_frequency,
    choose_blend_weight,
    choose_calibration,
    feature_names,
    group_folds,
)
from model_fixtures import FEATURES, churn_rows

SMALL_LGBM = {"n_estimators": 150, "learning_rate": 0.1, "num_leaves": 7,
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


def customers(n: int, rows_per_customer: int = 2) -> np.ndarray:
    return np.arange(n) // rows_per_customer


def fit(X, y, **kwargs) -> ChurnClassifier:
    model = ChurnClassifier(lgbm_params=SMALL_LGBM, early_stopping_rounds=20, cv_folds=3,
                            **kwargs)
    return model.fit(X, y, groups=customers(len(y)))


@pytest.fixture(scope="module")
def fitted():
    X, y = synthetic(4000, 0)
    Xt, yt = synthetic(10000, 3)
    return fit(X, y), Xt, yt


def test_beats_a_random_score_and_records_its_choices(fitted):
    model, Xt, yt = fitted
    p = model.predict_proba(Xt)[:, 1]
    random_auc = roc_auc_score(yt, np.random.default_rng(9).random(len(yt)))
    assert roc_auc_score(yt, p) > 0.75 > random_auc + 0.15
    assert 1 <= model.best_iteration_ <= SMALL_LGBM["n_estimators"]
    assert model.lgbm_.booster_.num_trees() == model.best_iteration_  # refit with that many
    assert model.calibration_method_ in CALIBRATIONS
    assert model.blend_weight_ in BLEND_WEIGHTS
    assert model.scorer_ in ("lightgbm", "logistic", "blend")
    assert set(model.out_of_fold_["log_loss"]) == {"lightgbm", "logistic", "model"}


def test_held_out_probabilities_are_calibrated(fitted):
    """Calibrated on out-of-fold scores: on new customers of the same kind, ECE stays small."""
    model, Xt, yt = fitted
    calibrated = evaluate(yt, model.predict_proba(Xt)[:, 1])
    assert calibrated["ece"] < 0.03
    assert abs(model.predict_proba(Xt)[:, 1].mean() - yt.mean()) < 0.02


def test_predict_proba_shape_and_range(fitted):
    model, Xt, _ = fitted
    proba = model.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert ((proba > 0) & (proba < 1)).all()
    assert model.predict(Xt).shape == (len(Xt),)


def rfm_rows(n: int, seed: int, interaction: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """RFM-named columns; churn is linear in their logs, or driven by a segment x usage
    interaction that no logistic regression on RFM can express."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(60, n)
    frequency = rng.integers(1, 30, n).astype(float)
    segment = rng.choice(["a", "b"], n)
    if interaction:
        logit = np.where((segment == "a") == (frequency > 15), 2.0, -2.0)
    else:
        logit = -1.0 + 1.2 * np.log1p(recency) - 1.5 * np.log1p(frequency)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"days_since_last_activity": recency, "purchase_days_total": frequency,
                      "segment": segment})
    return X, y


def test_gate_keeps_the_simple_model_when_the_truth_is_simple():
    X, y = rfm_rows(4000, 1, interaction=False)
    model = fit(X, y)
    assert model.blend_weight_ <= 0.25, model.blend_losses_
    assert model.out_of_fold_["log_loss"]["logistic"] <= model.out_of_fold_["log_loss"][
        "lightgbm"]


def test_gate_takes_lightgbm_when_only_trees_can_see_the_signal():
    X, y = rfm_rows(4000, 2, interaction=True)
    model = fit(X, y)
    assert model.blend_weight_ == 1.0 and model.scorer_ == "lightgbm", model.blend_losses_
    Xt, yt = rfm_rows(2000, 3, interaction=True)
    both = model.candidate_proba(Xt)
    assert roc_auc_score(yt, both["lightgbm"]) > roc_auc_score(yt, both["logistic"]) + 0.2


def test_choose_blend_weight_prefers_the_simpler_side_on_ties():
    rng = np.random.default_rng(0)
    score = rng.normal(size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-score))).astype(int)
    weight, losses = choose_blend_weight(score, score, y)
    assert weight == 0.0 and len(set(np.round(list(losses.values()), 12))) == 1
    weight, _ = choose_blend_weight(score, rng.normal(size=3000), y)
    assert weight == 1.0  # the linear side is pure noise


def test_contributions_add_up_to_the_blended_score(fitted):
    model, Xt, _ = fitted
    for weight in (0.0, 0.5, 1.0):
        model.blend_weight_, kept = weight, model.blend_weight_
        try:
            parts = model.contributions(Xt.head(50))
            constant = model.raw_score(Xt.head(50)) - parts.sum(axis=1).to_numpy()
        finally:
            model.blend_weight_ = kept
        assert list(parts.columns) == model.feature_names
        assert np.allclose(constant, constant[0], atol=1e-9), weight


def test_group_folds_keep_customers_whole_and_balanced():
    groups = np.repeat([f"c{i}" for i in range(101)], 3)
    folds = group_folds(groups, 4, seed=5)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held) == list(range(len(groups)))  # every row held out exactly once
    for fit_idx, held_idx in folds:
        assert not set(groups[fit_idx]) & set(groups[held_idx])
        assert 25 <= len(set(groups[held_idx])) <= 26
    assert [h.tolist() for _, h in group_folds(groups, 4, seed=5)] == [
        h.tolist() for _, h in folds]
    with pytest.raises(ValueError, match="at least 4 groups"):
        group_folds(groups[:9], 4)


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


def test_model_matrix_holds_category_positions_and_float_casts(fitted):
    model, Xt, _ = fitted
    odd = Xt.head(6).copy()
    odd["segment"] = ["enterprise", None, "pro", np.nan, "trial", "basic"]
    odd["events_90d"] = pd.array([1, None, 3, 4, 5, 6], dtype="Int64")  # nullable ints
    pre = model.preprocessor_
    matrix = pre.matrix(odd)
    (categories,) = pre.encoder_.categories_
    position = {name: float(i) for i, name in enumerate(categories)}
    want = [position.get(v, np.nan) if isinstance(v, str) else np.nan for v in odd["segment"]]
    assert np.array_equal(matrix[:, pre.feature_names_.index("segment")], want, equal_nan=True)
    events = matrix[:, pre.feature_names_.index("events_90d")]
    assert np.array_equal(events, [1, np.nan, 3, 4, 5, 6], equal_nan=True)
    assert matrix.dtype == np.float64


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


def test_booster_of_gives_lightgbms_log_odds(fitted):
    model, Xt, _ = fitted
    booster = booster_of(model)
    assert isinstance(booster, lgb.Booster)
    assert booster.feature_name() == model.feature_names
    raw = booster.predict(model.transform(Xt), raw_score=True)
    assert np.allclose(raw, model.tree_score(Xt))
    contrib = booster.predict(model.transform(Xt.head(5)), pred_contrib=True)
    assert np.allclose(contrib.sum(axis=1), model.tree_score(Xt.head(5)))


def test_fit_is_deterministic():
    X, y = synthetic(800, 5)
    a = fit(X, y).predict_proba(X)
    b = fit(X, y).predict_proba(X)
    assert np.array_equal(a, b)


def test_category_codes_follow_frequency_then_first_appearance_not_names():
    col = pd.Series(["pro", "trial", None, "basic", "trial", "basic", "trial", "zeta"])
    assert list(categories_by_frequency(col)) == ["trial", "basic", "pro", "zeta"]
    renamed = col.map({"pro": "a", "trial": "z", "basic": "m", "zeta": "b"})
    assert list(categories_by_frequency(renamed)) == ["z", "m", "a", "b"]


def test_lightgbm_takes_the_segment_as_a_category(fitted):
    model, _, _ = fitted
    infos = model.booster_.dump_model()["feature_infos"]
    assert infos["segment"]["values"]  # LightGBM lists a categorical feature's codes ...
    assert not any(infos[c]["values"] for c in model.feature_names if c != "segment")  # ... only


def test_lightgbm_threads_one_below_the_small_fit_rows():
    from churnlens.model import LGBM_THREADS, SMALL_FIT_ROWS, lgbm_threads

    assert lgbm_threads(0) == lgbm_threads(SMALL_FIT_ROWS - 1) == 1
    assert lgbm_threads(SMALL_FIT_ROWS) == LGBM_THREADS == 2
    params = ChurnClassifier(lgbm_params={"n_jobs": 8})._lgbm_params(n_rows=10)
    assert params["n_jobs"] == 1 and params["deterministic"] and params["force_row_wise"]


def _fit_twice(monkeypatch, patch):
    train = churn_rows(3000, 5)
    kwargs = {"lgbm_params": {"n_estimators": 200, "num_leaves": 7, "learning_rate": 0.2},
              "seed": 3, "early_stopping_rounds": 5, "calibration": "sigmoid", "cv_folds": 4}
    first = ChurnClassifier(**kwargs).fit(train[FEATURES], train["label"],
                                          groups=train["customer_id"])
    with monkeypatch.context() as m:
        patch(m)
        second = ChurnClassifier(**kwargs).fit(train[FEATURES], train["label"],
                                               groups=train["customer_id"])
    test = churn_rows(500, 6)[FEATURES]
    assert first.best_iteration_ == second.best_iteration_
    assert first.out_of_fold_ == second.out_of_fold_
    assert first.blend_losses_ == second.blend_losses_
    assert np.array_equal(first.predict_proba(test), second.predict_proba(test))
    assert np.array_equal(first.contributions(test).to_numpy(),
                          second.contributions(test).to_numpy())
    return first, second


def test_one_or_two_lightgbm_threads_give_the_same_model(monkeypatch):
    """`deterministic=True`: the thread count (`lgbm_threads`) changes no tree."""
    import churnlens.model as model_module

    first, second = _fit_twice(
        monkeypatch, lambda m: m.setattr(model_module, "lgbm_threads", lambda n: 2))
    strip = lambda text: text.split("parameters:")[0]  # noqa: E731 - the trees, not [num_threads]
    assert strip(first.booster_.model_to_string()) == strip(second.booster_.model_to_string())


def test_capping_fold_rounds_at_the_shortest_curve_changes_nothing(monkeypatch):
    """Fold fits stop at the shortest held-out curve so far: same trees, curves, tree count."""
    seen = []
    original = ChurnClassifier._fold_params

    def uncapped(self, curves, n_rows):
        seen.append(original(self, curves, n_rows)["n_estimators"])
        return self._lgbm_params(n_rows=n_rows)

    first, second = _fit_twice(
        monkeypatch, lambda m: m.setattr(ChurnClassifier, "_fold_params", uncapped))
    assert first.booster_.model_to_string() == second.booster_.model_to_string()
    assert min(seen) < 200  # the cap did apply to some fold
