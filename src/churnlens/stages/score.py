"""Stage `score`: every customer at as_of gets a calibrated churn probability, from the approved
model.

The MLflow registry decides which model scores: its `champion` for this data source. When the
model the last `train` produced lost the gate (it is a `challenger`), the champion is fetched
into `models/serving/` and scores instead, and `reports/serving.json` says that a new model is
waiting for approval. Without a registry (`train.register_model: false`), without a champion, or
when the champion cannot read today's features, the newly trained model scores and
`serving.json` says why. `dvc.yaml` runs this stage every time (`always_changed`): `churnlens
promote` / `rollback` move the alias outside DVC's view.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens import paths
from churnlens.config import load_params
from churnlens.errors import ChurnlensError
from churnlens.io import read_json, write_json, write_parquet
from churnlens.logs import get_logger
from churnlens.scoring import score_frame

log = get_logger("score")


def check_feature_schema(expected: list[str], features: pd.DataFrame, model_dir: Path) -> None:
    """Refuse to score when the model's features differ from the current feature table."""
    missing = [c for c in expected if c not in features.columns]
    if missing:
        raise ChurnlensError(
            f"model {model_dir} expects features missing from {paths.SCORING_ROWS}: "
            f"{', '.join(missing[:10])}; rerun `dvc repro train` so model and features match")


def trained_model(promotion: dict, reason: str) -> dict[str, Any]:
    return {"model_dir": str(paths.MODEL_DIR), "scored_by": "new model",
            "version": promotion.get("version"), "new_version": promotion.get("version"),
            "champion_version": None, "waiting_for_approval": False, "reason": reason}


def resolve_serving_model(promotion: dict, features: pd.DataFrame,
                          target: Path = paths.SERVING_MODEL_DIR) -> dict[str, Any]:
    """Which model scores: the registry's champion for this data source (fetched into `target`),
    else the new model."""
    from churnlens import tracking
    from churnlens.packaging import feature_columns_of

    name = promotion.get("registered_model")
    if not promotion.get("registered") or not name:
        return trained_model(promotion, "the model registry is not used")
    try:
        champion = tracking.champion_version(name)
    except Exception as err:  # an unreachable or broken store must not stop the weekly list
        log.warning("registry %s unavailable (%s): scoring with the new model", name,
                    type(err).__name__)
        return trained_model(promotion, f"the model registry could not be read ({err})")
    if champion is None:
        return trained_model(promotion, "no approved model yet")
    new = str(promotion.get("version"))
    if champion == new:
        return {**trained_model(promotion, "the new model is the approved model"),
                "scored_by": "approved model", "champion_version": champion}
    shutil.rmtree(target, ignore_errors=True)
    try:
        model_dir = tracking.download_model_version(name, champion, target)
        check_feature_schema(feature_columns_of(model_dir), features, model_dir)
    except Exception as err:
        log.warning("approved model v%s cannot score today's features (%s): scoring with the "
                    "new model v%s", champion, err, new)
        return {**trained_model(promotion, f"the approved model v{champion} cannot score "
                                           "today's features"), "champion_version": champion}
    waiting = bool(promotion.get("version")) and not promotion.get("is_champion")
    return {"model_dir": str(model_dir), "scored_by": "approved model", "version": champion,
            "champion_version": champion, "new_version": promotion.get("version"),
            "waiting_for_approval": waiting,
            "reason": promotion.get("reason") or "the champion alias points at it"}


def run(params_path: Path) -> None:
    from churnlens.packaging import feature_columns_of, load_model, to_model_input

    params = load_params(params_path)
    if not paths.MODEL_DIR.exists():
        raise ChurnlensError(f"no model at {paths.MODEL_DIR}: run `dvc repro train` first")
    features = pd.read_parquet(paths.SCORING_ROWS)
    promotion = read_json(paths.PROMOTION) if paths.PROMOTION.exists() else {}
    serving = resolve_serving_model(promotion, features)
    model_dir = Path(serving["model_dir"])
    log.info("scoring with the %s (v%s): %s", serving["scored_by"], serving["version"],
             serving["reason"])
    expected = feature_columns_of(model_dir)
    check_feature_schema(expected, features, model_dir)
    model = load_model(model_dir)
    log.info("scoring %d customers at %s", len(features),
             features["cutoff"].max() if len(features) else "-")
    probability = model.predict(to_model_input(features, expected))["churn_probability"].to_numpy()
    scores = score_frame(features, probability, tiers=params["score"]["tiers"],
                         window_days=int(params["score"]["revenue_window_days"]),
                         horizon_days=int(params["label"]["horizon_days"]))
    write_parquet(scores, paths.PREDICTIONS)
    write_json(serving, paths.SERVING)
    log.info("tiers: %s", scores["risk_tier"].value_counts().to_dict())
