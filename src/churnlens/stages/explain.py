"""Stage `explain`: reasons for the at-risk list (and a sample), global importance plots."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from churnlens import paths
from churnlens.catalog import Catalog
from churnlens.catalog import catalog as workdir
from churnlens.explain import (
    REASON_COLUMNS,
    global_importance,
    select_for_explanation,
    shap_contributions,
    top_reasons,
)
from churnlens.export import rank_at_risk
from churnlens.io import atomic_path, write_text
from churnlens.logs import get_logger
from churnlens.settings import load_settings

log = get_logger("explain")
SCORE_COLUMNS = ["customer_id", "churn_probability", "risk_tier", "expected_revenue_at_risk",
                 *REASON_COLUMNS]


def _beeswarm(contributions: pd.DataFrame, matrix: pd.DataFrame, target: Path) -> None:
    from churnlens.plots import beeswarm_figure

    fig = beeswarm_figure(contributions, matrix, "What drives the churn score (SHAP, log-odds)")
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")


def run(params_path: str | Path | None = None, root: str | Path = ".") -> None:
    """Explain the scores of the project folder `root` (default: the working directory; the
    plots go to the training run in its MLflow store); `params_path` default
    `root/params.yaml`."""
    catalog = Catalog(root)
    settings = load_settings(catalog.params(params_path))
    predictions = catalog.read_parquet("predictions")
    features = catalog.read_parquet("scoring_rows").set_index("customer_id", drop=False)
    estimator = scoring_estimator(catalog)

    at_risk = rank_at_risk(predictions, top_n=settings.export.top_n,
                           tiers=list(settings.export.tiers))
    mask = select_for_explanation(at_risk["customer_id"], predictions["customer_id"],
                                  settings.explain.sample_size, settings.explain.seed)
    chosen = features.loc[predictions.loc[mask, "customer_id"]]
    started = time.perf_counter()
    contributions = shap_contributions(estimator, chosen)
    reasons = top_reasons(contributions, chosen)
    elapsed = time.perf_counter() - started
    log.info("explained %d customers (%d at risk) in %.2f s = %.2f ms per customer", len(chosen),
             len(at_risk), elapsed, 1000 * elapsed / max(len(chosen), 1))

    scores = predictions.merge(reasons.reset_index(names="customer_id"), on="customer_id",
                               how="left")
    ordered = SCORE_COLUMNS + [c for c in scores.columns if c not in SCORE_COLUMNS]
    catalog.write_parquet(scores[ordered], "scores")
    importance = global_importance(contributions)
    plots = catalog.at(paths.PLOTS)
    write_text(importance.to_csv(index=False, float_format="%.6f"), plots / "importance.csv")
    _beeswarm(contributions, estimator.transform(chosen[estimator.feature_names]),
              plots / "importance.png")
    _track([plots / "importance.csv", plots / "importance.png"],
           {"explain.ms_per_customer": 1000 * elapsed / max(len(chosen), 1)}, catalog)


def scoring_estimator(catalog: Catalog = workdir):
    """The estimator of the model that scored (`reports/serving.json`, the approved one, see
    stages/score.py), not necessarily the newest; its files must still be the ones that scored.
    Its `model_dir` is relative to the project folder (`catalog.root`)."""
    from churnlens.packaging import ModelFileError, estimator_of, model_digest

    serving = catalog.read_json("serving", required=False) or {}
    model_dir = catalog.at(serving.get("model_dir") or paths.MODEL_DIR)
    expected = serving.get("model_sha256")
    if expected and model_digest(model_dir) != expected:
        raise ModelFileError(f"{model_dir} changed since it scored ({catalog.path('serving')}): "
                             "rerun `dvc repro` so score and explain use the same model")
    return estimator_of(model_dir)


def _track(artifacts: list[Path], metrics: dict[str, float],
           catalog: Catalog = workdir) -> None:
    """Attach the importance plots to the MLflow run that trained the model, when there is one.

    Without the store or the run (mlflow.db deleted or replaced) the plots stay in reports/ and a
    warning says so: explaining never depends on MLflow."""
    run_id = (catalog.read_json("promotion", required=False) or {}).get("run_id")
    if not run_id:
        log.info("no MLflow run recorded in %s: importance plots not tracked",
                 catalog.path("promotion"))
        return
    from churnlens.errors import ChurnlensError
    from churnlens.tracking import log_to_run

    try:
        log_to_run(run_id, artifacts, metrics, root=catalog.root)
    except ChurnlensError as err:
        log.warning("importance plots not added to MLflow: %s", err)
