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
from pathlib import Path

import pandas as pd

from churnlens.catalog import Catalog
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
from churnlens.sample_io import write_csv_tables
from churnlens.settings import GenerateSettings, load_settings

log = get_logger("generate")


def run(params_path: str | Path | None = None, root: str | Path = ".") -> None:
    """The sample under the project folder `root` (default: the working directory):
    `generate.out_dir` is relative to it; `params_path` default `root/params.yaml`."""
    catalog = Catalog(root)
    params_path = catalog.params(params_path)
    gen = load_settings(params_path).generate
    missing = gen.missing()
    if missing:
        raise ChurnlensError(f"{params_path}: section 'generate' lacks {', '.join(missing)}")
    out_dir = catalog.at(gen.out_dir)
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
    rows = write_csv_tables(chunks, out_dir, tables)
    if outreach is not None:
        write_outreach_truth(pd.concat(truth, ignore_index=True), outreach, out_dir)
    log.info(
        "wrote %s to %s in %.1f s",
        ", ".join(f"{name} {count}" for name, count in rows.items()),
        out_dir,
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
