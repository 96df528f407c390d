"""Issue 12 part 9 and part 8 (`mlflow.db` deleted): MLflow stays consistent after a kill, the
registry alone decides which model scores (through the real score stage), a moved project folder
still scores, and a deleted store gives a clear message and scores with the last approved model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from churnlens import paths, tracking
from churnlens.packaging import load_model, save_model
from model_fixtures import FEATURES, churn_rows, fitted_model
from pipeline_helpers import _empty_mlflow_db

PARAMS = {"data": {"raw_dir": "data/sample"}, "train": {"register_model": True},
          "label": {"horizon_days": 90},
          "score": {"tiers": {"high": 0.5, "medium": 0.2, "low": 0.0},
                    "revenue_window_days": 180}}
TEST = churn_rows(300, seed=42)


def make_project(root: Path, monkeypatch) -> Path:
    """A project folder with its own default store (`./mlflow.db`, `./mlruns`) and features."""
    root.mkdir(parents=True)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copyfile(_empty_mlflow_db(), "mlflow.db")
    Path("params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    paths.SCORING_ROWS.parent.mkdir(parents=True)
    churn_rows(50, seed=8).assign(cutoff=pd.Timestamp("2026-08-31")).to_parquet(
        paths.SCORING_ROWS)
    return root


def train(seed: int, auc: float) -> dict:
    """What the train stage does around MLflow: save models/churn_model, log, promotion.json."""
    shutil.rmtree(paths.MODEL_DIR, ignore_errors=True)
    save_model(fitted_model(seed), FEATURES, paths.MODEL_DIR, TEST)
    metrics = {"test_cutoff": "2026-01-01", "model": {"roc_auc": auc, "brier": 1 - auc}}
    decision = tracking.log_training_run(PARAMS, metrics, paths.MODEL_DIR, [], f"fp{seed}",
                                         TEST[FEATURES], TEST["label"])
    paths.PROMOTION.parent.mkdir(exist_ok=True)
    paths.PROMOTION.write_text(json.dumps(decision))
    return decision


def score() -> tuple[dict, np.ndarray]:
    from churnlens.stages import score as stage

    stage.run(Path("params.yaml"))
    serving = json.loads(paths.SERVING.read_text())
    return serving, pd.read_parquet(paths.PREDICTIONS)["churn_probability"].to_numpy()


def expected(seed: int) -> np.ndarray:
    rows = pd.read_parquet(paths.SCORING_ROWS).sort_values("customer_id")
    return fitted_model(seed).predict_proba(rows[FEATURES])[:, 1]


@pytest.fixture(scope="module")
def _two_versions_template(tmp_path_factory):
    """Built once: v1 (seed 0) champion, then v2 (seed 1) promoted over it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        root = make_project(tmp_path_factory.mktemp("template") / "project", monkeypatch)
        assert train(0, 0.99)["is_champion"]
        second = train(1, 0.999)
        assert second["is_champion"] and second["version"] == "2"
        assert not np.allclose(expected(0), expected(1))
    return root


