"""Stage `features`: point-in-time feature rows and labels at every cutoff.

Reads params `snapshot`, `label`, `features` and `data/interim/*.parquet`; writes
`data/features/training.parquet` (all labelled cutoffs), `data/features/scoring.parquet`
(population at `as_of`, no label) and `data/features/meta.json`, each atomically. DuckDB reads the
Parquet files and COPYs the results back to Parquet; nothing big passes through pandas.
`features.engine: spark` runs the same SQL on Spark instead (`churnlens.spark_features`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from churnlens import paths
from churnlens.feature_runner import (
    build_feature_rows,
    daily_rows,
    data_day_range,
    feature_columns,
    interim_paths,
    last_timestamp,
    open_engine,
    register_tables,
    write_feature_rows,
)
from churnlens.io import write_json
from churnlens.logs import get_logger
from churnlens.settings import feature_config, load_settings
from churnlens.snapshot import feature_meta, plan_for_stage

log = get_logger("features")


SPARK_INTERIM_ENV = "CHURNLENS_SPARK_INTERIM"   # where Spark reads TABLE.parquet (s3a://...)


def run(params_path: Path = Path("params.yaml")) -> None:
    cfg = feature_config(load_settings(params_path))
    started = time.perf_counter()
    interim = paths.INTERIM
    if cfg["engine"] == "spark":
        interim = os.environ.get(SPARK_INTERIM_ENV) or interim
    with open_engine(cfg["engine"], memory_limit=cfg["memory_limit"], threads=cfg["threads"],
                     scratch=paths.FEATURES_DIR) as engine:
        register_tables(engine, interim_paths(interim))
        first_day, last_day = data_day_range(engine)
        snap = plan_for_stage(cfg, first_day, last_day, log, daily_rows=daily_rows(engine),
                              last_timestamp=last_timestamp(engine))
        columns = build_feature_rows(
            engine, cutoffs=[*snap.labelled, snap.as_of], as_of=snap.as_of,
            horizon_days=cfg["horizon_days"], definition=cfg["definition"],
            windows=cfg["windows"], inactivity_days=cfg["inactivity_days"],
        )
        log.info("feature rows built in %.1fs (%d features)",
                 time.perf_counter() - started, len(feature_columns(columns)))
        written = write_feature_rows(engine, as_of=snap.as_of, columns=columns,
                                     training=paths.TRAINING_ROWS, scoring=paths.SCORING_ROWS)
    meta = feature_meta(snap, cfg, feature_columns(columns), written.per_cutoff,
                        written.n_scoring, cfg["engine"], time.perf_counter() - started)
    write_json(meta, paths.FEATURES_META)
    if written.n_scoring == 0:
        log.warning("no customer is active at as_of %s: scoring.parquet is empty", snap.as_of)
    log.info("wrote %s (%d rows), %s (%d rows), %s with %s in %.1fs",
             paths.TRAINING_ROWS, meta["n_training_rows"], paths.SCORING_ROWS, written.n_scoring,
             paths.FEATURES_META, cfg["engine"], time.perf_counter() - started)
