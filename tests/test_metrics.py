"""Metrics on tiny hand-computed arrays."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from churnlens.metrics import (
    METRIC_KEYS,
    calibration_curve,
    evaluate,
    expected_calibration_error,
    lift_curve,
    pr_curve,
    top_decile_lift,
    top_decile_precision,
)


def test_ece_two_bins_by_hand():
    y = [0, 0, 1, 1]
    p = [0.1, 0.2, 0.7, 0.9]
    # bins {0.1, 0.2}: |0.15 - 0| ; {0.7, 0.9}: |0.8 - 1|  -> (0.15 + 0.2) / 2
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.175)


def test_ece_equal_count_bins_are_weighted_by_size():
    # 10 bins of 2; each bin has p = 0.5 and one churner -> perfectly calibrated
    y = [0, 1] * 10
    p = [0.5] * 20
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    # 3 rows in 2 bins: sizes 2 and 1
    assert expected_calibration_error([0, 0, 1], [0.2, 0.4, 0.5], n_bins=2) == pytest.approx(
        (2 * 0.3 + 1 * 0.5) / 3)


def test_top_decile_precision_and_lift_by_hand():
    p = np.linspace(0.0, 1.0, 20)          # top 10 % = the last two rows
    y = np.zeros(20)
    y[[19, 3, 5, 7]] = 1                   # one churner among the top two, 4 in total
    assert top_decile_precision(y, p) == pytest.approx(0.5)
    assert top_decile_lift(y, p) == pytest.approx(0.5 / 0.2)


def test_top_decile_rounds_up_for_small_n():
    # n = 5 -> ceil(0.5) = 1 row in the top decile
    assert top_decile_precision([1, 0, 0, 0, 0], [0.9, 0.1, 0.2, 0.3, 0.4]) == 1.0


def test_evaluate_matches_sklearn_and_has_the_design_keys():
    rng = np.random.default_rng(0)
    p = rng.random(200)
    y = (rng.random(200) < p).astype(int)
    out = evaluate(y, p)
    assert tuple(out) == METRIC_KEYS
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert out["brier"] == pytest.approx(brier_score_loss(y, p))
    assert all(isinstance(v, float) for v in out.values())


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_does_not_crash(label):
    y = np.full(30, label)
    p = np.linspace(0.05, 0.95, 30)
    out = evaluate(y, p)
    assert out["roc_auc"] is None and out["pr_auc"] is None
    assert out["brier"] == pytest.approx(np.mean((p - label) ** 2))
    assert np.isfinite(out["log_loss"]) and np.isfinite(out["ece"])
    assert out["top_decile_lift"] == (None if label == 0 else pytest.approx(1.0))
    assert pr_curve(y, p).empty
    assert len(lift_curve(y, p)) == 10


def test_log_loss_is_finite_for_hard_zeros_and_ones():
    out = evaluate([0, 1], [1.0, 0.0])
    assert np.isfinite(out["log_loss"])


def test_calibration_curve_bins():
    p = np.arange(100) / 100
    y = (np.arange(100) % 2).astype(int)
    curve = calibration_curve(y, p)
    assert list(curve.columns) == ["bin", "mean_predicted", "observed_rate", "count"]
    assert len(curve) == 10 and curve["count"].sum() == 100 and (curve["count"] == 10).all()
    assert curve["mean_predicted"].iloc[0] == pytest.approx(0.045)
    assert (curve["observed_rate"] == 0.5).all()


def test_lift_curve_by_hand():
    p = np.linspace(1.0, 0.0, 20)          # descending: row i is in decile i // 2 + 1
    y = np.zeros(20)
    y[[0, 1, 2, 19]] = 1                   # decile 1: 2 churners, decile 2: 1, decile 10: 1
    curve = lift_curve(y, p)
    assert list(curve["decile"]) == list(range(1, 11))
    assert curve["churn_rate"].iloc[0] == 1.0 and curve["lift"].iloc[0] == pytest.approx(5.0)
    gains = list(curve["cumulative_gain"].iloc[[0, 1, 8, 9]])
    assert gains == pytest.approx([0.5, 0.75, 0.75, 1.0])


def test_pr_curve_is_thinned():
    rng = np.random.default_rng(1)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(int)
    curve = pr_curve(y, p)
    assert len(curve) <= 200 and list(curve.columns) == ["recall", "precision"]
    assert curve["recall"].is_monotonic_increasing
    assert curve["recall"].iloc[-1] == 1.0 and curve["recall"].iloc[0] == 0.0
