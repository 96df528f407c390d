"""Stage `score`: every customer at as_of gets a calibrated churn probability, from the approved
model.

The MLflow registry decides which model scores: its `champion` for this data source, kept in
`models/serving/` (see `churnlens.serving.load_approved_model`, the one function that loads the
approved model; models are read as plain data, never unpickled). When the model the last
`train` produced lost the gate (it is a `challenger`), the champion scores and
`reports/serving.json` says that a new model is waiting for approval; after `churnlens
rollback`/`promote` the version the alias points at scores. Without a registry
(`train.register_model: false`), without a champion, or when the champion cannot read today's
features, the newly trained model scores and `serving.json` says why. `dvc.yaml` runs this stage
every time (`always_changed`): `churnlens promote` / `rollback` move the alias outside DVC's view.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churnlens.catalog import Catalog
from churnlens.logs import get_logger
from churnlens.scoring import score_frame
from churnlens.serving import check_feature_schema, resolve  # noqa: F401  (re-exported)
from churnlens.settings import load_settings

log = get_logger("score")


def resolve_serving_model(promotion: dict, features: pd.DataFrame,
                          params: dict | None = None, root: str | Path = ".") -> dict:
    """Which model scores (`churnlens.serving.resolve`) in the project folder `root`."""
    return resolve(params or {}, promotion, features, root)


def run(params_path: str | Path | None = None, root: str | Path = ".") -> None:
    """Score the project folder `root` (default: the working directory; its MLflow store and
    `models/`); `params_path` default `root/params.yaml`."""
    from churnlens.serving import load_approved_model

    catalog = Catalog(root)
    settings = load_settings(catalog.params(params_path))
    catalog.require("model")
    features = catalog.read_parquet("scoring_rows")
    promotion = catalog.read_json("promotion", required=False) or {}
    approved = load_approved_model(dict(settings.params), features, promotion, root)
    serving = approved.info
    log.info("scoring with the %s (v%s): %s", serving["scored_by"], serving["version"],
             serving["reason"])
    log.info("scoring %d customers at %s", len(features),
             features["cutoff"].max() if len(features) else "-")
    # predict converts the rows to the model's input itself (`packaging.to_model_input`)
    probability = approved.predict(features)["churn_probability"].to_numpy()
    scores = score_frame(features, probability, tiers=settings.score.tiers,
                         window_days=settings.score.revenue_window_days,
                         horizon_days=settings.label.horizon_days)
    catalog.write_parquet(scores, "predictions")
    catalog.write_json(serving, "serving")
    log.info("tiers: %s", scores["risk_tier"].value_counts().to_dict())
