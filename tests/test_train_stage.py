"""The train stage end to end on a tiny synthetic features parquet (MLflow tracking faked)."""

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from churnlens.errors import ChurnlensError, NotEnoughHistoryError
from churnlens.metrics import METRIC_KEYS
from churnlens.stages import train as stage

AS_OF = date(2026, 8, 31)
PARAMS = {
    "label": {"definition": "inactivity", "horizon_days": 90},
    "features": {"cutoff_step_days": 30},
    "train": {"seed": 7, "cv_folds": 3, "calibration": "auto",
              "lgbm": {"n_estimators": 80, "learning_rate": 0.1, "num_leaves": 7,
                       "min_child_samples": 20},
              "early_stopping_rounds": 10, "register_model": False},
}


def feature_rows(n_customers: int = 150, n_cutoffs: int = 14, seed: int = 0) -> pd.DataFrame:
    """Labelled rows at monthly cutoffs ending 90 days before AS_OF."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_cutoffs):
        n = n_customers
        seg = rng.choice(["trial", "basic", "pro"], n)
        days = np.minimum(rng.exponential(20, n), 89.0)  # all still customers (< horizon)
        events = rng.poisson(25, n).astype(float)
        logit = -1.2 + 0.06 * (days - 20) - 0.05 * (events - 25) + 0.7 * (seg == "trial")
        frames.append(pd.DataFrame({
            "customer_id": [f"{i:05d}" for i in range(n)],
            "cutoff": AS_OF - timedelta(days=90 + 30 * k),
            "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64"),
            "segment": seg, "days_since_last_activity": days, "events_90d": events,
            "purchases_90d": rng.poisson(2, n).astype(float),
            "active_days_90d": rng.integers(0, 90, n).astype("int64"),
            "revenue_180d": rng.normal(90, 40, n),
            "days_since_last_purchase": np.where(rng.random(n) < 0.2, np.nan,
                                                 rng.exponential(30, n)),
        }))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def workdir(tmp_path):
    """The project folder the stage runs in (`root`; the working directory is left alone)."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (tmp_path / "data/features").mkdir(parents=True)
    (tmp_path / "data/interim").mkdir(parents=True)
    (tmp_path / "data/interim/validation.json").write_text("{}")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "data/interim/customers.parquet")
    (tmp_path / "data/features/meta.json").write_text(json.dumps({"as_of": AS_OF.isoformat()}))
    return tmp_path


@pytest.fixture
def tracked(monkeypatch):
    import churnlens.tracking as tracking

    calls = []

    def fake_log(**kwargs):
        calls.append(kwargs)
        return {"run_id": "fake", "registered": False}

    monkeypatch.setattr(tracking, "log_training_run", fake_log)
    return calls


