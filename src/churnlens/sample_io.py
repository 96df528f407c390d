"""The sample tables as CSV files: `write_csv_tables` streams the generator's chunks
(`churnlens.generate.iter_chunks`) into `TABLE.csv`, each file atomically; `csv_body` is one
chunk's CSV lines. The generate stage writes the sample with it; tests write raw folders with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnlens.generate import TABLES
from churnlens.io import atomic_path


def write_csv_tables(
    chunks: Iterable[dict[str, pd.DataFrame]],
    out_dir: str | Path,
    tables: Iterable[str] = TABLES,
) -> dict[str, int]:
    """Write every table of `chunks` (an iterable of `{table: frame}`) to `out_dir/TABLE.csv`.

    Streams chunk by chunk; each file appears (atomically) only when all chunks are written.
    Returns rows per table. Keys that are not in `tables` (the ground truth) are ignored.
    """
    out_dir = Path(out_dir)
    tables = tuple(tables)
    rows = dict.fromkeys(tables, 0)
    with ExitStack() as stack:
        handles = {}
        for name in tables:
            tmp = stack.enter_context(atomic_path(out_dir / f"{name}.csv"))
            handles[name] = stack.enter_context(open(tmp, "wb"))
        for i, frames in enumerate(chunks):
            for name in tables:
                frame = frames[name]
                if i == 0:
                    handles[name].write((",".join(frame.columns) + "\n").encode("utf-8"))
                handles[name].write(csv_body(frame))
                rows[name] += len(frame)
        for handle in handles.values():
            handle.close()  # flush before atomic_path renames the files
    return rows


def csv_body(frame: pd.DataFrame) -> memoryview:
    """The CSV lines of `frame` without header: empty cell = missing, RFC 4180 quoting when needed.

    Built column-wise with Arrow (pandas' `to_csv` is the bottleneck at millions of rows).
    Numbers use Arrow's shortest round-trip text (`29`, `39.99`, `-1580`).
    """
    if len(frame) == 0:
        return memoryview(b"")
    columns = [_csv_text(frame[name]) for name in frame.columns]
    lines = pc.binary_join_element_wise(
        *columns, pa.scalar(",", pa.large_string()), null_handling="replace", null_replacement=""
    )
    empty, newline = pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string())
    lines = pc.binary_join_element_wise(lines, empty, newline)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[start:end]


def _csv_text(series: pd.Series) -> pa.Array:
    """One column as `large_string` CSV cells (null = missing)."""
    if series.dtype == object:
        values = series.to_numpy(dtype=object)
        missing = pd.isna(values)
        numeric = (
            np.array(
                [
                    isinstance(v, int | float | np.number) and not isinstance(v, bool)
                    for v in values
                ],
                dtype=bool,
            )
            & ~missing
        )
        cells = np.array(
            [None if m else str(v) for v, m in zip(values, missing, strict=True)], dtype=object
        )
        if numeric.any():
            as_text = pc.cast(pa.array(values[numeric].astype(float)), pa.string())
            cells[numeric] = as_text.to_pylist()
        text = pa.array(cells, type=pa.large_string())
    else:
        arr = pa.array(series, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        text = pc.cast(arr, pa.large_string())
    needs_quotes = pc.match_substring_regex(text, '[,"\r\n]')
    if pc.any(needs_quotes).as_py():
        mark = pa.scalar('"', pa.large_string())
        quoted = pc.binary_join_element_wise(
            mark, pc.replace_substring(text, '"', '""'), mark, pa.scalar("", pa.large_string())
        )
        text = pc.if_else(needs_quotes, quoted, text)
    return text
