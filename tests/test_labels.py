"""The one definition of churned / lost (`churnlens.labels`) and the clone-able estimators."""

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from churnlens import labels
from churnlens.errors import ChurnlensError
from churnlens.model import (
    ChurnClassifier,
    IsotonicCalibrator,
    ScoreCalibrator,
    SigmoidCalibrator,
)
from churnlens.scoring import active_customers
from model_fixtures import FEATURES, churn_rows

H = 30


def _sql_labels(definition, cutoff, next_act, cancel):
    expr = labels.label_sql(definition, H, cutoff="cutoff", next_activity_day="next_act",
                            cancel_day="cancel")
    con = duckdb.connect()
    con.execute("CREATE TABLE t (cutoff INT, next_act INT, cancel INT)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                    [[int(c), None if n < 0 else int(n), None if k < 0 else int(k)]
                     for c, n, k in zip(cutoff, next_act, cancel, strict=True)])
    return np.array([r[0] for r in con.execute(f"SELECT {expr} FROM t").fetchall()])


def test_label_is_lost_at_the_end_of_the_horizon():
    """The feature label at t (SQL) equals "lost at t + H" (numpy, what the KPIs count)."""
    rng = np.random.default_rng(0)
    n, t = 400, 100
    signup = rng.integers(0, t + 1, n)                    # a customer of the rows at t
    activity = [np.sort(rng.choice(np.arange(s, 200), rng.integers(0, 6), replace=False))
                for s in signup]
    cancel = np.where(rng.random(n) < 0.5, rng.integers(t + 1, 200, n), -1)
    after = [a[a > t] for a in activity]
    next_act = np.array([a[0] if len(a) else -1 for a in after])
    end = np.array([t + H])
    active = np.array([[bool(((a > t) & (a <= t + H)).any())] for a in activity])
    never = np.where(cancel < 0, 10**9, cancel)
    for definition in labels.DEFINITIONS:
        lost = labels.lost_at(definition, H, days=end, signup=signup, cancel=never,
                              active=active)[:, 0]
        assert np.array_equal(_sql_labels(definition, np.full(n, t), next_act, cancel),
                              lost.astype(int))
    assert 0 < lost.sum() < n


def test_customers_at_is_signed_up_and_not_lost():
    days = np.array([10, 40, 70])
    signup = np.array([0, 0, 50, 80])
    active = np.array([[True, False, False], [True, True, True],
                       [False, False, False], [False, False, False]])
    status = labels.customers_at("inactivity", H, days=days, signup=signup, active=active)
    # lapsed after H days without activity, counted from signup when never active
    assert status.tolist() == [[True, False, False], [True, True, True],
                               [False, False, True], [False, False, False]]
    cancel = np.array([40, 10**9, 60, 10**9])
    status = labels.customers_at("cancellation", H, days=days, signup=signup, cancel=cancel)
    assert status.tolist() == [[True, False, False], [True, True, True],
                               [False, False, False], [False, False, False]]


def test_lapsed_at_the_cutoff_is_lost_through_inactivity_there():
    """The active / lapsed split of the CS lists (`scoring.active_customers`, from a feature
    row's days since the last activity or signup) is `lost_at("inactivity")` at the cutoff."""
    rng = np.random.default_rng(3)
    n, t = 500, 200
    signup = rng.integers(0, t + 1, n)
    activity = [np.sort(rng.choice(np.arange(s, t + 1), min(rng.integers(0, 4), t + 1 - s),
                                   replace=False)) for s in signup]
    last = np.array([a[-1] if len(a) else s for a, s in zip(activity, signup, strict=True)])
    frame = pd.DataFrame({"days_since_last_activity": (t - last).astype(float),
                          "tenure_days": (t - signup).astype(float)})
    active = np.array([[bool(((a > t - H) & (a <= t)).any())] for a in activity])
    lost = labels.lost_at("inactivity", H, days=np.array([t]), signup=signup, active=active)[:, 0]
    assert 0 < lost.sum() < n and (~lost & ~active[:, 0]).any()  # new signups are not lost
    assert np.array_equal(labels.lapsed(frame["days_since_last_activity"], H,
                                        frame["tenure_days"]), lost)
    assert np.array_equal(active_customers(frame, H).to_numpy(), ~lost)
    # never active and the signup not counted in: the tenure decides
    unknown = frame.assign(days_since_last_activity=np.nan)
    young = (t - signup) < H
    assert np.array_equal(labels.lapsed(unknown["days_since_last_activity"], H,
                                        unknown["tenure_days"]), ~young)
    assert active_customers(unknown, H).to_numpy().tolist() == young.tolist()


def test_unknown_definition_is_a_user_error():
    with pytest.raises(ChurnlensError, match="label.definition must be one of inactivity"):
        labels.check_definition("silence")


def test_is_labelled_needs_the_whole_window():
    assert labels.is_labelled(100, 100 + H, H) and not labels.is_labelled(101, 100 + H, H)


@pytest.mark.parametrize("estimator", [SigmoidCalibrator(), IsotonicCalibrator(),
                                       ScoreCalibrator(method="isotonic", folds=3, seed=4)])
def test_calibrators_clone_and_fit_score_y(estimator):
    rng = np.random.default_rng(1)
    score = rng.normal(size=500)
    y = (rng.random(500) < 1 / (1 + np.exp(-2 * score))).astype(int)
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params()
    p = copy.fit(score, y).predict(score)
    assert np.array_equal(p, clone(estimator).fit(score.reshape(-1, 1), y).predict(score))
    assert np.all((p >= 0) & (p <= 1)) and p[np.argmax(score)] > p[np.argmin(score)]


def test_score_calibrator_is_what_the_model_ships():
    rng = np.random.default_rng(2)
    score, groups = rng.normal(size=800), rng.integers(0, 200, 800)
    y = (rng.random(800) < 1 / (1 + np.exp(-score))).astype(int)
    fitted = ScoreCalibrator(method="auto", seed=3).fit(score, y, groups=groups)
    assert fitted.method_ in ("sigmoid", "isotonic") and "isotonic_gain" in fitted.scores_
    assert np.array_equal(fitted.predict(score), fitted.calibrator_.predict(score))


def test_model_clones_and_fits_x_y_like_any_estimator():
    train, test = churn_rows(300, 5), churn_rows(100, 6)
    model = ChurnClassifier(lgbm_params={"n_estimators": 20, "num_leaves": 7}, seed=5,
                            early_stopping_rounds=5, calibration="sigmoid", cv_folds=3)
    fitted = model.fit(train[FEATURES], train["label"], groups=train["customer_id"])
    again = clone(model).fit(train[FEATURES], train["label"], groups=train["customer_id"])
    assert np.array_equal(fitted.predict_proba(test[FEATURES]),
                          again.predict_proba(test[FEATURES]))
    plain = clone(model).fit(train[FEATURES], train["label"])  # every row its own customer
    assert plain.predict_proba(test[FEATURES]).shape == (len(test), 2)
