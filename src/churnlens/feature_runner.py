"""One feature runner for both engines: the SQL of `churnlens.feature_sql` over an engine adapter.

An engine adapter (`churnlens.features.DuckDBEngine`, `churnlens.spark_features.SparkEngine`)
knows how to read a validated table, run SQL steps, fetch small results, collect rows and write
one Parquet file. Everything else is here, once for both: which tables are read and what a
missing one means, the staging views, the day range and the default as_of's daily rows, the
feature steps, the training / scoring queries and the per-cutoff counts of `meta.json`.

    engine = DuckDBEngine(connect())                 # or SparkEngine(spark_session())
    register_tables(engine, interim_paths("data/interim"))
    columns = build_feature_rows(engine, cutoffs=..., as_of=..., ...)
    written = write_feature_rows(engine, as_of=..., columns=columns, training=..., scoring=...)

The features stage plans the cutoffs (`snapshot.plan_for_stage`) from `data_day_range`,
`daily_rows` and `last_timestamp` and drives whichever engine `features.engine` names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from churnlens import feature_sql
from churnlens.errors import ChurnlensError
from churnlens.settings import DEFAULTS
from churnlens.snapshot import as_date, from_epoch_day, to_epoch_day

ID_COLUMNS = ("customer_id", "cutoff", "label")   # every other column of a feature row is a feature
CATEGORICAL_COLUMNS = ("segment",)
FEATURE_TABLE = "feature_rows"
ENGINES = ("duckdb", "spark")

# Columns of a validated table that is missing altogether (interim normally writes a 0-row file
# instead); docs/architecture.md "Validated tables". Portable type names: each adapter renders
# them in its dialect (`TIMESTAMP` is naive: DuckDB's TIMESTAMP, Spark's TIMESTAMP_NTZ).
EMPTY_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "customers": (("customer_id", "STRING"), ("signup_date", "DATE"), ("segment", "STRING"),
                  ("country", "STRING"), ("cancel_date", "DATE")),
    "transactions": (("customer_id", "STRING"), ("timestamp", "TIMESTAMP"), ("amount", "DOUBLE"),
                     ("quantity", "BIGINT")),
    "events": (("customer_id", "STRING"), ("timestamp", "TIMESTAMP"), ("event_type", "STRING"),
               ("quantity", "DOUBLE")),
    "tickets": (("customer_id", "STRING"), ("opened_at", "TIMESTAMP"), ("closed_at", "TIMESTAMP"),
                ("priority", "STRING")),
    "nps": (("customer_id", "STRING"), ("timestamp", "TIMESTAMP"), ("score", "BIGINT")),
}


class FeatureEngine(Protocol):
    """What the runner needs from an engine. `dialect` is a key of `feature_sql.DIALECTS`."""

    dialect: str
    sources: dict[str, str]   # table -> FROM-able source, set by `register_tables`

    def source(self, table: str, path: str | Path | None) -> str | None:
        """Something FROM can read for one validated table, None when its file is missing."""

    def empty_source(self, table: str) -> str:
        """A typed empty FROM-able source with the columns of `EMPTY_COLUMNS[table]`."""

    def create_views(self, steps: Sequence[feature_sql.Step]) -> None:
        """The staging views (`cl_*`), each a view under its step name."""

    def run_steps(self, steps: Sequence[feature_sql.Step]) -> None:
        """Each step under its name, in order (`materialize`: worth a table / cache)."""

    def fetch(self, sql: str) -> list[tuple]:
        """The rows of a small query, as tuples."""

    def columns(self, table: str) -> list[str]:
        """The column names of a table or view."""

    def to_pandas(self, sql: str) -> pd.DataFrame:
        """The rows of a query as pandas, with DuckDB's `.df()` dtypes."""

    def write(self, sql: str, target: str | Path) -> None:
        """The rows of a query, in its order, to ONE local Parquet file (zstd), atomically."""

    def release(self) -> None:
        """Drop what the runner created (views, tables, caches)."""

    def close(self) -> None:
        """Release, and close the connection / session if the adapter opened it."""


