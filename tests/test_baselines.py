"""Baselines: recency (isotonic on the calibration slice), RFM logistic regression, prior."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnlens.baselines import (
    LogisticBaseline,
    PriorBaseline,
    RecencyBaseline,
    fit_baselines,
    signed_log1p,
)


def rfm_rows(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = rng.exponential(25, n)
    events = rng.poisson(20, n).astype(float)
    revenue = rng.normal(80, 60, n)            # some negative (refunds)
    logit = -1.0 + 0.05 * (days - 25) - 0.04 * (events - 20)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "label": label,
                          "days_since_last_activity": days, "events_90d": events,
                          "purchases_90d": rng.poisson(2, n).astype(float),
                          "revenue_180d": revenue, "segment": "basic"})
    frame.loc[frame.index[:20], "events_90d"] = np.nan
    return frame


def test_recency_is_monotone_and_handles_missing():
    rows = rfm_rows()
    model = RecencyBaseline().fit(rows, rows["label"])
    grid = pd.DataFrame({"days_since_last_activity": [0, 5, 20, 60, 400, np.nan]})
    p = model.predict_proba(grid)[:, 1]
    assert np.all(np.diff(p[:5]) >= 0)
    assert p[-1] == pytest.approx(p[4])        # missing = longest seen
    assert ((p > 0) & (p < 1)).all()


def test_logistic_learns_rfm_and_ignores_absent_columns():
    train, test = rfm_rows(seed=0), rfm_rows(seed=1)
    model = LogisticBaseline().fit(train, train["label"])
    assert "active_days_90d" not in model.columns_
    p = model.predict_proba(test)[:, 1]
    assert np.isfinite(p).all() and roc_auc_score(test["label"], p) > 0.7


def test_logistic_without_rfm_columns_fails_clearly():
    with pytest.raises(ValueError, match="RFM"):
        LogisticBaseline().fit(pd.DataFrame({"x": [1, 2]}), [0, 1])


def test_prior_and_fit_baselines():
    train, test = rfm_rows(seed=0), rfm_rows(seed=2)
    models = fit_baselines(train)
    assert set(models) == {"recency", "logistic", "prior"}
    p = models["prior"].predict_proba(test)[:, 1]
    assert np.allclose(p, train["label"].mean())
    assert isinstance(models["prior"], PriorBaseline)


def test_logistic_contributions_add_up_to_its_log_odds():
    train, test = rfm_rows(seed=0), rfm_rows(seed=3)
    model = LogisticBaseline().fit(train, train["label"])
    parts = model.contributions(test)
    assert list(parts.columns) == model.columns_
    intercept = model.decision_function(test) - parts.sum(axis=1).to_numpy()
    assert np.allclose(intercept, model.pipeline_.named_steps["lr"].intercept_[0])
    p = model.predict_proba(test)[:, 1]
    assert np.allclose(p, 1 / (1 + np.exp(-model.decision_function(test))), atol=1e-4)


def test_signed_log1p_keeps_sign():
    assert np.allclose(signed_log1p([-np.e + 1, 0, np.e - 1]), [-1, 0, 1])


def test_the_evaluation_models_logistic_side_is_the_logistic_baseline():
    """The train stage reuses `ChurnClassifier.linear_` as the logistic baseline: on the same
    rows and seed it is the very fit `fit_baselines` would make."""
    from churnlens.model import ChurnClassifier

    train, test = rfm_rows(seed=0), rfm_rows(seed=2)
    columns = [c for c in train.columns if c not in ("customer_id", "label")]
    model = ChurnClassifier(lgbm_params={"n_estimators": 20}, seed=7, cv_folds=2).fit(
        train[columns], train["label"], groups=train["customer_id"])
    fresh = fit_baselines(train, seed=7)["logistic"]
    reused = fit_baselines(train, seed=7, logistic=model.linear_)["logistic"]
    assert reused is model.linear_
    assert reused.columns_ == fresh.columns_
    assert np.array_equal(reused.predict_proba(test), fresh.predict_proba(test))
