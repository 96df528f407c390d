"""End-to-end safety tests: the whole pipeline, in-process, on a small generated sample.

Each fixture below is one pipeline run in its own temporary folder (see `pipeline_helpers.py`);
the tests only read its outputs. Runs:

* `sample_run`    (conftest, one per session, shared with test_model_behaviour and
                  test_score_logs) generate (400 customers) -> ... -> report: the repo's
                  params.yaml with a small sample, faster boosting (FAST_TRAIN) and the model
                  registered in MLflow
* `injected_run`  the same raw sample with hostile strings in names, e-mails, segments, events
* `purchase_run`  the same sample reduced to customers(id, signup) + transactions
* `pseudo_run`    (slow) the same raw sample with `privacy.pseudonymise_ids: true`
* a second run from scratch (slow), for byte-identical outputs

The first run of a session pays the imports (~20-30 s); every further run takes ~5-15 s
(idle vs busy machine). `pipeline_helpers` copies one migrated MLflow database into each run.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path

import markupsafe
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from churnlens.errors import ChurnlensError, NotEnoughHistoryError
from pipeline_helpers import (
    FAST_TRAIN,
    REPO,
    SALT,
    PipelineRun,
    copy_outputs,
    copy_raw,
    invoke_cli,
    new_run,
    run_pipeline,
    run_stages,
    small_params,
    tree_digest,
)

TABLES = ("customers", "transactions", "events", "tickets", "nps")
SCORE_COLUMNS = ("customer_id", "churn_probability", "risk_tier", "expected_revenue_at_risk",
                 "reason_1", "reason_2", "reason_3")
AT_RISK_COLUMNS = ["rank", "customer_id", "segment", "churn_probability",
                   "expected_revenue_at_risk", "risk_tier", "reasons", "suggested_action",
                   "contact"]
METRIC_KEYS = {"roc_auc", "pr_auc", "brier", "log_loss", "ece", "top_decile_precision",
               "top_decile_lift"}
KPI_KEYS = {"customers_start", "customers_end", "new", "lost", "crr", "churn_rate", "ndr", "grr",
            "rpr", "clv", "nps"}
# these runs test plumbing, not the model: fewer boosting rounds (~3x faster train stage)
AUX = {**FAST_TRAIN, "train.register_model": False}  # runs whose MLflow store nobody reads
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PAYLOADS = json.loads((Path(__file__).parent / "data" / "injection" / "payloads.json")
                      .read_text(encoding="utf-8"))
SOURCE_TEXT = "\n".join(p.read_text(encoding="utf-8")
                        for p in sorted((REPO / "src" / "churnlens").rglob("*.py")))


# ------------------------------------------------------------------------------ shared helpers
def read_raw(run: PipelineRun, table: str) -> pd.DataFrame:
    return pd.read_csv(run.raw_dir / f"{table}.csv", dtype=str, keep_default_na=False,
                       encoding="utf-8-sig")


def write_raw(frame: pd.DataFrame, raw_dir: Path, table: str) -> None:
    frame.to_csv(raw_dir / f"{table}.csv", index=False)


def read_at_risk(run: PipelineRun, name: str = "at_risk.csv") -> list[dict[str, str]]:
    text = (run / "reports" / name).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def read_win_back(run: PipelineRun) -> list[dict[str, str]]:
    return read_at_risk(run, "win_back.csv")


def string_values(path: Path) -> set[str]:
    """The column names and every distinct value of every string (or dictionary-of-string)
    column of a Parquet file."""
    table = pq.read_table(path)
    values: set[str] = set(table.column_names)
    for column in table.columns:
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values.update(v for v in pc.unique(column).to_pylist() if v is not None)
    return values


def stage_cli(monkeypatch, run: PipelineRun, *args: str) -> tuple[int, str]:
    """`churnlens ARGS` through the Typer app (the console-script path) inside `run.root`."""
    monkeypatch.chdir(run.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
    for key, value in run.env.items():
        monkeypatch.setenv(key, value)
    code, _, stderr = invoke_cli(*args)
    return code, stderr


# ------------------------------------------------------------------------------ pipeline runs
@pytest.fixture(scope="module")
def injected_run(tmp_path_factory, sample_run) -> PipelineRun:
    listed = [row["customer_id"] for row in read_at_risk(sample_run)]
    targets = listed[: len(PAYLOADS["customers"])]
    assert len(targets) == len(PAYLOADS["customers"]), "the clean at-risk list is too short"

    def inject(raw_dir: Path) -> None:
        customers = pd.read_csv(raw_dir / "customers.csv", dtype=str, keep_default_na=False)
        for cid, payload in zip(targets, PAYLOADS["customers"], strict=True):
            row = customers["customer_id"] == cid
            for column in ("name", "email", "segment"):
                if column in payload:
                    customers.loc[row, column] = payload[column]
        # a segment held by a handful of customers is generalised to "other" (it may be a
        # name); give each injected segment to six more customers so it reaches the outputs
        others = customers.index[~customers["customer_id"].isin(targets)]
        segments = [p["segment"] for p in PAYLOADS["customers"] if "segment" in p]
        for i, segment in enumerate(segments):
            customers.loc[others[6 * i: 6 * i + 6], "segment"] = segment
        write_raw(customers, raw_dir, "customers")
        events = pd.read_csv(raw_dir / "events.csv", dtype=str, keep_default_na=False)
        chosen = events.index[events["customer_id"].isin(targets)][::2]
        events.loc[chosen, "event_type"] = PAYLOADS["event_type"]
        write_raw(events, raw_dir, "events")

    run = run_pipeline(tmp_path_factory.mktemp("injected"), raw_from=sample_run.raw_dir,
                       raw_hook=inject, overrides=AUX)
    run.targets = targets  # type: ignore[attr-defined]
    return run


def purchase_only(raw_dir: Path) -> None:
    """customers(customer_id, signup_date) + transactions(customer_id, timestamp, amount)."""
    customers = pd.read_csv(raw_dir / "customers.csv", dtype=str, keep_default_na=False)
    write_raw(customers[["customer_id", "signup_date"]], raw_dir, "customers")
    transactions = pd.read_csv(raw_dir / "transactions.csv", dtype=str, keep_default_na=False)
    write_raw(transactions[["customer_id", "timestamp", "amount"]], raw_dir, "transactions")
    for table in ("events", "tickets", "nps"):
        (raw_dir / f"{table}.csv").unlink()


@pytest.fixture(scope="module")
def purchase_run(tmp_path_factory, sample_run) -> PipelineRun:
    return run_pipeline(tmp_path_factory.mktemp("purchase_only"), raw_from=sample_run.raw_dir,
                        raw_hook=purchase_only, overrides=AUX)


# ================================================================ 1. whole pipeline, all outputs
def declared_outputs() -> list[str]:
    """Every outs/metrics/plots path of dvc.yaml (except the templated sample folder)."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    found = []
    for stage in spec["stages"].values():
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key) or []:
                path = entry if isinstance(entry, str) else next(iter(entry))
                if "${" not in path:
                    found.append(path)
    return found


