"""Point-in-time features and labels with DuckDB, running the SQL of `churnlens.feature_sql`.

Functions take a DuckDB connection (plus Parquet paths for the inputs) and return relations;
nothing is materialised in pandas except what a caller asks for (`.df()`). Intermediate results are
DuckDB temp tables, which spill to the connection's `temp_directory` beyond `memory_limit`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from churnlens import feature_sql
from churnlens.errors import ChurnlensError
from churnlens.feature_sql import LABEL_DEFINITIONS, feature_names  # noqa: F401  (re-export)
from churnlens.logs import get_logger
from churnlens.snapshot import as_date, from_epoch_day, to_epoch_day

log = get_logger("features")

ID_COLUMNS = ("customer_id", "cutoff", "label")
CATEGORICAL_COLUMNS = ("segment",)
FEATURE_TABLE = "feature_rows"

# Typed empty sources for optional tables that are missing altogether (interim normally writes a
# 0-row file instead). Column names/types follow docs/architecture.md "Validated tables".
_EMPTY = {
    "customers": "CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS DATE) AS signup_date, "
                 "CAST(NULL AS VARCHAR) AS segment, CAST(NULL AS VARCHAR) AS country, "
                 "CAST(NULL AS DATE) AS cancel_date",
    "transactions": 'CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS TIMESTAMP) AS "timestamp", '
                    "CAST(NULL AS DOUBLE) AS amount, CAST(NULL AS BIGINT) AS quantity",
    "events": 'CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS TIMESTAMP) AS "timestamp", '
              "CAST(NULL AS VARCHAR) AS event_type, CAST(NULL AS DOUBLE) AS quantity",
    "tickets": "CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS TIMESTAMP) AS opened_at, "
               "CAST(NULL AS TIMESTAMP) AS closed_at, CAST(NULL AS VARCHAR) AS priority",
    "nps": 'CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS TIMESTAMP) AS "timestamp", '
           "CAST(NULL AS BIGINT) AS score",
}


def feature_columns(df: pd.DataFrame | Sequence[str]) -> list[str]:
    """The feature columns of a feature-row table: every column except `ID_COLUMNS`, in order."""
    columns = df.columns if isinstance(df, pd.DataFrame) else df
    return [c for c in columns if c not in ID_COLUMNS]


def sql_literal(value: str | Path) -> str:
    """A single-quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def connect(memory_limit: str = "4GB", threads: int = 2, temp_directory: str | Path | None = None,
            database: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that spills to `temp_directory` beyond `memory_limit`.

    `database`: a scratch database file for the intermediate tables (big inputs: they then live
    on disk and only their working set in memory); None = in memory (small inputs, tests).
    """
    con = duckdb.connect(str(database) if database is not None else ":memory:")
    configure(con, memory_limit=memory_limit, threads=threads, temp_directory=temp_directory)
    return con


def configure(con: duckdb.DuckDBPyConnection, *, memory_limit: str = "4GB", threads: int = 2,
              temp_directory: str | Path | None = None) -> None:
    for key, sql in (("memory_limit", f"SET memory_limit = {sql_literal(memory_limit)}"),
                     ("threads", f"SET threads = {int(threads)}")):
        try:
            con.execute(sql)
        except duckdb.Error as err:
            value = memory_limit if key == "memory_limit" else threads
            raise ChurnlensError(f"features.{key}: DuckDB does not accept {value!r} "
                                 f"({_first_line(err)})") from err
    con.execute("SET preserve_insertion_order = false")  # outputs are ORDER BY'd explicitly
    if temp_directory is not None:
        Path(temp_directory).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {sql_literal(temp_directory)}")


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _disk_full(err: BaseException) -> bool:
    text = str(err).lower()
    return "no space left" in text or "disk full" in text or "quota exceeded" in text or (
        isinstance(err, OSError) and err.errno in (28, 122))   # ENOSPC, EDQUOT


@contextmanager
def duckdb_errors(memory_limit: str, temp_directory: str | Path | None) -> Iterator[None]:
    """Turn DuckDB running out of memory or disk into one `ChurnlensError` that names
    `features.memory_limit` and the temp folder it spills to (other errors pass through)."""
    spill = f"temp folder {temp_directory}" if temp_directory else "no temp folder"
    try:
        yield
    except duckdb.OutOfMemoryException as err:
        raise ChurnlensError(
            f"DuckDB ran out of memory with features.memory_limit={memory_limit} ({spill}; "
            f"{_first_line(err)}): raise features.memory_limit, lower features.threads, or "
            "free disk space for the temp folder") from err
    except (duckdb.IOException, OSError) as err:
        if not _disk_full(err):
            raise
        raise ChurnlensError(
            f"disk full while DuckDB wrote the features ({spill}, outputs in data/features; "
            f"{_first_line(err)}): free disk space there and rerun (features.memory_limit="
            f"{memory_limit} keeps more in memory)") from err


def parquet_source(path: str | Path | None, table: str) -> str:
    """FROM-able DuckDB source for one interim table (dialect-specific: reading Parquet)."""
    if path is not None and Path(path).exists():
        return f"read_parquet({sql_literal(path)})"
    if table in feature_sql.REQUIRED_TABLES:
        raise ChurnlensError(
            f"{path or table}: validated table '{table}' is missing; run `churnlens validate` first"
        )
    return f"(SELECT {_EMPTY[table]} WHERE 1 = 0)"


def interim_paths(folder: str | Path) -> dict[str, Path]:
    """`folder/TABLE.parquet` for the five tables."""
    return {t: Path(folder) / f"{t}.parquet" for t in feature_sql.TABLES}


def register_tables(con: duckdb.DuckDBPyConnection,
                    paths: Mapping[str, str | Path | None]) -> None:
    """Create the staging views `cl_*` over the interim Parquet files (missing optional: empty)."""
    sources = {t: parquet_source(paths.get(t), t) for t in feature_sql.TABLES}
    for step in feature_sql.staging_steps(sources, "duckdb"):
        try:
            con.execute(f"CREATE OR REPLACE VIEW {step.name} AS {step.sql}")
        except duckdb.Error as err:
            raise ChurnlensError(f"cannot read validated table for {step.name}: {err}") from err


def data_day_range(con: duckdb.DuckDBPyConnection) -> tuple[date | None, date | None]:
    """(first data day over signup/events/transactions, last event/transaction day)."""
    first, last = con.execute(feature_sql.bounds_sql()).fetchone()
    return (None if first is None else from_epoch_day(first),
            None if last is None else from_epoch_day(last))


def daily_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[date, int]]:
    """(day, event + transaction rows) for every day with rows, ascending (for the default as_of,
    `snapshot.complete_as_of`). Needs the staging views (`register_tables`)."""
    rows = con.execute(feature_sql.daily_rows_sql()).fetchall()
    return [(from_epoch_day(d), int(n)) for d, n in rows]


def last_timestamp(con: duckdb.DuckDBPyConnection,
                   paths: Mapping[str, str | Path | None]) -> str | None:
    """The last event/transaction timestamp (ISO, naive UTC) of the interim tables, or None."""
    parts = [f"SELECT MAX(CAST(\"timestamp\" AS TIMESTAMP)) AS ts FROM "
             f"{parquet_source(paths.get(t), t)}" for t in ("events", "transactions")]
    value = con.execute(f"SELECT MAX(ts) FROM ({' UNION ALL '.join(parts)})").fetchone()[0]
    return None if value is None else pd.Timestamp(value).isoformat()


def _drop(con: duckdb.DuckDBPyConnection, name: str) -> None:
    for kind in ("VIEW", "TABLE"):
        try:
            con.execute(f"DROP {kind} IF EXISTS {name}")
        except duckdb.CatalogException:  # exists as the other kind
            pass


def _last_uses(steps: Sequence[feature_sql.Step]) -> dict[int, list[str]]:
    """step index -> tables no later step reads (safe to drop once that step is done).

    A view is evaluated wherever it is used, so a table read by a view counts as read by the
    steps that read the view.
    """
    refs = {s.name: re.compile(rf"\b{re.escape(s.name)}\b") for s in steps}

    def readers(i: int) -> list[int]:
        """Materialized steps after `i` that read step `i`, directly or through views."""
        found = []
        for j in range(i + 1, len(steps)):
            if refs[steps[i].name].search(steps[j].sql):
                found.extend([j] if steps[j].materialize else readers(j))
        return found

    drops: dict[int, list[str]] = {}
    for i, step in enumerate(steps):
        if step.materialize and (read_by := readers(i)):
            drops.setdefault(max(read_by), []).append(step.name)
    return drops


def run_steps(con: duckdb.DuckDBPyConnection, steps: Sequence[feature_sql.Step],
              drop_intermediate: bool = True) -> None:
    """Create each step as a table (or view), in order; drop tables once no later step reads them.

    The last step is always kept. Raises `ChurnlensError` when DuckDB runs out of memory.
    """
    drops = _last_uses(steps) if drop_intermediate else {}
    for i, step in enumerate(steps):
        kind = "TABLE" if step.materialize else "VIEW"
        started = time.perf_counter()
        _drop(con, step.name)
        try:
            con.execute(f"CREATE {kind} {step.name} AS {step.sql}")
        except duckdb.OutOfMemoryException as err:
            limit, temp = con.execute("SELECT current_setting('memory_limit'), "
                                      "current_setting('temp_directory')").fetchone()
            raise ChurnlensError(
                f"DuckDB ran out of memory in feature step '{step.name}' (memory_limit {limit}, "
                f"temp folder {temp or 'none'}): raise features.memory_limit or lower "
                "features.threads, and keep disk space free for the temp folder"
            ) from err
        if step.materialize:
            log.info("step %-12s %6.1fs", step.name, time.perf_counter() - started)
        for name in drops.get(i, []):
            _drop(con, name)


def build_feature_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    cutoffs: Sequence[date],
    as_of: date,
    horizon_days: int,
    definition: str,
    windows: Sequence[int],
    inactivity_days: int,
) -> duckdb.DuckDBPyRelation:
    """Feature rows for every cutoff in one pass (needs `register_tables` first).

    Returns the temp table `feature_rows` ordered by (cutoff, customer_id): the population at each
    cutoff, `label` filled where `cutoff + horizon_days <= as_of` (else NULL), then the features.
    """
    steps = feature_sql.feature_steps(
        cutoffs=[to_epoch_day(as_date(c)) for c in cutoffs],
        as_of=to_epoch_day(as_date(as_of)),
        horizon_days=horizon_days,
        definition=definition,
        windows=windows,
        inactivity_days=inactivity_days,
        event_type_count=con.execute(feature_sql.event_type_count_sql()).fetchone()[0],
        dialect="duckdb",
    )
    run_steps(con, steps)
    return con.sql(f"SELECT * FROM {FEATURE_TABLE} ORDER BY cutoff, customer_id")


def training_query(table: str = FEATURE_TABLE) -> str:
    """Labelled rows (all labelled cutoffs), ordered by (cutoff, customer_id)."""
    return f"SELECT * FROM {table} WHERE label IS NOT NULL ORDER BY cutoff, customer_id"


def scoring_query(as_of: date, columns: Sequence[str], table: str = FEATURE_TABLE) -> str:
    """Rows at `as_of` without the label column, ordered by customer_id."""
    cols = ", ".join(c for c in columns if c != "label")
    return (f"SELECT {cols} FROM {table} WHERE cutoff = DATE '{as_date(as_of).isoformat()}' "
            "ORDER BY customer_id")


def compute_features(
    paths: Mapping[str, str | Path | None],
    *,
    cutoffs: Sequence[date],
    as_of: date,
    horizon_days: int = 90,
    definition: str = "inactivity",
    windows: Sequence[int] = (7, 30, 90, 180),
    inactivity_days: int = 30,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pd.DataFrame:
    """Convenience for small data and tests: feature rows as a pandas DataFrame."""
    own = con is None
    con = con or connect(threads=1)
    try:
        register_tables(con, paths)
        rel = build_feature_rows(con, cutoffs=cutoffs, as_of=as_of, horizon_days=horizon_days,
                                 definition=definition, windows=windows,
                                 inactivity_days=inactivity_days)
        return rel.df()
    finally:
        if own:
            con.close()
