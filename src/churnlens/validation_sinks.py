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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnlens.io import write_json, write_parquet
from churnlens.validation import TableResult, customer_set, empty_quarantine, empty_table

QUARANTINE = "quarantine"
REPORT = "validation.json"

Write = Callable[[TableResult], None]


class FirstDays:
    """The first activity day per customer over the accepted rows of transactions and events.

    `known`: the accepted customer ids (every accepted row belongs to one of them). `add` takes
    a chunk's accepted rows (before pseudonymisation) and, if the validator gave them,
    the positions of their customers among `validation.customer_set(known)` (saves a lookup);
    `commit` closes a table; `restart` forgets the chunks of a table that is read again from
    scratch. `days` is what `validation.first_activity_days` gives over the committed rows
    (customer_id -> day), kept as one running minimum per known customer.
    """

    def __init__(self, known: pd.Series | pd.Index | pa.Array) -> None:
        self._ids = customer_set(known)
        self._committed = np.full(len(self._ids), _NO_DAY, dtype=np.int64)
        self._pending = self._committed.copy()

    def add(self, accepted: pd.DataFrame, positions: np.ndarray | None = None) -> None:
        if not len(accepted):
            return
        if positions is None:
            ids = pa.array(accepted["customer_id"], type=pa.large_string(), from_pandas=True)
            positions = pc.index_in(ids, value_set=self._ids).fill_null(-1)
            positions = positions.to_numpy(zero_copy_only=False)
        if len(positions) != len(accepted) or (positions < 0).any():
            raise ValueError("accepted rows of a customer that is not among the known customers")
        days = accepted["timestamp"].astype("datetime64[us]").dt.floor("D").to_numpy()
        present = ~np.isnat(days)
        np.minimum.at(self._pending, positions[present], days[present].view(np.int64))

    def restart(self) -> None:
        self._pending = self._committed.copy()

    def commit(self) -> None:
        self._committed = self._pending.copy()

    @property
    def days(self) -> pd.Series:
        """customer_id -> first activity day (datetime64[us], midnight) of those active."""
        seen = self._committed != _NO_DAY
        ids = self._ids.filter(pa.array(seen)).to_pandas(types_mapper=_STR_TYPES.get)
        return pd.Series(self._committed[seen].view("datetime64[us]"),
                         index=pd.Index(ids, dtype="str", name="customer_id"),
                         name="first_activity_day")


_NO_DAY = np.iinfo(np.int64).max  # a customer without activity so far
_STR_TYPES = {pa.large_string(): pd.StringDtype("pyarrow", na_value=np.nan)}


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