def test_stage_end_to_end(workdir, tracked):
    feature_rows().to_parquet(workdir / "data/features/training.parquet", index=False)
    result = stage.run(root=workdir)

    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    assert metrics["test_cutoff"] == (AS_OF - timedelta(days=90)).isoformat()
    assert metrics["n_test"] == 150 and 0 < metrics["churn_rate"] < 1
    assert set(metrics["model"]) == set(METRIC_KEYS)
    for name in ("recency", "logistic"):
        assert set(metrics["baselines"][name]) == set(METRIC_KEYS)
    assert metrics["model"]["roc_auc"] > 0.7
    assert metrics["calibration_method"] in ("sigmoid", "isotonic")
    assert metrics["slices"]["train"]["rows"] == 11 * 150  # 14 cutoffs - test - 2 purged
    assert metrics["split"] == "out_of_time"
    active = metrics["populations"]["active"]
    assert active["n"] == 150 and set(active["model"]) == set(METRIC_KEYS)  # all < 90 days
    gate = metrics["gate"]
    assert gate["shipped"] in ("lightgbm", "logistic", "blend")
    simple = {name: metrics["baselines"][name] for name in ("recency", "logistic")}
    best_auc = max(b["roc_auc"] for b in simple.values())
    best_loss = min(b["log_loss"] for b in simple.values())
    test = gate["test"]
    assert test["best_simple_auc"]["name"] in simple
    assert test["best_simple_auc"]["roc_auc"] == best_auc
    assert test["best_simple_log_loss"]["log_loss"] == best_loss
    for scorer in ("lightgbm", "model"):   # beats = at least the best AUC and at most the loss
        block = metrics[scorer]
        assert test[f"{scorer}_beats_simple"] is (block["roc_auc"] >= best_auc
                                                  and block["log_loss"] <= best_loss), scorer
    assert gate["summary"].startswith("Scores come from")

    for name in ("calibration.csv", "lift.csv", "pr_curve.csv", "calibration.png", "lift.png"):
        assert (workdir / "reports/plots" / name).stat().st_size > 0, name
    calib = pd.read_csv(workdir / "reports/plots/calibration.csv")
    assert {"model", "mean_predicted", "observed_rate", "count"} <= set(calib.columns)
    assert set(calib["model"]) == {"model", "lightgbm", "recency", "logistic"}

    summary = json.loads((workdir / "reports/train_summary.json").read_text())
    assert summary["trained_at"] == AS_OF.isoformat()
    assert "segment" in summary["feature_columns"] and "label" not in summary["feature_columns"]
    assert len(summary["data_fingerprint"]) == 64
    # the shipped model is refitted on every labelled cutoff, the test one included
    assert summary["shipped_rows"] == 14 * 150 and summary["shipped_cutoffs"] == 14
    assert summary["train_window"]["end"] == metrics["test_cutoff"]

    (call,) = tracked
    assert call["metrics"] == result["metrics"]
    assert call["model_dir"] == workdir / "models/churn_model" and call["root"] == workdir
    assert len(call["test_features"]) == 150 and "customer_id" not in call["test_features"]
    assert call["fingerprint"] == summary["data_fingerprint"]
    assert json.loads((workdir / "reports/promotion.json").read_text()) == result["decision"]

    from churnlens.packaging import load_model, to_model_input

    loaded = load_model(workdir / "models/churn_model")
    test_rows = pd.read_parquet(workdir / "data/features/training.parquet").tail(150)
    out = loaded.predict(to_model_input(test_rows, summary["feature_columns"]))
    assert list(out.columns) == ["churn_probability"]
    assert out["churn_probability"].between(0, 1).all()
    assert not list((workdir / "models").glob(".churn_model*"))  # no temp dirs left behind


def test_stage_is_reproducible(workdir, tracked, monkeypatch):
    monkeypatch.setattr(stage, "save_model", lambda *args: None)
    feature_rows().to_parquet(workdir / "data/features/training.parquet", index=False)
    stage.run(root=workdir)
    first = (workdir / "reports/metrics.json").read_text()
    stage.run(root=workdir)
    assert (workdir / "reports/metrics.json").read_text() == first


def test_stage_trains_from_three_cutoffs_on_a_customer_holdout(workdir, tracked):
    """Too short for an out-of-time test, long enough for a model: a quarter of the customers
    is the test slice, and metrics.json says so."""
    feature_rows(n_cutoffs=3).to_parquet(workdir / "data/features/training.parquet", index=False)
    stage.run(root=workdir)
    metrics = json.loads((workdir / "reports/metrics.json").read_text())
    assert metrics["split"] == "customer_holdout"
    assert metrics["n_test"] == round(150 * 0.25)
    assert (workdir / "models/churn_model/MLmodel").exists()


def test_stage_without_labelled_rows_stops(workdir, tracked):
    rows = feature_rows(n_cutoffs=2).assign(label=pd.NA)
    rows.iloc[0:0].to_parquet(workdir / "data/features/training.parquet", index=False)
    with pytest.raises(NotEnoughHistoryError, match="no labelled"):
        stage.run(root=workdir)


def test_stage_without_features_says_what_to_run(workdir):
    with pytest.raises(ChurnlensError, match="run `dvc repro features` first"):
        stage.run(root=workdir)


def test_stage_refuses_features_of_another_horizon(workdir):
    feature_rows(n_cutoffs=4).to_parquet(workdir / "data/features/training.parquet",
                                         index=False)
    (workdir / "data/features/meta.json").write_text(
        json.dumps({"as_of": AS_OF.isoformat(), "horizon_days": 30}))
    with pytest.raises(ChurnlensError, match=r"built with horizon_days=30 but "
                       r"label.horizon_days=90: run `dvc repro features` first"):
        stage.run(root=workdir)
    assert not (workdir / "reports/metrics.json").exists()


def test_late_imports_run_in_a_daemon_thread():
    import sys

    from churnlens.stages.train import LATE_IMPORTS, import_in_background

    thread = import_in_background(("json", "no_such_module_here", "colorsys"))
    assert thread.daemon
    thread.join(timeout=60)
    assert not thread.is_alive() and "colorsys" in sys.modules  # a failed import is skipped
    assert "mlflow.pyfunc" in LATE_IMPORTS and "matplotlib.figure" in LATE_IMPORTS