def declared_plots() -> dict[str, set[str]]:
    """CSV plot file -> the x/y columns the top-level `plots` of dvc.yaml need."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    needed: dict[str, set[str]] = {}
    for item in spec.get("plots") or []:
        (_, plot), = item.items()
        for path, y in plot["y"].items():
            columns = {plot["x"], *([y] if isinstance(y, str) else y)}
            needed.setdefault(path, set()).update(columns)
    return needed


def check_all_outputs(run: PipelineRun) -> dict:
    """The DESIGN.md outputs of `run` exist with their columns; returns the parsed JSONs."""
    missing = [p for p in declared_outputs() if not (run / p).exists()]
    assert missing == [], f"outputs declared in dvc.yaml are missing: {missing}"

    scores = pd.read_parquet(run / "reports/scores.parquet")
    scoring = pd.read_parquet(run / "data/features/scoring.parquet")
    assert set(SCORE_COLUMNS) <= set(scores.columns)
    assert len(scores) == len(scoring) > 0
    assert scores["customer_id"].is_unique
    assert set(scores["customer_id"]) == set(scoring["customer_id"])
    assert scores["churn_probability"].between(0, 1).all()
    assert (scores["expected_revenue_at_risk"] >= 0).all()
    assert set(scores["risk_tier"]) <= set(run.params["score"]["tiers"])

    at_risk = pd.read_csv(run / "reports/at_risk.csv", encoding="utf-8-sig", dtype=str,
                          keep_default_na=False)
    assert list(at_risk.columns) == AT_RISK_COLUMNS
    assert 0 < len(at_risk) <= run.params["export"]["top_n"]
    assert at_risk["rank"].astype(int).tolist() == list(range(1, len(at_risk) + 1))
    erar = at_risk["expected_revenue_at_risk"].astype(float)
    assert erar.is_monotonic_decreasing
    assert set(at_risk["risk_tier"]) <= set(run.params["export"]["tiers"])
    assert (at_risk["reasons"] != "").all() and (at_risk["suggested_action"] != "").all()

    win_back = pd.read_csv(run / "reports/win_back.csv", encoding="utf-8-sig", dtype=str,
                           keep_default_na=False)
    assert list(win_back.columns) == AT_RISK_COLUMNS
    assert len(win_back) <= run.params["export"]["top_n"]
    assert win_back["rank"].astype(int).tolist() == list(range(1, len(win_back) + 1))
    assert win_back["expected_revenue_at_risk"].astype(float).is_monotonic_decreasing
    assert (win_back["reasons"] != "").all() and (win_back["suggested_action"] != "").all()
    assert not set(win_back["customer_id"]) & set(at_risk["customer_id"])

    kpis = json.loads((run / "reports/kpis.json").read_text())
    assert {"period", "current", "previous", "by_segment", "cohorts"} <= set(kpis)
    assert {"start", "end"} <= set(kpis["period"])
    assert kpis["by_segment"]
    for name, figures in [("current", kpis["current"]), ("previous", kpis["previous"]),
                          *kpis["by_segment"].items()]:
        assert KPI_KEYS <= set(figures), name
    assert all({"cohort", "size", "retention"} <= set(c) for c in kpis["cohorts"])

    metrics = json.loads((run / "reports/metrics.json").read_text())
    assert {"test_cutoff", "n_test", "churn_rate", "model", "baselines"} <= set(metrics)
    assert METRIC_KEYS <= set(metrics["model"])
    assert {"recency", "logistic"} <= set(metrics["baselines"])
    assert all(METRIC_KEYS <= set(b) for b in metrics["baselines"].values())

    page = (run / "reports/weekly_report.html").read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|@import|url\(\s*["']?"""
                          r"""\s*(?:https?:)?//""", page, flags=re.I)
    assert external == [], "the weekly report loads something from outside"

    for path, columns in declared_plots().items():
        assert columns <= set(pd.read_csv(run / path).columns), path
    for png in (run / "reports/plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png

    validation = json.loads((run / "data/interim/validation.json").read_text())
    assert set(TABLES) <= set(validation)
    for table in TABLES:
        rep = validation[table]
        assert rep["rows_in"] == rep["rows_accepted"] + rep["rows_quarantined"], table
        assert sum(rep["reasons"].values()) == rep["rows_quarantined"], table
        assert pq.read_metadata(run / f"data/interim/{table}.parquet").num_rows \
            == rep["rows_accepted"], table
        quarantined = pq.read_table(run / f"data/interim/quarantine/{table}.parquet")
        assert quarantined.num_rows == rep["rows_quarantined"], table
        assert "reason" in quarantined.column_names
    return {"kpis": kpis, "metrics": metrics, "validation": validation}


def test_whole_pipeline_writes_every_output(sample_run):
    out = check_all_outputs(sample_run)
    raw_rows = {t: len(read_raw(sample_run, t)) for t in TABLES}
    assert {t: out["validation"][t]["rows_in"] for t in TABLES} == raw_rows
    assert sum(out["validation"][t]["rows_quarantined"] for t in TABLES) > 0  # generator's bad rows
    assert out["metrics"]["model"]["roc_auc"] > 0.6  # the model learned something
    meta = json.loads((sample_run / "data/features/meta.json").read_text())
    assert len(meta["labelled_cutoffs"]) >= 11


def test_saved_model_loads_and_scores_the_scoring_rows(sample_run):
    import mlflow.pyfunc

    from churnlens.packaging import feature_columns_of, to_model_input

    model_dir = sample_run / "models/churn_model"
    model = mlflow.pyfunc.load_model(str(model_dir))
    rows = pd.read_parquet(sample_run / "data/features/scoring.parquet")
    predicted = model.predict(to_model_input(rows, feature_columns_of(model_dir)))
    assert list(predicted.columns) == ["churn_probability"] and len(predicted) == len(rows)
    stored = pd.read_parquet(sample_run / "data/processed/predictions.parquet")
    assert stored["customer_id"].tolist() == rows["customer_id"].tolist()
    assert (predicted["churn_probability"].to_numpy()
            == pytest.approx(stored["churn_probability"].to_numpy(), abs=1e-12))


def test_saved_model_accepts_feature_rows_as_written(sample_run):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(sample_run / "models/churn_model"))
    rows = pd.read_parquet(sample_run / "data/features/scoring.parquet")
    stored = pd.read_parquet(sample_run / "data/processed/predictions.parquet")
    assert stored["customer_id"].tolist() == rows["customer_id"].tolist()
    np.testing.assert_allclose(model.predict(rows)["churn_probability"].to_numpy(),
                               stored["churn_probability"].to_numpy(), rtol=0, atol=1e-12)


def test_model_registered_in_the_runs_own_store(sample_run):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=sample_run.tracking_uri,
                          registry_uri=sample_run.tracking_uri)
    promotion = json.loads((sample_run / "reports/promotion.json").read_text())
    assert promotion["registered"] is True and promotion["is_champion"] is True
    champion = client.get_model_version_by_alias(promotion["registered_model"], "champion")
    assert champion.run_id == promotion["run_id"]
    assert client.get_run(promotion["run_id"]).data.metrics["model.roc_auc"] == pytest.approx(
        json.loads((sample_run / "reports/metrics.json").read_text())["model"]["roc_auc"])


