"""Properties of the synthetic data generator (`churnlens.generate`) and its stage."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import yaml

from churnlens.generate import (
    BAD_ROW_COUNTS,
    COLUMNS,
    TABLES,
    TRUTH_KEY,
    generate_dataset,
    iter_chunks,
)
from churnlens.sample_io import csv_body, write_csv_tables
from churnlens.stages.generate import run

START, END = "2024-09-01", "2026-08-31"
ID_PATTERN = r"^\d{6}$"
TIME_COLUMNS = {
    "transactions": ["timestamp"],
    "events": ["timestamp"],
    "tickets": ["opened_at", "closed_at"],
    "nps": ["timestamp"],
}


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    return generate_dataset(300, START, END, seed=3)


@pytest.fixture(scope="module")
def clean() -> dict[str, pd.DataFrame]:
    """Without bad rows, a bit larger, for the behavioural properties."""
    return generate_dataset(800, START, END, seed=5, bad_rows=False)


def _utc(values: pd.Series) -> pd.Series:
    """Parse ISO strings (naive = UTC, offsets converted) to naive UTC; bad ones become NaT."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    return parsed.dt.tz_localize(None)


def _csv(frame: pd.DataFrame) -> bytes:
    return (",".join(frame.columns) + "\n").encode() + bytes(csv_body(frame))


def test_same_seed_gives_identical_csv_and_other_seed_differs(data):
    again = generate_dataset(300, START, END, seed=3)
    other = generate_dataset(300, START, END, seed=4)
    for name in TABLES:
        assert _csv(again[name]) == _csv(data[name]), name
    assert _csv(other["events"]) != _csv(data["events"])


def test_columns_match_the_contract_and_truth_is_separate(data):
    assert set(data) == {*TABLES, TRUTH_KEY}
    for name in TABLES:
        assert list(data[name].columns) == COLUMNS[name]
    truth_only = set(data[TRUTH_KEY].columns) - {"customer_id", "segment"}
    for name in TABLES:
        assert not truth_only & set(data[name].columns)


def test_ids_are_zero_padded_strings(data):
    for name in TABLES:
        ids = data[name]["customer_id"].dropna()
        assert pd.api.types.is_string_dtype(ids)
        assert ids.str.fullmatch(ID_PATTERN).all(), name
    assert data["customers"]["customer_id"].iloc[0] == "000001"
    truth_ids = data[TRUTH_KEY]["customer_id"]
    assert truth_ids.tolist() == [f"{i:06d}" for i in range(1, 301)]


def test_ids_survive_a_csv_round_trip(data):
    back = pd.read_csv(io.BytesIO(_csv(data["customers"])), dtype=str)
    assert back["customer_id"].dropna().str.fullmatch(ID_PATTERN).all()
    assert back.shape == data["customers"].shape


def test_signups_within_range_and_growing(clean):
    signup = pd.to_datetime(clean["customers"]["signup_date"])
    assert signup.min() >= pd.Timestamp(START)
    assert signup.max() <= pd.Timestamp(END)
    midpoint = pd.Timestamp(START) + (pd.Timestamp(END) - pd.Timestamp(START)) / 2
    assert (signup >= midpoint).sum() > 1.2 * (signup < midpoint).sum()
    assert set(clean["customers"]["segment"].dropna()) == {"trial", "basic", "pro", "enterprise"}


def test_timestamps_are_iso_with_a_few_offsets(clean):
    stamps = clean["events"]["timestamp"]
    assert _utc(stamps).notna().all()
    with_offset = stamps.str.endswith("Z") | stamps.str.endswith("+01:00")
    assert 0 < with_offset.mean() < 0.02
    plus = stamps[stamps.str.endswith("+01:00")].iloc[0]
    assert _utc(pd.Series([plus])).iloc[0] == pd.Timestamp(plus[:19]) - pd.Timedelta(hours=1)


