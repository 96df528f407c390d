
from churnlens import tracking
from churnlens.packaging import save_model
from model_fixtures import FEATURES, churn_rows, fitted_model


def test_promotion_needs_auc_and_brier_at_least_as_good():
    champion = {"roc_auc": 0.80, "brier": 0.15}
    assert tracking.decide_promotion({"roc_auc": 0.80, "brier": 0.15}, champion)[0]
    assert not tracking.decide_promotion({"roc_auc": 0.81, "brier": 0.16}, champion)[0]
    assert not tracking.decide_promotion({"roc_auc": 0.79, "brier": 0.10}, champion)[0]
    assert (tracking.decide_promotion({"roc_auc": 0.5, "brier": 0.3}, None)
            == (True, "no champion yet"))


def test_numeric_metrics_flatten_and_skip_non_numbers():
    metrics = {"test_cutoff": "2026-01-01", "n_test": 10,
               "model": {"roc_auc": 0.8, "ece": None}, "baselines": {"recency": {"brier": 0.2}}}
    assert tracking.numeric_metrics(metrics) == {"n_test": 10.0, "model.roc_auc": 0.8,
                                                 "baselines.recency.brier": 0.2}


def test_fingerprint_changes_with_content(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"1")
    first = tracking.fingerprint_dir(tmp_path)
    (tmp_path / "a.parquet").write_bytes(b"2")
    assert tracking.fingerprint_dir(tmp_path) != first