def test_metrics_report_every_customer_and_the_active_ones_and_the_gate(sample_run):
    """Lapsed customers are modelled too; metrics.json splits the test slice by population, says
    which scorer ships, and the weekly report's model card repeats the gate's sentence."""
    metrics = json.loads((sample_run / "reports/metrics.json").read_text())
    test = pd.read_parquet(sample_run / "data/features/training.parquet")
    test = test[pd.to_datetime(test["cutoff"]).dt.date.astype(str) == metrics["test_cutoff"]]
    lapsed = test["days_since_last_activity"] >= 90
    assert lapsed.any() and metrics["n_test"] == len(test)  # lapsed customers are in the test
    populations = metrics["populations"]
    assert populations["all"]["n"] == len(test)
    assert populations["active"]["n"] == int((~lapsed).sum())
    assert populations["active"]["churn_rate"] == pytest.approx(test.loc[~lapsed, "label"].mean())
    assert METRIC_KEYS <= set(populations["active"]["model"])
    gate = metrics["gate"]
    assert gate["shipped"] in ("lightgbm", "logistic", "blend")
    summary = json.loads((sample_run / "reports/train_summary.json").read_text())
    assert summary["scorer"] == gate["shipped"]
    assert summary["shipped_rows"] > metrics["slices"]["train"]["rows"] + metrics["n_test"] - 1
    page = (sample_run / "reports/weekly_report.html").read_text(encoding="utf-8")
    card = page[page.index('id="model"'):]
    assert html.escape(gate["summary"], quote=False) in card
    assert f"{populations['active']['n']:,} test customers who were still active" in card


# ================================================================ 1b. at-risk vs win-back lists
OPEN_TICKET_ACTION = "Resolve the open support ticket first; no promotion"


def lapsed_truth(run: PipelineRun) -> pd.DataFrame:
    """Per scored customer, from the feature rows (not the scores): lapsed or not, and the
    win-back value (revenue per horizon over the active life seen, at least one horizon)."""
    horizon = float(run.params["label"]["horizon_days"])
    rows = pd.read_parquet(run / "data/features/scoring.parquet")
    days, tenure = rows["days_since_last_activity"], rows["tenure_days"]
    lapsed = ~((days < horizon) | (days.isna() & (tenure < horizon)))
    if "revenue_total" in rows:
        revenue, seen = rows["revenue_total"], tenure
    else:
        longest = max(int(c[8:-1]) for c in rows if re.fullmatch(r"revenue_\d+d", c))
        revenue, seen = rows[f"revenue_{longest}d"], tenure.clip(upper=longest)
    span = (seen - days.fillna(0)).fillna(horizon).clip(lower=horizon)
    value = revenue.fillna(0).clip(lower=0) * horizon / span
    return pd.DataFrame({"customer_id": rows["customer_id"].astype(str),
                         "lapsed": lapsed.to_numpy(bool), "value": value.to_numpy()})


def test_lapsed_customers_leave_the_at_risk_list_for_the_win_back_list(sample_run):
    truth = lapsed_truth(sample_run).set_index("customer_id")
    scores = pd.read_parquet(sample_run / "reports/scores.parquet").set_index("customer_id")
    assert (scores["active"] == ~truth.loc[scores.index, "lapsed"]).all()
    lapsed = set(truth.index[truth["lapsed"]])
    top_n, tiers = sample_run.params["export"]["top_n"], sample_run.params["export"]["tiers"]
    # the case that matters: lapsed customers the model rates high risk (nothing left at risk)
    assert scores.loc[sorted(lapsed), "risk_tier"].isin(tiers).sum() > 10

    at_risk = [r["customer_id"] for r in read_at_risk(sample_run)]
    win_back = [r["customer_id"] for r in read_win_back(sample_run)]
    assert at_risk and win_back
    assert not set(at_risk) & lapsed
    assert set(win_back) <= lapsed
    # counts add up: every scored customer is active or lapsed; each list is all of its
    # candidates up to top_n
    active = scores[scores["active"]]
    assert len(active) + len(lapsed) == len(scores) == len(truth)
    assert len(at_risk) == min(top_n, int(active["risk_tier"].isin(tiers).sum()))
    worth = truth["lapsed"] & (truth["value"] > 0) & (scores.loc[truth.index,
                                                                 "churn_probability"] < 1)
    assert len(win_back) == min(top_n, int(worth.sum()))
    # the weekly report: contact list from at_risk.csv only, and a win-back section
    page = (sample_run / "reports/weekly_report.html").read_text(encoding="utf-8")
    shown = page[page.index('id="at-risk"'):page.index('id="movers"')]
    shown_ids = set(re.findall(r'<td data-label="Customer">([^<]*)</td>', shown))
    assert shown_ids and not shown_ids & set(lapsed)
    section = page[page.index('id="win-back"'):page.index('id="segments"')]
    assert f"{len(lapsed):,}</strong> customers have lapsed" in section
    assert f'<td data-label="Customer">{win_back[0]}</td>' in section


def test_win_back_ranked_by_chance_of_return_times_value(sample_run):
    truth = lapsed_truth(sample_run).set_index("customer_id")
    scores = pd.read_parquet(sample_run / "reports/scores.parquet").set_index("customer_id")
    truth["ranking"] = ((1 - scores.loc[truth.index, "churn_probability"]) * truth["value"])
    candidates = truth[truth["lapsed"] & (truth["ranking"] > 0)].reset_index()
    expected = candidates.sort_values(["ranking", "value", "customer_id"],
                                      ascending=[False, False, True], kind="mergesort")
    expected = expected.head(sample_run.params["export"]["top_n"])
    rows = read_win_back(sample_run)
    listed = [r["customer_id"] for r in rows]
    # ranking values equal to 1e-6 may swap: compare the values, and the ids as sets
    assert [float(r["expected_revenue_at_risk"]) for r in rows] == pytest.approx(
        expected["ranking"].round(2).tolist(), abs=0.006)
    assert set(listed) == set(expected["customer_id"]) and listed[0] == \
        expected["customer_id"].iloc[0]


