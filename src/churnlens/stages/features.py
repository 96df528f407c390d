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
from churnlens.catalog import Catalog
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
from churnlens.logs import get_logger
from churnlens.settings import feature_config, load_settings
from churnlens.snapshot import feature_meta, plan_for_stage

log = get_logger("features")


SPARK_INTERIM_ENV = "CHURNLENS_SPARK_INTERIM"   # where Spark reads TABLE.parquet (s3a://...)


def run(params_path: str | Path | None = None, root: str | Path = ".") -> None:
    """Feature rows and meta under the project folder `root` (default: the working directory);
    `params_path` default `root/params.yaml`."""
    cat = Catalog(root)
    cfg = feature_config(load_settings(cat.params(params_path)))
    started = time.perf_counter()
    interim = cat.at(paths.INTERIM)
    if cfg["engine"] == "spark":
        interim = os.environ.get(SPARK_INTERIM_ENV) or interim
    training, scoring = cat.path("training_rows"), cat.path("scoring_rows")
    with open_engine(cfg["engine"], memory_limit=cfg["memory_limit"], threads=cfg["threads"],
                     scratch=cat.at(paths.FEATURES_DIR),
                     spark_driver_memory=cfg["spark_driver_memory"]) as engine:
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
                                     training=training, scoring=scoring)
    meta = feature_meta(snap, cfg, feature_columns(columns), written.per_cutoff,
                        written.n_scoring, cfg["engine"], time.perf_counter() - started)
    cat.write_json(meta, "features_meta")
    if written.n_scoring == 0:
        log.warning("no customer is active at as_of %s: scoring.parquet is empty", snap.as_of)
    log.info("wrote %s (%d rows), %s (%d rows), %s with %s in %.1fs",
             training, meta["n_training_rows"], scoring, written.n_scoring,
             cat.path("features_meta"), cfg["engine"], time.perf_counter() - started)