def test_training_run_is_logged_registered_and_a_worse_model_stays_challenger(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store
    test = churn_rows(300, seed=42)
    params = {"train": {"register_model": True}, "label": {"horizon_days": 90}}
    good, bad = fitted_model(0), fitted_model(1)
    save_model(good, FEATURES, tmp_path / "good", test)
    save_model(bad, FEATURES, tmp_path / "bad", test)
    metrics = {"test_cutoff": "2026-01-01", "model": {"roc_auc": 0.9, "brier": 0.1}}
    first = tracking.log_training_run(params, metrics, tmp_path / "good", [], "fp1",
                                      test[FEATURES], test["label"], root=tmp_path)
    assert first["is_champion"] and first["version"] == "1"
    worse = {"test_cutoff": "2026-01-01", "model": {"roc_auc": 0.5, "brier": 0.3}}
    second = tracking.log_training_run(params, worse, tmp_path / "bad", [], "fp2",
                                       test[FEATURES], test["label"], root=tmp_path)
    assert not second["is_champion"] and second["version"] == "2"

    import mlflow

    client = mlflow.MlflowClient()
    entry = first["registered_model"]
    assert str(client.get_model_version_by_alias(entry, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(entry, "challenger").version) == "2"
    run = client.get_run(second["run_id"])
    assert run.data.tags["data_fingerprint"] == "fp2" and "git_commit" in run.data.tags
    assert run.data.metrics["model.roc_auc"] == 0.5
    assert run.data.params["label.horizon_days"] == "90"
    # the store and the artifacts are the project's (root), not the working directory's
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run.info.artifact_uri.startswith(str(tmp_path.resolve() / "mlruns"))
    assert list(tmp_path.glob("mlruns/*/models/*/artifacts/MLmodel"))


def test_promote_and_rollback_move_the_champion_alias(tmp_path, monkeypatch):
    import mlflow
    import pytest

    from churnlens.errors import ChurnlensError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking._mlflow()
    client = mlflow.MlflowClient()
    client.create_registered_model("churnlens")
    for _ in range(3):
        client.create_model_version("churnlens", source=str(tmp_path))
    assert tracking.move_champion("3") == {"action": "promote", "from": None, "to": "3"}
    assert tracking.move_champion(None, rollback=True)["to"] == "2"
    assert str(client.get_model_version_by_alias("churnlens", "champion").version) == "2"
    assert client.get_model_version("churnlens", "2").tags["champion_set_by"] == "rollback"
    with pytest.raises(ChurnlensError, match="no version 9"):
        tracking.move_champion("9")


def test_later_stages_add_artifacts_to_the_training_run(tmp_path, monkeypatch):

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store
    client = tracking._mlflow(tmp_path).MlflowClient()        # tmp_path/mlflow.db
    experiment = client.create_experiment("churnlens",
                                          artifact_location=str(tmp_path / "mlruns" / "1"))
    run = client.create_run(experiment)
    (tmp_path / "importance.csv").write_text("feature,mean_abs_shap\nx,1.0\n")
    tracking.log_to_run(run.info.run_id, [tmp_path / "importance.csv"],
                        {"explain.ms_per_customer": 0.5}, root=tmp_path)
    assert list(tmp_path.glob("mlruns/1/*/artifacts/explain/importance.csv"))
    assert ([a.path for a in client.list_artifacts(run.info.run_id, "explain")]
            == ["explain/importance.csv"])
    assert client.get_run(run.info.run_id).data.metrics["explain.ms_per_customer"] == 0.5


def _clear_dvc_env(monkeypatch):
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE", "DVC_ROOT"):
        monkeypatch.delenv(name, raising=False)


def _git(cwd, *args):
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                   cwd=cwd, check=True, capture_output=True)


def test_commit_is_dirty_only_when_tracked_source_or_params_change(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "reports").mkdir()
    (tmp_path / "src" / "model.py").write_text("A = 1\n")
    (tmp_path / "params.yaml").write_text("train:\n  seed: 7\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: x\n    metrics:\n    - reports/headline.json:\n"
        "        cache: false\n    outs:\n    - models/m\n")
    (tmp_path / "reports" / "headline.json").write_text("{}\n")
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    clean = tracking.git_state(tmp_path)
    assert clean["dirty"] is False and clean["branch"] == "main" and len(clean["commit"]) == 40

    # the pipeline rewrites dvc.lock and its own (git-tracked) metrics: still the commit's code
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  train: {cmd: x}\n")
    (tmp_path / "reports" / "headline.json").write_text('{"auc": 0.9}\n')
    (tmp_path / "scratch.py").write_text("untracked\n")
    assert tracking.git_state(tmp_path)["dirty"] is False
    assert not tracking.git_commit(tmp_path).endswith("-dirty")

    (tmp_path / "src" / "model.py").write_text("A = 2\n")
    dirty = tracking.git_state(tmp_path)
    assert dirty["dirty"] is True and dirty["changed"] == ["src/model.py"]
    assert tracking.git_commit(tmp_path) == clean["commit"] + "-dirty"

    _git(tmp_path, "checkout", "-q", "--", "src/model.py")
    (tmp_path / "params.yaml").write_text("train:\n  seed: 8\n")
    assert tracking.git_state(tmp_path)["changed"] == ["params.yaml"]
    assert tracking.git_state(tmp_path / "nowhere")["commit"] == "unknown"


def test_run_is_named_tagged_with_datasets_and_the_version_described(tmp_path, monkeypatch):
    import json

    import mlflow
    import pandas as pd

    _clear_dvc_env(monkeypatch)
    monkeypatch.setenv("DVC_EXP_NAME", "leafy-pods")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    interim = tmp_path / "interim"
    interim.mkdir()
    customers = pd.DataFrame({"customer_id": ["001", "002"],
                              "signup_date": pd.to_datetime(["2025-01-01"] * 2),
                              "email": ["a@x.invalid", "b@x.invalid"]})
    customers.to_parquet(interim / "customers.parquet")
    pd.DataFrame({"customer_id": ["001"], "amount": [9.5]}).to_parquet(
        interim / "transactions.parquet")
    validation = {"customers": {"rows_in": 3, "rows_accepted": 2, "rows_quarantined": 1}}
    test = churn_rows(300, seed=42)
    save_model(fitted_model(0), FEATURES, tmp_path / "model", test)
    metrics = {"test_cutoff": "2026-05-31", "n_test": 300,
               "model": {"roc_auc": 0.81, "pr_auc": 0.6, "brier": 0.12},
               "populations": {"active": {"model": {"roc_auc": 0.77}}},
               "gate": {"shipped": "blend", "summary": "Scores come from a blend.",
                        "test": {"model_beats_simple": True}}}
    params = {"data": {"raw_dir": "data/sample"}, "train": {"register_model": True},
              "label": {"horizon_days": 90}}
    decision = tracking.log_training_run(
        params, metrics, tmp_path / "model", [], "fp", test[["customer_id", *FEATURES]],
        test["label"], as_of="2026-08-31", interim_dir=interim, validation=validation,
        root=tmp_path)

    client = mlflow.MlflowClient()
    run = client.get_run(decision["run_id"])
    assert run.info.run_name == "as_of 2026-08-31 · leafy-pods · sample" == decision["run_name"]
    tags = run.data.tags
    assert tags["dvc_experiment"] == tags["dvc_exp_name"] == "leafy-pods"
    assert tags["dvc_baseline_rev"] == "abc123" and tags["dvc_origin"] == "dvc exp run"
    assert tags["data_source"] == "sample" and tags["as_of"] == "2026-08-31"
    assert tags["scorer"] == "blend" and tags["git_commit"] == "unknown"

    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"customers", "transactions", "test_slice_2026-05-31"}
    customers = inputs["customers"].dataset
    columns = [c["name"] for c in json.loads(customers.schema)["mlflow_colspec"]]
    assert columns == ["signup_date"]   # no ids, no personal data
    assert json.loads(customers.profile) == {"num_rows": 2, "num_columns": 3, "rows_in": 3,
                                             "rows_accepted": 2, "rows_quarantined": 1}
    test_slice = inputs["test_slice_2026-05-31"]
    assert {t.key: t.value for t in test_slice.tags}["mlflow.data.context"] == "testing"
    slice_columns = {c["name"] for c in json.loads(test_slice.dataset.schema)["mlflow_colspec"]}
    assert slice_columns == {*FEATURES, "label"}

    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    version = client.get_model_version(decision["registered_model"], decision["version"])
    for text in ("sample (data/sample)", "as_of 2026-08-31", "ROC AUC 0.810", "Brier 0.120",
                 "active customers: ROC AUC 0.770", "Scorer: blend",
                 "Gate: Scores come from a blend.", "Promotion: champion", "leafy-pods"):
        assert text in version.description
    assert version.tags["scorer"] == "blend" and version.tags["as_of"] == "2026-08-31"
    assert version.tags["roc_auc"] == "0.8100" and version.tags["data_source"] == "sample"


