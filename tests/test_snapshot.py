"""Snapshot semantics: as_of, cutoffs, labelled cutoffs, history requirements."""

import logging
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnlens.errors import ChurnlensError, NotEnoughHistoryError
from churnlens.snapshot import (
    from_epoch_day,
    labelled_cutoffs,
    list_cutoffs,
    plan_for_stage,
    plan_snapshot,
    required_history_days,
    required_max_cutoffs,
    resolve_as_of,
    to_epoch_day,
)


def test_epoch_days_round_trip():
    assert to_epoch_day(date(1970, 1, 1)) == 0
    assert to_epoch_day(date(2025, 1, 1)) == 20089
    assert from_epoch_day(20089) == date(2025, 1, 1)


def test_resolve_as_of():
    assert resolve_as_of(None, date(2025, 6, 30)) == date(2025, 6, 30)
    assert resolve_as_of(None, datetime(2025, 6, 30, 23, 59)) == date(2025, 6, 30)
    assert resolve_as_of("2025-03-01", date(2025, 6, 30)) == date(2025, 3, 1)
    assert resolve_as_of(date(2025, 3, 1), None) == date(2025, 3, 1)
    with pytest.raises(ChurnlensError):
        resolve_as_of(None, None)
    with pytest.raises(ChurnlensError):
        resolve_as_of("first of May", None)


def test_list_cutoffs_counts_back_from_as_of():
    as_of = date(2025, 12, 31)
    assert list_cutoffs(as_of, 30, 3) == [date(2025, 11, 1), date(2025, 12, 1), as_of]


def test_list_cutoffs_drops_cutoffs_before_first_data_day():
    as_of = date(2025, 12, 31)
    # 2025-11-01 is kept (on the first day), 2025-10-02 is dropped
    assert list_cutoffs(as_of, 30, 5, first_day=date(2025, 11, 1)) == [
        date(2025, 11, 1), date(2025, 12, 1), as_of]
    assert list_cutoffs(as_of, 30, 5, first_day=date(2025, 11, 2)) == [date(2025, 12, 1), as_of]


def test_labelled_cutoffs_need_the_whole_label_window():
    as_of = date(2025, 12, 31)
    cutoffs = list_cutoffs(as_of, 30, 6)
    labelled = labelled_cutoffs(cutoffs, as_of, 90)
    assert max(labelled) == as_of - timedelta(days=90)  # t + horizon == as_of is labelled
    assert all(c + timedelta(days=90) <= as_of for c in labelled)
    assert labelled_cutoffs(cutoffs, as_of, 91)[-1] == as_of - timedelta(days=120)


def test_required_history_days():
    assert required_history_days(90, 30, 1) == 90
    assert required_history_days(90, 30, 6) == 240
    assert required_history_days(100, 30, 1) == 120
    assert required_max_cutoffs(90, 30, 1) == 4


@settings(max_examples=40, deadline=None)
@given(horizon=st.integers(1, 120), step=st.integers(1, 40), n=st.integers(1, 6),
       extra=st.integers(-1, 0))
def test_required_history_days_is_exact(horizon, step, n, extra):
    as_of = date(2025, 12, 31)
    history = required_history_days(horizon, step, n) + extra
    first_day = as_of - timedelta(days=history)
    cutoffs = list_cutoffs(as_of, step, required_max_cutoffs(horizon, step, n) + 5, first_day)
    got = len(labelled_cutoffs(cutoffs, as_of, horizon))
    assert (got >= n) == (extra == 0)


def test_plan_snapshot_not_enough_history_names_the_numbers():
    with pytest.raises(NotEnoughHistoryError) as err:
        plan_snapshot(as_of=None, first_day=date(2025, 5, 1), last_day=date(2025, 7, 1),
                      horizon_days=90, step_days=30, max_cutoffs=24)
    message = str(err.value)
    assert "90 days" in message and "61 days" in message


def test_plan_snapshot_too_few_max_cutoffs_is_a_params_error():
    with pytest.raises(ChurnlensError) as err:
        plan_snapshot(as_of="2025-12-31", first_day=date(2024, 1, 1), last_day=None,
                      horizon_days=90, step_days=30, max_cutoffs=3)
    assert not isinstance(err.value, NotEnoughHistoryError)
    assert "max_cutoffs" in str(err.value)


def test_plan_snapshot():
    snap = plan_snapshot(as_of=None, first_day=date(2025, 1, 1), last_day=date(2025, 12, 31),
                         horizon_days=90, step_days=30, max_cutoffs=24)
    assert snap.as_of == date(2025, 12, 31)
    assert snap.cutoffs[-1] == snap.as_of and snap.cutoffs[0] >= date(2025, 1, 1)
    assert len(snap.cutoffs) == 13  # 360 days back: k = 0..12
    assert snap.labelled == snap.cutoffs[:-3]


def test_plan_for_stage_warns_when_as_of_is_after_the_data(caplog):
    cfg = {"as_of": "2026-01-31", "horizon_days": 90, "step_days": 30, "max_cutoffs": 6,
           "definition": "inactivity"}
    with caplog.at_level(logging.INFO, logger="test_plan"):
        snap = plan_for_stage(cfg, date(2025, 1, 1), date(2025, 12, 31),
                              logging.getLogger("test_plan"))
    assert snap.as_of == date(2026, 1, 31) and len(snap.cutoffs) == 6
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "after the last event/transaction day" in warnings[0].message
