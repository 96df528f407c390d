"""Where the validate stage's results go: the validated tables, their quarantine and the
report, as Parquet and JSON in a folder (`TABLE.parquet`, `quarantine/TABLE.parquet`,
`validation.json`).

A sink's `table(name)` is a context manager yielding `write(TableResult)`, called once per chunk;
`finish(reports)` writes the report. `ParquetSink` appends each chunk to the files as it comes
(streaming, same schemas as `DataFrame.to_parquet`); `MemorySink` keeps everything and writes
file by file (each atomically, the report last). `FirstDays` collects the first activity day per
customer over the chunks (signups moved to it, `validation.move_signup_to_first_activity`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnlens.io import write_json, write_parquet
from churnlens.validation import TableResult, empty_quarantine, empty_table, first_activity_days

QUARANTINE = "quarantine"
REPORT = "validation.json"

Write = Callable[[TableResult], None]


class FirstDays:
    """The first activity day per customer over the accepted rows of transactions and events.

    `add` takes a chunk's accepted rows (before pseudonymisation); `commit` closes a table;
    `restart` forgets the chunks of a table that is read again from scratch.
    """

    def __init__(self) -> None:
        self.days: pd.Series | None = None
        self._pending: pd.Series | None = None

    def add(self, accepted: pd.DataFrame) -> None:
        self._pending = first_activity_days(accepted, self._pending)

    def restart(self) -> None:
        self._pending = None

    def commit(self) -> None:
        if self._pending is not None:
            both = [d for d in (self.days, self._pending) if d is not None and len(d)]
            if both:
                self.days = pd.concat(both).groupby(level=0).min()
        self._pending = None


class ParquetSink:
    """Appends each table's chunks to FOLDER/TABLE.parquet and FOLDER/quarantine/TABLE.parquet."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / QUARANTINE).mkdir(parents=True, exist_ok=True)

    @contextmanager
    def table(self, name: str) -> Iterator[Write]:
        with (
            _parquet_appender(self.folder / f"{name}.parquet", empty_table(name)) as accepted,
            _parquet_appender(
                self.folder / QUARANTINE / f"{name}.parquet", empty_quarantine(name)
            ) as quarantined,
        ):

            def write(result: TableResult) -> None:
                accepted(result.accepted)
                quarantined(result.quarantined)

            yield write

    def finish(self, reports: dict) -> None:
        write_json(reports, self.folder / REPORT)


@contextmanager
def _parquet_appender(path: Path, empty: pd.DataFrame) -> Iterator[Callable[[pd.DataFrame], None]]:
    """Yield `append(frame)` writing into one Parquet file with the schema `to_parquet` gives."""
    schema = pa.Schema.from_pandas(empty, preserve_index=False)
    with pq.ParquetWriter(path, schema) as writer:

        def append(frame: pd.DataFrame) -> None:
            if len(frame):
                writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))

        yield append


class MemorySink:
    """Keeps every table in memory; `finish` writes the files one by one into FOLDER."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.results: dict[str, list[TableResult]] = {}

    @contextmanager
    def table(self, name: str) -> Iterator[Write]:
        self.results[name] = []
        yield self.results[name].append

    def finish(self, reports: dict) -> None:
        (self.folder / QUARANTINE).mkdir(parents=True, exist_ok=True)
        for name, parts in self.results.items():
            write_parquet(_concat([p.accepted for p in parts]), self.folder / f"{name}.parquet")
            write_parquet(
                _concat([p.quarantined for p in parts]),
                self.folder / QUARANTINE / f"{name}.parquet",
            )
        write_json(reports, self.folder / REPORT)  # last


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