def test_open_ticket_customer_on_the_win_back_list_gets_no_promotion(sample_run, tmp_path):
    """The sample's win-back list, re-exported after the top customers opened a ticket."""
    rows = read_win_back(sample_run)
    targets = [r["customer_id"] for r in rows[:3] if r["suggested_action"] != OPEN_TICKET_ACTION]
    assert targets, "no promotable customer at the top of the win-back list"
    run = new_run(tmp_path, small_params(overrides={**AUX,
                                                    "data.raw_dir": str(sample_run.raw_dir)}))
    for rel in ("reports/scores.parquet", "data/interim/tickets.parquet",
                "data/interim/customers.parquet", "data/features/meta.json"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes((sample_run / rel).read_bytes())
    tickets = pd.read_parquet(run / "data/interim/tickets.parquet")
    opened = tickets.iloc[[0] * len(targets)].assign(customer_id=targets, closed_at=pd.NaT)
    pd.concat([tickets, opened], ignore_index=True).to_parquet(
        run / "data/interim/tickets.parquet", index=False)
    run_stages(run, ["export"])
    again = {r["customer_id"]: r for r in read_win_back(run)}
    assert [r["customer_id"] for r in read_win_back(run)] == [r["customer_id"] for r in rows]
    for cid in targets:
        assert again[cid]["suggested_action"] == OPEN_TICKET_ACTION
    scores = pd.read_parquet(sample_run / "reports/scores.parquet").set_index("customer_id")
    for row in rows:  # and in the sample itself
        if scores.loc[row["customer_id"], "open_tickets"] > 0:
            assert row["suggested_action"] == OPEN_TICKET_ACTION


# ================================================================ 1c. stage outputs in the report
def drift_alerts_shown(page: str) -> tuple[int, int]:
    """(N of "for N of its inputs", list items) of the report's drift alert; (0, 0) without."""
    if 'id="drift"' not in page:
        return 0, 0
    alert = page[page.index('id="drift"'):]
    alert = alert[:alert.index("</div>")]
    return int(re.search(r"for (\d+) of its inputs", alert).group(1)), alert.count("<li>")


def test_report_shows_every_drifted_feature_of_drift_json(sample_run, tmp_path):
    """Issue 11.5: drift logged "13 of 39 features drifted", the report "0 drift alerts". The
    sample's own files, then the same stages again with a threshold that flags features."""
    drift = json.loads((sample_run / "reports/drift.json").read_text())
    page = (sample_run / "reports/weekly_report.html").read_text(encoding="utf-8")
    flagged = [f for f, v in drift["features"].items() if v["flag"]]
    assert sorted(flagged) == drift["flagged"]
    assert drift_alerts_shown(page) == (len(flagged), len(flagged))

    run = copy_outputs(sample_run, tmp_path / "drifted", ["models", "data/features", "reports"])
    psi = sorted(v["psi"] for v in drift["features"].values())
    run.params["drift"] = {"psi_threshold": psi[len(psi) // 2]}  # about half the features
    (run / "params.yaml").write_text(yaml.safe_dump(run.params, sort_keys=False))
    run_stages(run, ["drift", "report"])
    drift = json.loads((run / "reports/drift.json").read_text())
    page = (run / "reports/weekly_report.html").read_text(encoding="utf-8")
    assert drift["flagged"], "no feature flagged: the test proves nothing"
    assert drift_alerts_shown(page) == (len(drift["flagged"]), len(drift["flagged"]))
    assert f"{len(drift['flagged'])} drift alerts" in "\n".join(run.log)


def test_history_of_another_data_source_gives_no_movers(sample_run, tmp_path):
    """Issue 11.6: after a run on other data, the sample's report said "200 customers are new on
    the list and 200 are no longer on it". Export + report on other data, then on the sample."""
    sample_history = json.loads((sample_run / "reports/at_risk_history.json").read_text())
    as_of = date.fromisoformat(sample_history["current"]["as_of"])
    run = copy_outputs(sample_run, tmp_path / "run",
                       ["reports", "data/interim", "data/features/meta.json"])
    customers = pd.read_parquet(run / "data/interim/customers.parquet")
    scores = pd.read_parquet(run / "reports/scores.parquet")

    def export_and_report(prefix: str, day: date) -> str:
        customers.assign(customer_id=prefix + customers["customer_id"]).to_parquet(
            run / "data/interim/customers.parquet", index=False)
        scores.assign(customer_id=prefix + scores["customer_id"]).to_parquet(
            run / "reports/scores.parquet", index=False)
        run.params["snapshot"]["as_of"] = day.isoformat()
        (run / "params.yaml").write_text(yaml.safe_dump(run.params, sort_keys=False))
        run_stages(run, ["export", "report"])
        return html.unescape(re.sub(r"<[^>]+>", " ", (run / "reports/weekly_report.html")
                                    .read_text(encoding="utf-8")))

    other = export_and_report("other-", as_of + timedelta(days=7))
    assert "new on the list" not in other and "first report" in other
    same = re.sub(r"\s+", " ", export_and_report("", as_of + timedelta(days=14)))
    listed = len(read_at_risk(sample_run))
    assert (f"Since the list of {as_of.day} {as_of:%b %Y}: 0 customers are new on the list and "
            f"0 are no longer on it (the list had {listed} customers then)") in same
    history = json.loads((run / "reports/at_risk_history.json").read_text())
    assert len(history["sources"]) == 2
    assert history["current"]["source"] == sample_history["current"]["source"]


# ================================================================ 2. byte-identical reruns
NOT_REPRODUCIBLE = {  # outputs that legitimately differ between two identical runs, and why
    "data/features/meta.json": "records the stage's wall-clock `seconds`",
    "models/churn_model/MLmodel": "MLflow writes a model_uuid, utc_time_created and temp paths",
    "models/serving/MLmodel": "the champion's copy of the MLmodel above",
    "models/churn_model/python_model.pkl": "MLflow's pyfunc wrapper: cloudpickle stores the class "
        "packaging defines when MLflow is imported (lazily) by value, with a random class id; "
        "the model itself (lightgbm.txt, model.json) is compared",
    "models/serving/python_model.pkl": "the champion's copy of the pickle above",
    "models/churn_model/code/": "a copy of src/churnlens: equal when the code is (here other "
                                "developers may edit the checkout between the two runs)",
    "reports/promotion.json": "holds the MLflow run id",
}


def reproducible(rel: str) -> bool:
    return not any(rel == k or (k.endswith("/") and rel.startswith(k)) for k in NOT_REPRODUCIBLE)


def test_score_and_explain_rerun_byte_identical(sample_run, tmp_path):
    """Cheap: score + explain again on the same model and features give the same bytes."""
    copy = copy_outputs(sample_run, tmp_path / "again",
                        ["data/features", "models", "data/interim/customers.parquet"])
    run_stages(copy, ["score", "explain"])
    for rel in ("data/processed/predictions.parquet", "reports/scores.parquet",
                "reports/plots/importance.csv", "reports/plots/importance.png"):
        assert (copy / rel).read_bytes() == (sample_run / rel).read_bytes(), rel


def output_digests(run: PipelineRun) -> dict[str, str]:
    return {f"{part}/{rel}": digest for part in ("data", "models", "reports")
            for rel, digest in tree_digest(run / part).items() if reproducible(f"{part}/{rel}")}


@pytest.mark.slow
def test_two_runs_from_scratch_byte_identical(sample_run, tmp_path):
    """Every output of a second run from scratch (same params) has the same bytes, except the
    few in NOT_REPRODUCIBLE.

    Can fail intermittently while the features stage sums revenue as DOUBLE in parallel DuckDB
    aggregates: the summation order, hence the last bit of `revenue_*` features, depends on
    thread scheduling, and `expected_revenue_at_risk` in scores.parquet inherits it.
    """
    again = run_pipeline(tmp_path / "again", overrides=FAST_TRAIN)
    first, second = output_digests(sample_run), output_digests(again)
    assert set(first) == set(second)
    differ = sorted(k for k in first if first[k] != second[k])
    assert differ == [], f"outputs that differ between two identical runs: {differ}"
    assert (again / "reports/scores.parquet").read_bytes() \
        == (sample_run / "reports/scores.parquet").read_bytes()


# ================================================================ 3. killed stages
KILL_ON_WRITE = textwrap.dedent("""
    import os, pathlib, signal, sys
    import pandas as pd

    victim = os.environ["KILL_WRITING"]   # file name: killed halfway through writing it
    write_text, to_parquet = pathlib.Path.write_text, pd.DataFrame.to_parquet

    def die_half_written(path, data):
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def killing_write_text(self, text, *args, **kwargs):
        if self.name == victim:
            die_half_written(self, text.encode())
        return write_text(self, text, *args, **kwargs)

    def killing_to_parquet(self, path, *args, **kwargs):
        if pathlib.Path(str(path)).name == victim:
            import io
            buffer = io.BytesIO()
            to_parquet(self, buffer, *args, **kwargs)
            die_half_written(path, buffer.getvalue())
        return to_parquet(self, path, *args, **kwargs)

    pathlib.Path.write_text = killing_write_text
    pd.DataFrame.to_parquet = killing_to_parquet
    stage = sys.argv[1]
    module = __import__(f"churnlens.stages.{stage}", fromlist=["run"])
    if stage == "validate":
        module.run(sys.argv[2], sys.argv[3])
    else:
        module.run(pathlib.Path("params.yaml"))
""")


def run_killed(cwd: Path, victim: str, *args: str, env: dict | None = None) -> int:
    proc = subprocess.run([sys.executable, "-c", KILL_ON_WRITE, *args], cwd=cwd,
                          env={**os.environ, "KILL_WRITING": victim, **(env or {})},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    return proc.returncode


def leftovers(folder: Path, before: set[str]) -> tuple[list[str], list[str]]:
    """(new visible entries, new hidden entries) in `folder` compared to `before`."""
    new = sorted(set(os.listdir(folder)) - before)
    return [n for n in new if not n.startswith(".")], [n for n in new if n.startswith(".")]


def test_killed_validate_leaves_previous_outputs(sample_run, tmp_path):
    """validate writes OUT_DIR in a hidden temp folder and renames it at the end: a SIGKILL
    while it writes validation.json (the last file) leaves the previous OUT_DIR byte-identical.
    """
    out = tmp_path / "interim"
    copy_raw(sample_run / "data/interim", out)
    before, listing = tree_digest(out), set(os.listdir(tmp_path))
    raw = REPO / "tests/data/bad/purchase_only"  # other input: a finished run would change OUT
    run_killed(tmp_path, "validation.json", "validate", str(raw), str(out))
    assert tree_digest(out) == before
    visible, hidden = leftovers(tmp_path, listing)
    assert visible == []
    assert all(h.startswith(".interim.") for h in hidden), hidden  # SIGKILL: no cleanup possible


def test_killed_validate_midway_through_a_parquet_file(sample_run, tmp_path):
    """With foreign files in OUT_DIR, validate replaces its files one by one, each with
    `churnlens.io.write_parquet` (temp file + rename), validation.json last. Killed halfway
    through writing events.parquet: events.parquet and every later file (customers.parquet is
    written last) keep their old bytes,
    no file is torn, and validation.json (the DVC metrics file) still describes the old run."""
    out = tmp_path / "interim"
    copy_raw(sample_run / "data/interim", out)
    (out / "notes.txt").write_text("not written by validate")
    before, listing = tree_digest(out), set(os.listdir(out))
    run_killed(tmp_path, "events.parquet", "validate",
               str(REPO / "tests/data/bad/purchase_only"), str(out))
    after = tree_digest(out, hidden=False)
    assert set(after) == set(before)
    # transactions first, customers last (signups may move to the first activity)
    assert after["transactions.parquet"] != before["transactions.parquet"]  # killed midway
    for rel in ("events.parquet", "tickets.parquet", "nps.parquet", "customers.parquet",
                "validation.json", "notes.txt"):
        assert after[rel] == before[rel], rel
    for rel in after:
        if rel.endswith(".parquet"):
            pq.read_metadata(out / rel)  # every file whole: the old or the new version
    visible, hidden = leftovers(out, listing)
    assert visible == [] and all(h.startswith(".events.parquet.") for h in hidden), hidden


@pytest.mark.slow
def test_killed_score_leaves_previous_predictions(sample_run, tmp_path):
    """score killed halfway through writing predictions.parquet: the old file stays."""
    run = copy_outputs(sample_run, tmp_path / "run",
                       ["data/features", "models", "data/processed/predictions.parquet"])
    run.params["score"]["tiers"] = {"high": 0.9, "medium": 0.5, "low": 0.0}  # would change it
    # in their order: params_check wants the tiers highest first, as a user writes them
    (run / "params.yaml").write_text(yaml.safe_dump(run.params, sort_keys=False))
    processed = run / "data/processed"
    before, listing = tree_digest(processed), set(os.listdir(processed))
    run_killed(run.root, "predictions.parquet", "score",
               env={"MLFLOW_TRACKING_URI": run.tracking_uri})
    assert tree_digest(processed, hidden=False) == before
    visible, hidden = leftovers(processed, listing)
    assert visible == [] and all(h.startswith(".predictions.parquet.") for h in hidden), hidden


@pytest.mark.slow
def test_dvc_sees_a_killed_stage_as_not_done(sample_run, tmp_path):
    """A real `dvc repro` whose validate command is SIGKILLed while writing validation.json.

    DVC itself removes a stage's outputs before running it, so what must hold is: the stage is
    not recorded as done (`dvc status` reports it changed), no half-written output sits in
    place, and `dvc checkout` brings back the previous outputs byte for byte.
    """
    dvc = Path(sys.executable).with_name("dvc")
    script = tmp_path / "kill_or_validate.py"
    script.write_text("import os, sys\n"
                      "if os.environ.get('KILL_WRITING'):\n"
                      f"    exec(compile({KILL_ON_WRITE!r}, 'kill', 'exec'))\n"
                      "else:\n"
                      "    from churnlens.stages import validate\n"
                      "    validate.run(sys.argv[2], sys.argv[3])\n")
    copy_raw(sample_run.raw_dir, tmp_path / "raw")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"validate": {
        "cmd": f"{sys.executable} {script.name} validate raw data/interim",
        "deps": ["raw"], "outs": ["data/interim"]}}}))
    env = {k: v for k, v in os.environ.items() if k != "KILL_WRITING"}
    env["DVC_NO_ANALYTICS"] = "1"

    def dvc_cmd(*args, check=True, extra=None):
        proc = subprocess.run([str(dvc), *args], cwd=tmp_path, env={**env, **(extra or {})},
                              capture_output=True, text=True, timeout=600)
        assert not check or proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    dvc_cmd("init", "--no-scm", "-q")
    dvc_cmd("repro", "-q")
    assert json.loads(dvc_cmd("status", "--json").stdout) == {}
    before = tree_digest(tmp_path / "data/interim")
    copy_raw(REPO / "tests/data/bad/purchase_only", tmp_path / "raw")
    killed = dvc_cmd("repro", check=False, extra={"KILL_WRITING": "validation.json"})
    assert killed.returncode != 0 and "-9" in killed.stderr, killed.stderr
    status = json.loads(dvc_cmd("status", "--json").stdout)
    changes = {k for item in status["validate"] for k in item}
    assert "changed deps" in changes, status
    assert not (tmp_path / "data/interim/validation.json").exists()  # nothing half-written
    visible = [p.name for p in (tmp_path / "data").iterdir() if not p.name.startswith(".")]
    assert visible in ([], ["interim"]), visible
    dvc_cmd("checkout", "--force", "-q")
    assert tree_digest(tmp_path / "data/interim") == before


