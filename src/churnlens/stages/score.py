"""Stage `score`: every customer active at as_of gets a calibrated churn probability."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churnlens import paths
from churnlens.config import load_params
from churnlens.errors import ChurnlensError
from churnlens.io import write_parquet
from churnlens.logs import get_logger
from churnlens.scoring import score_frame

log = get_logger("score")


def check_feature_schema(expected: list[str], features: pd.DataFrame) -> None:
    """Refuse to score when the model's features differ from the current feature table."""
    missing = [c for c in expected if c not in features.columns]
    if missing:
        raise ChurnlensError(
            f"model {paths.MODEL_DIR} expects features missing from {paths.SCORING_ROWS}: "
            f"{', '.join(missing[:10])}; rerun `dvc repro train` so model and features match")


def run(params_path: Path) -> None:
    from churnlens.packaging import feature_columns_of, load_model, to_model_input

    params = load_params(params_path)
    if not paths.MODEL_DIR.exists():
        raise ChurnlensError(f"no model at {paths.MODEL_DIR}: run `dvc repro train` first")
    features = pd.read_parquet(paths.SCORING_ROWS)
    expected = feature_columns_of(paths.MODEL_DIR)
    check_feature_schema(expected, features)
    model = load_model(paths.MODEL_DIR)
    log.info("scoring %d customers at %s", len(features),
             features["cutoff"].max() if len(features) else "-")
    probability = model.predict(to_model_input(features, expected))["churn_probability"].to_numpy()
    scores = score_frame(features, probability, tiers=params["score"]["tiers"],
                         window_days=int(params["score"]["revenue_window_days"]),
                         horizon_days=int(params["label"]["horizon_days"]))
    write_parquet(scores, paths.PREDICTIONS)
    log.info("tiers: %s", scores["risk_tier"].value_counts().to_dict())
