"""The DuckDB engine of the feature runner (`churnlens.feature_runner`).

`DuckDBEngine` reads the validated Parquet files with `read_parquet`, runs each SQL step as a
temp table (or view) and drops a table once no later step reads it, and COPYs results to
Parquet; nothing big passes through pandas. Intermediate tables spill to the connection's
`temp_directory` beyond `memory_limit`; `open_duckdb` (the features stage's engine) keeps them
in a scratch database file.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from churnlens import feature_sql
from churnlens.errors import ChurnlensError
from churnlens.feature_runner import (  # noqa: F401  (re-exported: the feature-row contract)
    CATEGORICAL_COLUMNS,
    EMPTY_COLUMNS,
    FEATURE_TABLE,
    ID_COLUMNS,
    compute_features,
    feature_columns,
    interim_paths,
)
from churnlens.feature_sql import LABEL_DEFINITIONS, feature_names  # noqa: F401  (re-export)
from churnlens.io import atomic_path
from churnlens.logs import get_logger

log = get_logger("features")

DIALECT = "duckdb"


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


class DuckDBEngine:
    """The feature runner's engine over one DuckDB connection (`close`: close it at the end)."""

    dialect = DIALECT

    def __init__(self, con: duckdb.DuckDBPyConnection, *, close: bool = True) -> None:
        self.con = con
        self.sources: dict[str, str] = {}
        self._close = close

    def source(self, table: str, path: str | Path | None) -> str | None:
        if path is None or not Path(path).exists():
            return None
        return f"read_parquet({sql_literal(path)})"

    def empty_source(self, table: str) -> str:
        quote = feature_sql.DIALECTS[DIALECT]["quote"]
        columns = ", ".join(f"CAST(NULL AS {kind}) AS {quote.format(x=name)}"
                            for name, kind in EMPTY_COLUMNS[table])
        return f"(SELECT {columns} WHERE 1 = 0)"

    def create_views(self, steps: Sequence[feature_sql.Step]) -> None:
        for step in steps:
            try:
                self.con.execute(f"CREATE OR REPLACE VIEW {step.name} AS {step.sql}")
            except duckdb.Error as err:
                raise ChurnlensError(f"cannot read validated table for {step.name}: {err}") \
                    from err

    def run_steps(self, steps: Sequence[feature_sql.Step]) -> None:
        run_steps(self.con, steps)

    def fetch(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def columns(self, table: str) -> list[str]:
        return list(self.con.table(table).columns)

    def to_pandas(self, sql: str) -> pd.DataFrame:
        return self.con.sql(sql).df()

    def write(self, sql: str, target: str | Path) -> None:
        """COPY a query to Parquet atomically (temp file next to the target, then rename)."""
        with atomic_path(target) as tmp:
            self.con.execute(f"COPY ({sql}) TO {sql_literal(tmp)} "
                             "(FORMAT parquet, COMPRESSION zstd)")

    def release(self) -> None:
        pass   # the connection's tables go with it; a borrowed one keeps `feature_rows`

    def close(self) -> None:
        if self._close:
            self.con.close()


@contextmanager
def open_duckdb(*, memory_limit: str, threads: int,
                scratch: str | Path) -> Iterator[DuckDBEngine]:
    """A DuckDB engine whose intermediate tables live in a scratch database file (memory holds
    the working set) in a temporary folder under `scratch`, removed at the end with its spill
    files. Running out of memory or disk is one `ChurnlensError` (`duckdb_errors`)."""
    Path(scratch).mkdir(parents=True, exist_ok=True)
    spill = Path(tempfile.mkdtemp(prefix=".duckdb_tmp.", dir=scratch))
    try:
        with duckdb_errors(memory_limit, spill):
            engine = DuckDBEngine(connect(memory_limit, threads, spill,
                                          database=spill / "features.duckdb"))
            try:
                yield engine
            finally:
                engine.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)