# ================================================================ 4. personal data (GDPR)
def pii_needles(run: PipelineRun) -> set[str]:
    """Every e-mail and name of the raw customers table that is not a literal in our source code
    (the generator spells a few bad-row names, e.g. 'Bad Date', in its code, which the model
    package ships), in the spellings a file may hold: as is, JSON-escaped, HTML-escaped."""
    customers = read_raw(run, "customers")
    values = {v.strip() for column in ("email", "name") for v in customers[column] if v.strip()}
    values = {v for v in values if v not in SOURCE_TEXT}
    spellings = set()
    for value in values:
        spellings |= {value, json.dumps(value)[1:-1], html.escape(value)}
    return spellings


def trie_pattern(words: list):
    """One regex (str or bytes, like `words`) matching any of `words`, built as a trie: the
    engine branches on the next character instead of trying ~1000 words at every position."""
    bar, open_, close, optional = ((b"|", b"(?:", b")", b"?") if isinstance(words[0], bytes)
                                   else ("|", "(?:", ")", "?"))
    end = words[0][:0]  # "" or b"": marks the end of a word in the trie
    trie: dict = {}
    for word in words:
        node = trie
        for i in range(len(word)):
            node = node.setdefault(word[i:i + 1], {})
        node[end] = {}

    def build(node: dict):
        branches = [re.escape(k) + build(v) for k, v in sorted(node.items()) if k != end]
        if not branches:
            return end
        body = branches[0] if len(branches) == 1 else open_ + bar.join(branches) + close
        if end in node:
            body = (body if len(branches) > 1 else open_ + body + close) + optional
        return body

    return build(trie)