def test_run_name_falls_back_to_the_git_branch_outside_dvc_exp_run(monkeypatch):
    _clear_dvc_env(monkeypatch)
    assert tracking.dvc_context("main") == {"experiment": "main", "origin": "direct"}
    monkeypatch.setenv("DVC_STAGE", "train")
    assert tracking.dvc_context("feature-x") == {"experiment": "feature-x",
                                                 "origin": "dvc repro", "stage": "train"}
    assert tracking.dvc_context(None)["experiment"] == "workspace"
    assert tracking.data_source({"data": {"raw_dir": "/srv/logs/acme/"}}) == "acme"
    assert tracking.run_name("2026-08-31", "main", "sample") == "as_of 2026-08-31 · main · sample"


def test_each_data_source_has_its_own_registry_entry():
    name = tracking.registered_model_name
    assert name({"data": {"raw_dir": "data/sample"}}) == "churnlens-sample"
    assert name({"data": {"raw_dir": "/exports/shop A/"}}) == "churnlens-shop-A"
    assert name({"data": {"raw_dir": "/x/other"}}) != name({"data": {"raw_dir": "data/sample"}})


def test_a_champion_that_learnt_from_the_test_slice_is_not_graded_on_it(tmp_path, monkeypatch):
    """The shipped model is refitted up to its as_of: next week's test labels overlap what it
    learnt. On the same slice of the same data (an experiment) its recorded test figures count;
    on a new slice the new model takes over if it beats the simple models."""
    assert tracking.saw_test_slice("2026-08-31", "2026-06-02")
    assert not tracking.saw_test_slice("2026-05-31", "2026-06-02")
    assert not tracking.saw_test_slice(None, "2026-06-02")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    test = churn_rows(300, seed=42)
    params = {"train": {"register_model": True}, "data": {"raw_dir": "data/sample"}}
    save_model(fitted_model(0), FEATURES, tmp_path / "m", test)

    def train(as_of, cutoff, fingerprint, auc, beats=True):
        metrics = {"test_cutoff": cutoff, "model": {"roc_auc": auc, "brier": 0.1},
                   "gate": {"test": {"model_beats_simple": beats}}}
        return tracking.log_training_run(params, metrics, tmp_path / "m", [], fingerprint,
                                         test[FEATURES], test["label"], as_of=as_of,
                                         root=tmp_path)

    assert train("2026-08-31", "2026-06-02", "week1", 0.90)["is_champion"]
    # an experiment on the same data: compared with the champion's own honest test figures
    assert not train("2026-08-31", "2026-06-02", "week1", 0.80)["is_champion"]
    assert train("2026-08-31", "2026-06-02", "week1", 0.95)["is_champion"]
    # next week: the champion saw the new slice; the new model must beat the simple models
    lost = train("2026-09-07", "2026-06-09", "week2", 0.70, beats=False)
    assert not lost["is_champion"] and "learnt from this test slice" in lost["reason"]
    assert train("2026-09-07", "2026-06-09", "week2", 0.70, beats=True)["is_champion"]


def test_relocate_store_repoints_only_artifacts_that_moved_with_the_project(tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE experiments (experiment_id INTEGER, artifact_location TEXT)")
        con.execute("CREATE TABLE runs (artifact_uri TEXT)")
        con.execute("CREATE TABLE model_versions (storage_location TEXT)")
        con.executemany("INSERT INTO experiments VALUES (?, ?)",
                        [(1, "/old/proj/mlruns/1"), (2, "/shared/store/mlruns/2")])
        con.executemany("INSERT INTO runs VALUES (?)", [("/old/proj/mlruns/1/abc/artifacts",),
                                                        ("file:///old/proj/mlruns/1/x",),
                                                        ("/shared/store/mlruns/2/def",)])
        con.execute("INSERT INTO model_versions VALUES ('/old/proj/mlruns/1/models/m/a')")
    (tmp_path / "mlruns" / "1").mkdir(parents=True)   # experiment 1 came along, 2 did not
    assert tracking.relocate_store(db, tmp_path) == 4
    with sqlite3.connect(db) as con:
        rows = [r[0] for t, c in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                                  ("model_versions", "storage_location"))
                for r in con.execute(f"SELECT {c} FROM {t}")]
    new = str(tmp_path.resolve())
    assert rows == [f"{new}/mlruns/1", "/shared/store/mlruns/2", f"{new}/mlruns/1/abc/artifacts",
                    f"file://{new}/mlruns/1/x", "/shared/store/mlruns/2/def",
                    f"{new}/mlruns/1/models/m/a"]
    assert tracking.relocate_store(db, tmp_path) == 0     # idempotent
