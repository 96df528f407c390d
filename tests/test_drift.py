import numpy as np
import pandas as pd

from churnlens.drift import drift_report, population_stability


def test_same_distribution_is_stable():
    rng = np.random.default_rng(0)
    a, b = pd.Series(rng.normal(size=5000)), pd.Series(rng.normal(size=5000))
    assert population_stability(a, b) < 0.02


def test_shifted_feature_is_flagged_and_others_are_not():
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x": rng.normal(size=4000), "y": rng.normal(size=4000),
                              "segment": rng.choice(["a", "b"], 4000)})
    current = pd.DataFrame({"x": rng.normal(loc=1.0, size=2000), "y": rng.normal(size=2000),
                            "segment": rng.choice(["a", "b"], 2000, p=[0.9, 0.1])})
    report = drift_report(reference, current, ["x", "y", "segment"])
    assert report["x"]["flag"] and report["x"]["psi"] > 0.2
    assert not report["y"]["flag"]
    assert report["segment"]["flag"]


def test_missing_values_count_as_their_own_bin():
    reference = pd.Series([1.0, 2.0, 3.0, 4.0] * 100)
    current = pd.Series([np.nan] * 200 + [1.0, 2.0] * 100)
    assert population_stability(reference, current) > 0.2
