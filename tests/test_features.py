"""Point-in-time features and labels (DuckDB over tiny hand-made interim Parquet files).

The tables are `feature_tables`; `fixture_paths` and `con` come from `conftest.py`. The same rows
on Spark: `test_spark.py`.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnlens.errors import ChurnlensError, NotEnoughHistoryError
from churnlens.features import ID_COLUMNS, compute_features, feature_columns, feature_names
from feature_tables import (
    AS_OF,
    BASE,
    CUSTOMERS,
    EVENTS,
    NPS,
    T1,
    T2,
    TICKETS,
    TRANSACTIONS,
    TS,
    WINDOWS,
    D,
    random_tables,
    write_interim,
)


def rows_by_key(df: pd.DataFrame) -> dict:
    return {(r["customer_id"], pd.Timestamp(r["cutoff"]).date()): r for _, r in df.iterrows()}


def test_hand_computed_features(fixture_paths):
    df = compute_features(fixture_paths, cutoffs=[T1, T2], as_of=AS_OF)
    rows = rows_by_key(df)
    assert sorted(rows) == sorted([("c1", T1), ("c2", T1), ("c1", T2), ("c2", T2), ("c3", T2)])
    assert list(df.columns) == [*ID_COLUMNS, *feature_names(WINDOWS)]
    assert feature_columns(df) == feature_names(WINDOWS)
    expected = {
        ("c1", T1): dict(
            events_7d=5, events_30d=5, events_90d=8, active_days_30d=4, active_days_90d=7,
            event_types_7d=2, event_types_90d=2, events_change_30d=5.0, days_since_last_event=0,
            purchases_30d=1, purchases_90d=2, refunds_30d=1, revenue_30d=20.0, revenue_90d=70.0,
            revenue_change_90d=70.0, days_since_last_purchase=3, days_since_last_activity=0,
            inactive_flag=0, tenure_days=89, is_trial=1, segment="Trial", days_to_first_event=2,
            events_first_14d=3, open_tickets=1, oldest_open_ticket_days=11, tickets_90d=2,
            last_nps=9, label=0),
        ("c2", T1): dict(
            events_7d=1, events_30d=1, events_90d=2, purchases_30d=0, purchases_90d=1,
            revenue_30d=0.0, days_since_last_purchase=30, days_since_last_event=0, tenure_days=44,
            segment="unknown", is_trial=0, days_to_first_event=5, events_first_14d=1,
            open_tickets=0, oldest_open_ticket_days=math.nan, tickets_90d=0, last_nps=math.nan,
            label=1),
        ("c1", T2): dict(
            events_7d=0, events_30d=0, events_90d=5, events_change_30d=-1.0,
            days_since_last_event=30, days_since_last_activity=30, inactive_flag=1,
            days_since_last_purchase=33, open_tickets=0, oldest_open_ticket_days=math.nan,
            tickets_90d=2, last_nps=3, tenure_days=119, events_first_14d=3, label=0),
        ("c2", T2): dict(open_tickets=1, oldest_open_ticket_days=2, tickets_90d=1, last_nps=6,
                         label=1),
        ("c3", T2): dict(
            tenure_days=10, events_first_14d=1, days_to_first_event=1, purchases_30d=1,
            revenue_30d=15.0, segment="pro", is_trial=0, days_since_last_activity=5,
            days_since_last_event=9, days_since_last_purchase=5, event_types_180d=1, label=1),
    }
    for key, values in expected.items():
        for column, value in values.items():
            got = rows[key][column]
            if isinstance(value, float) and math.isnan(value):
                assert pd.isna(got), (key, column, got)
            else:
                assert got == value, (key, column, got, value)


def test_labels_inactivity_edges(fixture_paths):
    df = compute_features(fixture_paths, cutoffs=[D("2025-03-30"), T1], as_of=AS_OF)
    rows = rows_by_key(df)
    # c1: only future activity is on T1 + 90 exactly -> counts -> not churned
    assert rows[("c1", T1)]["label"] == 0
    # c2: activity on T1 itself is not future activity -> churned at T1 ...
    assert rows[("c2", T1)]["label"] == 1
    # ... but it is future activity for the day before
    assert rows[("c2", D("2025-03-30"))]["label"] == 0


def test_labels_cancellation_edges(fixture_paths):
    # c4 cancels 2025-03-31: in (2024-12-31, 2025-03-31] but not in (2024-12-30, 2025-03-30]
    df = compute_features(fixture_paths, cutoffs=[D("2024-12-30"), D("2024-12-31"), T1, T2],
                          as_of=AS_OF, definition="cancellation")
    rows = rows_by_key(df)
    assert rows[("c4", D("2024-12-31"))]["label"] == 1
    assert rows[("c4", D("2024-12-30"))]["label"] == 0
    assert rows[("c2", T1)]["label"] == 1      # cancels 05-10, within (T1, T1 + 90]
    assert rows[("c1", T1)]["label"] == 0
    assert rows[("c2", T2)]["label"] == 1
    assert rows[("c3", T2)]["label"] == 0


def test_unlabelled_cutoffs_have_null_labels(fixture_paths):
    df = compute_features(fixture_paths, cutoffs=[T2, AS_OF], as_of=AS_OF)
    assert df.loc[df["cutoff"] == pd.Timestamp(AS_OF), "label"].isna().all()
    assert df.loc[df["cutoff"] == pd.Timestamp(T2), "label"].notna().all()


def test_population(fixture_paths):
    df = compute_features(fixture_paths, cutoffs=[D("2025-03-30"), T1, T2], as_of=AS_OF)
    members = df.groupby(df["cutoff"].dt.date)["customer_id"].apply(sorted).to_dict()
    assert members[D("2025-03-30")] == ["c1", "c2", "c4"]  # c4 cancels the next day
    assert members[T1] == ["c1", "c2"]                      # c4 cancelled on T1, c3 not signed up
    assert members[T2] == ["c1", "c2", "c3"]
    # deterministic order: (cutoff, customer_id)
    keys = list(zip(df["cutoff"], df["customer_id"], strict=True))
    assert keys == sorted(keys)


@pytest.mark.parametrize("missing_files", [False, True])
def test_purchase_only_log(tmp_path, missing_files):
    customers = [("a", D("2025-01-01"), None, None, None), ("b", D("2025-02-01"), None, None, None)]
    transactions = [("a", TS("2025-01-02"), 10.0, 1), ("b", TS("2025-03-01"), 5.0, None),
                    ("a", TS("2025-05-01"), 7.0, 1)]
    skip = ("events", "tickets", "nps") if missing_files else ()
    paths = write_interim(tmp_path, skip=skip, customers=customers, transactions=transactions)
    df = compute_features(paths, cutoffs=[D("2025-03-31"), D("2025-04-30")], as_of=D("2025-07-29"))
    assert len(df) == 4 and df["label"].notna().all()
    assert (df[[f"events_{w}d" for w in WINDOWS]] == 0).all().all()
    assert (df[[f"event_types_{w}d" for w in WINDOWS]] == 0).all().all()
    assert df["days_since_last_event"].isna().all() and df["last_nps"].isna().all()
    assert (df["open_tickets"] == 0).all() and (df["segment"] == "unknown").all()
    a = rows_by_key(df)[("a", D("2025-03-31"))]
    assert a["purchases_90d"] == 1 and a["days_since_last_activity"] == 88 and a["label"] == 0


def test_missing_required_table_is_a_user_error(tmp_path):
    paths = write_interim(tmp_path, skip=("transactions",), customers=CUSTOMERS)
    with pytest.raises(ChurnlensError, match="transactions"):
        compute_features(paths, cutoffs=[T1], as_of=AS_OF)


def test_bad_params_are_user_errors(fixture_paths):
    with pytest.raises(ChurnlensError, match="definition"):
        compute_features(fixture_paths, cutoffs=[T1], as_of=AS_OF, definition="vibes")
    with pytest.raises(ChurnlensError, match="windows"):
        compute_features(fixture_paths, cutoffs=[T1], as_of=AS_OF, windows=[0, 30])


def test_intermediate_tables_are_dropped(fixture_paths, con):
    compute_features(fixture_paths, cutoffs=[T1], as_of=AS_OF, con=con)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert tables == {"feature_rows"}


def test_windows_come_from_params_change_features_always_present(fixture_paths):
    df = compute_features(fixture_paths, cutoffs=[T1], as_of=AS_OF, windows=[14])
    assert "events_14d" in df and "events_30d" not in df
    c1 = rows_by_key(df)[("c1", T1)]
    assert c1["events_change_30d"] == 5.0 and c1["revenue_change_90d"] == 70.0


# --- lifetime (all-history) totals ---------------------------------------------------------------
LIFETIME = ("purchases_total", "purchase_days_total", "revenue_total", "active_days_total",
            "events_total", "days_since_first_purchase", "avg_days_between_purchases")


def test_lifetime_totals_hand_computed(tmp_path):
    """Cutoffs T1, T2: the earliest segment end is T1 - 180 = 2024-10-02, so customer a's 2024
    rows (two purchases on one day, a refund) are folded into the first segment: still counted."""
    customers = [("a", D("2024-01-01"), "pro", None, None),
                 ("b", D("2024-11-01"), None, None, None),
                 ("c", D("2025-04-01"), None, None, None)]       # signs up between T1 and T2
    transactions = [
        ("a", TS("2024-03-01 09:00"), 40.0, 1),    # before the earliest window ...
        ("a", TS("2024-03-01 17:00"), 10.0, 1),    # ... second purchase, same purchase day
        ("a", TS("2024-06-15"), -15.0, None),      # refund, before the earliest window
        ("a", TS("2025-03-11"), 25.5, 1),
        ("a", TS("2025-04-20"), 30.0, 1),          # between T1 and T2
        ("a", TS("2025-05-05"), 100.0, 1),         # after T2: never counted
        ("b", TS("2025-01-10"), -20.0, None),      # refund only: net revenue < 0, no purchase
        ("b", TS("2025-04-30 23:00"), 12.25, 1),   # on T2: visible at T2
    ]
    events = [("a", TS("2024-05-01"), "login", 3.0), ("a", TS("2025-03-11"), "login", 1.0),
              ("a", TS("2025-04-10"), "report", 2.0), ("a", TS("2025-06-01"), "login", 9.0),
              ("b", TS("2025-01-10"), "login", 1.0),   # same day as b's refund: one active day
              ("b", TS("2025-02-01"), "report", 4.0)]
    paths = write_interim(tmp_path, customers=customers, transactions=transactions, events=events)
    rows = rows_by_key(compute_features(paths, cutoffs=[T1, T2], as_of=AS_OF))
    assert sorted(rows) == sorted([("a", T1), ("b", T1), ("a", T2), ("b", T2), ("c", T2)])
    nan = math.nan
    expected = {  # purchases, purchase days, revenue, active days, events, since first, avg gap
        # a at T1: purchase days 2024-03-01, 2025-03-11 (375 days apart); T1 - 2024-03-01 = 395
        ("a", T1): (3, 2, 60.5, 4, 4, 395, 375.0),
        # a at T2: + 2025-04-20 (415 days after the first) and the 2025-04-10 event
        ("a", T2): (4, 3, 90.5, 6, 6, 425, 207.5),
        ("b", T1): (0, 0, -20.0, 2, 5, nan, nan),
        ("b", T2): (1, 1, -7.75, 3, 5, 0, nan),   # one purchase day: no gap yet
        ("c", T2): (0, 0, 0.0, 0, 0, nan, nan),
    }
    for key, values in expected.items():
        for column, value in zip(LIFETIME, values, strict=True):
            got = rows[key][column]
            if isinstance(value, float) and math.isnan(value):
                assert pd.isna(got), (key, column, got)
            else:
                assert got == value, (key, column, got, value)


# --- random data: one pass == per cutoff, and no feature looks past its cutoff -------------------
def perturb_after(tables: dict, cutoff: date, rng: random.Random) -> dict:
    """Alter, drop and add rows dated after `cutoff`; rows on or before it stay as they are."""
    after = lambda t: (t.date() if isinstance(t, datetime) else t) > cutoff  # noqa: E731
    fresh = random_tables(rng, n_customers=7)   # ids 000..006: 005/006 are new customers

    def future_ts():
        return datetime.combine(cutoff, datetime.min.time()) + timedelta(
            days=rng.randint(1, 120), seconds=rng.randint(0, 86399))

    out = {}
    out["customers"] = []
    for cid, signup, segment, country, cancel in tables["customers"]:
        if cancel is not None and after(cancel) or cancel is None:
            cancel = rng.choice([None, cutoff + timedelta(days=rng.randint(1, 100))])
        if after(signup):
            signup = cutoff + timedelta(days=rng.randint(1, 30))
        out["customers"].append((cid, signup, segment, country, cancel))
    out["customers"] += [(c[0], cutoff + timedelta(days=rng.randint(1, 30)), *c[2:4], None)
                         for c in fresh["customers"] if c[0] in ("005", "006")]
    for name in ("events", "transactions", "nps"):
        kept = [r for r in tables[name] if not after(r[1])]
        changed = [(r[0], future_ts(), *r[2:]) for r in tables[name] if after(r[1])]
        added = [(r[0], future_ts(), *r[2:]) for r in fresh[name]]
        out[name] = kept + changed[: len(changed) // 2] + added
    tickets = []
    for cid, opened, closed, prio in tables["tickets"]:
        if after(opened):
            continue
        if closed is None or after(closed):
            closed = rng.choice([None, future_ts()])
        tickets.append((cid, opened, closed, prio))
    tickets += [(r[0], future_ts(), rng.choice([None, future_ts()]), None)
                for r in fresh["tickets"]]
    out["tickets"] = tickets
    return out


def assert_same_features(a: pd.DataFrame, b: pd.DataFrame) -> None:
    cols = ["customer_id", "cutoff", *feature_columns(a)]
    cols.remove("label") if "label" in cols else None
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), cutoff_day=st.integers(20, 220))
def test_no_feature_sees_rows_after_its_cutoff(tmp_path_factory, con, seed, cutoff_day):
    """Alter/add/drop rows dated after t: every feature at t (and earlier cutoffs) is unchanged."""
    rng = random.Random(seed)
    cutoff = BASE + timedelta(days=cutoff_day)
    cutoffs = [cutoff - timedelta(days=45), cutoff]
    as_of = BASE + timedelta(days=400)  # fixed, so only the rows change
    tables = random_tables(rng)
    folder = tmp_path_factory.mktemp("pit")
    before = compute_features(write_interim(folder / "a", **tables), cutoffs=cutoffs,
                              as_of=as_of, con=con)
    altered = perturb_after(tables, cutoff, rng)
    after = compute_features(write_interim(folder / "b", **altered), cutoffs=cutoffs,
                             as_of=as_of, con=con)
    assert len(before) > 0 or len(after) == 0
    assert_same_features(before, after)


@pytest.mark.parametrize("seed", [1, 2])
def test_one_pass_equals_each_cutoff_alone(tmp_path, con, seed):
    rng = random.Random(seed)
    paths = write_interim(tmp_path, **random_tables(rng, n_customers=8, n_rows=80))
    as_of = BASE + timedelta(days=240)
    cutoffs = [as_of - timedelta(days=40 * k) for k in range(5, -1, -1)]
    together = compute_features(paths, cutoffs=cutoffs, as_of=as_of, con=con)
    alone = pd.concat([compute_features(paths, cutoffs=[c], as_of=as_of, con=con)
                       for c in cutoffs], ignore_index=True)
    pd.testing.assert_frame_equal(together, alone)
    assert together["label"].notna().sum() > 0


def reference_row(tables: dict, cid: str, t: date, horizon: int, signup: date) -> dict:
    """Naive per-customer computation of the lifetime features and the inactivity label."""
    ev = [r[1].date() for r in tables["events"] if r[0] == cid]
    tx = [(r[1].date(), r[2]) for r in tables["transactions"] if r[0] == cid]
    act = ev + [d for d, _ in tx]
    seen_ev = [d for d in ev if d <= t]
    seen_act = [d for d in act if d <= t]
    purchases = [d for d, amount in tx if d <= t and amount > 0]
    purchase_days = sorted(set(purchases))
    first14 = sum(r[3] for r in tables["events"] if r[0] == cid and r[1].date() <= t
                  and 0 <= (r[1].date() - signup).days < 14)
    nan = math.nan
    return {
        "days_since_last_event": (t - max(seen_ev)).days if seen_ev else nan,
        "days_to_first_event": (min(seen_ev) - signup).days if seen_ev else nan,
        "days_since_last_purchase": (t - max(purchases)).days if purchases else nan,
        "days_since_last_activity": (t - max(seen_act, default=signup)).days,
        "events_first_14d": first14,
        "active_days_30d": len({d for d in seen_act if (t - d).days < 30}),
        "label": int(not any(t < d <= t + timedelta(days=horizon) for d in act)),
        "purchases_total": len(purchases),
        "purchase_days_total": len(purchase_days),
        "revenue_total": round(sum(amount for d, amount in tx if d <= t), 6),
        "active_days_total": len(set(seen_act)),
        "events_total": sum(r[3] for r in tables["events"] if r[0] == cid and r[1].date() <= t),
        "days_since_first_purchase": (t - purchase_days[0]).days if purchases else nan,
        "avg_days_between_purchases": ((purchase_days[-1] - purchase_days[0]).days
                                       / (len(purchase_days) - 1)
                                       if len(purchase_days) > 1 else nan),
    }


@pytest.mark.parametrize("seed", [4, 5])
def test_lifetime_features_match_a_naive_reference(tmp_path, seed):
    rng = random.Random(seed)
    tables = random_tables(rng, n_customers=6, n_rows=60)
    as_of = BASE + timedelta(days=240)
    cutoffs = [as_of - timedelta(days=30 * k) for k in range(8, 2, -1)]
    df = compute_features(write_interim(tmp_path, **tables), cutoffs=cutoffs, as_of=as_of)
    signup = {c[0]: c[1] for c in tables["customers"]}
    assert len(df) > 10
    for _, row in df.iterrows():
        t = row["cutoff"].date()
        want = reference_row(tables, row["customer_id"], t, 90, signup[row["customer_id"]])
        for column, value in want.items():
            if isinstance(value, float) and math.isnan(value):
                assert pd.isna(row[column]), (row["customer_id"], t, column)
            else:
                assert row[column] == value, (row["customer_id"], t, column, row[column], value)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), cutoff_day=st.integers(300, 650))
def test_lifetime_totals_see_all_history_and_nothing_after(tmp_path_factory, con, seed,
                                                           cutoff_day):
    """Two years of rows, cutoffs late in them: many rows lie before the earliest window (folded
    into the first segment). The totals equal a naive count of every row on or before t; altering,
    adding or dropping rows after t changes no feature at t or before."""
    rng = random.Random(seed)
    cutoff = BASE + timedelta(days=cutoff_day)
    cutoffs = [cutoff - timedelta(days=45), cutoff]
    as_of = BASE + timedelta(days=800)
    tables = random_tables(rng, n_customers=5, n_rows=60, days=700)
    folder = tmp_path_factory.mktemp("lifetime")
    before = compute_features(write_interim(folder / "a", **tables), cutoffs=cutoffs,
                              as_of=as_of, con=con)
    signup = {c[0]: c[1] for c in tables["customers"]}
    for _, row in before.iterrows():
        t = row["cutoff"].date()
        want = reference_row(tables, row["customer_id"], t, 90, signup[row["customer_id"]])
        for column in LIFETIME:
            if isinstance(want[column], float) and math.isnan(want[column]):
                assert pd.isna(row[column]), (row["customer_id"], t, column)
            else:
                assert row[column] == want[column], (row["customer_id"], t, column,
                                                     row[column], want[column])
    after = compute_features(write_interim(folder / "b", **perturb_after(tables, cutoff, rng)),
                             cutoffs=cutoffs, as_of=as_of, con=con)
    assert_same_features(before, after)


# --- the stage -----------------------------------------------------------------------------------
PARAMS = """
snapshot: {as_of: null}
label: {definition: inactivity, horizon_days: 90}
features: {engine: duckdb, cutoff_step_days: 30, max_cutoffs: 24, windows: [7, 30, 90, 180],
           inactivity_days: 30, memory_limit: 1GB, threads: 1}
