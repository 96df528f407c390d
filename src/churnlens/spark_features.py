"""Point-in-time features and labels on Spark, running the same SQL as the DuckDB path.

`churnlens.feature_sql` holds the SQL; `churnlens.features` runs it in DuckDB. This module runs the
same steps on a `SparkSession`: staging temp views `cl_*` over `spark.read.parquet` of the validated
tables (Spark dialect), then every portable step as a temp view (`.persist()` when the step says
`materialize`), ending in the temp view `feature_rows`. Outputs have the same columns, order and
types as the DuckDB path; `to_pandas` gives the dtypes of DuckDB's `.df()`, `write_rows` the
Parquet schema of its `COPY`.

pyspark is imported inside the functions only (it is a dev / optional dependency): nothing here
starts a JVM unless `features.engine: spark` is used.

How a session is obtained (`spark_session`), first match wins:
1. an active session (a notebook, or a driver script that created one) is reused as it is;
2. `master` argument, else the environment variable `CHURNLENS_SPARK_MASTER`
   (`spark://host:7077`, `yarn`, `k8s://...`, `local[4]`);
3. launched by `spark-submit` / the `pyspark` shell (`PYSPARK_GATEWAY_PORT` is set): the master
   and configuration given there;
4. otherwise local mode, `local[threads]`.
Every session gets `spark.sql.session.timeZone=UTC` and `spark.sql.ansi.enabled=true` (runtime
settings, also applied to a reused session). A session created here for local mode also gets:
no UI, no console progress bar, the driver bound to 127.0.0.1 (no network), a few shuffle
partitions, the driver memory from `features.memory_limit`, and (`PYSPARK_PYTHON`, unless set) the
current Python for the workers.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnlens import feature_sql
from churnlens.errors import ChurnlensError
from churnlens.logs import get_logger
from churnlens.snapshot import (
    Snapshot,
    as_date,
    feature_meta,
    from_epoch_day,
    plan_for_stage,
    to_epoch_day,
)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = get_logger("spark_features")

ENGINE = "spark"
MASTER_ENV = "CHURNLENS_SPARK_MASTER"
INTERIM_ENV = "CHURNLENS_SPARK_INTERIM"   # where Spark reads TABLE.parquet (default: data/interim)
SOURCE_PREFIX = "cl_src_"                  # temp views over the Parquet files
FEATURE_VIEW = "feature_rows"
ID_COLUMNS = ("customer_id", "cutoff", "label")
BATCH_ROWS = 2_000_000                     # rows collected to the driver at once when writing

# Typed empty sources for optional tables that are missing altogether (interim normally writes a
# 0-row file instead); docs/architecture.md "Validated tables".
EMPTY_SCHEMAS = {
    "customers": "customer_id STRING, signup_date DATE, segment STRING, country STRING, "
                 "cancel_date DATE",
    "transactions": "customer_id STRING, `timestamp` TIMESTAMP_NTZ, amount DOUBLE, quantity BIGINT",
    "events": "customer_id STRING, `timestamp` TIMESTAMP_NTZ, event_type STRING, quantity DOUBLE",
    "tickets": "customer_id STRING, opened_at TIMESTAMP_NTZ, closed_at TIMESTAMP_NTZ, "
               "priority STRING",
    "nps": "customer_id STRING, `timestamp` TIMESTAMP_NTZ, score BIGINT",
}

# Runtime settings every session gets (the feature SQL is written for ANSI mode, days in UTC).
SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
}


# --- session --------------------------------------------------------------------------------------

def _pyspark_session_class() -> type[SparkSession]:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ChurnlensError(
            "features.engine=spark needs pyspark (`uv sync --group dev` or `pip install pyspark`) "
            "and Java 17+; or set features.engine: duckdb"
        ) from None
    return SparkSession


def _spark_memory(limit: str | None) -> str | None:
    """`4GB` / `512MB` / `4g` -> Spark's `4g` / `512m`; None when it cannot be read."""
    if not limit:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt])i?b?\s*", str(limit), flags=re.IGNORECASE)
    return f"{match.group(1)}{match.group(2).lower()}" if match else None


def is_local(master: str | None) -> bool:
    return master is None or str(master).startswith("local")


