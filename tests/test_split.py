"""Time split: the test slice is the latest labelled cutoff and no training label window reaches
past it; with too little history for that, whole customers are held out instead."""

from datetime import date, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnlens.errors import NotEnoughHistoryError
from churnlens.split import CUSTOMER_HOLDOUT, OUT_OF_TIME, time_split

LAST = date(2026, 6, 30)


def rows_at(cutoffs, customers=("a", "b", "c")) -> pd.DataFrame:
    return pd.DataFrame(
        [{"customer_id": c, "cutoff": t, "label": i % 2, "x": float(i)}
         for i, t in enumerate(cutoffs) for c in customers]
    )


def monthly(n: int, step: int = 30) -> list[date]:
    return [LAST - timedelta(days=step * k) for k in range(n)]


def assert_purged(split, horizon: int) -> None:
    """Every training row's label window ends on or before the test cutoff; slices disjoint."""
    ends = pd.to_datetime(split.train["cutoff"]).dt.date + timedelta(days=horizon)
    assert (ends <= split.test_cutoff).all()
    train = set(zip(split.train["customer_id"], split.train["cutoff"], strict=True))
    test = set(zip(split.test["customer_id"], split.test["cutoff"], strict=True))
    assert not train & test


def test_test_slice_is_the_latest_cutoff_and_train_is_purged():
    split = time_split(rows_at(monthly(14)), horizon_days=90)
    assert split.kind == OUT_OF_TIME
    assert split.cutoffs["test"] == [LAST]
    # 90-day horizon, 30-day steps: the three cutoffs before the test one are purged
    assert split.cutoffs["train"] == sorted(monthly(14)[3:])
    assert_purged(split, 90)
    info = split.describe()
    assert info["test"]["rows"] == 3 and info["train"]["rows"] == 33
    assert info["test"]["customers"] == 3


def test_one_year_of_history_is_enough():
    """CDNOW cut at 1997-12-31: horizon + 3 steps of labelled history must train (issue 10)."""
    split = time_split(rows_at(monthly(4)), horizon_days=90)
    assert split.kind == OUT_OF_TIME
    assert split.cutoffs["train"] == [monthly(4)[-1]]


def test_too_short_for_an_out_of_time_test_holds_out_customers():
    customers = [f"c{i:02d}" for i in range(40)]
    split = time_split(rows_at(monthly(3), customers), horizon_days=90, seed=1)
    assert split.kind == CUSTOMER_HOLDOUT
    held = set(split.test["customer_id"])
    assert len(held) == 10  # a quarter of the customers
    assert not held & set(split.train["customer_id"])  # whole customers held out
    assert set(pd.to_datetime(split.test["cutoff"]).dt.date) == {LAST}
    again = time_split(rows_at(monthly(3), customers), horizon_days=90, seed=1)
    assert set(again.test["customer_id"]) == held  # seeded


def test_no_labelled_rows_or_too_few_customers_stop_with_a_reason():
    with pytest.raises(NotEnoughHistoryError, match="no labelled feature rows"):
        time_split(rows_at([]).reindex(columns=["customer_id", "cutoff", "label"]), 90)
    with pytest.raises(NotEnoughHistoryError, match="too few customers"):
        time_split(rows_at([LAST]), 90)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), horizon=st.integers(1, 200), step=st.integers(1, 60))
def test_no_training_label_window_reaches_the_test_cutoff(n, horizon, step):
    customers = [f"c{i}" for i in range(12)]
    split = time_split(rows_at(monthly(n, step), customers), horizon)
    if split.kind == OUT_OF_TIME:
        assert_purged(split, horizon)
        assert split.cutoffs["train"], "an out-of-time split always has training cutoffs"
    else:
        assert not set(split.test["customer_id"]) & set(split.train["customer_id"])
    assert len(split.test) > 0
