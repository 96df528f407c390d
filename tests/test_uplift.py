"""Uplift ranking (churnlens.uplift): T- and X-learner, evidence threshold, Qini curve and its
bootstrap interval, capped values; on the
generator's simulated outreach the uplift ranking finds more revenue than the risk ranking."""

import numpy as np
import pandas as pd
import pytest

from churnlens import uplift


def _synthetic(n, seed):
    """x in [0, 1): contact helps (+0.3) where x < 0.5 and hurts (-0.2) elsewhere; base 0.5."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    noise = rng.random(n)
    treated = rng.random(n) < 0.5
    effect = np.where(x < 0.5, 0.3, -0.2)
    retained = rng.random(n) < 0.5 + treated * effect
    return pd.DataFrame({"x": x, "noise": noise}), treated, retained, effect


def test_qini_of_the_true_effect_is_above_random_and_a_random_score_is_not():
    X, treated, retained, effect = _synthetic(4000, 1)
    good = uplift.qini_coefficient(effect, treated, retained)
    noise = uplift.qini_coefficient(X["noise"], treated, retained)
    worst = uplift.qini_coefficient(-effect, treated, retained)
    assert good > 0.03 and abs(noise) < 0.02 and worst < -0.03
    curve = uplift.qini_curve(effect, treated, retained)
    assert curve["targeted_share"].iat[0] == 0 and curve["targeted_share"].iat[-1] == 1
    assert curve["qini"].iat[-1] == pytest.approx(curve["random"].iat[-1])


def test_t_learner_recovers_the_heterogeneous_effect_and_ranks_above_random():
    X, treated, retained, effect = _synthetic(3000, 2)
    model = uplift.fit_uplift(X, treated, retained, seed=3)
    X_new, t_new, r_new, e_new = _synthetic(2000, 4)
    predicted = model.predict(X_new)
    assert predicted[e_new > 0].mean() > 0.15 and predicted[e_new < 0].mean() < -0.05
    assert uplift.qini_coefficient(predicted, t_new, r_new) > 0.02
    kept = uplift.kept_by_ranking(predicted, e_new, 0.5)
    assert kept > 0.8 * uplift.kept_by_ranking(e_new, e_new, 0.5)


def test_x_learner_recovers_the_heterogeneous_effect_and_ranks_above_random():
    X, treated, retained, effect = _synthetic(3000, 2)
    model = uplift.fit_uplift(X, treated, retained, seed=3, learner="x")
    assert model.learner == "x" and 0.4 < model.propensity < 0.6
    X_new, t_new, r_new, e_new = _synthetic(2000, 4)
    predicted = model.predict(X_new)
    assert predicted[e_new > 0].mean() > 0.15 and predicted[e_new < 0].mean() < -0.05
    assert uplift.qini_coefficient(predicted, t_new, r_new) > 0.02
    with pytest.raises(ValueError, match="learner"):
        uplift.fit_uplift(X, treated, retained, learner="s")


def test_bootstrap_interval_of_the_qini_and_capped_values():
    X, treated, retained, effect = _synthetic(2000, 7)
    low, high = uplift.qini_interval(effect, treated, retained, draws=200)
    assert 0 < low <= uplift.qini_coefficient(effect, treated, retained) <= high
    low, high = uplift.qini_interval(X["noise"], treated, retained, draws=200)
    assert low < 0 < high  # a random ranking: no better than random, and the interval says so
    value = np.array([10.0, 20.0, np.nan, -5.0] + [30.0] * 95 + [10_000.0])
    cap = uplift.capped(value)
    assert cap.max() == 30.0 and cap[2] == 0 and cap[3] == 0 and cap[0] == 10.0


def test_too_few_outcomes_per_arm_are_refused_with_a_reason():
    X, treated, retained, _ = _synthetic(300, 5)
    ok, reason = uplift.enough_evidence(treated, ~treated)
    assert not ok and "200 per arm" in reason and "control" in reason
    with pytest.raises(ValueError, match="too few"):
        uplift.fit_uplift(X, treated, retained)
    assert uplift.enough_evidence([True] * 200, [True] * 200)[0]


def test_categorical_features_and_revenue_saved():
    X, treated, retained, _ = _synthetic(800, 6)
    X = X.assign(plan=np.where(X["x"] < 0.5, "basic", "pro"))
    model = uplift.fit_uplift(X, treated, retained, min_per_arm=100)
    unseen = X.head(3).assign(plan=["basic", "enterprise", None])
    assert np.isfinite(model.predict(unseen)).all()
    saved = uplift.expected_revenue_saved([0.1, -0.2, 0.3], [100.0, 50.0, np.nan])
    assert saved.tolist() == pytest.approx([10.0, -10.0, 0.0])
    report = uplift.evaluate([0.3, 0.1, -0.2, 0.0], [True, False, True, False],
                             [True, False, False, True])
    assert report["customers"] == 4 and report["curve"][0]["targeted_share"] == 0


@pytest.mark.slow
def test_uplift_ranking_keeps_more_simulated_revenue_than_the_risk_ranking_on_held_out_lists():
    """The generator's outreach (12 weekly lists, half held out as control): fitted on the first
    8 lists, evaluated on the last 4. The risk ranking (chance of leaving without contact x
    revenue) puts high-value customers with an open ticket, whom the discount offer drives
    away, and large plans, whom it does not help, near the top; expected revenue saved does not."""
    from churnlens.generate import (
        OUTREACH_COVARIATES,
        OUTREACH_KEY,
        OutreachSettings,
        generate_dataset,
    )

    settings = OutreachSettings(weeks=12, horizon_days=90, holdout_share=0.5)
    truth = generate_dataset(12000, "2024-09-01", "2026-08-31", seed=4, bad_rows=False,
                             outreach=settings)[OUTREACH_KEY]
    truth = truth.astype({"paying": int, "trial_activated": int})
    dates = sorted(truth["list_date"].unique())
    train, test = truth[truth["list_date"].isin(dates[:8])], truth[truth["list_date"].isin(
        dates[8:])]
    columns = list(OUTREACH_COVARIATES)
    model = uplift.fit_uplift(train[columns], train["treated"], train["retained"], seed=1)
    with_contact, without = model.retention(test[columns])
    value = test["value"].clip(lower=0).to_numpy()
    saved = uplift.expected_revenue_saved(with_contact - without, value)
    at_risk = (1 - without) * value
    true_gain = test["tau"].to_numpy() * value  # what contact truly changes, in revenue
    args = (test["treated"], test["retained"], value)
    assert uplift.qini_coefficient(saved, *args) > 0  # above random, revenue-weighted
    assert uplift.qini_coefficient(saved, *args) > uplift.qini_coefficient(at_risk, *args)
    assert uplift.qini_coefficient(with_contact - without, test["treated"],
                                   test["retained"]) > 0
    for share in (0.2, 0.3):
        assert (uplift.kept_by_ranking(saved, true_gain, share)
                > uplift.kept_by_ranking(at_risk, true_gain, share))