def spark_session(
    master: str | None = None,
    *,
    threads: int = 2,
    memory_limit: str | None = None,
    shuffle_partitions: int | None = None,
    app_name: str = "churnlens",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """The one place a SparkSession is obtained (see the module docstring for the order).

    `threads`, `memory_limit`, `shuffle_partitions` and `conf` apply only to a session created
    here; `SQL_CONF` applies to every session.
    """
    SparkSession = _pyspark_session_class()
    spark = SparkSession.getActiveSession()
    if spark is None:
        master = master or os.environ.get(MASTER_ENV) or None
        submitted = master is None and "PYSPARK_GATEWAY_PORT" in os.environ
        builder = SparkSession.builder.appName(app_name)
        settings: dict[str, str] = {}
        if not submitted:
            master = master or f"local[{max(int(threads), 1)}]"
            builder = builder.master(master)
        if not submitted and is_local(master):
            settings.update({
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.sql.shuffle.partitions": str(shuffle_partitions or 4 * max(int(threads), 1)),
            })
            # Local workers must run this interpreter (pyspark's default is `python3` on PATH).
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            memory = _spark_memory(memory_limit)
            if memory:
                settings["spark.driver.memory"] = memory
        elif shuffle_partitions:
            settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
        settings.update(SQL_CONF)
        settings.update(conf or {})
        for key, value in settings.items():
            builder = builder.config(key, value)
        started = time.perf_counter()
        spark = builder.getOrCreate()
        log.info("Spark session (%s) started in %.1fs", spark.sparkContext.master,
                 time.perf_counter() - started)
    for key, value in SQL_CONF.items():
        spark.conf.set(key, value)
    return spark


# --- inputs ---------------------------------------------------------------------------------------

def _is_uri(path: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) is not None


def interim_paths(folder: str | Path) -> dict[str, str]:
    """`folder/TABLE.parquet` for the five tables; `folder` may be a URI (`s3a://...`)."""
    base = str(folder).rstrip("/")
    return {t: f"{base}/{t}.parquet" for t in feature_sql.TABLES}


def _read_source(spark: SparkSession, path: str | Path | None, table: str) -> DataFrame:
    """The Parquet file of one validated table; a typed empty frame for a missing optional one."""
    from pyspark.errors import AnalysisException

    missing = path is None or (not _is_uri(str(path)) and not Path(str(path)).exists())
    if not missing:
        location = str(path) if _is_uri(str(path)) else str(Path(str(path)).resolve())
        try:
            return spark.read.parquet(location)
        except AnalysisException as err:
            if "PATH_NOT_FOUND" not in str(err):
                raise ChurnlensError(f"{path}: cannot read validated table '{table}': "
                                     f"{str(err).splitlines()[0]}") from err
            missing = True
    if table in feature_sql.REQUIRED_TABLES:
        raise ChurnlensError(
            f"{path or table}: validated table '{table}' is missing; run `churnlens validate` first"
        )
    return spark.createDataFrame([], EMPTY_SCHEMAS[table])


def register_tables(spark: SparkSession, paths: Mapping[str, str | Path | None]) -> None:
    """Create the staging views `cl_*` over the interim Parquet files (missing optional: empty)."""
    sources = {}
    for table in feature_sql.TABLES:
        view = f"{SOURCE_PREFIX}{table}"
        _read_source(spark, paths.get(table), table).createOrReplaceTempView(view)
        sources[table] = view
    run_steps(spark, feature_sql.staging_steps(sources, ENGINE))


def data_day_range(spark: SparkSession) -> tuple[date | None, date | None]:
    """(first data day over signup/events/transactions, last event/transaction day)."""
    first, last = spark.sql(feature_sql.bounds_sql()).collect()[0]
    return (None if first is None else from_epoch_day(first),
            None if last is None else from_epoch_day(last))


def daily_rows(spark: SparkSession) -> list[tuple[date, int]]:
    """(day, event + transaction rows) per day with rows, ascending: the DuckDB runner's SQL
    (`feature_sql.daily_rows_sql`), for the default as_of (`snapshot.complete_as_of`)."""
    rows = spark.sql(feature_sql.daily_rows_sql()).collect()
    return [(from_epoch_day(d), int(n)) for d, n in rows]


def last_timestamp(spark: SparkSession) -> str | None:
    """The last event/transaction timestamp (ISO, naive UTC) of the source views, or None."""
    parts = [f"SELECT MAX(CAST(`timestamp` AS TIMESTAMP)) AS ts FROM {SOURCE_PREFIX}{table}"
             for table in ("events", "transactions")]
    value = spark.sql(f"SELECT MAX(ts) FROM ({' UNION ALL '.join(parts)}) t").collect()[0][0]
    return None if value is None else pd.Timestamp(value).isoformat()


# --- the steps ------------------------------------------------------------------------------------

def _drop_view(spark: SparkSession, name: str) -> None:
    """Drop a temp view of ours (uncaches it too)."""
    spark.catalog.dropTempView(name)


def run_steps(spark: SparkSession, steps: Sequence[feature_sql.Step]) -> None:
    """Each step as a temp view under its name; `materialize` steps are persisted.

    Persisting is lazy: the first action on a later view computes every step it needs once, into
    the cache, and later queries reuse it (like DuckDB's temp tables). Independent steps run in one
    job that way; forcing each step with a count of its own was ~15% slower on the bundled sample.
    """
    from pyspark import StorageLevel

    for step in steps:
        _drop_view(spark, step.name)
        log.debug("step %s", step.name)
        frame = spark.sql(step.sql)
        if step.materialize:
            frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        frame.createOrReplaceTempView(step.name)


def step_names() -> list[str]:
    """Names of every view this module creates (staging, sources and feature steps)."""
    steps = feature_sql.feature_steps(cutoffs=[0], as_of=0, horizon_days=1,
                                      definition=feature_sql.LABEL_DEFINITIONS[0],
                                      windows=[1], inactivity_days=1, dialect=ENGINE)
    staging = feature_sql.staging_steps({t: t for t in feature_sql.TABLES}, ENGINE)
    return ([f"{SOURCE_PREFIX}{t}" for t in feature_sql.TABLES]
            + [s.name for s in staging] + [s.name for s in steps])


def release(spark: SparkSession) -> None:
    """Drop (and unpersist) every view this module created in `spark`."""
    for name in reversed(step_names()):
        _drop_view(spark, name)


def build_feature_rows(
    spark: SparkSession,
    *,
    cutoffs: Sequence[date],
    as_of: date,
    horizon_days: int,
    definition: str,
    windows: Sequence[int],
    inactivity_days: int,
) -> DataFrame:
    """Feature rows for every cutoff in one pass (needs `register_tables` first).

    Returns the persisted view `feature_rows` ordered by (cutoff, customer_id): the population at
    each cutoff, `label` filled where `cutoff + horizon_days <= as_of` (else NULL), then the
    features; the same columns and types as `churnlens.features.build_feature_rows`.
    """
    steps = feature_sql.feature_steps(
        cutoffs=[to_epoch_day(as_date(c)) for c in cutoffs],
        as_of=to_epoch_day(as_date(as_of)),
        horizon_days=horizon_days,
        definition=definition,
        windows=windows,
        inactivity_days=inactivity_days,
        event_type_count=spark.sql(feature_sql.event_type_count_sql()).collect()[0][0],
        dialect=ENGINE,
    )
    run_steps(spark, steps)
    return spark.table(FEATURE_VIEW).orderBy("cutoff", "customer_id")


# --- results --------------------------------------------------------------------------------------

def arrow_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema DuckDB would write: `string` (not `large_string`), other types kept."""
    fields = [pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type)
              for f in schema]
    return pa.schema(fields)


def to_arrow(frame: DataFrame) -> pa.Table:
    """Collect a (small) Spark DataFrame as an Arrow table with DuckDB's column types."""
    table = frame.toArrow()
    return table.cast(arrow_schema(table.schema))


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """Collect rows as pandas with the dtypes of DuckDB's `.df()` (dates: datetime64[us])."""
    table = to_arrow(frame)
    out = table.to_pandas()
    for field in table.schema:
        if pa.types.is_date(field.type):
            out[field.name] = pd.to_datetime(out[field.name]).astype("datetime64[us]")
        elif pa.types.is_integer(field.type) and table.column(field.name).null_count:
            # DuckDB gives a masked integer (`Int32`) where Arrow/pandas fall back to float64
            out[field.name] = out[field.name].astype(f"Int{field.type.bit_width}")
    return out


def compute_features(
    paths: Mapping[str, str | Path | None],
    *,
    cutoffs: Sequence[date],
    as_of: date,
    horizon_days: int = 90,
    definition: str = "inactivity",
    windows: Sequence[int] = (7, 30, 90, 180),
    inactivity_days: int = 30,
    spark: SparkSession | None = None,
) -> pd.DataFrame:
    """Spark twin of `churnlens.features.compute_features` (small data and tests): pandas rows."""
    spark = spark or spark_session(threads=1)
    try:
        register_tables(spark, paths)
        rows = build_feature_rows(spark, cutoffs=cutoffs, as_of=as_of, horizon_days=horizon_days,
                                  definition=definition, windows=windows,
                                  inactivity_days=inactivity_days)
        return to_pandas(rows)
    finally:
        release(spark)


def cutoff_counts(rows: DataFrame) -> dict[date, tuple[int, float | None]]:
    """{cutoff: (rows, mean label or None)}, ascending, in one small Spark job."""
    from pyspark.sql import functions as F

    label = F.avg("label") if "label" in rows.columns else F.lit(None).cast("double")
    result = rows.groupBy("cutoff").agg(F.count(F.lit(1)).alias("n"), label.alias("rate"))
    return {r["cutoff"]: (int(r["n"]), None if r["rate"] is None else float(r["rate"]))
            for r in sorted(result.collect(), key=lambda r: r["cutoff"])}


def _batches(counts: Mapping[date, tuple[int, Any]], batch_rows: int) -> list[list[date]]:
    """Consecutive cutoffs, grouped so that a batch holds at most `batch_rows` rows (or one)."""
    batches: list[list[date]] = []
    size = 0
    for cutoff, (n, _) in sorted(counts.items()):
        if not batches or size + n > batch_rows:
            batches.append([])
            size = 0
        batches[-1].append(cutoff)
        size += n
    return batches


def write_rows(rows: DataFrame, target: str | Path, *, drop: Sequence[str] = (),
               batch_rows: int = BATCH_ROWS) -> dict[date, tuple[int, float | None]]:
    """Write `rows` ordered by (cutoff, customer_id) to ONE local Parquet file, atomically.

    Rows reach the driver a few cutoffs at a time (at most `batch_rows` rows, or one cutoff, in
    memory) and are written with the schema of the DuckDB path (zstd). Returns `cutoff_counts`.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    from churnlens.io import atomic_path

    columns = [c for c in rows.columns if c not in drop]
    schema = arrow_schema(to_arrow_schema(rows.select(*columns).schema))
    counts = cutoff_counts(rows)
    with atomic_path(target) as tmp:
        with pq.ParquetWriter(str(tmp), schema, compression="zstd") as writer:
            for batch in _batches(counts, batch_rows):
                part = (rows.where(F.col("cutoff").isin(batch)).select(*columns)
                        .orderBy("cutoff", "customer_id"))
                writer.write_table(to_arrow(part).cast(schema))
    return counts


# --- the stage ------------------------------------------------------------------------------------

def _meta(snap: Snapshot, cfg: Mapping[str, Any], columns: list[str],
          per_cutoff: Mapping[date, tuple[int, float | None]], n_scoring: int,
          seconds: float) -> dict[str, Any]:
    """`meta.json` with the keys of the DuckDB stage (`churnlens.stages.features`)."""
    labelled = {c: v for c, v in per_cutoff.items() if v[0] > 0}   # as DuckDB's GROUP BY
    return feature_meta(snap, cfg, [c for c in columns if c not in ID_COLUMNS], labelled,
                        n_scoring, ENGINE, seconds)


def run_stage(
    cfg: Mapping[str, Any],
    *,
    interim: str | Path,
    training_path: str | Path,
    scoring_path: str | Path,
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """The features stage on Spark: plan the cutoffs, build the rows, write both files; meta back.

    `cfg` is the stage's settings (`churnlens.stages.features._settings`: as_of, definition,
    horizon_days, step_days, max_cutoffs, windows, inactivity_days, memory_limit, threads).
    `interim` is where Spark reads `TABLE.parquet`; the environment variable
    `CHURNLENS_SPARK_INTERIM` (e.g. `s3a://bucket/churnlens/interim`) overrides it. The two outputs
    are single local Parquet files, as on the DuckDB path. A session created here is stopped at the
    end; a reused one is not.
    """
    started = time.perf_counter()
    own = spark is None and _pyspark_session_class().getActiveSession() is None
    spark = spark or spark_session(threads=int(cfg.get("threads", 2)),
                                   memory_limit=cfg.get("memory_limit"))
    from pyspark.sql import functions as F

    source = os.environ.get(INTERIM_ENV) or str(interim)
    try:
        register_tables(spark, interim_paths(source))
        first_day, last_day = data_day_range(spark)
        snap = plan_for_stage(cfg, first_day, last_day, log, daily_rows=daily_rows(spark),
                              last_timestamp=last_timestamp(spark))
        rows = build_feature_rows(
            spark, cutoffs=[*snap.labelled, snap.as_of], as_of=snap.as_of,
            horizon_days=cfg["horizon_days"], definition=cfg["definition"],
            windows=cfg["windows"], inactivity_days=cfg["inactivity_days"],
        )
        columns = list(rows.columns)
        per_cutoff = write_rows(rows.where(F.col("label").isNotNull()), training_path)
        log.info("feature rows built, training rows written in %.1fs",
                 time.perf_counter() - started)
        scoring = write_rows(rows.where(F.col("cutoff") == F.lit(snap.as_of)), scoring_path,
                             drop=("label",))
        n_scoring = sum(n for n, _ in scoring.values())
    finally:
        release(spark)
        if own:
            spark.stop()
    meta = _meta(snap, cfg, columns, per_cutoff, n_scoring, time.perf_counter() - started)
    if n_scoring == 0:
        log.warning("no customer is active at as_of %s: scoring.parquet is empty", snap.as_of)
    return meta