def test_churners_have_no_activity_from_their_churn_date(clean):
    truth = clean[TRUTH_KEY].set_index("customer_id")
    churn = truth["churn_date"]
    assert truth["churned"].sum() > 50
    for name, column in [
        ("events", "timestamp"),
        ("transactions", "timestamp"),
        ("nps", "timestamp"),
        ("tickets", "opened_at"),
    ]:
        frame = clean[name]
        when = _utc(frame[column])
        limit = churn.reindex(frame["customer_id"]).to_numpy()
        late = when.to_numpy() >= limit  # NaT (no churn) compares False
        assert not late.any(), name
    customers = clean["customers"].set_index("customer_id")
    cancelled = customers["cancel_date"].notna()
    assert (pd.to_datetime(customers.loc[cancelled, "cancel_date"]) == churn[cancelled]).all()
    assert truth.loc[cancelled.index[cancelled], "churned"].all()
    assert (truth["churn_kind"] == "silent").sum() > 0


def test_bad_rows_exist_and_are_few(data):
    clean = generate_dataset(300, START, END, seed=3, bad_rows=False)
    for name in TABLES:
        extra = len(data[name]) - len(clean[name])
        assert extra == BAD_ROW_COUNTS[name]
        assert 5 <= extra <= 15
        assert extra < 0.05 * len(data[name]) or name in ("tickets", "nps")
    known = set(clean["customers"]["customer_id"])
    customers = data["customers"]
    assert customers["customer_id"].dropna().duplicated().sum() == 2  # a conflict, a copy
    assert customers.duplicated().sum() == 1
    assert customers["customer_id"].isna().sum() == 1
    signup = pd.to_datetime(customers["signup_date"], errors="coerce", format="ISO8601")
    assert signup.isna().sum() == 3
    tx = data["transactions"]
    assert pd.to_numeric(tx["amount"], errors="coerce").isna().sum() == 3
    assert (~tx["customer_id"].dropna().isin(known)).sum() == 3
    assert _utc(tx["timestamp"]).isna().sum() == 2
    assert (data["nps"]["score"] == 11).sum() == 2
    assert _utc(data["events"]["timestamp"]).isna().sum() == 3
    # clean tables have none of it
    for name, columns in TIME_COLUMNS.items():
        for column in columns:
            values = clean[name][column].dropna()
            assert _utc(values).notna().all(), (name, column)
    assert clean["nps"]["score"].between(0, 10).all()
    assert clean["events"]["customer_id"].isin(known).all()


def test_refunds_exist(clean):
    amount = clean["transactions"]["amount"]
    refunds = amount < 0
    assert 0 < refunds.mean() < 0.05
    assert (amount > 0).mean() > 0.9


def test_emails_only_in_customers(data):
    emails = data["customers"]["email"]
    assert emails.notna().all()
    assert emails.str.fullmatch(r"[a-z0-9.]+@example\.(com|org)").all()
    assert data["customers"]["name"].notna().mean() > 0.9
    for name in [*TABLES[1:], TRUTH_KEY]:
        frame = data[name]
        assert not {"email", "name"} & set(frame.columns)
        for column in frame.columns:
            if pd.api.types.is_string_dtype(frame[column]) or frame[column].dtype == object:
                assert not frame[column].astype(str).str.contains("@").any(), (name, column)


def test_declining_customers_use_less_before_they_leave(clean):
    truth = clean[TRUTH_KEY]
    events = clean["events"].assign(day=_utc(clean["events"]["timestamp"]).dt.normalize())
    story = truth[
        truth["decline_story"]
        & truth["churned"]
        & (truth["churn_date"] - truth["story_start"] >= pd.Timedelta(days=60))
    ]
    assert len(story) >= 10
    ratios = []
    for row in story.itertuples():
        mine = events.loc[events["customer_id"] == row.customer_id, "day"]
        early = mine.between(row.story_start - pd.Timedelta(days=90), row.story_start, "left")
        late = mine.between(row.churn_date - pd.Timedelta(days=45), row.churn_date, "left")
        ratios.append((late.sum() / 45 + 1e-3) / (early.sum() / 90 + 1e-3))
    ratios = np.array(ratios)
    assert np.median(ratios) < 0.5
    assert (ratios < 1).mean() > 0.75


