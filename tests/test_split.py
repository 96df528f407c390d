"""Purged time split: slices are ordered, disjoint, and no label window crosses a later cutoff."""

from datetime import date, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnlens.errors import NotEnoughHistoryError
from churnlens.split import SLICE_NAMES, required_cutoff_span, time_split

LAST = date(2026, 6, 30)


def rows_at(cutoffs, customers=("a", "b", "c")) -> pd.DataFrame:
    return pd.DataFrame(
        [{"customer_id": c, "cutoff": t, "label": i % 2, "x": float(i)}
         for i, t in enumerate(cutoffs) for c in customers]
    )


def monthly(n: int, step: int = 30) -> list[date]:
    return [LAST - timedelta(days=step * k) for k in range(n)]


def assert_purged(split, horizon: int) -> None:
    h = timedelta(days=horizon)
    order = ["train", "valid", "calib", "test"]
    for earlier, later in zip(order[:-1], order[1:], strict=True):
        first_later = min(split.cutoffs[later])
        assert max(split.cutoffs[earlier]) + h <= first_later, (earlier, later)
        # every row, not just the listed cutoffs
        frame = getattr(split, earlier)
        ends = pd.to_datetime(frame["cutoff"]).dt.date + h
        assert (ends <= first_later).all()
    frames = [getattr(split, n) for n in order]
    keys = [set(zip(f["customer_id"], f["cutoff"], strict=True)) for f in frames]
    assert sum(len(k) for k in keys) == len(set().union(*keys))  # disjoint


def test_default_layout_with_monthly_cutoffs():
    split = time_split(rows_at(monthly(14)), horizon_days=90, step_days=30,
                       valid_cutoffs=1, calib_cutoffs=2)
    c = monthly(14)
    assert split.cutoffs["test"] == [c[0]]
    assert split.cutoffs["calib"] == [c[4], c[3]]
    assert split.cutoffs["valid"] == [c[7]]
    assert split.cutoffs["train"] == sorted(c[10:])
    assert split.test_cutoff == c[0]
    assert_purged(split, 90)
    assert len(split.test) == 3 and len(split.calib) == 6 and len(split.train) == 12
    described = split.describe()
    assert set(described) == set(SLICE_NAMES)
    assert described["test"]["rows"] == 3


def test_exactly_enough_history_and_one_less():
    assert required_cutoff_span(90, 30, 1, 2) == 300
    time_split(rows_at(monthly(11)), 90, 30)  # 300 days of cutoffs is enough
    with pytest.raises(NotEnoughHistoryError) as err:
        time_split(rows_at(monthly(10)), 90, 30)
    message = str(err.value)
    assert "390 days" in message and "horizon" in message
    assert "10 labelled cutoffs" in message and "training" in message


def test_no_rows_raises():
    with pytest.raises(NotEnoughHistoryError, match="no labelled cutoffs"):
        time_split(rows_at([]).reindex(columns=["customer_id", "cutoff", "label"]), 90, 30)


def test_datetime_cutoff_column_is_accepted():
    rows = rows_at(monthly(12))
    rows["cutoff"] = pd.to_datetime(rows["cutoff"])
    split = time_split(rows, 90, 30)
    assert_purged(split, 90)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 30),
    step=st.sampled_from([7, 14, 30, 31]),
    horizon=st.sampled_from([14, 30, 60, 90]),
    valid=st.integers(1, 3),
    calib=st.integers(1, 3),
    drop=st.sets(st.integers(1, 29), max_size=5),
)
def test_purging_property(n, step, horizon, valid, calib, drop):
    cutoffs = [c for k, c in enumerate(monthly(n, step)) if k not in drop]
    rows = rows_at(cutoffs)
    try:
        split = time_split(rows, horizon, step, valid, calib)
    except NotEnoughHistoryError as err:
        assert f"{horizon}-day label horizon" in str(err)
        return
    assert_purged(split, horizon)
    assert split.cutoffs["test"] == [max(cutoffs)]
    assert len(split.cutoffs["calib"]) == calib and len(split.cutoffs["valid"]) == valid
    for name in SLICE_NAMES:
        assert split.cutoffs[name] == sorted(split.cutoffs[name])


def test_lapsed_customers_leave_the_inactivity_population_only():
    from churnlens.split import modelling_population

    rows = pd.DataFrame({"days_since_last_activity": [0.0, 89.0, 90.0, 400.0],
                         "label": [0, 0, 1, 1]})
    assert (modelling_population(rows, "inactivity", 90)["days_since_last_activity"].tolist()
            == [0.0, 89.0])
    assert len(modelling_population(rows, "cancellation", 90)) == 4
