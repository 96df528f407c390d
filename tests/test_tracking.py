
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
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    test = churn_rows(300, seed=42)
    params = {"train": {"register_model": True}, "label": {"horizon_days": 90}}
    good, bad = fitted_model(0), fitted_model(1)
    save_model(good, FEATURES, tmp_path / "good", test)
    save_model(bad, FEATURES, tmp_path / "bad", test)
    metrics = {"test_cutoff": "2026-01-01", "model": {"roc_auc": 0.9, "brier": 0.1}}
    first = tracking.log_training_run(params, metrics, tmp_path / "good", [], "fp1",
                                      test[FEATURES], test["label"])
    assert first["is_champion"] and first["version"] == "1"
    worse = {"test_cutoff": "2026-01-01", "model": {"roc_auc": 0.5, "brier": 0.3}}
    second = tracking.log_training_run(params, worse, tmp_path / "bad", [], "fp2",
                                       test[FEATURES], test["label"])
    assert not second["is_champion"] and second["version"] == "2"

    import mlflow

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("churnlens", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("churnlens", "challenger").version) == "2"
    run = client.get_run(second["run_id"])
    assert run.data.tags["data_fingerprint"] == "fp2" and "git_commit" in run.data.tags
    assert run.data.metrics["model.roc_auc"] == 0.5
    assert run.data.params["label.horizon_days"] == "90"


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
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    tracking._mlflow()
    mlflow.set_experiment("churnlens")
    with mlflow.start_run() as run:
        pass
    (tmp_path / "importance.csv").write_text("feature,mean_abs_shap\nx,1.0\n")
    tracking.log_to_run(run.info.run_id, [tmp_path / "importance.csv"],
                        {"explain.ms_per_customer": 0.5})
    client = mlflow.MlflowClient()
    assert ([a.path for a in client.list_artifacts(run.info.run_id, "explain")]
            == ["explain/importance.csv"])
    assert client.get_run(run.info.run_id).data.metrics["explain.ms_per_customer"] == 0.5