@pytest.fixture
def two_versions(_two_versions_template, tmp_path, monkeypatch):
    """A copy of the template project (the store follows it, see `tracking.relocate_store`):
    models/churn_model is v2, the champion."""
    from mlflow.tracking._tracking_service import utils

    root = tmp_path / "project"
    shutil.copytree(_two_versions_template, root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    utils._artifact_repos_cache.clear()   # this process cached the template's artifact folders
    tracking._mlflow()                    # and pointed MLflow at the template's store
    return root


def test_rollback_changes_which_model_scores_through_the_score_stage(two_versions):
    serving, proba = score()
    assert serving["version"] == "2" and serving["model_dir"] == str(paths.SERVING_MODEL_DIR)
    np.testing.assert_array_equal(proba, expected(1))

    assert tracking.move_champion(None, rollback=True, name="churnlens-sample")["to"] == "1"
    serving, proba = score()
    assert serving["version"] == "1" and "moved by hand" in serving["reason"]
    assert not serving["waiting_for_approval"]
    np.testing.assert_array_equal(proba, expected(0))
    # explain reads the model that scored, not models/churn_model
    from churnlens.stages.explain import scoring_estimator

    assert scoring_estimator().blend_weight_ == fitted_model(0).blend_weight_
    rows = churn_rows(20, seed=3)[FEATURES]
    np.testing.assert_array_equal(scoring_estimator().predict_proba(rows),
                                  fitted_model(0).predict_proba(rows))

    tracking.move_champion("2", name="churnlens-sample")
    assert score()[0]["version"] == "2"


def test_a_challenger_never_scores_even_when_models_churn_model_is_newer(two_versions):
    lost = train(0, 0.10)                      # v3, worse: stays challenger
    assert not lost["is_champion"]
    serving, proba = score()
    assert serving["version"] == "2" and serving["waiting_for_approval"]
    np.testing.assert_array_equal(proba, expected(1))


def test_a_moved_project_folder_still_scores_and_tracks(two_versions, tmp_path, monkeypatch):
    train(0, 0.10)                             # champion v2 must come from the registry
    moved = tmp_path / "elsewhere" / "project"
    moved.parent.mkdir()
    shutil.move(str(two_versions), str(moved))
    monkeypatch.chdir(moved)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")   # mlflow.set_tracking_uri exported the old path
    serving, proba = score()
    assert serving["version"] == "2"
    np.testing.assert_array_equal(proba, expected(1))
    import sqlite3

    with sqlite3.connect("mlflow.db") as db:
        stored = [r[0] for t, c in tracking.ARTIFACT_COLUMNS
                  for r in db.execute(f"SELECT {c} FROM {t}")]
    assert stored and not [s for s in stored if str(two_versions) in s]
    # later stages still add artifacts to the run, inside the moved folder (each stage is a new
    # process; this one cached the run's artifact folder from before the move)
    from mlflow.tracking._tracking_service import utils

    utils._artifact_repos_cache.clear()
    run_id = json.loads(paths.PROMOTION.read_text())["run_id"]
    Path("note.csv").write_text("a\n1\n")
    tracking.log_to_run(run_id, [Path("note.csv")])
    assert list(moved.glob(f"mlruns/*/{run_id}/artifacts/explain/note.csv"))


def test_a_deleted_mlflow_db_scores_with_the_kept_approved_model(two_versions, caplog):
    train(0, 0.10)                              # v3 lost: models/churn_model is not approved
    assert score()[0]["version"] == "2"
    Path("mlflow.db").unlink()
    serving, proba = score()
    assert serving["scored_by"] == "approved model (kept)" and serving["version"] == "2"
    assert "dvc repro -f -s train" in serving["reason"]
    np.testing.assert_array_equal(proba, expected(1))
    assert not Path("mlflow.db").exists()       # reading never creates an empty store
    assert any("does not exist" in r.getMessage() for r in caplog.records)

    from churnlens.stages import explain

    explain._track([], {})                      # a warning, not a crash
    with pytest.raises(tracking.TrackingStoreMissing, match="dvc repro -f -s train") as err:
        tracking.move_champion(None, rollback=True, name="churnlens-sample")
    assert "\n" not in str(err.value)

    shutil.rmtree(paths.SERVING_MODEL_DIR)      # nothing kept: the new model, flagged
    serving, proba = score()
    assert serving["approved"] is False and "unapproved" in serving["reason"]
    np.testing.assert_array_equal(proba, expected(0))


def test_a_tampered_champion_in_mlruns_is_refused(two_versions):
    from churnlens.packaging import ModelFileError

    train(0, 0.10)
    champion = next(Path("mlruns").glob("*/models/*/artifacts/artifacts/model.json"))
    for spec_file in Path("mlruns").glob("*/models/*/artifacts/artifacts/model.json"):
        spec = json.loads(spec_file.read_text())
        spec["blend_weight"] = 0.0
        spec_file.write_text(json.dumps(spec))
    assert champion.exists()
    with pytest.raises(ModelFileError, match="digest recorded at training"):
        score()


# -- kills ----------------------------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_a_killed_training_are_cleaned_at_the_next_start(two_versions):
    import socket

    import mlflow

    client = mlflow.MlflowClient()
    name = "churnlens-sample"
    experiment = client.get_experiment_by_name("churnlens")
    dead = {tracking.PID_TAG: str(_dead_pid()), tracking.HOST_TAG: socket.gethostname(),
            tracking.STARTED_TAG: "1.0"}
    stale = client.create_run(experiment.experiment_id, tags=dead)
    alive = client.create_run(experiment.experiment_id, tags={
        tracking.PID_TAG: str(__import__("os").getpid()), tracking.HOST_TAG: socket.gethostname(),
        tracking.STARTED_TAG: f"{tracking._process_started(__import__('os').getpid()):.3f}"})
    source = client.get_model_version(name, "2").source
    # killed between "champion moved" and "ready": v3 holds the champion alias
    orphan = client.create_model_version(name, source, run_id=stale.info.run_id, tags={
        **dead, tracking.STATE_TAG: "pending", tracking.CHAMPION_BEFORE_TAG: "2"})
    client.set_registered_model_alias(name, "challenger", orphan.version)
    client.set_registered_model_alias(name, "champion", orphan.version)
    busy = client.create_model_version(name, source, run_id=alive.info.run_id, tags={
        **alive.data.tags, tracking.STATE_TAG: "pending"})

    cleaned = tracking.clean_stale_runs(client, experiment.experiment_id)
    assert cleaned["killed_runs"] == [stale.info.run_id]
    assert cleaned["deleted_versions"] == [f"{name} v{orphan.version}"]
    assert client.get_run(stale.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"   # still training
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    versions = {v.version for v in client.search_model_versions(f"name='{name}'")}
    assert str(orphan.version) not in {str(v) for v in versions}
    assert str(busy.version) in {str(v) for v in versions}
    with pytest.raises(Exception, match="still being registered"):
        tracking.move_champion(str(busy.version), name=name)
    client.set_terminated(alive.info.run_id)


KILLED_TRAIN = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from churnlens import packaging, tracking
from model_fixtures import FEATURES, churn_rows
from test_mlflow_state import PARAMS, TEST

where = {where!r}
def stuck(*args, **kwargs):
    Path("stuck").write_text(str(os.getpid()))
    time.sleep(120)
if where == "run":
    tracking.log_saved_model = stuck
else:
    tracking._describe_version = stuck
metrics = {{"test_cutoff": "2026-01-01", "model": {{"roc_auc": 0.9999, "brier": 0.0001}}}}
tracking.log_training_run(PARAMS, metrics, Path("models/churn_model"), [], "fpk",
                          TEST[FEATURES], TEST["label"])
"""


@pytest.mark.slow
@pytest.mark.parametrize("where,how", [("run", "SIGKILL"), ("registry", "SIGKILL"),
                                       ("registry", "SIGTERM")])
def test_a_real_kill_leaves_mlflow_consistent(two_versions, where, how):
    """A training process killed inside the run or while registering: afterwards (at once for
    SIGTERM, at the next training start for SIGKILL) no RUNNING run, no unfinished version, and
    the champion is where it was."""
    import signal
    import time

    import mlflow

    script = KILLED_TRAIN.format(tests=str(Path(__file__).parent), where=where)
    child = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(1200):
        if Path("stuck").exists() or child.poll() is not None:
            break
        time.sleep(0.1)
    assert Path("stuck").exists(), "the child never reached the point to kill it at"
    child.send_signal(getattr(signal, how))
    child.wait(timeout=60)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("churnlens")
    tracking.clean_stale_runs(client, experiment.experiment_id)
    runs = client.search_runs([experiment.experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    versions = client.search_model_versions("name='churnlens-sample'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert str(client.get_model_version_by_alias("churnlens-sample", "champion").version) == "2"
    rows = pd.read_parquet(paths.SCORING_ROWS).sort_values("customer_id")
    np.testing.assert_array_equal(   # the files the kill left still are v2, the champion
        load_model(paths.MODEL_DIR).predict(rows)["churn_probability"].to_numpy(), expected(1))


def test_score_and_explain_run_under_a_root_from_another_working_directory(
        two_versions, tmp_path, monkeypatch):
    """Issue 15: `run(root=...)` reads the project's own store and keeps the champion's copy,
    scores and plots in it (and the plots in its MLflow run), whatever the working directory."""
    from churnlens.catalog import Catalog
    from churnlens.stages import explain
    from churnlens.stages import score as stage

    root, want = two_versions, expected(1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    stage.run(root=root)
    serving = json.loads((root / paths.SERVING).read_text())
    assert serving["version"] == "2" and serving["model_dir"] == str(paths.SERVING_MODEL_DIR)
    np.testing.assert_array_equal(
        pd.read_parquet(root / paths.PREDICTIONS)["churn_probability"].to_numpy(), want)
    assert (root / paths.SERVING_MODEL_DIR / "approved.json").is_file()
    assert explain.scoring_estimator(Catalog(root)).blend_weight_ == \
        fitted_model(1).blend_weight_
    explain.run(root=root)
    assert (root / paths.SCORES).is_file() and (root / paths.PLOTS / "importance.png").is_file()
    run_id = json.loads((root / paths.PROMOTION).read_text())["run_id"]
    assert list(root.glob(f"mlruns/*/{run_id}/artifacts/explain/importance.csv"))
    assert not list(elsewhere.iterdir())