def test_usage_and_support_signals_predict_leaving(clean):
    """Churn is caused by behaviour: low recent usage and open tickets raise the churn rate."""
    truth = clean[TRUTH_KEY].set_index("customer_id")
    cutoff = pd.Timestamp("2026-03-01")
    customers = clean["customers"].set_index("customer_id")
    alive = (pd.to_datetime(customers["signup_date"]) <= cutoff - pd.Timedelta(days=60)) & ~(
        truth["churn_date"] <= cutoff
    )
    ids = alive.index[alive]
    days = _utc(clean["events"]["timestamp"])
    recent = clean["events"][(days > cutoff - pd.Timedelta(days=30)) & (days <= cutoff)]
    usage = recent.groupby("customer_id")["quantity"].sum().reindex(ids, fill_value=0)
    leaves = (truth.loc[ids, "churn_date"] <= cutoff + pd.Timedelta(days=90)).astype(float)
    low = usage <= usage.quantile(0.25)
    high = usage >= usage.quantile(0.75)
    assert leaves[low].mean() > 2 * leaves[high].mean()
    trials = truth[truth["segment"] == "trial"]
    assert trials.groupby("activated")["churned"].mean()[False] > 0.75
    assert trials.loc[trials["activated"], "converted"].mean() > 0.3


def test_tickets_have_open_ones_and_truth_counts_them(clean):
    tickets = clean["tickets"]
    still_open = tickets["closed_at"].isna()
    assert 0 < still_open.mean() < 0.3
    truth = clean[TRUTH_KEY].set_index("customer_id")
    counted = tickets[still_open].groupby("customer_id").size()
    assert (truth.loc[counted.index, "open_tickets"] == counted).all()
    assert truth["open_tickets"].sum() == still_open.sum()
    opened, closed = _utc(tickets["opened_at"]), _utc(tickets["closed_at"])
    assert (closed.dropna() >= opened[closed.notna()]).all()


def test_chunks_stream_independent_customers():
    chunks = list(iter_chunks(250, START, END, seed=9, chunk_size=100))
    assert [len(c[TRUTH_KEY]) for c in chunks] == [100, 100, 50]
    ids = pd.concat([c[TRUTH_KEY]["customer_id"] for c in chunks])
    assert ids.tolist() == [f"{i:06d}" for i in range(1, 251)]
    bad = [len(c["nps"][c["nps"]["score"] > 10]) for c in chunks]
    assert bad == [2, 0, 0]  # bad rows only once, in the first chunk


def test_stage_writes_tables_atomically_and_reproducibly(tmp_path):
    out_dir = tmp_path / "sample"
    params = tmp_path / "params.yaml"
    section = {"seed": 1, "n_customers": 150, "start_date": START, "end_date": END}
    params.write_text(yaml.safe_dump({"generate": {**section, "out_dir": str(out_dir)}}))
    run(params)
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == sorted(f"{name}.csv" for name in TABLES)
    first = {name: (out_dir / f"{name}.csv").read_bytes() for name in TABLES}
    run(params)
    for name in TABLES:
        assert (out_dir / f"{name}.csv").read_bytes() == first[name]
    expected = generate_dataset(150, START, END, seed=1)
    for name in TABLES:
        back = pd.read_csv(out_dir / f"{name}.csv", dtype=str, keep_default_na=False)
        assert list(back.columns) == COLUMNS[name]
        assert len(back) == len(expected[name])
    assert b"decline" not in b"".join(first.values())


def test_write_csv_tables_quotes_when_needed_and_streams(tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": ["000001", None, "00,3"],
            "timestamp": ["2025-01-01T00:00:00", 'say "hi"', ""],
            "amount": pd.Series([29.0, "abc", None], dtype=object),
            "quantity": pd.array([1, None, -2], dtype="Int64"),
        }
    )
    chunks = [{name: frame for name in TABLES}, {name: frame.iloc[:1] for name in TABLES}]
    rows = write_csv_tables(chunks, tmp_path)
    assert rows == dict.fromkeys(TABLES, 4)
    text = (tmp_path / "events.csv").read_text()
    assert text == (
        "customer_id,timestamp,amount,quantity\n"
        "000001,2025-01-01T00:00:00,29,1\n"
        ',"say ""hi""",abc,\n'
        '"00,3",,,-2\n'
        "000001,2025-01-01T00:00:00,29,1\n"
    )


def test_bad_params_are_user_errors(tmp_path):
    from churnlens.errors import ChurnlensError

    with pytest.raises(ChurnlensError):
        generate_dataset(10, END, START, seed=1)
    with pytest.raises(ChurnlensError):
        generate_dataset(0, START, END, seed=1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"generate": {"seed": 1}}))
    with pytest.raises(ChurnlensError, match="n_customers"):
        run(params)