@dataclass(frozen=True)
class Written:
    """What `write_feature_rows` wrote: labelled cutoff -> (rows, churn rate), rows at as_of."""

    per_cutoff: dict[date, tuple[int, float]]
    n_scoring: int


def feature_columns(df: pd.DataFrame | Sequence[str]) -> list[str]:
    """The feature columns of a feature-row table: every column except `ID_COLUMNS`, in order."""
    columns = df.columns if isinstance(df, pd.DataFrame) else df
    return [c for c in columns if c not in ID_COLUMNS]


def interim_paths(folder: str | Path) -> dict[str, str | Path]:
    """`folder/TABLE.parquet` for the five tables: Paths, or strings when `folder` is a URI
    (`s3a://...`, read by Spark)."""
    if "://" in str(folder):
        base = str(folder).rstrip("/")
        return {t: f"{base}/{t}.parquet" for t in feature_sql.TABLES}
    return {t: Path(folder) / f"{t}.parquet" for t in feature_sql.TABLES}


def missing_table(path: str | Path | None, table: str) -> ChurnlensError:
    return ChurnlensError(
        f"{path or table}: validated table '{table}' is missing; run `churnlens validate` first")


def register_tables(engine: FeatureEngine, paths: Mapping[str, str | Path | None]) -> None:
    """The staging views `cl_*` over the validated tables (a missing optional one: empty; a
    missing required one: `ChurnlensError`)."""
    sources = {}
    for table in feature_sql.TABLES:
        source = engine.source(table, paths.get(table))
        if source is None:
            if table in feature_sql.REQUIRED_TABLES:
                raise missing_table(paths.get(table), table)
            source = engine.empty_source(table)
        sources[table] = source
    engine.sources = sources
    engine.create_views(feature_sql.staging_steps(sources, engine.dialect))


def data_day_range(engine: FeatureEngine) -> tuple[date | None, date | None]:
    """(first data day over signup/events/transactions, last event/transaction day)."""
    first, last = engine.fetch(feature_sql.bounds_sql())[0]
    return (None if first is None else from_epoch_day(first),
            None if last is None else from_epoch_day(last))


def daily_rows(engine: FeatureEngine) -> list[tuple[date, int]]:
    """(day, event + transaction rows) for every day with rows, ascending (for the default as_of,
    `snapshot.complete_as_of`). Needs `register_tables`."""
    return [(from_epoch_day(d), int(n)) for d, n in engine.fetch(feature_sql.daily_rows_sql())]


def last_timestamp(engine: FeatureEngine) -> str | None:
    """The last event/transaction timestamp (ISO, naive UTC) of the validated tables, or None."""
    ts = feature_sql.DIALECTS[engine.dialect]["quote"].format(x="timestamp")
    parts = [f"SELECT MAX(CAST({ts} AS TIMESTAMP)) AS ts FROM {engine.sources[t]}"
             for t in ("events", "transactions")]
    value = engine.fetch(f"SELECT MAX(ts) FROM ({' UNION ALL '.join(parts)}) t")[0][0]
    return None if value is None else pd.Timestamp(value).isoformat()


def build_feature_rows(
    engine: FeatureEngine,
    *,
    cutoffs: Sequence[date],
    as_of: date,
    horizon_days: int,
    definition: str,
    windows: Sequence[int],
    inactivity_days: int,
) -> list[str]:
    """Feature rows for every cutoff in one pass, as the table `feature_rows` (needs
    `register_tables`): the population at each cutoff, `label` filled where
    `cutoff + horizon_days <= as_of` (else NULL), then the features. Returns its columns."""
    steps = feature_sql.feature_steps(
        cutoffs=[to_epoch_day(as_date(c)) for c in cutoffs],
        as_of=to_epoch_day(as_date(as_of)),
        horizon_days=horizon_days,
        definition=definition,
        windows=windows,
        inactivity_days=inactivity_days,
        event_type_count=engine.fetch(feature_sql.event_type_count_sql())[0][0],
        dialect=engine.dialect,
    )
    engine.run_steps(steps)
    return engine.columns(FEATURE_TABLE)