class PiiScanner:
    def __init__(self, needles: set[str]) -> None:
        ordered = sorted(needles)
        self.text = re.compile(trie_pattern(ordered))
        self.raw = re.compile(trie_pattern([n.encode() for n in ordered]))
        self.hits: dict[str, set[str]] = {}
        self.scanned: list[str] = []

    def add(self, where: str, found) -> None:
        found = {f.decode(errors="replace") if isinstance(f, bytes) else f for f in found}
        if found:
            self.hits.setdefault(where, set()).update(found)

    def scan_text(self, where: str, text: str) -> None:
        self.scanned.append(where)
        self.add(where, self.text.findall(text))

    def scan_file(self, where: str, path: Path) -> None:
        self.scanned.append(where)
        self.add(where, self.raw.findall(path.read_bytes()))
        if path.suffix == ".parquet":
            values = "\n".join(sorted(string_values(path)))
            self.add(f"{where} (columns)", self.text.findall(values))

    def scan_tree(self, where: str, folder: Path, skip: tuple[Path, ...] = ()) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not any(path.is_relative_to(s) for s in skip):
                self.scan_file(f"{where}/{path.relative_to(folder)}", path)


def scan_mlflow(scanner: PiiScanner, run: PipelineRun, download_dir: Path) -> None:
    """Params, tags, metric names and every artifact of every run and logged model, plus the
    registry, read through MlflowClient; artifacts downloaded and scanned file by file."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=run.tracking_uri, registry_uri=run.tracking_uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    ids = [e.experiment_id for e in experiments]
    runs = client.search_runs(ids, run_view_type=ViewType.ALL)
    assert runs, "no MLflow run to scan"
    for mlrun in runs:
        data = mlrun.data
        scanner.scan_text(f"mlflow run {mlrun.info.run_id} params/tags/metrics", "\n".join(
            [*data.params, *data.params.values(), *data.tags, *data.tags.values(),
             *data.metrics, mlrun.info.run_name or ""]))
        target = download_dir / mlrun.info.run_id
        client.download_artifacts(mlrun.info.run_id, "", str(target))
        scanner.scan_tree(f"mlflow run {mlrun.info.run_id} artifacts", target)
    models = client.search_logged_models(ids)
    assert models, "no logged model to scan"
    for model in models:
        scanner.scan_text(f"mlflow logged model {model.model_id}", "\n".join(
            [model.name or "", *model.params, *model.params.values(), *model.tags,
             *model.tags.values()]))
        import mlflow.artifacts

        target = download_dir / model.model_id
        mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location,
                                            dst_path=str(target))
        scanner.scan_tree(f"mlflow logged model {model.model_id} artifacts", target)
    for registered in client.search_registered_models():
        scanner.scan_text(f"mlflow registered model {registered.name}", "\n".join(
            [registered.name, registered.description or "", *registered.tags,
             *registered.tags.values()]))
        for version in client.search_model_versions(f"name='{registered.name}'"):
            scanner.scan_text(f"mlflow model version {version.version}", "\n".join(
                [version.description or "", version.source or "", *version.tags,
                 *version.tags.values()]))


def test_no_personal_data_outside_the_contact_column(sample_run, tmp_path):
    needles = pii_needles(sample_run)
    assert len(needles) > 300  # ~400 customers, each with an e-mail, most with a name
    scanner = PiiScanner(needles)
    for part in ("data", "models", "reports", "mlruns"):
        scanner.scan_tree(part, sample_run / part,
                          skip=(sample_run.raw_dir, sample_run / "reports/at_risk.csv",
                                sample_run / "reports/win_back.csv"))
    scanner.scan_file("mlflow.db", sample_run / "mlflow.db")
    scan_mlflow(scanner, sample_run, tmp_path / "mlflow_download")
    scanner.scan_text("the run's log messages", "\n".join(sample_run.log))

    rows = read_at_risk(sample_run)
    win_back = read_win_back(sample_run)
    for name, listed in (("at_risk.csv", rows), ("win_back.csv", win_back)):
        for row in listed:
            scanner.scan_text(f"reports/{name} (all but contact)",
                              "\n".join(v for k, v in row.items() if k != "contact"))
    assert any(p.endswith("scores.parquet") for p in scanner.scanned)
    for name in ("model.json", "lightgbm.txt"):  # the model as data (no pickle any more)
        assert any(p.endswith(f"models/churn_model/artifacts/{name}") for p in scanner.scanned)
    assert sample_run.log, "no log messages were captured"
    assert scanner.hits == {}, f"personal data found: {scanner.hits}"
    # the scan can fail: the contact column itself is full of the same needles
    for listed in (rows, win_back):
        contacts = "\n".join(row["contact"] for row in listed)
        assert len(set(scanner.text.findall(contacts))) >= len(listed) // 2


# ================================================================ 5. pseudonymous ids
def raw_id_pattern(run: PipelineRun) -> tuple[set[str], re.Pattern]:
    """The raw customer ids, and a regex finding any of them as a whole token in text."""
    ids = {v.strip() for v in read_raw(run, "customers")["customer_id"] if v.strip()}
    return ids, re.compile(rf"(?<![\w.\-])(?:{trie_pattern(sorted(ids))})(?![\w.\-])")


def check_no_raw_ids(run: PipelineRun, parquet: list[Path], texts: list[Path]) -> None:
    """Every `customer_id` in `parquet` is a pseudonym and no string column holds a raw id;
    no raw id appears as a token in `texts` (embedded images left out)."""
    raw_ids, pattern = raw_id_pattern(run)
    assert parquet
    for path in parquet:
        ids = [v for v in pq.read_table(path).column("customer_id").to_pylist() if v is not None]
        assert all(re.fullmatch(r"p_[0-9a-f]{16}", v) for v in ids), path
        assert not raw_ids & string_values(path), path
    for path in texts:
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+", "", text)
        assert pattern.findall(text) == [], path


def check_at_risk_real_ids(run: PipelineRun) -> None:
    """at_risk.csv and win_back.csv: real ids, exactly the customers (and order) the
    pseudonymous scores rank, each with their own contact."""
    from churnlens.export import rank_at_risk, rank_win_back

    scores = pd.read_parquet(run / "reports/scores.parquet")
    top_n = run.params["export"]["top_n"]
    check_list_real_ids(run, "at_risk.csv",
                        rank_at_risk(scores, top_n=top_n, tiers=run.params["export"]["tiers"]))
    check_list_real_ids(run, "win_back.csv", rank_win_back(scores, top_n=top_n))


def check_list_real_ids(run: PipelineRun, name: str, ranked: pd.DataFrame) -> None:
    from churnlens.privacy import pseudonymise

    raw_ids, _ = raw_id_pattern(run)
    rows = pd.DataFrame(read_at_risk(run, name))
    assert len(rows) > 0 and set(rows["customer_id"]) <= raw_ids
    assert pseudonymise(rows["customer_id"], SALT.encode()).tolist() \
        == ranked["customer_id"].tolist()
    assert rows["churn_probability"].astype(float).tolist() == pytest.approx(
        ranked["churn_probability"].round(3).tolist())
    customers = read_raw(run, "customers").drop_duplicates("customer_id")
    email = dict(zip(customers["customer_id"], customers["email"], strict=True))
    with_email = [(cid, c) for cid, c in zip(rows["customer_id"], rows["contact"], strict=True)
                  if email.get(cid)]
    assert with_email and all(email[cid] in contact for cid, contact in with_email)


def pseudonymous_params(sample_run: PipelineRun) -> dict:
    return small_params(overrides={**AUX, "privacy.pseudonymise_ids": True,
                                   "data.raw_dir": str(sample_run.raw_dir)})


def test_pseudonymised_validate_and_export(sample_run, tmp_path):
    """Cheap version: validate + export with pseudonymisation on; the scores are the clean
    run's, with the ids hashed as the score stage would see them."""
    from churnlens.privacy import pseudonymise

    run = new_run(tmp_path, pseudonymous_params(sample_run), env={"CHURNLENS_ID_SALT": SALT})
    run_stages(run, ["validate"])
    scores = pd.read_parquet(sample_run / "reports/scores.parquet")
    scores["customer_id"] = pseudonymise(scores["customer_id"], SALT.encode())
    (run / "reports").mkdir()
    scores.to_parquet(run / "reports/scores.parquet", index=False)
    run_stages(run, ["export"])
    check_no_raw_ids(run, sorted((run / "data/interim").rglob("*.parquet")),
                     [run / "data/interim/validation.json", run / "reports/at_risk_history.json"])
    check_at_risk_real_ids(run)