# --- simulated outreach (generate.outreach_weeks > 0) -------------------------------------------


def _outreach_data(n=1500, weeks=6, share=0.3, seed=21):
    from churnlens.generate import OutreachSettings

    settings = OutreachSettings(weeks=weeks, horizon_days=90, holdout_share=share)
    return settings, generate_dataset(n, START, END, seed=seed, bad_rows=False, outreach=settings)


def test_outreach_is_off_by_default_and_changes_nothing(data):
    from churnlens.generate import OutreachSettings

    off = generate_dataset(300, START, END, seed=3, outreach=OutreachSettings(weeks=0))
    assert set(off) == set(data) == {*TABLES, TRUTH_KEY}
    for name in TABLES:
        assert _csv(off[name]) == _csv(data[name])


def test_simulated_outreach_contacts_the_treated_once_and_never_the_control():
    from churnlens.generate import INTERVENTION_COLUMNS, OUTREACH_KEY
    from churnlens.outreach import window_outcomes

    settings, frames = _outreach_data()
    truth, contacts = frames[OUTREACH_KEY], frames["interventions"]
    assert list(contacts.columns) == INTERVENTION_COLUMNS
    assert len(truth) > 200 and truth["holdout"].mean() == pytest.approx(0.3, abs=0.08)
    assert not truth["customer_id"].duplicated().any()  # listed at most once
    assert sorted(contacts["customer_id"]) == sorted(truth.loc[truth["treated"], "customer_id"])
    assert not set(contacts["customer_id"]) & set(truth.loc[truth["holdout"], "customer_id"])
    when = _utc(contacts["timestamp"]).dt.normalize()
    listed = pd.to_datetime(contacts["customer_id"].map(dict(zip(
        truth["customer_id"], truth["list_date"], strict=True))))
    assert ((when - listed).dt.days.between(1, 3)).all()
    assert (contacts["cost"] > 0).all() and set(contacts["channel"]) <= {"phone", "email"}
    # the outcome in the generated activity is the simulated one: Y1 if contacted, else Y0
    activity = pd.concat([frames[t][["customer_id", "timestamp"]]
                          for t in ("transactions", "events")], ignore_index=True)
    activity["timestamp"] = _utc(activity["timestamp"])
    seen = window_outcomes(truth.rename(columns={"list_date": "assigned"}),
                           horizon_days=90, activity=activity)
    assert seen["retained"].tolist() == truth["retained"].tolist()
    assert (truth["retained"] == truth["y1"].where(truth["treated"], truth["y0"])).all()
    assert set(truth["tau"]) <= {-1, 0, 1}
    assert (truth.loc[truth["subgroup"] == "open ticket", "tau"] <= 0).all()
    assert (truth.loc[truth["subgroup"] == "idle trial", "tau"] >= 0).all()


def test_stage_writes_interventions_and_the_truth_only_when_asked(tmp_path):
    import json

    from churnlens.errors import ChurnlensError

    out_dir = tmp_path / "sample"
    params = tmp_path / "params.yaml"
    section = {"seed": 1, "n_customers": 600, "start_date": START, "end_date": END,
               "out_dir": str(out_dir), "outreach_weeks": 4}
    params.write_text(yaml.safe_dump({"generate": section}))
    run(params)
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == sorted([*(f"{name}.csv" for name in TABLES), "interventions.csv",
                            "outreach_lists.csv", "true_effects.json"])
    effects = json.loads((out_dir / "true_effects.json").read_text())
    assert effects["weeks"] == 4 and len(effects["list_dates"]) <= 4
    assert {e["action"] for e in effects["effects"]} <= {
        "Onboarding call", "Reactivation campaign", "Discount offer"}
    lists = pd.read_csv(out_dir / "outreach_lists.csv", dtype=str)
    assert list(lists.columns) == ["list_date", "customer_id", "holdout", "action"]
    for bad in ({"outreach_weeks": -1}, {"outreach_weeks": 100}, {"outreach_weeks": 2,
                                                                  "outreach_holdout_share": 1}):
        params.write_text(yaml.safe_dump({"generate": {**section, **bad}}))
        with pytest.raises(ChurnlensError):
            run(params)
