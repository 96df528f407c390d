"""The rescue/harm uplift learner (churnlens.rescue_harm): its likelihood's gradient, recovery of
known per-action rates, and a ranking that beats "chance of leaving x value" when an action
harms."""

import numpy as np
import pandas as pd
import pytest

from churnlens import uplift
from churnlens.rescue_harm import _Likelihood, fit_rescue_harm

ANCHOR, ACTION = uplift.ANCHOR_FEATURE, uplift.GROUP_FEATURE
# action -> (rescue rate of would-be leavers, harm rate of would-be stayers)
TRUE_RATES = {"call": (0.40, 0.0), "mail": (0.10, 0.0), "promo": (0.0, 0.25)}


def simulate(n: int, seed: int) -> pd.DataFrame:
    """Customers with a churn probability p, an action, an arm and the outcome: control stays
    with 1 - p; contacted would-be leavers are kept with the action's rescue rate, would-be
    stayers lost with its harm rate."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 2, n)
    action = rng.choice(list(TRUE_RATES), n)
    rescue = np.array([TRUE_RATES[a][0] for a in action])
    harm = np.array([TRUE_RATES[a][1] for a in action])
    treated = rng.random(n) < 0.5
    would_stay = rng.random(n) >= p
    u = rng.random(n)
    stays_if_contacted = np.where(would_stay, u >= harm, u < rescue)
    return pd.DataFrame({ANCHOR: p, ACTION: action, "treated": treated,
                         "retained": np.where(treated, stays_if_contacted, would_stay),
                         "tau": p * rescue - (1 - p) * harm,
                         "value": rng.lognormal(4, 1, n)})


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    n = 300
    objective = _Likelihood(rng.normal(size=n), rng.integers(0, 3, n), 3, rng.random(n) < 0.5,
                            rng.random(n) < 0.6)
    theta = objective.start() + rng.normal(scale=0.3, size=len(objective.start()))
    _, grad = objective(theta)
    step = 1e-6
    numeric = np.array([(objective(theta + e)[0] - objective(theta - e)[0]) / (2 * step)
                        for e in np.eye(len(theta)) * step])
    assert np.max(np.abs(numeric - grad)) < 1e-4 * max(1.0, np.max(np.abs(grad)))


def test_recovers_known_rescue_and_harm_rates_per_action():
    data = simulate(30000, seed=1)
    model = uplift.fit_uplift(data[[ANCHOR, ACTION]], data["treated"], data["retained"],
                              learner="rescue_harm")
    rates = {r["action"]: (r["rescue_rate"], r["harm_rate"]) for r in model.rates()}
    assert set(rates) == set(TRUE_RATES)
    for action, (rescue, harm) in TRUE_RATES.items():
        assert rates[action][0] == pytest.approx(rescue, abs=0.04), action
        assert rates[action][1] == pytest.approx(harm, abs=0.04), action
    assert model.calibration == pytest.approx([0.0, 1.0], abs=0.1)  # p was already right
    assert np.corrcoef(model.predict(data), data["tau"])[0, 1] > 0.95


def test_ranks_above_the_risk_ranking_when_an_action_harms():
    """Fitted on 800 measured customers, applied to new ones: contacting the top 20 % by
    expected revenue saved keeps more revenue than by expected revenue at risk, which puts the
    likely leavers first whatever the promotion does to the ones who would have stayed."""
    fit, new = simulate(800, seed=2), simulate(5000, seed=3)
    model = uplift.fit_uplift(fit[[ANCHOR, ACTION]], fit["treated"], fit["retained"],
                              learner="rescue_harm")
    saved = uplift.expected_revenue_saved(model.predict(new), new["value"])
    at_risk = new[ANCHOR] * new["value"]
    gain = new["tau"] * new["value"]
    kept_saved = uplift.kept_by_ranking(saved, gain, 0.2)
    kept_risk = uplift.kept_by_ranking(at_risk, gain, 0.2)
    assert kept_saved > 1.2 * kept_risk > 0
    assert uplift.qini_coefficient(saved, new["treated"], new["retained"], new["value"]) > 0


def test_unseen_action_gets_all_actions_rates_and_inputs_are_checked():
    data = simulate(2000, seed=4)
    model = fit_rescue_harm(data[[ANCHOR, ACTION]], data["treated"], data["retained"],
                            anchor=ANCHOR, group=ACTION)
    row = pd.DataFrame({ANCHOR: [0.5, 0.5], ACTION: ["new action", None]})
    leave, rescue, harm = model.parts(row)
    overall = 1 / (1 + np.exp(-model.overall))
    assert rescue == pytest.approx([overall[0]] * 2) and harm == pytest.approx([overall[1]] * 2)
    single = fit_rescue_harm(data[[ANCHOR]], data["treated"], data["retained"], anchor=ANCHOR,
                             group=ACTION)
    assert single.group is None and len(single.rates()) == 1
    with pytest.raises(ValueError, match=ANCHOR):
        fit_rescue_harm(data[[ACTION]], data["treated"], data["retained"], anchor=ANCHOR)
    with pytest.raises(ValueError, match="per arm"):
        uplift.fit_uplift(data[[ANCHOR, ACTION]].head(100), data["treated"].head(100),
                          data["retained"].head(100), learner="rescue_harm")