def rows_query(table: str = FEATURE_TABLE) -> str:
    """Every feature row, ordered by (cutoff, customer_id)."""
    return f"SELECT * FROM {table} ORDER BY cutoff, customer_id"


def training_query(table: str = FEATURE_TABLE) -> str:
    """Labelled rows (all labelled cutoffs), ordered by (cutoff, customer_id)."""
    return f"SELECT * FROM {table} WHERE label IS NOT NULL ORDER BY cutoff, customer_id"


def scoring_query(as_of: date, columns: Sequence[str], table: str = FEATURE_TABLE) -> str:
    """Rows at `as_of` without the label column, ordered by customer_id."""
    cols = ", ".join(c for c in columns if c != "label")
    return (f"SELECT {cols} FROM {table} WHERE cutoff = DATE '{as_date(as_of).isoformat()}' "
            "ORDER BY customer_id")


def write_feature_rows(engine: FeatureEngine, *, as_of: date, columns: Sequence[str],
                       training: str | Path, scoring: str | Path) -> Written:
    """`training_query` to `training`, `scoring_query` to `scoring`; the counts of `meta.json`."""
    engine.write(training_query(), training)
    engine.write(scoring_query(as_of, columns), scoring)
    per_cutoff = engine.fetch(
        f"SELECT cutoff, COUNT(*), AVG(label) FROM {FEATURE_TABLE} "
        "WHERE label IS NOT NULL GROUP BY cutoff ORDER BY cutoff")
    n_scoring = engine.fetch(f"SELECT COUNT(*) FROM {FEATURE_TABLE} "
                             f"WHERE cutoff = DATE '{as_date(as_of).isoformat()}'")[0][0]
    return Written({c: (int(n), rate) for c, n, rate in per_cutoff}, int(n_scoring))


@contextmanager
def open_engine(name: str, *, memory_limit: str, threads: int, scratch: str | Path,
                spark_driver_memory: str | None = None) -> Iterator[FeatureEngine]:
    """The engine `features.engine` names, closed (and its scratch files removed) at the end.

    DuckDB: a scratch database and spill files in a temporary folder under `scratch`, within
    `memory_limit`; out of memory / disk is one `ChurnlensError`. Spark:
    `spark_features.spark_session` with `spark_driver_memory` for a local driver (a session
    created here is stopped at the end, a reused one is not).
    """
    if name == "duckdb":
        from churnlens.features import open_duckdb

        with open_duckdb(memory_limit=memory_limit, threads=threads, scratch=scratch) as engine:
            yield engine
    elif name == "spark":
        from churnlens.spark_features import open_spark

        with open_spark(memory_limit=spark_driver_memory, threads=threads) as engine:
            yield engine
    else:
        raise ChurnlensError(f"features.engine must be one of {', '.join(ENGINES)}, got {name!r}")


def compute_features(
    paths: Mapping[str, str | Path | None],
    *,
    cutoffs: Sequence[date],
    as_of: date,
    horizon_days: int = DEFAULTS.label.horizon_days,
    definition: str = DEFAULTS.label.definition,
    windows: Sequence[int] = DEFAULTS.features.windows,
    inactivity_days: int = DEFAULTS.features.inactivity_days,
    engine: FeatureEngine | None = None,
    con: Any = None,
) -> pd.DataFrame:
    """Small data and tests: feature rows as pandas, ordered by (cutoff, customer_id).

    `engine`: any adapter (default: DuckDB in memory, or over the DuckDB connection `con`).
    """
    own = engine is None
    if engine is None:
        from churnlens.features import DuckDBEngine, connect

        engine = DuckDBEngine(con if con is not None else connect(threads=1), close=con is None)
    try:
        register_tables(engine, paths)
        build_feature_rows(engine, cutoffs=cutoffs, as_of=as_of, horizon_days=horizon_days,
                           definition=definition, windows=windows,
                           inactivity_days=inactivity_days)
        return engine.to_pandas(rows_query())
    finally:
        if own:
            engine.close()
        else:
            engine.release()