"""


def test_stage_writes_training_scoring_and_meta(tmp_path):
    from churnlens.io import read_json
    from churnlens.stages import features as stage

    write_interim(tmp_path / "data" / "interim", customers=CUSTOMERS, events=EVENTS,
                  transactions=TRANSACTIONS, tickets=TICKETS, nps=NPS)
    (tmp_path / "params.yaml").write_text(PARAMS)
    stage.run(root=tmp_path)  # the project folder; not the working directory

    meta = read_json(tmp_path / "data/features/meta.json")
    training = pd.read_parquet(tmp_path / "data/features/training.parquet")
    scoring = pd.read_parquet(tmp_path / "data/features/scoring.parquet")
    assert meta["as_of"] == "2025-06-29"  # the last event
    assert meta["labelled_cutoffs"][-1] == "2025-03-31"
    assert meta["feature_columns"] == feature_names(WINDOWS)
    assert meta["n_training_rows"] == len(training) and meta["n_scoring_rows"] == len(scoring)
    assert set(meta["churn_rate"]) == set(meta["labelled_cutoffs"]) & set(meta["rows_per_cutoff"])
    assert list(training.columns) == [*ID_COLUMNS, *feature_names(WINDOWS)]
    assert "label" not in scoring.columns and training["label"].notna().all()
    assert sorted(scoring["customer_id"]) == ["c1", "c3"]   # c2 cancelled 05-10, c4 03-31
    assert not any(p.name.startswith(".") for p in (tmp_path / "data" / "features").iterdir())


def test_stage_rejects_an_engine_it_does_not_have(tmp_path):
    from churnlens.stages import features as stage

    (tmp_path / "params.yaml").write_text(PARAMS.replace("engine: duckdb", "engine: polars"))
    with pytest.raises(ChurnlensError, match="engine"):
        stage.run(tmp_path / "params.yaml", root=tmp_path)


def test_stage_not_enough_history(tmp_path):
    from churnlens.stages import features as stage

    write_interim(tmp_path / "data" / "interim", customers=[("a", D("2025-05-01"), None, None,
                                                             None)],
                  transactions=[("a", TS("2025-06-01"), 1.0, 1)])
    (tmp_path / "params.yaml").write_text(PARAMS)
    with pytest.raises(NotEnoughHistoryError, match="90 days"):
        stage.run(root=tmp_path)


def test_more_event_types_than_one_bit_mask_holds(tmp_path, con):
    """150 types need three 62-bit masks; each window still counts every distinct type once."""
    start = D("2025-01-01")
    events = [("c1", datetime.combine(start + timedelta(days=i % 200), datetime.min.time()),
               f"type_{i:03d}", 1.0) for i in range(150)]
    events += [("c1", TS("2025-07-15"), "type_149", 1.0), ("c1", TS("2025-07-15"), None, 1.0)]
    paths = write_interim(tmp_path, customers=[("c1", D("2024-12-01"), "pro", None, None)],
                          events=events)
    cutoff = D("2025-07-19")
    rows = compute_features(paths, cutoffs=[cutoff], as_of=cutoff, con=con)
    for w in WINDOWS:
        lo = cutoff - timedelta(days=w)
        want = len({t for _, ts, t, _ in events if t is not None and lo < ts.date() <= cutoff})
        assert rows[f"event_types_{w}d"].iloc[0] == want, w
    assert rows["event_types_180d"].iloc[0] > 62  # spans more than one mask
