"""`churnlens score --engine spark`: every customer at as_of scored on Spark.

Builds the feature rows at as_of on Spark from the validated tables (`--input`, a folder or URI,
default `data/interim`; `CHURNLENS_SPARK_INTERIM` as for the features stage), scores them with
the approved model (the one the score stage uses: `serving.load_approved_model`) by
`churnlens.spark_scoring.score`, and writes the scores, ordered by customer_id, as a Parquet
dataset to `--output` (a folder or URI). Nothing else in the project changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from churnlens import paths
from churnlens.logs import get_logger
from churnlens.settings import load_settings
from churnlens.stages.features import SPARK_INTERIM_ENV

log = get_logger("score")


def run(params_path: Path, output: str, interim: str | None = None,
        as_of: str | None = None) -> None:
    from churnlens.serving import load_approved_model
    from churnlens.spark_features import open_spark
    from churnlens.spark_scoring import score, scoring_rows

    settings = load_settings(params_path)
    approved = load_approved_model(dict(settings.params))
    log.info("scoring with the %s (v%s): %s", approved.info["scored_by"],
             approved.info["version"], approved.info["reason"])
    source = interim or os.environ.get(SPARK_INTERIM_ENV) or str(paths.INTERIM)
    features, label = settings.features, settings.label
    with open_spark(memory_limit=features.spark_driver_memory, threads=features.threads) as engine:
        rows = scoring_rows(engine.spark, source, as_of=as_of or settings.snapshot.as_of,
                            horizon_days=label.horizon_days, definition=label.definition,
                            windows=features.windows, inactivity_days=features.inactivity_days)
        scores = score(engine.spark, rows, approved.info["model_dir"],
                       tiers=settings.score.tiers,
                       window_days=settings.score.revenue_window_days,
                       horizon_days=label.horizon_days)
        target = output if "://" in output else str(Path(output).resolve())
        scores.orderBy("customer_id").write.mode("overwrite").parquet(target)
    log.info("scores written to %s", output)
