"""Snapshot semantics: as_of, cutoffs, labelled cutoffs, history requirements."""

import logging
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnlens.errors import ChurnlensError, NotEnoughHistoryError
from churnlens.snapshot import (
    complete_as_of,
    feature_meta,
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


def test_labelled_cutoffs_follow_the_one_rule_in_labels(monkeypatch):
    """`labelled_cutoffs` asks `labels.is_labelled` (epoch days), the rule the feature SQL uses."""
    from churnlens import labels

    as_of = date(2025, 12, 31)
    cutoffs = list_cutoffs(as_of, 30, 6)
    asked = []

    def one_day_later(cutoff, day, horizon):
        asked.append((cutoff, day, horizon))
        return cutoff + horizon <= day - 1

    monkeypatch.setattr(labels, "is_labelled", one_day_later)
    assert labelled_cutoffs(cutoffs, as_of, 90)[-1] == as_of - timedelta(days=120)
    assert (to_epoch_day(as_of - timedelta(days=90)), to_epoch_day(as_of), 90) in asked


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


# --- the default as_of: where the data is complete (issue 12.5) ----------------------------------

def _daily(first: date, n_days: int, rows: int = 20, weekdays_only: bool = False):
    days = [first + timedelta(days=i) for i in range(n_days)]
    return [(d, rows) for d in days if not weekdays_only or d.weekday() < 5]


def test_complete_as_of_keeps_the_last_day_of_a_clean_log():
    daily = _daily(date(2024, 9, 1), 730)
    choice = complete_as_of(daily)
    assert choice.as_of == date(2026, 8, 31) and choice.tail_rows == choice.tail_days == 0
    # a purchase log with quiet weekends, ending on a Friday, and a light last day
    weekdays = _daily(date(2025, 1, 1), 200, weekdays_only=True)
    weekdays[-1] = (weekdays[-1][0], 1)
    assert complete_as_of(weekdays).as_of == weekdays[-1][0]


def test_complete_as_of_leaves_one_stray_row_60_days_later_after_as_of():
    daily = _daily(date(2025, 1, 1), 200)
    end = daily[-1][0]
    choice = complete_as_of([*daily, (end + timedelta(days=60), 1)])
    assert choice.as_of == end
    assert (choice.tail_rows, choice.tail_days) == (1, 1)
    assert choice.last_day == end + timedelta(days=60)
    assert complete_as_of([*daily, (date(2099, 1, 1), 3)]).as_of == end


def test_complete_as_of_on_tiny_samples():
    month = _daily(date(2025, 1, 1), 30, rows=1)
    assert complete_as_of([*month, (date(2025, 3, 31), 1)]).as_of == date(2025, 1, 30)
    # too few data days to know what a normal silence is: nothing is cut
    sparse = [(date(2025, 1, 1), 1), (date(2025, 2, 1), 1), (date(2025, 4, 1), 1)]
    assert complete_as_of(sparse).as_of == date(2025, 4, 1)
    ten = _daily(date(2025, 1, 1), 10, rows=1)
    assert complete_as_of([*ten, (date(2025, 3, 11), 1)]).as_of == date(2025, 3, 11)
    assert complete_as_of([(date(2025, 1, 1), 1)]).as_of == date(2025, 1, 1)
    with pytest.raises(ChurnlensError):
        complete_as_of([])


def test_complete_as_of_accepts_silences_the_log_had_before():
    # a 20-day break last winter: a 20-day break before the last days is normal, not a tail
    start = date(2025, 1, 1)
    daily = [d for d in _daily(start, 300) if not 100 <= (d[0] - start).days < 120]
    end = daily[-1][0]
    last = [(end + timedelta(days=20), 20)]
    assert complete_as_of([*daily, *last]).as_of == last[0][0]


def test_complete_as_of_never_cuts_more_than_the_thin_share():
    # a real last month after a long silence is too many rows to be a tail
    daily = _daily(date(2025, 1, 1), 100) + _daily(date(2025, 7, 1), 30)
    assert complete_as_of(daily).as_of == date(2025, 7, 30)


def test_plan_for_stage_with_a_thin_tail_warns_once_and_records_it(caplog):
    daily = [*_daily(date(2025, 1, 1), 200), (date(2025, 9, 18), 1)]
    cfg = {"as_of": None, "horizon_days": 90, "step_days": 30, "max_cutoffs": 6,
           "definition": "inactivity", "windows": [7, 30]}
    log = logging.getLogger("test_plan_tail")
    with caplog.at_level(logging.INFO, logger="test_plan_tail"):
        snap = plan_for_stage(cfg, date(2025, 1, 1), date(2025, 9, 18), log, daily_rows=daily,
                              last_timestamp="2025-09-18T08:00:00")
    assert snap.as_of == date(2025, 7, 19)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "1 rows on 1 days" in warnings[0] and "2025-09-18T08:00:00" in warnings[0]
    meta = feature_meta(snap, cfg, [], {}, 0, "duckdb", 0.0)
    assert meta["as_of"] == "2025-07-19"
    assert {k: meta[k] for k in ("as_of_rule", "tail_rows", "tail_days", "last_data_day",
                                 "last_timestamp")} == {
        "as_of_rule": "complete_data", "tail_rows": 1, "tail_days": 1,
        "last_data_day": "2025-09-18", "last_timestamp": "2025-09-18T08:00:00"}


def test_plan_for_stage_clean_log_no_tail_no_warning(caplog):
    daily = _daily(date(2025, 1, 1), 200)
    cfg = {"as_of": None, "horizon_days": 90, "step_days": 30, "max_cutoffs": 6,
           "definition": "inactivity"}
    with caplog.at_level(logging.INFO, logger="test_plan_clean"):
        snap = plan_for_stage(cfg, date(2025, 1, 1), daily[-1][0],
                              logging.getLogger("test_plan_clean"), daily_rows=daily)
    assert snap.as_of == daily[-1][0] and snap.tail_rows == 0
    assert snap.as_of_rule == "complete_data"
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_explicit_as_of_is_obeyed_despite_the_daily_counts():
    daily = [*_daily(date(2025, 1, 1), 200), (date(2025, 9, 18), 1)]
    snap = plan_snapshot(as_of="2025-09-18", first_day=date(2025, 1, 1),
                         last_day=date(2025, 9, 18), horizon_days=90, step_days=30,
                         max_cutoffs=6, daily_rows=daily)
    assert snap.as_of == date(2025, 9, 18) and snap.as_of_rule == "snapshot.as_of"
    assert snap.tail_rows == 0
    meta = feature_meta(snap, {"horizon_days": 90, "definition": "inactivity", "step_days": 30,
                               "windows": [7]}, [], {}, 0, "duckdb", 0.0)
    assert (meta["as_of_rule"], meta["tail_rows"], meta["last_timestamp"]) == (
        "snapshot.as_of", 0, None)


def test_features_stage_keeps_as_of_at_the_real_end(tmp_path):
    import pandas as pd

    from churnlens.io import read_json
    from churnlens.stages import features as stage

    interim = tmp_path / "data" / "interim"
    interim.mkdir(parents=True)
    ids = [f"c{i}" for i in range(6)]
    pd.DataFrame({"customer_id": ids, "signup_date": [date(2025, 1, 1)] * 6,
                  "segment": ["pro"] * 6, "country": ["DE"] * 6,
                  "cancel_date": pd.Series([None] * 6, dtype="datetime64[s]").dt.date,
                  }).to_parquet(interim / "customers.parquet")
    stamps = [datetime(2025, 1, 1, 12) + timedelta(days=d) for d in range(200)]
    tx = pd.DataFrame({"customer_id": [ids[d % 6] for d in range(200)] + ["c0"],
                       "timestamp": [*stamps, datetime(2025, 9, 18, 8)],
                       "amount": 10.0, "quantity": 1})
    tx["timestamp"] = tx["timestamp"].astype("datetime64[us]")
    tx.to_parquet(interim / "transactions.parquet")
    (tmp_path / "params.yaml").write_text(
        "snapshot: {as_of: null}\nlabel: {definition: inactivity, horizon_days: 90}\n"
        "features: {engine: duckdb, cutoff_step_days: 30, max_cutoffs: 6, windows: [7, 30],\n"
        "           inactivity_days: 30, memory_limit: 1GB, threads: 1}\n")
    stage.run(root=tmp_path)
    meta = read_json(tmp_path / "data/features/meta.json")
    assert meta["as_of"] == "2025-07-19"
    assert (meta["as_of_rule"], meta["tail_rows"], meta["tail_days"]) == ("complete_data", 1, 1)
    assert meta["last_timestamp"] == "2025-09-18T08:00:00"
