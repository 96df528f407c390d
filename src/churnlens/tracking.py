"""Everything MLflow: the tracking URI, one training run, the registry and the champion alias.

Modelling code never imports this module; the train stage calls `log_training_run` once.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens.config import flatten
from churnlens.logs import get_logger

EXPERIMENT = "churnlens"
REGISTERED_MODEL = "churnlens"
log = get_logger("tracking")


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, else a SQLite file `mlflow.db` in the current directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def fingerprint_dir(folder: str | Path, pattern: str = "**/*.parquet") -> str:
    """sha256 over the relative names and bytes of the files in `folder` (sorted)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(folder.glob(pattern)):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def git_commit() -> str:
    """Current commit hash, with `-dirty` when the work tree has changes; `unknown` outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Flatten `metrics.json` to MLflow metric keys (`model.roc_auc`, `baselines.recency.brier`)."""
    return {key: float(value) for key, value in flatten(metrics).items()
            if isinstance(value, int | float) and not isinstance(value, bool) and value == value}


def _mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())
    return mlflow


def _evaluate(model_uri: str, features: pd.DataFrame, labels: pd.Series) -> dict[str, float]:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    from churnlens.packaging import load_model, to_model_input

    frame = to_model_input(features, list(features.columns))
    proba = load_model(model_uri).predict(frame)["churn_probability"].to_numpy()
    return {"roc_auc": float(roc_auc_score(labels, proba)),
            "brier": float(brier_score_loss(labels, proba))}


def decide_promotion(new: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, str]:
    """New model becomes champion if there is none, or it is at least as good on AUC *and* Brier."""
    if champion is None:
        return True, "no champion yet"
    better_auc = new["roc_auc"] >= champion["roc_auc"]
    better_brier = new["brier"] <= champion["brier"]
    if better_auc and better_brier:
        return True, "at least as good as the champion on AUC and Brier"
    worse = [name for name, ok in (("AUC", better_auc), ("Brier", better_brier)) if not ok]
    return False, f"worse than the champion on {' and '.join(worse)}"


def _champion_figures(mlflow, features, labels) -> tuple[dict | None, str | None]:
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(REGISTERED_MODEL, "champion")
    except mlflow.exceptions.MlflowException:
        return None, None
    try:
        return (_evaluate(f"models:/{REGISTERED_MODEL}@champion", features, labels),
                str(version.version))
    except Exception as err:  # schema change etc.: the old champion cannot judge today's data
        log.warning("champion v%s cannot be evaluated on the current test slice (%s)",
                    version.version, type(err).__name__)
        return None, str(version.version)


def log_training_run(params: dict, metrics: dict, model_dir: Path, artifact_paths: list[Path],
                     fingerprint: str, test_features: pd.DataFrame, test_labels: pd.Series) -> dict:
    """Log one training run, register the model as `challenger`, and maybe promote it to `champion`.

    Returns the promotion decision with its figures (also logged to the run).
    """
    from churnlens.packaging import log_saved_model

    mlflow = _mlflow()
    mlflow.set_experiment(EXPERIMENT)
    register = bool(params.get("train", {}).get("register_model", True))
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})
        mlflow.log_metrics(numeric_metrics(metrics))
        mlflow.set_tags({"git_commit": git_commit(), "data_fingerprint": fingerprint,
                         "test_cutoff": str(metrics.get("test_cutoff"))})
        for path in artifact_paths:
            if Path(path).is_file():
                mlflow.log_artifact(str(path), artifact_path="reports")
        info = log_saved_model(Path(model_dir),
                               registered_name=REGISTERED_MODEL if register else None)
        decision = {"run_id": run.info.run_id, "registered": register}
        if register:
            decision.update(_promote(mlflow, info, metrics, test_features, test_labels))
            mlflow.log_dict(decision, "promotion.json")
            mlflow.set_tag("promotion", "champion" if decision["is_champion"] else "challenger")
    log.info("MLflow run %s logged to %s", decision["run_id"], tracking_uri().split("?")[0])
    return decision


def _promote(mlflow, info, metrics, test_features, test_labels) -> dict:
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    client.set_registered_model_alias(REGISTERED_MODEL, "challenger", version)
    new = {"roc_auc": metrics["model"]["roc_auc"], "brier": metrics["model"]["brier"]}
    champion, champion_version = _champion_figures(mlflow, test_features, test_labels)
    promote, reason = decide_promotion(new, champion)
    if champion is None and champion_version is not None:
        reason = f"champion v{champion_version} cannot score the current features"
    if promote:
        client.set_registered_model_alias(REGISTERED_MODEL, "champion", version)
    log.info("model v%s: %s (%s); new AUC %.4f Brier %.4f; champion %s", version,
             "promoted to champion" if promote else "stays challenger", reason,
             new["roc_auc"], new["brier"], champion if champion else "none")
    return {"version": version, "is_champion": promote, "reason": reason, "new": new,
            "champion_before": champion, "champion_version_before": champion_version}


def log_to_run(run_id: str, artifact_paths: list[Path], metrics: dict[str, float] | None = None,
               artifact_dir: str = "explain") -> None:
    """Add artifacts (and metrics) of a later stage to the training run that made the model."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    for path in artifact_paths:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path=artifact_dir)
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, float(value))
    log.info("added %d artifacts to MLflow run %s", len(artifact_paths), run_id)


def move_champion(version: str | None, *, rollback: bool = False) -> dict:
    """Point `champion` at `version` by hand; on rollback without a version, at the previous one.

    The move is logged and recorded as tags on the model version it lands on.
    """
    from churnlens.errors import ChurnlensError

    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        current = str(client.get_model_version_by_alias(REGISTERED_MODEL, "champion").version)
    except mlflow.exceptions.MlflowException:
        current = None
    if version is None:
        if not rollback or current is None:
            raise ChurnlensError("no version given and no champion to roll back from")
        older = [int(v.version) for v in client.search_model_versions(f"name='{REGISTERED_MODEL}'")
                 if int(v.version) < int(current)]
        if not older:
            raise ChurnlensError(f"champion v{current} is the oldest version: "
                                 "nothing to roll back to")
        version = str(max(older))
    try:
        client.get_model_version(REGISTERED_MODEL, str(version))
    except mlflow.exceptions.MlflowException:
        raise ChurnlensError(f"model '{REGISTERED_MODEL}' has no version {version}") from None
    client.set_registered_model_alias(REGISTERED_MODEL, "champion", str(version))
    action = "rollback" if rollback else "promote"
    client.set_model_version_tag(REGISTERED_MODEL, str(version), "champion_set_by", action)
    client.set_model_version_tag(REGISTERED_MODEL, str(version), "champion_before", str(current))
    log.info("%s: champion %s v%s -> v%s", action, REGISTERED_MODEL, current, version)
    return {"action": action, "from": current, "to": str(version)}
