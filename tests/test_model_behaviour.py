"""Model behaviour (Made-With-ML style): what a trained model must do, whatever its metrics.

Directional: a customer whose last activity moves closer to as_of is less likely to churn; moved
to 3 days before as_of, at least 90 % of the customers it applies to must get a lower probability
(on the 400-customer sample: all 88 of them, median drop 0.5).
Invariance: customer ids and segment names are labels, not signals: renamed consistently, every
probability stays, also when the rename reverses the alphabetical order of the segments (their
codes follow frequency, not names, and LightGBM takes the segment as a category).

The model is the one the sample pipeline run trained (`conftest.sample_run`, shared with
`test_pipeline.py`, so it costs no extra run), applied to that run's scoring rows (every customer
at as_of). Retraining under renamed labels uses the cheap model of `model_fixtures`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from churnlens.packaging import feature_columns_of, load_model, to_model_input
from model_fixtures import FEATURES, churn_rows, fitted_model
from pipeline_helpers import PipelineRun

RECENCY_OF_KIND = ("days_since_last_event", "days_since_last_purchase")
MOVED_TO = 3          # days before as_of
MIN_LOWER = 0.90      # share of moved customers whose probability must drop


@pytest.fixture(scope="module")
def sample(sample_run: PipelineRun):
    """(model, its feature columns, the scoring rows at as_of, the run's inactivity_days)."""
    folder = sample_run / "models" / "churn_model"
    rows = pd.read_parquet(sample_run / "data" / "features" / "scoring.parquet")
    return (load_model(folder), feature_columns_of(folder), rows,
            int(sample_run.params["features"]["inactivity_days"]))


def probabilities(model, columns: list[str], rows: pd.DataFrame) -> np.ndarray:
    return model.predict(to_model_input(rows, columns))["churn_probability"].to_numpy()


def last_activity_moved(rows: pd.DataFrame, days: int, inactivity_days: int) -> pd.DataFrame:
    """The same customers as if their last activity had been `days` before the cutoff.

    The recency features stay consistent with each other: `days_since_last_activity` becomes
    `days`, so does the recency of the kind(s) of activity that was the last one (event and/or
    purchase), and `inactive_flag` follows the stage's rule (>= inactivity_days). Only customers
    whose last activity was an event or a purchase longer ago than `days` are kept.
    """
    last = rows["days_since_last_activity"]
    of_kind = pd.DataFrame({c: rows[c] == last for c in RECENCY_OF_KIND})
    keep = (last > days) & of_kind.any(axis=1)
    moved = rows.loc[keep].copy()
    for column in RECENCY_OF_KIND:
        moved.loc[of_kind.loc[keep, column], column] = float(days)
    moved["days_since_last_activity"] = float(days)
    moved["inactive_flag"] = float(days >= inactivity_days)
    return moved


def test_recent_activity_lowers_the_churn_probability(sample):
    model, columns, rows, inactivity_days = sample
    assert {"days_since_last_activity", "inactive_flag", *RECENCY_OF_KIND} <= set(columns)
    moved = last_activity_moved(rows, MOVED_TO, inactivity_days)
    assert len(moved) >= 40, "too few customers to move"   # 88 of 242 on the sample
    before = probabilities(model, columns, rows.loc[moved.index])
    after = probabilities(model, columns, moved)
    lower = after < before
    assert lower.mean() >= MIN_LOWER, (
        f"only {lower.mean():.0%} of {len(moved)} customers got a lower churn probability "
        f"when their last activity moved to {MOVED_TO} days before as_of")
    assert np.median(before - after) > 0.05   # not a rounding-size drop


def test_more_recent_activity_never_raises_the_risk_of_most(sample):
    """Closer and closer: 60, 30, 14, 3 days before as_of; along the way the probability of
    nearly every customer does not rise (a tree ensemble is flat in places, so not strictly)."""
    model, columns, rows, inactivity_days = sample
    start = rows.loc[last_activity_moved(rows, 60, inactivity_days).index]
    assert len(start) >= 20
    previous = probabilities(model, columns, start)
    for days in (60, 30, 14, MOVED_TO):
        moved = last_activity_moved(start, days, inactivity_days)
        assert moved.index.equals(start.index)
        now = probabilities(model, columns, moved)
        assert (now <= previous + 1e-9).mean() >= MIN_LOWER, days
        previous = now


def test_customer_ids_and_row_order_change_no_probability(sample):
    model, columns, rows, _ = sample
    want = probabilities(model, columns, rows)
    shuffled = rows.sample(frac=1.0, random_state=7)
    renamed = shuffled.assign(customer_id=[f"someone-{i}" for i in range(len(shuffled))])
    got = pd.Series(probabilities(model, columns, renamed), index=shuffled.index)
    np.testing.assert_array_equal(got.loc[rows.index].to_numpy(), want)


def rows_with_segment_effect(n: int, seed: int) -> pd.DataFrame:
    """`churn_rows` where the segment matters too: trial customers churn more."""
    rows = churn_rows(n, seed)
    extra = np.random.default_rng(seed + 1).uniform(size=n) < 0.35
    rows.loc[(rows["segment"] == "trial") & extra, "label"] = 1
    return rows


@pytest.fixture(scope="module")
def segment_effect():
    """(training rows, scoring rows, the cheap fixture's model fitted on the training rows)."""
    train, rows = rows_with_segment_effect(800, seed=0), rows_with_segment_effect(300, seed=11)
    model = clone(fitted_model()).fit(train[FEATURES], train["label"],
                                      groups=train["customer_id"])
    return train, rows, model


SAME_ORDER = {"trial": "t-free", "basic": "b-small", "pro": "p-large"}
REVERSED = {"trial": "zz-free", "basic": "mm-small", "pro": "aa-large"}


@pytest.mark.parametrize("mapping", [
    SAME_ORDER,
    REVERSED,
], ids=["same-order", "reversed-order"])
def test_renamed_segments_and_ids_train_the_same_model(segment_effect, mapping):
    """Segment names and customer ids consistently renamed in the training and the scoring rows:
    the retrained model gives every customer the same probability. (Ids keep their order: the
    customer folds are dealt over the sorted ids, so reordering them deals other, equally valid
    folds.)"""
    train, rows, original = segment_effect

    def renamed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(segment=frame["segment"].map(mapping),
                            customer_id="customer-" + frame["customer_id"])

    other = renamed(train)
    again = clone(original).fit(other[FEATURES], other["label"], groups=other["customer_id"])
    want = original.predict_proba(rows[FEATURES])[:, 1]
    got = again.predict_proba(renamed(rows)[FEATURES])[:, 1]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_the_segment_is_a_signal_in_the_renaming_check(segment_effect):
    """Otherwise the renaming test above could not see a rename that changed the model."""
    _, rows, model = segment_effect
    as_pro = model.predict_proba(rows.assign(segment="pro")[FEATURES])[:, 1]
    as_trial = model.predict_proba(rows.assign(segment="trial")[FEATURES])[:, 1]
    assert (as_trial > as_pro).mean() >= MIN_LOWER


def test_the_name_of_an_unseen_segment_does_not_matter(sample):
    """Segment names the model never saw are all one unknown category to it (a missing segment
    is the feature SQL's known 'unknown' segment instead): any two unseen names, same scores."""
    model, columns, rows, _ = sample
    assert "segment" in columns
    one = probabilities(model, columns, rows.assign(segment="never-seen-before"))
    other = probabilities(model, columns, rows.assign(segment="Zz 9"))
    np.testing.assert_array_equal(one, other)
