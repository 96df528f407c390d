"""Stage `generate`: write the synthetic sample tables as CSV to params `generate.out_dir`.

Reads params section `generate` (`seed`, `n_customers`, `start_date`, `end_date`, `out_dir`, and
optionally `chunk_size`), streams the generator chunk by chunk and writes `TABLE.csv` for each
input table, each file atomically. The ground truth (`churnlens.generate.TRUTH_KEY`) is never
written.

Simulated outreach (opt-in, `generate.outreach_weeks` > 0; also `outreach_horizon_days`, default
90, and `outreach_holdout_share`, default 0.2; see `churnlens.generate.OutreachSettings`): the
input table `interventions.csv` (who was contacted, when, how, at what cost) and two side files
that are not input tables: `outreach_lists.csv` (`list_date, customer_id, holdout, action`: the
simulated team's lists with their control group) and `true_effects.json` (the simulated effect
per action and subgroup, for tests and the README). With 0 (the default) nothing changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnlens.errors import ChurnlensError
from churnlens.generate import (
    DEFAULT_CHUNK_SIZE,
    OUTREACH_KEY,
    TABLES,
    OutreachSettings,
    iter_chunks,
    true_effects,
)
from churnlens.io import atomic_path, write_json
from churnlens.logs import get_logger
from churnlens.settings import GenerateSettings, load_settings

log = get_logger("generate")


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


def run(params_path: str | Path = "params.yaml") -> None:
    gen = load_settings(params_path).generate
    missing = gen.missing()
    if missing:
        raise ChurnlensError(f"{params_path}: section 'generate' lacks {', '.join(missing)}")
    started = time.monotonic()
    outreach = outreach_settings(gen)
    truth: list[pd.DataFrame] = []
    chunks = iter_chunks(
        gen.n_customers,
        gen.start_date,
        gen.end_date,
        gen.seed,
        chunk_size=gen.chunk_size or DEFAULT_CHUNK_SIZE,
        outreach=outreach,
    )
    tables = TABLES
    if outreach is not None:
        chunks = _keeping(chunks, OUTREACH_KEY, truth)
        tables = (*TABLES, "interventions")
    rows = write_csv_tables(chunks, gen.out_dir, tables)
    if outreach is not None:
        write_outreach_truth(pd.concat(truth, ignore_index=True), outreach, gen.out_dir)
    log.info(
        "wrote %s to %s in %.1f s",
        ", ".join(f"{name} {count}" for name, count in rows.items()),
        gen.out_dir,
        time.monotonic() - started,
    )


def outreach_settings(gen: GenerateSettings) -> OutreachSettings | None:
    """The generator's simulated outreach (None when `generate.outreach_weeks` is 0)."""
    if gen.outreach_weeks == 0:
        return None
    return OutreachSettings(weeks=gen.outreach_weeks, horizon_days=gen.outreach_horizon_days,
                            holdout_share=float(gen.outreach_holdout_share))


def _keeping(chunks, key: str, into: list) -> Iterable[dict[str, pd.DataFrame]]:
    for frames in chunks:
        into.append(frames[key])
        yield frames


def write_outreach_truth(truth: pd.DataFrame, settings: OutreachSettings,
                         out_dir: str | Path) -> None:
    """`outreach_lists.csv` (the simulated lists and their control group) and
    `true_effects.json` (the simulated effects) next to the tables."""
    out_dir = Path(out_dir)
    lists = truth[["list_date", "customer_id", "holdout", "action"]].sort_values(
        ["list_date", "customer_id"], kind="mergesort")
    with atomic_path(out_dir / "outreach_lists.csv") as tmp:
        lists.to_csv(tmp, index=False)
    write_json(true_effects(truth, settings), out_dir / "true_effects.json")