@pytest.fixture(scope="module")
def pseudo_run(tmp_path_factory, sample_run) -> PipelineRun:
    return run_pipeline(tmp_path_factory.mktemp("pseudo"), raw_from=sample_run.raw_dir,
                        overrides={**AUX, "privacy.pseudonymise_ids": True},
                        env={"CHURNLENS_ID_SALT": SALT})


@pytest.mark.slow
def test_pseudonymised_pipeline_carries_no_raw_ids(pseudo_run):
    parquet = [pseudo_run / "reports/scores.parquet",
               pseudo_run / "data/processed/predictions.parquet",
               *sorted((pseudo_run / "data/interim").rglob("*.parquet")),
               *sorted((pseudo_run / "data/features").glob("*.parquet"))]
    texts = [pseudo_run / "reports/weekly_report.html",
             *sorted((pseudo_run / "reports").glob("*.json")),
             *sorted((pseudo_run / "data").rglob("*.json")),
             *sorted(p for p in (pseudo_run / "reports").rglob("*.csv")
                     if p.name not in ("at_risk.csv", "win_back.csv"))]
    check_no_raw_ids(pseudo_run, parquet, texts)
    page = (pseudo_run / "reports/weekly_report.html").read_text(encoding="utf-8")
    assert re.search(r"\bp_[0-9a-f]{16}\b", page), "the report shows no pseudonym at all"
    check_at_risk_real_ids(pseudo_run)


def test_pseudonymisation_without_a_salt_refuses_to_run(sample_run, tmp_path, monkeypatch):
    run = new_run(tmp_path, small_params(overrides={"privacy.pseudonymise_ids": True,
                                                    "data.raw_dir": str(sample_run.raw_dir)}))
    monkeypatch.delenv("CHURNLENS_ID_SALT", raising=False)
    with pytest.raises(ChurnlensError, match="CHURNLENS_ID_SALT"):
        run_stages(run, ["validate"])
    assert not (run / "data/interim").exists()


# ================================================================ 6. injection
def test_injection_escaped_in_the_weekly_report(injected_run):
    page = (injected_run / "reports/weekly_report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    quoted = next(p["segment"] for p in PAYLOADS["customers"] if "&" in p.get("segment", ""))
    assert quoted not in page and str(markupsafe.escape(quoted)) in page
    assert PAYLOADS["event_type"] not in page
    assert "<script" not in page.lower()
    text = re.sub(r"data:[^\"')]+", "", page)  # embedded images are base64 noise
    for payload in PAYLOADS["customers"]:  # personal data never reaches the report
        for field in ("name", "email"):
            if payload.get(field):
                value = payload[field].split("\n")[0].strip()
                assert not re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text), value


def test_injection_neutralised_in_the_at_risk_csv(injected_run):
    for name in ("at_risk.csv", "win_back.csv"):
        text = (injected_run / "reports" / name).read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert len(text.splitlines()) == len(rows)  # no record spans two lines
        for row in rows:
            for cell in row:
                assert not cell.startswith(FORMULA_START), cell
                assert "\n" not in cell and "\r" not in cell, cell
    listed = {row["customer_id"]: row for row in read_at_risk(injected_run)}
    customers = read_raw(injected_run, "customers").drop_duplicates("customer_id")
    email = dict(zip(customers["customer_id"], customers["email"], strict=True))
    checked = 0
    for cid, payload in zip(injected_run.targets, PAYLOADS["customers"], strict=True):
        if "expect_contact" in payload and cid in listed:
            assert listed[cid]["contact"] == payload["expect_contact"].format(email=email[cid])
            checked += 1
        if "segment" in payload and cid in listed:
            assert listed[cid]["segment"] == payload["segment"]
    assert checked >= 3, "the injected contacts fell off the at-risk list"
    scores = pd.read_parquet(injected_run / "reports/scores.parquet")
    segments = set(scores["segment"].dropna())
    assert {p["segment"] for p in PAYLOADS["customers"] if "segment" in p} <= segments


# ================================================================ 7. bad inputs, whole pipeline
def test_purchase_only_log_runs_every_stage(purchase_run):
    out = check_all_outputs(purchase_run)
    for table in ("events", "tickets", "nps"):
        assert out["validation"][table]["present"] is False
        assert out["validation"][table]["rows_in"] == 0
    assert out["kpis"]["current"]["nps"] is None and "current.nps" in out["kpis"]["notes"]
    metrics = out["metrics"]   # purchases alone carry the signal: better than the prior and
    assert metrics["model"]["roc_auc"] > 0.6   # about as good as recency (the test slice is small)
    assert metrics["model"]["roc_auc"] >= metrics["baselines"]["recency"]["roc_auc"] - 0.05
    assert metrics["model"]["brier"] < metrics["baselines"]["prior"]["brier"]
    assert all(row["contact"] == "" for row in read_at_risk(purchase_run))


def truncate_history(raw_dir: Path, first_day: str) -> None:
    """Keep only the log rows on or after `first_day`; nobody signs up before it."""
    for table, column in (("transactions", "timestamp"), ("events", "timestamp"),
                          ("tickets", "opened_at"), ("nps", "timestamp")):
        frame = pd.read_csv(raw_dir / f"{table}.csv", dtype=str, keep_default_na=False)
        write_raw(frame[frame[column].str[:10] >= first_day], raw_dir, table)
    customers = pd.read_csv(raw_dir / "customers.csv", dtype=str, keep_default_na=False)
    customers["signup_date"] = customers["signup_date"].where(
        customers["signup_date"] >= first_day, first_day)
    write_raw(customers, raw_dir, "customers")


def prepared(tmp_path: Path, sample_run: PipelineRun, hook, overrides=None) -> PipelineRun:
    run = new_run(tmp_path, small_params(overrides=overrides))
    copy_raw(sample_run.raw_dir, run.raw_dir)
    hook(run.raw_dir)
    return run


def test_history_shorter_than_the_horizon_stops_features(sample_run, tmp_path, monkeypatch):
    run = prepared(tmp_path, sample_run, lambda raw: truncate_history(raw, "2026-07-01"))
    run_stages(run, ["validate"])
    with pytest.raises(NotEnoughHistoryError) as err:
        run_stages(run, ["features"])
    assert "need 90 days" in str(err.value) and "\n" not in str(err.value)
    code, stderr = stage_cli(monkeypatch, run, "features")
    assert code == 1 and "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("churnlens features: error:")]
    assert len(lines) == 1 and "need 90 days" in lines[0], stderr
    assert not (run / "data/features/training.parquet").exists()


