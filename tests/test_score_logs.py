"""Scoring a raw folder without the pipeline: `churnlens.score_logs` and `churnlens score --input`.

The session's sample pipeline run (`conftest.sample_run`: 400 customers, fast boosting, model
registered and champion), copied into a folder of this module, is the reference; the tests score
its raw folder (or edited copies) in that run's folder and compare with the pipeline's own outputs.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnlens.errors import ChurnlensError
from churnlens.score_logs import COLUMNS, score_raw_logs
from pipeline_helpers import PipelineRun, copy_outputs, copy_run, invoke_cli, run_stages


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_run) -> PipelineRun:
    """A copy of the session's sample run (these tests write into their project folder)."""
    return copy_run(sample_run, tmp_path_factory.mktemp("score_logs") / "run")


@pytest.fixture
def in_run(monkeypatch, trained) -> PipelineRun:
    """The current directory is the trained project (params.yaml, models/, mlflow.db)."""
    monkeypatch.chdir(trained.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.tracking_uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return trained


@pytest.fixture(scope="module")
def scored(trained) -> pd.DataFrame:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(trained.root)
        mp.setenv("MLFLOW_TRACKING_URI", trained.tracking_uri)
        return score_raw_logs(trained.raw_dir)


cli = invoke_cli


def copy_raw(run: PipelineRun, target: Path, tables=("customers", "transactions", "events",
                                                      "tickets", "nps")) -> Path:
    target.mkdir(parents=True)
    for table in tables:
        shutil.copy2(run.raw_dir / f"{table}.csv", target / f"{table}.csv")
    return target


def test_same_probabilities_tiers_and_revenue_as_the_pipeline(trained, scored):
    predictions = pd.read_parquet(trained / "data/processed/predictions.parquet")
    both = predictions.merge(scored, on="customer_id", suffixes=("_pipe", ""), validate="1:1")
    assert len(both) == len(predictions) == len(scored)
    gap = np.abs(both["churn_probability_pipe"] - both["churn_probability"]).max()
    assert gap <= 1e-9
    assert (both["risk_tier_pipe"] == both["risk_tier"]).all()
    assert np.allclose(both["expected_revenue_at_risk_pipe"], both["expected_revenue_at_risk"],
                       rtol=0, atol=1e-9)
    assert (both["active_pipe"] == both["active"]).all()
    meta = json.loads((trained / "data/features/meta.json").read_text())
    assert scored.attrs["as_of"] == meta["as_of"] and set(scored["as_of"]) == {meta["as_of"]}
    serving = json.loads((trained / "reports/serving.json").read_text())
    assert scored.attrs["model"]["scored_by"] == "approved model"
    assert scored.attrs["model"]["version"] == serving["version"]


def test_every_customer_gets_the_listed_columns_reasons_and_an_action(scored):
    assert tuple(scored.columns) == COLUMNS
    assert scored["customer_id"].is_unique
    assert (scored["suggested_action"] != "").all()
    assert (scored["reasons"] != "").mean() > 0.9
    ranked = scored["expected_revenue_at_risk"].to_numpy()
    assert (np.diff(ranked) <= 0).all()


def test_the_at_risk_list_reads_the_same_reasons_and_actions(trained, scored):
    text = (trained / "reports/at_risk.csv").read_text(encoding="utf-8-sig")
    listed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert listed
    mine = scored.set_index("customer_id")
    for row in listed:
        assert mine.loc[row["customer_id"], "reasons"] == row["reasons"]
        assert mine.loc[row["customer_id"], "suggested_action"] == row["suggested_action"]


def test_an_earlier_as_of_gives_the_features_of_that_cutoff(in_run):
    """--as-of: the feature rows at a past cutoff are the training rows of that cutoff."""
    from churnlens.packaging import feature_columns_of, load_model, to_model_input

    training = pd.read_parquet(in_run / "data/features/training.parquet")
    cutoff = pd.Timestamp(training["cutoff"].max()).date()
    scores = score_raw_logs(in_run.raw_dir, as_of=cutoff.isoformat())
    rows = training[pd.to_datetime(training["cutoff"]).dt.date == cutoff]
    expected = feature_columns_of(in_run / "models/churn_model")
    proba = load_model(in_run / "models/churn_model").predict(
        to_model_input(rows, expected))["churn_probability"]
    truth = pd.Series(proba.to_numpy(), index=rows["customer_id"].astype(str))
    got = scores.set_index("customer_id")["churn_probability"]
    assert set(got.index) == set(truth.index)
    assert np.abs(got[truth.index].to_numpy() - truth.to_numpy()).max() <= 1e-9


def test_purchase_only_folder_is_scored(in_run, tmp_path):
    raw = tmp_path / "purchases"
    raw.mkdir()
    customers = pd.read_csv(in_run.raw_dir / "customers.csv", dtype=str)
    customers[["customer_id", "signup_date"]].to_csv(raw / "customers.csv", index=False)
    shutil.copy2(in_run.raw_dir / "transactions.csv", raw / "transactions.csv")
    scores = score_raw_logs(raw)
    assert len(scores) > 0 and scores["customer_id"].is_unique
    assert scores["churn_probability"].between(0, 1).all()
    assert (scores["suggested_action"] != "").all()
    assert scores.attrs["validation"].keys() == {"customers", "transactions"}


def test_cli_writes_the_csv_and_one_summary_line(in_run, tmp_path, scored):
    raw = copy_raw(in_run, tmp_path / "raw")
    with open(raw / "transactions.csv", "a", encoding="utf-8") as handle:
        handle.write("no-such-customer,2025-01-02T10:00:00,12.5,1\n")
    out = tmp_path / "out" / "scores.csv"
    code, stdout, stderr = cli("score", "--input", str(raw), "--output", str(out))
    assert code == 0, stderr
    assert stdout == ""
    assert stderr.strip().count("\n") == 0  # one line
    assert f"scored {len(scored)} customers at {scored.attrs['as_of']}" in stderr
    before = json.loads((in_run / "data/interim/validation.json").read_text())["transactions"]
    assert f"transactions {before['rows_quarantined'] + 1} of {before['rows_in'] + 1}" in stderr
    raw_bytes = out.read_bytes()
    assert raw_bytes.startswith(b"\xef\xbb\xbf")  # BOM, like at_risk.csv
    rows = list(csv.DictReader(io.StringIO(raw_bytes.decode("utf-8-sig"), newline="")))
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == len(scored)
    assert not list(out.parent.glob(".*"))  # atomic write: no temp debris


def test_cli_prints_the_csv_without_personal_data(in_run, scored):
    as_of = scored.attrs["as_of"]
    code, stdout, stderr = cli("score", "--input", str(in_run.raw_dir), "--as-of", as_of)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == len(scored) + 1
    customers = pd.read_csv(in_run.raw_dir / "customers.csv", dtype=str, keep_default_na=False)
    personal = [v for column in ("email", "name") for v in customers[column] if v]
    assert personal and not any(v in stdout or v in stderr for v in personal)


def test_the_weekly_control_group_is_not_to_be_contacted(trained, tmp_path, monkeypatch):
    """With export.holdout_share > 0 the at-risk list holds out a control group; scoring the
    same customers later keeps them out of the CRM's outreach while their window runs."""
    run = copy_outputs(trained, tmp_path / "holdout", [
        "params.yaml", "mlflow.db", "mlruns", "models", "reports", "data/interim",
        "data/features/meta.json", "data/privacy.json", "data/sample"])
    run.params["export"]["holdout_share"] = 0.5
    (run / "params.yaml").write_text(json.dumps(run.params))  # JSON is YAML
    run_stages(run, ["export"])
    text = (run / "reports/at_risk.csv").read_text(encoding="utf-8-sig")
    held = {r["customer_id"] for r in csv.DictReader(io.StringIO(text, newline=""))
            if r["holdout"] == "true"}
    assert held
    monkeypatch.chdir(run.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
    scores = score_raw_logs(run.raw_dir).set_index("customer_id")
    assert set(scores.index[scores["holdout"]]) == held
    assert (scores.loc[sorted(held), "suggested_action"] == "Do not contact (control group)").all()
    assert not scores.loc[~scores["holdout"], "suggested_action"].str.startswith("Do not").any()


@pytest.mark.parametrize("case", ["missing_folder", "no_transactions"])
def test_a_bad_input_folder_is_one_line_on_stderr(in_run, tmp_path, case):
    raw = tmp_path / "nowhere"
    if case == "no_transactions":
        raw = copy_raw(in_run, tmp_path / "raw", tables=("customers",))
    code, stdout, stderr = cli("score", "--input", str(raw))
    assert code == 1
    assert stdout == ""
    assert stderr.startswith("churnlens score: error: ") and stderr.count("\n") == 1
    with pytest.raises(ChurnlensError):
        score_raw_logs(raw)


def test_output_and_as_of_need_input(in_run):
    code, _, _ = cli("score", "--output", "x.csv")
    assert code == 2


def test_an_unwritable_output_is_one_line(in_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, stdout, stderr = cli("score", "--input", str(in_run.raw_dir), "--output",
                               str(blocker / "scores.csv"))
    assert code == 1 and stdout == ""
    assert stderr.startswith("churnlens score: error: ") and stderr.count("\n") == 1
