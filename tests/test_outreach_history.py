"""The control-group history through many weekly export runs (churnlens.outreach_history via the
export stage): a customer keeps the arm of their first assignment for the whole window, and every
assignment whose window has passed is measured with its whole list, or reported under
`unmeasured` with the reason."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from churnlens import outreach_history, uplift
from churnlens.stages import export as export_stage
from test_outreach import _stage_project

HORIZON = 90


def _weekly_scores(root, week, n):
    """The scores of week `week`: churn probabilities drawn afresh, so customers come onto the
    top-n list, drop off it and come back within a window."""
    scores = pd.read_parquet(root / "reports" / "scores.parquet")
    rng = np.random.default_rng(100 + week)
    probability = rng.uniform(0.3, 0.95, n).round(3)
    scores = scores.assign(churn_probability=probability,
                           risk_tier=np.where(probability >= 0.5, "high", "medium"),
                           expected_revenue_at_risk=(probability
                                                     * scores["expected_revenue"]).round(2))
    scores.to_parquet(root / "reports" / "scores.parquet", index=False)


def _run(root, as_of, share):
    params = {"data": {"raw_dir": "raw"}, "snapshot": {"as_of": as_of},
              "label": {"horizon_days": HORIZON},
              "export": {"top_n": 40, "holdout_share": share}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    export_stage.run(root=root)
    text = (root / "reports" / "at_risk.csv").read_text(encoding="utf-8-sig")
    history = json.loads((root / "reports" / "at_risk_history.json").read_text())
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), history


def test_every_assignment_is_measured_with_its_whole_list_or_reported(tmp_path):
    """32 weekly lists of 40 out of 400 customers (over the history's 26 kept runs, so the
    oldest lists leave it), then a run after the last window. Old behaviour: sticky customers
    were recorded again on each later list, so a list whose run had left the history was still
    measured on its re-listed customers only (841 of 907 in the closed loop), and nothing said
    so."""
    n = 400
    _stage_project(tmp_path, n=n)
    rng = np.random.default_rng(3)
    active = [f"c{i:04d}" for i in range(n) if rng.random() < 0.6]
    pd.DataFrame({"customer_id": active, "timestamp": pd.Timestamp("2026-01-01"),
                  "amount": 1.0}).to_parquet(
        tmp_path / "data/interim/transactions.parquet", index=False)
    days = pd.date_range("2025-06-02", periods=32, freq="7D")
    made = []  # (list date, customer, holdout) of each assignment made on its list
    arm_of: dict[str, tuple[pd.Timestamp, bool]] = {}
    for week, day in enumerate(days):
        _weekly_scores(tmp_path, week, n)
        listed, history = _run(tmp_path, day.date().isoformat(), 0.3)
        run = next(r for r in history["sources"][0]["runs"] if r["as_of"] == str(day.date()))
        fresh = {a["customer_id"]: a for a in run.get("arms") or []
                 if a["assigned"] == str(day.date())}
        for row in listed.itertuples():
            holdout = row.holdout == "true"
            first = arm_of.get(row.customer_id)
            if first is not None and (day - first[0]).days < HORIZON:
                # still in the window of the first assignment: same arm, not assigned again
                assert holdout == first[1] and row.customer_id not in fresh
            else:
                assert row.customer_id in fresh and fresh[row.customer_id]["holdout"] == holdout
                arm_of[row.customer_id] = (day, holdout)
                made.append((str(day.date()), row.customer_id, holdout))
    final = (days[-1] + pd.Timedelta(days=HORIZON)).date().isoformat()
    _run(tmp_path, final, 0.3)
    report = json.loads((tmp_path / "reports" / "outreach.json").read_text())

    made = pd.DataFrame(made, columns=["list_date", "customer_id", "holdout"])
    per_list = made.groupby("list_date").size()
    measured = {x["list_date"]: x for x in report["lists"] if x["measured"]}
    for day, listed in measured.items():  # measured whole, not on the part of it listed again
        assert listed["customers"] == per_list[day], day
    unmeasured = {u["list_date"]: u for u in report["unmeasured"]}
    assert set(measured) | set(unmeasured) == set(per_list.index)  # nothing silently lost
    assert unmeasured, "the oldest lists leave the 26 runs the history keeps"
    for day, count in per_list.items():
        if day not in measured:
            assert unmeasured[day]["customers"] == count
            assert "dropped from the history" in unmeasured[day]["reason"]
    overall = {e["list_date"]: e for e in report["effects"] if e["action"] == "all actions"}
    for day in measured:
        assert overall[day]["treated"] + overall[day]["control"] == per_list[day]
    counts = report["assignments"]  # the final run's own list is not due yet
    assert counts["due"] == len(made) and counts["made"] > counts["due"]
    assert counts["measured"] + counts["unmeasured"] == counts["due"]
    assert counts["unmeasured"] == sum(u["customers"] for u in unmeasured.values())


def test_customers_no_longer_in_the_data_are_reported_not_counted_as_lost(tmp_path):
    _stage_project(tmp_path, n=120)
    first, _ = _run(tmp_path, "2026-03-02", 0.3)
    gone = set(first["customer_id"].iloc[:10])
    customers = pd.read_parquet(tmp_path / "data/interim/customers.parquet")
    customers[~customers["customer_id"].isin(gone)].to_parquet(
        tmp_path / "data/interim/customers.parquet", index=False)
    _run(tmp_path, "2026-06-08", 0.3)
    report = json.loads((tmp_path / "reports" / "outreach.json").read_text())
    overall = {(e["list_date"], e["action"]): e for e in report["effects"]}[
        ("2026-03-02", "all actions")]
    assert overall["treated"] + overall["control"] == len(first) - len(gone)
    [missing] = [u for u in report["unmeasured"] if u["list_date"] == "2026-03-02"]
    assert missing["customers"] == len(gone) and "customers table" in missing["reason"]


def _uplift_data(rng, n, recorded):
    """Measured assignments where contact helps customers with x < 0.5 (80 % vs 40 % stay) and
    drives away the others (30 % vs 60 %). With `recorded`, a third of the listed customers
    were never reached: they behave like control customers but are not held out."""
    x = rng.random(n)
    holdout = rng.random(n) < 0.5
    reached = ~holdout & (rng.random(n) < (2 / 3 if recorded else 1.0))
    helps = x < 0.5
    stays = np.where(reached, np.where(helps, 0.8, 0.3), np.where(helps, 0.4, 0.6))
    due = pd.DataFrame({"assigned": np.where(np.arange(n) < n // 2, "2026-01-05", "2026-01-12"),
                        "customer_id": [f"c{i}" for i in range(n)], "holdout": holdout,
                        "action": "Nurture", "tier": "high", "value": 100.0, "due": True})
    outcomes = due[["assigned", "customer_id"]].assign(retained=rng.random(n) < stays)
    rows = pd.DataFrame({"customer_id": due["customer_id"], "cutoff": pd.Timestamp("2025-12-31"),
                         "x": x})
    interventions = pd.DataFrame({"customer_id": due.loc[reached, "customer_id"],
                                  "timestamp": pd.Timestamp("2026-01-20"), "cost": 1.0})
    return due, outcomes, rows, interventions, x, reached


@pytest.mark.parametrize("recorded", [False, True])
def test_uplift_treats_the_recorded_contacts_as_treated(recorded):
    """With the interventions table the uplift model compares the contacted with the control
    customers (listed customers nobody reached are left out); without it, intention to treat."""
    rng = np.random.default_rng(11)
    due, outcomes, rows, interventions, x, reached = _uplift_data(rng, 2400, recorded)
    frame, _, info = outreach_history.recorded_outreach(
        due, interventions if recorded else None, HORIZON)
    data = outreach_history.uplift_rows(frame, outcomes, rows)
    treated = data["treated"].to_numpy(bool)
    if recorded:
        assert info["listed_not_contacted"] == int((~due["holdout"] & ~reached).sum()) > 0
        assert set(data.loc[treated, "customer_id"]) == set(due.loc[reached, "customer_id"])
        assert len(data) == int((reached | due["holdout"]).sum())
    else:
        assert info is None
        assert set(data.loc[treated, "customer_id"]) == set(due.loc[~due["holdout"],
                                                                    "customer_id"])
    model = uplift.fit_uplift(data[["x"]], treated, data["retained"])
    grid = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]})
    lift = model.predict(grid)
    # truth for the reached: +0.4 below 0.5 and -0.3 above it; intention to treat with a third
    # unreached would shrink both by a third (+0.27 / -0.2)
    assert lift[:3].mean() > 0.25 and lift[3:].mean() < -0.15
    if recorded:
        itt = outreach_history.uplift_rows(due, outcomes, rows)  # what ITT would have fitted
        itt_lift = uplift.fit_uplift(itt[["x"]], itt["treated"], itt["retained"]).predict(grid)
        assert lift[:3].mean() - lift[3:].mean() > itt_lift[:3].mean() - itt_lift[3:].mean()


def test_uplift_evaluation_on_held_out_lists_is_logged_to_the_training_run(
        tmp_path, monkeypatch, caplog):
    """export.rank_by revenue_saved with two measured lists: the later one is predicted by a
    model of the earlier one; the Qini of the uplift and of the risk ranking (with intervals)
    go to outreach.json and, as metrics at the list's step with the curve as an artifact, to the
    MLflow run of promotion.json. Without the store the stage still writes everything."""
    _stage_project(tmp_path, n=1000)
    features = (tmp_path / "data/features")
    features.mkdir(parents=True)
    rng = np.random.default_rng(8)
    ids = [f"c{i:04d}" for i in range(1000)]
    x = pd.Series(rng.random(len(ids)), index=ids)
    pd.DataFrame({"customer_id": ids, "cutoff": pd.Timestamp("2025-12-31"), "label": 0,
                  "x": x.to_numpy()}).to_parquet(features / "training.parquet", index=False)
    pd.DataFrame({"customer_id": ids, "x": x.to_numpy()}).to_parquet(
        features / "scoring.parquet", index=False)
    (features / "meta.json").write_text(json.dumps({"feature_columns": ["x"]}))

    def run(as_of):
        params = {"data": {"raw_dir": "raw"}, "snapshot": {"as_of": as_of},
                  "label": {"horizon_days": HORIZON},
                  # the effect depends on the feature x, which only the T-learner sees
                  "export": {"top_n": 1000, "holdout_share": 0.5, "rank_by": "revenue_saved",
                             "uplift_learner": "t"}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        export_stage.run(root=tmp_path)
        return json.loads((tmp_path / "reports/outreach.json").read_text())

    activity = []
    for day in ("2026-01-05", "2026-04-06"):  # 91 days apart: everyone assigned afresh
        run(day)
        history = json.loads((tmp_path / "reports/at_risk_history.json").read_text())
        arms = pd.DataFrame(next(r for r in history["sources"][0]["runs"]
                                 if r["as_of"] == day)["arms"])
        helps = x[arms["customer_id"]].to_numpy() < 0.5
        stays = np.where(helps, np.where(arms["holdout"], 0.4, 0.8),
                         np.where(arms["holdout"], 0.6, 0.3))
        kept = arms.loc[rng.random(len(arms)) < stays, "customer_id"]
        activity.append(pd.DataFrame({"customer_id": kept, "amount": 10.0,
                                      "timestamp": pd.Timestamp(day) + pd.Timedelta(days=30)}))
    pd.concat(activity).to_parquet(
        tmp_path / "data/interim/transactions.parquet", index=False)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}")
    (tmp_path / "reports/promotion.json").write_text(json.dumps({"run_id": "0123456789abcdef"}))
    report = run("2026-07-13")  # no store: a warning, nothing else changes
    assert "uplift evaluation not added to MLflow" in caplog.text
    comparison = report["uplift"]["comparison"]
    assert report["uplift"]["held_out_lists"] == ["2026-04-06"]
    assert comparison["customers"] == 1000 and set(comparison) >= {"uplift", "risk"}
    for ranking in ("uplift", "risk"):
        low, high = comparison[ranking]["qini_interval"]
        assert low <= comparison[ranking]["qini"] <= high
    assert comparison["uplift"]["qini_interval"][0] > 0  # contact helps half and hurts half

    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the project's own store, found under root
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    client = mlflow.MlflowClient(uri)  # no fluent API: other tests leave an active experiment
    experiment = client.create_experiment(  # artifacts in the project, not the working dir
        "outreach", artifact_location=str(tmp_path / "mlruns" / "outreach"))
    run_id = client.create_run(experiment).info.run_id
    (tmp_path / "reports/promotion.json").write_text(json.dumps({"run_id": run_id}))
    assert run("2026-07-13") == report
    [qini] = client.get_metric_history(run_id, "uplift_qini")
    assert qini.value == pytest.approx(comparison["uplift"]["qini"])
    assert qini.step == (pd.Timestamp("2026-04-06") - pd.Timestamp("1970-01-01")).days
    assert client.get_metric_history(run_id, "risk_qini_revenue_capped")
    [artifact] = client.list_artifacts(run_id, "outreach")
    assert artifact.path == "outreach/qini_curve_2026-04-06.csv"
    curve = pd.read_csv(client.download_artifacts(run_id, artifact.path, str(tmp_path)))
    assert set(curve["ranking"]) == {"uplift", "risk"} and curve["targeted_share"].max() == 1