def test_seven_months_of_history_train_with_an_out_of_time_test(sample_run, tmp_path):
    """Horizon + 3 cutoff steps of labelled history are enough (the old split needed 390 days
    and stopped here): the test slice is the latest labelled cutoff, training is purged."""
    run = prepared(tmp_path, sample_run, lambda raw: truncate_history(raw, "2026-02-01"))
    run_stages(run, ["validate", "features", "train"])
    metrics = json.loads((run / "reports/metrics.json").read_text())
    assert metrics["split"] == "out_of_time"
    train_end = date.fromisoformat(metrics["slices"]["train"]["cutoffs"][-1])
    assert train_end + timedelta(days=90) <= date.fromisoformat(metrics["test_cutoff"])
    assert (run / "models/churn_model/MLmodel").exists()


def test_single_class_label_stops_train_with_a_clear_message(sample_run, tmp_path, monkeypatch):
    def no_cancellations(raw: Path) -> None:
        customers = pd.read_csv(raw / "customers.csv", dtype=str, keep_default_na=False)
        write_raw(customers.drop(columns=["cancel_date"]), raw, "customers")

    run = prepared(tmp_path, sample_run, no_cancellations,
                   overrides={"label.definition": "cancellation"})
    run_stages(run, ["validate", "features"])
    code, stderr = stage_cli(monkeypatch, run, "train")
    assert code == 1 and "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("churnlens train: error:")]
    assert len(lines) == 1 and "single class" in lines[0] and "cancel_date" in lines[0], stderr
    assert not (run / "models/churn_model").exists()
    assert not (run / "reports/metrics.json").exists()


AS_OF = "2026-05-31"


def cut_at(interim: Path, as_of: str) -> None:
    """What the data looked like at the end of `as_of`: later rows gone, later closings and
    cancellations not yet known."""
    def after(column: pa.ChunkedArray) -> pa.ChunkedArray:
        """True where a date/timestamp lies after the end of `as_of` (null -> False)."""
        if pa.types.is_date(column.type):
            later = pc.greater(column, pa.scalar(pd.Timestamp(as_of).date(), pa.date32()))
        else:
            end = pd.Timestamp(as_of) + pd.Timedelta(days=1)
            later = pc.greater_equal(column, pa.scalar(end, column.type))
        return pc.fill_null(later, False)

    def rewrite(name: str, happened_at: str, unknown_after: list[str]) -> None:
        path = interim / f"{name}.parquet"
        table = pq.read_table(path)
        table = table.filter(pc.invert(after(table.column(happened_at))))
        for column_name in unknown_after:
            column = table.column(column_name)
            known = pc.if_else(after(column), pa.nulls(len(table), column.type), column)
            table = table.set_column(table.schema.get_field_index(column_name), column_name,
                                     known)
        pq.write_table(table, path)

    rewrite("customers", "signup_date", ["cancel_date"])
    rewrite("transactions", "timestamp", [])
    rewrite("events", "timestamp", [])
    rewrite("tickets", "opened_at", ["closed_at"])
    rewrite("nps", "timestamp", [])


def test_rows_after_as_of_are_invisible_not_quarantined(sample_run, tmp_path):
    overrides = {"snapshot.as_of": AS_OF}
    full = new_run(tmp_path / "full", small_params(overrides={
        **overrides, "data.raw_dir": str(sample_run.raw_dir)}))
    run_stages(full, ["validate"])
    assert (full / "data/interim/validation.json").read_bytes() \
        == (sample_run / "data/interim/validation.json").read_bytes()
    events = pd.read_parquet(full / "data/interim/events.parquet", columns=["timestamp"])
    assert (events["timestamp"] > pd.Timestamp(AS_OF) + pd.Timedelta(days=1)).sum() > 1000

    cut = copy_outputs(full, tmp_path / "cut", ["data/interim"])
    cut_at(cut / "data/interim", AS_OF)
    assert pq.read_metadata(cut / "data/interim/events.parquet").num_rows < len(events)
    for run in (full, cut):
        run_stages(run, ["features", "kpis"])

    for rel in ("data/features/training.parquet", "data/features/scoring.parquet"):
        a, b = (pd.read_parquet(r / rel).sort_values(["customer_id", "cutoff"])
                .reset_index(drop=True) for r in (full, cut))
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, obj=rel)
    meta_full, meta_cut = (json.loads((r / "data/features/meta.json").read_text())
                           for r in (full, cut))
    for meta in (meta_full, meta_cut):
        meta.pop("seconds")
    assert meta_full == meta_cut and meta_full["as_of"] == AS_OF
    assert json.loads((full / "reports/kpis.json").read_text()) \
        == json.loads((cut / "reports/kpis.json").read_text())


def test_revenue_kpis_through_the_stage_outputs(sample_run):
    """kpis.json's revenue window reaches the trend plot and the report tile; no NDR below
    100 % is called "better"."""
    run = sample_run
    kpis = json.loads((run / "reports/kpis.json").read_text())
    window, period_days = kpis["revenue_window"], kpis["period"]["days"]
    assert window["days"] % period_days == 0 and window["days"] >= period_days
    horizon = run.params["label"]["horizon_days"]
    if window["days"] > period_days:
        assert window["days"] == -(-horizon // period_days) * period_days
        assert window["reason"] and window["caveat"]
    for figures in (kpis["current"], kpis["previous"]):
        assert {"ndr_period", "grr_period"} <= set(figures)
    trend = pd.read_csv(run / "reports/plots/kpi_trend.csv")
    assert trend["ndr"].iloc[-1] == pytest.approx(kpis["current"]["ndr"])
    assert trend["ndr_period"].iloc[-1] == pytest.approx(kpis["current"]["ndr_period"])
    page = (run / "reports/weekly_report.html").read_text(encoding="utf-8")
    tile = re.search(r'id="kpi-ndr".*?</div>\s*</div>', page, flags=re.S).group(0)
    if window["caveat"]:
        assert html.escape(window["caveat"], quote=False) in page
        assert f"({window['days']} days)" in tile
    if kpis["current"]["ndr"] is not None and kpis["current"]["ndr"] < 1:
        assert "(better)" not in tile


def test_reasons_support_the_actions_in_the_real_lists(sample_run):
    """Issue 11.9 through the stage outputs: a ticket action shows a ticket; no story twice; the
    CS part of the report speaks no model jargon nor internal notes."""

    from churnlens.reasons import sentence_story

    scores = pd.read_parquet(sample_run / "reports/scores.parquet")
    idle = dict(zip(scores["customer_id"].astype(str), scores["days_since_last_activity"],
                    strict=True))
    for row in read_at_risk(sample_run) + read_win_back(sample_run):
        reasons = [r for r in row["reasons"].split("; ") if r]
        assert len(reasons) <= 3
        if row["suggested_action"].startswith("Resolve the open support ticket"):
            assert any("support ticket" in r and "open" in r for r in reasons), row
        facts = {"days_since_last_activity": idle.get(row["customer_id"])}
        stories = [sentence_story(r, facts) for r in reasons]
        assert len(set(stories)) == len(stories), reasons
    html = (sample_run / "reports/weekly_report.html").read_text(encoding="utf-8")
    cs_part = html.split('<section id="model">', 1)[0]
    cs_part = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", cs_part)
    for word in ("Brier", "AUC", "ECE", "Note: ", "nps table"):
        assert not re.search(rf"\b{word}", cs_part), word
