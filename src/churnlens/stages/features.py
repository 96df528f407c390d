"""Stage `features`: point-in-time feature rows and labels at every cutoff.

Reads params `snapshot`, `label`, `features` and `data/interim/*.parquet`; writes
`data/features/training.parquet` (all labelled cutoffs), `data/features/scoring.parquet`
(population at `as_of`, no label) and `data/features/meta.json`, each atomically. DuckDB reads the
Parquet files and COPYs the results back to Parquet; nothing big passes through pandas.
`features.engine: spark` runs the same SQL on Spark instead (`churnlens.spark_features`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from churnlens import paths
from churnlens.features import (
    FEATURE_TABLE,
    build_feature_rows,
    connect,
    daily_rows,
    data_day_range,
    duckdb_errors,
    feature_columns,
    interim_paths,
    last_timestamp,
    register_tables,
    scoring_query,
    sql_literal,
    training_query,
)
from churnlens.io import atomic_path, write_json
from churnlens.logs import get_logger
from churnlens.settings import feature_config, load_settings
from churnlens.snapshot import Snapshot, feature_meta, plan_for_stage

log = get_logger("features")


def _copy(con: Any, query: str, target: Path) -> None:
    """COPY a query to Parquet atomically (temp file next to the target, then rename)."""
    with atomic_path(target) as tmp:
        con.execute(f"COPY ({query}) TO {sql_literal(tmp)} (FORMAT parquet, COMPRESSION zstd)")


def _meta(con: Any, snap: Snapshot, cfg: dict[str, Any], columns: list[str],
          n_scoring: int, seconds: float) -> dict[str, Any]:
    per_cutoff = con.execute(
        f"SELECT cutoff, COUNT(*), AVG(label) FROM {FEATURE_TABLE} "
        "WHERE label IS NOT NULL GROUP BY cutoff ORDER BY cutoff"
    ).fetchall()
    return feature_meta(snap, cfg, feature_columns(columns),
                        {c: (n, rate) for c, n, rate in per_cutoff}, n_scoring, "duckdb", seconds)


def run(params_path: Path = Path("params.yaml")) -> None:
    cfg = feature_config(load_settings(params_path))
    if cfg["engine"] == "spark":
        from churnlens.spark_features import run_stage

        meta = run_stage(cfg, interim=paths.INTERIM, training_path=paths.TRAINING_ROWS,
                         scoring_path=paths.SCORING_ROWS)
        write_json(meta, paths.FEATURES_META)
        log.info("wrote %s (%d rows), %s (%d rows) with Spark in %.1fs", paths.TRAINING_ROWS,
                 meta["n_training_rows"], paths.SCORING_ROWS, meta["n_scoring_rows"],
                 meta["seconds"])
        return
    started = time.perf_counter()
    paths.FEATURES_DIR.mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=".duckdb_tmp.", dir=paths.FEATURES_DIR))
    try:
        with duckdb_errors(cfg["memory_limit"], spill):
            meta, n_scoring, snap = _build(cfg, spill, started)
    finally:
        shutil.rmtree(spill, ignore_errors=True)

    write_json(meta, paths.FEATURES_META)
    if n_scoring == 0:
        log.warning("no customer is active at as_of %s: scoring.parquet is empty", snap.as_of)
    log.info("wrote %s (%d rows), %s (%d rows), %s in %.1fs",
             paths.TRAINING_ROWS, meta["n_training_rows"], paths.SCORING_ROWS, n_scoring,
             paths.FEATURES_META, time.perf_counter() - started)


def _build(cfg: dict[str, Any], spill: Path, started: float) -> tuple[dict, int, Snapshot]:
    """Feature rows in DuckDB (scratch database and spill files in `spill`), COPYd to Parquet."""
    # a scratch database file: intermediate tables live on disk, memory holds the working set
    con = connect(cfg["memory_limit"], cfg["threads"], spill, database=spill / "features.duckdb")
    try:
        sources = interim_paths(paths.INTERIM)
        register_tables(con, sources)
        first_day, last_day = data_day_range(con)
        snap = plan_for_stage(cfg, first_day, last_day, log, daily_rows=daily_rows(con),
                              last_timestamp=last_timestamp(con, sources))

        rel = build_feature_rows(
            con, cutoffs=[*snap.labelled, snap.as_of], as_of=snap.as_of,
            horizon_days=cfg["horizon_days"], definition=cfg["definition"],
            windows=cfg["windows"], inactivity_days=cfg["inactivity_days"],
        )
        columns = list(rel.columns)
        log.info("feature rows built in %.1fs (%d features)",
                 time.perf_counter() - started, len(feature_columns(columns)))

        _copy(con, training_query(), paths.TRAINING_ROWS)
        _copy(con, scoring_query(snap.as_of, columns), paths.SCORING_ROWS)
        n_scoring = con.execute(
            f"SELECT COUNT(*) FROM {FEATURE_TABLE} WHERE cutoff = DATE '{snap.as_of}'"
        ).fetchone()[0]
        meta = _meta(con, snap, cfg, columns, n_scoring, time.perf_counter() - started)
    finally:
        con.close()
    return meta, n_scoring, snap
