#!/usr/bin/env python
"""Scale benchmark of the churnlens pipeline: prints its figures and writes `reports/bench.json`.

    python scripts/bench.py             # 1,000,000 customers, >= 50M events, >= 5M transactions
    python scripts/bench.py --quick     # 3,000 customers (CI); writes bench/quick/bench.json
    python scripts/bench.py --events 200000000 --memory-limit 2GB   # out-of-core features

What it does, in a scratch folder (`bench/` in the repo, git-ignored, or `--workdir`):

1. Generates raw input with `churnlens.generate.iter_chunks` and writes it as Parquet
   (`raw/TABLE.parquet`, the input contract; timestamps/dates are the generator's ISO strings).
   The generator makes ~310 usage-event rows per customer over the default 4-year range, so event
   rows are thinned at random (Bernoulli, probability from a 20,000-customer pilot, +4 %) to about
   `--events`. The 4-year range (2022-09-01 .. 2026-08-31) gives ~5.7 transactions per customer,
   so 1M customers clear 5M transactions, and every one of 24 monthly cutoffs has a full
   180-day look-back. The raw data is reused by later runs with the same settings (see
   `raw/manifest.json`; `--regenerate` forces it). Generation time is reported, never counted as
   a pipeline stage.
2. Runs every `dvc.yaml` stage as its own process, `python -m churnlens.cli STAGE --params
   params.yaml`, in the scratch folder (its own params.yaml: `data.raw_dir: raw`, plus the
   `--cutoffs/--memory-limit/--threads` overrides). Per stage: wall time, peak RSS (`ru_maxrss`
   of that child from `os.wait4`) and rows/s. `repro_s` is the sum of the stage walls (what
   `dvc repro` runs, without DVC's own hashing of the outputs); `repro_peak_rss_mb` the largest
   stage peak (stages run one after another).
3. Ratios on the same files in the same run: the pandas implementation of the same feature set
   (`scripts/bench_pandas_features.py`, same cutoffs; its output is compared with churnlens's
   rows), a bare DuckDB scan + GROUP BY customer of the event table (`duckdb_floor_s`, median of
   3), model predict in-process on the scoring rows, SHAP reasons for the at-risk list, and the
   feature stage again at 6 (and 24) cutoffs.

Every figure in the JSON and the table is measured in this run; nothing is typed in.
Timings on a shared machine are noisy: compare the ratios, which are measured back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout even without an installed package

FULL = {"customers": 1_000_000, "events": 50_000_000}
FULL_PIPELINE_MAX_EVENTS = 80_000_000  # beyond this: validate + features only (`--only`)
FULL_TRAIN_SAMPLE = 0.1  # the full run trains on 10 % of the customers (budget; README)
QUICK = {"customers": 3_000, "events": 150_000}
MINIMUM = {"customers": 1_000_000, "events": 50_000_000, "transactions": 5_000_000}
START_DATE, END_DATE = "2022-09-01", "2026-08-31"
PILOT_CUSTOMERS = 20_000
EVENT_MARGIN = 1.04  # thin to 4 % above --events: the pilot's rate is an estimate
RAW_TABLES = ("customers", "transactions", "events", "tickets", "nps")
SAMPLE_JOB, PANDAS_JOB, PROBE_JOB = "sample-training-rows", "pandas-features", "probes"
PANDAS_SCRIPT = REPO / "scripts" / "bench_pandas_features.py"
STAGES = ("validate", "features", "train", "score", "drift", "explain", "export", "kpis", "report")
REQUIRED_KEYS = ("customers", "events", "transactions", "features_s", "features_peak_rss_mb",
                 "pandas_features_s", "pandas_peak_rss_mb", "duckdb_floor_s", "train_s",
                 "score_customers_per_s", "explain_s_per_customer", "repro_s", "repro_peak_rss_mb")
# Issue 14's table, one row each: name: (what, figure, comparison, bound, unit). `met` is always
# `value <op> bound` (None when the value was not measured in this run).
TARGETS = {
    "sample_repro_s": ("forced `dvc repro -f`, bundled sample (temp clone)",
                       "wall s of the dvc process", "<=", 15.0, "s"),
    "sample_exp_run_s": ("`dvc exp run -S train.lgbm.num_leaves=23`, sample",
                         "wall s of the dvc process", "<=", 10.0, "s"),
    "features_speedup_vs_pandas": ("features vs idiomatic pandas, wall time",
                                   "pandas_features_s / features_s", ">=", 3.0, "x"),
    "features_cpu_speedup_vs_pandas": ("features vs idiomatic pandas, CPU time",
                                       "pandas cpu_s / features cpu_s", ">=", 3.0, "x"),
    "features_per_snapshot_vs_duckdb_floor": ("features per snapshot vs the DuckDB floor",
                                              "features_s / n_cutoffs / duckdb_floor_s", "<=",
                                              1.5, "x"),
    "features_memory_vs_pandas_single_cutoff": (
        "features peak RSS vs pandas' single-cutoff peak",
        "features_peak_rss_mb / pandas (as_of only) peak_rss_mb", "<=", 0.5, "x"),
    "validate_vs_duckdb_typed_read": ("validate vs a DuckDB typed read of the raw files",
                                      "validate wall s / typed-read floor s", "<=", 2.0, "x"),
    "score_customers_per_s": ("scoring (model predict in-process)", "customers / s", ">=",
                              200_000.0, "/s"),
    "repro_s": ("whole pipeline: sum of the stage runs", "repro_s (wall)", "<=", 180.0, "s"),
}
SAMPLE_STAGES = ("generate", "privacy", "validate", "features", "train", "score", "drift",
                 "explain", "export", "kpis", "report")
# packages whose import cost the import table names (cumulative time where first imported)
HEAVY_IMPORTS = ("mlflow", "shap", "lightgbm", "sklearn", "scipy", "matplotlib", "pandas",
                 "pyarrow", "duckdb", "pandera", "numba", "sqlalchemy", "pyspark", "jinja2",
                 "numpy", "typer")
FLOOR_SQL = ('SELECT customer_id, COUNT(*) AS n, SUM(quantity) AS qty, MAX("timestamp") AS last_ts '
             "FROM read_parquet('data/interim/events.parquet') GROUP BY customer_id")


# ---------------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"tiny size for CI ({QUICK['customers']:,} customers); default output "
                        "bench/quick/bench.json")
    p.add_argument("--customers", type=int, help=f"default {FULL['customers']:,}")
    p.add_argument("--events", type=int, help=f"usage-event rows to keep, default "
                                              f"{FULL['events']:,} (e.g. 200000000)")
    p.add_argument("--start-date", default=START_DATE)
    p.add_argument("--end-date", default=END_DATE)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cutoffs", type=int, default=None,
                   help="features.max_cutoffs of the pipeline run (default: params.yaml's)")
    p.add_argument("--snapshot-cutoffs", default="6,24",
                   help="also time the feature stage at these features.max_cutoffs")
    p.add_argument("--in-process", dest="in_process", action="store_true", default=None,
                   help="run all stages in one child process (imports paid once; peak RSS is "
                        "cumulative). Default with --quick, where fixed costs dominate")
    p.add_argument("--subprocess", dest="in_process", action="store_false",
                   help="one process per stage, as dvc repro runs them (default)")
    p.add_argument("--memory-limit", default=None,
                   help="features.memory_limit for DuckDB (default: params.yaml's)")
    p.add_argument("--threads", type=int, default=None, help="features.threads")
    p.add_argument("--workdir", type=Path, help="scratch folder (default bench/ or bench/quick/)")
    p.add_argument("--out", type=Path,
                   help="bench.json path (default reports/bench.json; --quick: in the workdir)")
    p.add_argument("--regenerate", action="store_true", help="generate raw data even if cached")
    p.add_argument("--only", choices=("features", "sample-loop"),
                   help="features: generate, validate and time the feature stage (+ floor, "
                        f"snapshots) only; implied when --events > {FULL_PIPELINE_MAX_EVENTS:,}. "
                        "sample-loop: only the dvc runs on the bundled sample and the import "
                        "table")
    p.add_argument("--skip-pandas", action="store_true", help="do not run the pandas baseline")
    p.add_argument("--skip-sample-loop", action="store_true",
                   help="do not time dvc repro / dvc exp run on the bundled sample (temp clone)")
    p.add_argument("--keep-clone", action="store_true",
                   help="keep the sample loop's temporary clone, with a copy of the outputs "
                        "after each dvc run (to compare them between commits)")
    p.add_argument("--train-sample", type=float, default=None,
                   help="train on the rows of this fraction of customers (default: 1 with "
                        "--quick, else %(default)s; see the README)")
    p.add_argument("--probe", help=argparse.SUPPRESS)  # internal: measurements in a child process
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    size = QUICK if args.quick else FULL
    if args.in_process is None:
        args.in_process = args.quick
    if args.train_sample is None:
        args.train_sample = 1.0 if args.quick else FULL_TRAIN_SAMPLE
    if not 0 < args.train_sample <= 1:
        p.error("--train-sample must be in (0, 1]")
    args.snapshot_cutoffs = sorted({int(x) for x in str(args.snapshot_cutoffs).split(",")
                                    if x.strip()})
    args.customers = args.customers or size["customers"]
    args.events = args.events if args.events is not None else size["events"]
    if args.events > FULL_PIPELINE_MAX_EVENTS and args.only is None:
        print(f"--events {args.events:,} > {FULL_PIPELINE_MAX_EVENTS:,}: running --only features "
              "(validate + features: the out-of-core check)", file=sys.stderr)
        args.only = "features"
    default_dir = REPO / "bench" / ("quick" if args.quick else "")
    args.workdir = (args.workdir or default_dir).resolve()
    if args.out is None:
        args.out = args.workdir / "bench.json" if args.quick else REPO / "reports" / "bench.json"
    args.out = args.out.resolve()
    return args


# ------------------------------------------------------------------------------ measurement
def run_measured(cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None,
                 check: bool = True) -> dict[str, Any]:
    """Run `cmd` as a child; wall time and the child's own peak RSS (`ru_maxrss` from wait4)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0,  # Linux: KiB
              "cpu_s": usage.ru_utime + usage.ru_stime, "returncode": proc.returncode,
              "load_1m_before": load_before, "load_1m_after": os.getloadavg()[0]}
    if check and proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); {log}:\n"
                           + "\n".join(tail))
    return result


def child_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # what `churnlens` sets for every stage (cli.py), also for the probes and in-process jobs,
    # which do not start through the CLI: spinning OpenMP / OpenBLAS threads crawl under load
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"  # never the project's store
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    # Let the stage processes write/reuse bytecode caches as any installed environment does:
    # with PYTHONDONTWRITEBYTECODE and no .pyc in the venv, every process recompiles mlflow,
    # pandas, ... (+6-9 s per stage), which would measure the sandbox, not the pipeline.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def stage_cmd(stage: str) -> list[str]:
    base = [sys.executable, "-m", "churnlens.cli", stage]
    if stage == "validate":
        return [*base, "raw", "data/interim", "--params", "params.yaml"]
    return [*base, "--params", "params.yaml"]


# ------------------------------------------------------------------------------- generation
def generate_raw(args: argparse.Namespace, raw: Path, env: dict[str, str]) -> dict[str, Any]:
    """Raw Parquet tables at the requested size, or the cached ones if made with the same spec."""
    spec = {"customers": args.customers, "events_target": args.events,
            "start_date": args.start_date, "end_date": args.end_date, "seed": args.seed,
            "format": 2}
    manifest = raw / "manifest.json"
    if manifest.exists() and not args.regenerate:
        old = json.loads(manifest.read_text())
        if old.get("spec") == spec and all((raw / f"{t}.parquet").exists() for t in RAW_TABLES):
            old["reused"] = True
            return old
    if raw.exists():
        shutil.rmtree(raw)
    raw.mkdir(parents=True)
    # in a child process: the bench process stays small (a child's ru_maxrss starts from the
    # RSS of the process it was forked from) and the generator's own peak is measured
    spec_path = raw / "generate_spec.json"
    spec_path.write_text(json.dumps(spec))
    measured = run_measured([sys.executable, str(Path(__file__).resolve()), "--probe",
                             str(raw / "generate_result.json"), "--spec", str(spec_path)],
                            raw, raw / "generate.log", env)
    result = json.loads((raw / "generate_result.json").read_text())
    result.update(seconds=measured["wall_s"], peak_rss_mb=measured["peak_rss_mb"],
                  cpu_s=measured["cpu_s"], spec=spec)
    manifest.write_text(json.dumps(result, indent=2))
    result["reused"] = False
    return result


def write_raw(spec: dict[str, Any], raw: Path) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq

    from churnlens.generate import iter_chunks

    def chunks(n: int):
        return iter_chunks(n, spec["start_date"], spec["end_date"], spec["seed"], bad_rows=True)

    n = spec["customers"]
    pilot_n = min(n, PILOT_CUSTOMERS)
    pilot_started = time.perf_counter()
    if n <= PILOT_CUSTOMERS:  # small: keep everything in memory and thin exactly
        frames = list(chunks(n))
        raw_events = sum(len(f["events"]) for f in frames)
        keep_p = min(1.0, spec["events_target"] / max(raw_events, 1))
        source, per_customer = iter(frames), raw_events / n
    else:
        pilot_events = sum(len(f["events"]) for f in chunks(pilot_n))
        per_customer = pilot_events / pilot_n
        keep_p = min(1.0, EVENT_MARGIN * spec["events_target"] / (per_customer * n))
        source = chunks(n)
    pilot_s = time.perf_counter() - pilot_started

    rng = np.random.default_rng([spec["seed"], 7919])
    writers: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    rows = dict.fromkeys(RAW_TABLES, 0)
    raw_event_rows = 0
    try:
        for frames in source:
            for name in RAW_TABLES:
                frame = frames[name]
                if name == "events":
                    raw_event_rows += len(frame)
                    if keep_p < 1.0:
                        frame = frame[rng.random(len(frame)) < keep_p]
                if name not in schemas:
                    schemas[name] = _raw_schema(frame)
                    writers[name] = pq.ParquetWriter(raw / f"{name}.parquet.tmp", schemas[name])
                writers[name].write_table(_to_arrow(frame, schemas[name]))
                rows[name] += len(frame)
    finally:
        for writer in writers.values():
            writer.close()
    for name in RAW_TABLES:
        os.replace(raw / f"{name}.parquet.tmp", raw / f"{name}.parquet")
    return {"rows": rows, "raw_event_rows": raw_event_rows, "event_keep_probability": keep_p,
            "events_per_customer_generated": per_customer, "pilot_customers": pilot_n,
            "pilot_s": pilot_s}


def _raw_schema(frame):
    """Arrow schema of a raw table: numbers stay numbers, anything mixed/text is a string."""
    import pandas as pd
    import pyarrow as pa

    fields = []
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_integer_dtype(dtype):
            fields.append(pa.field(name, pa.int64()))
        elif pd.api.types.is_float_dtype(dtype):
            fields.append(pa.field(name, pa.float64()))
        else:  # strings, and `amount` with the injected bad values ("abc", "12,50")
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)


def _to_arrow(frame, schema):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    for field in schema:
        col = frame[field.name]
        if pa.types.is_string(field.type):
            if pd.api.types.is_numeric_dtype(col.dtype):
                arr = pc.cast(pa.array(col, from_pandas=True), pa.string())
            elif col.dtype == object:
                arr = pa.array([None if pd.isna(v) else str(v) for v in col], pa.string())
            else:
                arr = pa.array(col, type=pa.string(), from_pandas=True)
        else:
            arr = pa.array(col, type=field.type, from_pandas=True)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


# --------------------------------------------------------------------------------- pipeline
def write_params(args: argparse.Namespace, target: Path, **feature_overrides: Any) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["raw_dir"] = "raw"
    feats = params.setdefault("features", {})
    if args.cutoffs is not None:
        feats["max_cutoffs"] = int(args.cutoffs)
    if args.memory_limit is not None:
        feats["memory_limit"] = str(args.memory_limit)
    if args.threads is not None:
        feats["threads"] = int(args.threads)
    feats.update(feature_overrides)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def clean_outputs(workdir: Path) -> None:
    for name in ("data", "models", "reports", "mlruns", "mlartifacts", "snapshots", "logs",
                 "pandas_features"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    for name in ("mlflow.db", "probe.json", "bench.txt"):
        (workdir / name).unlink(missing_ok=True)


def snapshot_folder(args: argparse.Namespace, workdir: Path, max_cutoffs: int) -> Path:
    """A folder to run the feature stage alone at `max_cutoffs`, over the same interim files."""
    folder = workdir / "snapshots" / str(max_cutoffs)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "data").mkdir(parents=True)
    os.symlink(workdir / "data" / "interim", folder / "data" / "interim")
    write_params(args, folder / "params.yaml", max_cutoffs=int(max_cutoffs))
    return folder


def snapshot_result(measured: dict[str, Any], folder: Path, max_cutoffs: int) -> dict[str, Any]:
    meta = json.loads((folder / "data" / "features" / "meta.json").read_text())
    shutil.rmtree(folder / "data" / "features", ignore_errors=True)
    return {**measured, "max_cutoffs": max_cutoffs,
            "n_cutoffs": len(meta["labelled_cutoffs"]) + 1,
            "feature_rows": meta["n_training_rows"] + meta["n_scoring_rows"],
            "in_process_s": meta.get("seconds")}


def stage_job(name: str, stage: str, cwd: Path, logs: Path) -> dict[str, Any]:
    run_args = ["raw", "data/interim", "params.yaml"] if stage == "validate" else ["params.yaml"]
    return {"name": name, "stage": stage, "cwd": str(cwd), "args": run_args,
            "log": str(logs / f"{name}.log")}


def run_jobs(jobs: list[dict[str, Any]], in_process: bool, workdir: Path, env: dict[str, str],
             say) -> dict[str, dict[str, Any]]:
    """Run the jobs in order: one child process each, or all in one child (`--in-process`)."""
    results: dict[str, dict[str, Any]] = {}
    me = [sys.executable, str(Path(__file__).resolve())]
    if in_process:
        say(f"{len(jobs)} jobs in one process: {', '.join(j['name'] for j in jobs)} ...")
        spec_path, out = workdir / "jobs_spec.json", workdir / "jobs_result.json"
        spec_path.write_text(json.dumps({"jobs": jobs}))
        run_measured([*me, "--probe", str(out), "--spec", str(spec_path)], workdir,
                     workdir / "logs" / "jobs.log", env)
        results = json.loads(out.read_text())["jobs"]
        for name, r in results.items():
            say(f"{name}: {r['wall_s']:.1f} s")
        return results
    for job in jobs:
        say(f"{job['name']} ...")
        cwd, log, kind = Path(job["cwd"]), Path(job["log"]), job["stage"]
        if kind in (SAMPLE_JOB, PROBE_JOB):  # helpers, in a child like the stages
            spec = {SAMPLE_JOB: {"sample_training": job["args"]}}.get(kind) or job["args"][0]
            spec_path, out = log.with_suffix(".spec.json"), log.with_suffix(".result.json")
            spec_path.write_text(json.dumps(spec))
            results[job["name"]] = run_measured([*me, "--probe", str(out), "--spec",
                                                 str(spec_path)], cwd, log, env)
            results[job["name"]]["detail"] = json.loads(out.read_text())
        elif kind == PANDAS_JOB:
            results[job["name"]] = run_measured([sys.executable, str(PANDAS_SCRIPT), *job["args"]],
                                                cwd, log, env)
        else:
            results[job["name"]] = run_measured(stage_cmd(kind), cwd, log, env)
        say(f"{job['name']}: {results[job['name']]['wall_s']:.1f} s, "
            f"{results[job['name']]['peak_rss_mb']:,.0f} MB peak")
    return results


def sample_training_rows(fraction: float, seed: int) -> dict[str, Any]:
    """Keep the training rows of a `fraction` of customers (hash of the id): `--train-sample`.

    The full file stays as `training_full.parquet` (the pandas check compares against it).
    """
    import duckdb

    src = Path("data/features/training.parquet")
    full = src.with_name("training_full.parquet")
    os.replace(src, full)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    keep = int(round(fraction * 1_000_000))
    con.execute(f"COPY (SELECT * FROM read_parquet('{full}') "
                f"WHERE hash(customer_id || '{int(seed)}') % 1000000 < {keep} "
                f"ORDER BY cutoff, customer_id) TO '{src}' (FORMAT parquet, COMPRESSION zstd)")
    rows = con.execute(f"SELECT COUNT(*) FROM read_parquet('{src}')").fetchone()[0]
    rows_full = con.execute(f"SELECT COUNT(*) FROM read_parquet('{full}')").fetchone()[0]
    con.close()
    return {"fraction": fraction, "rows": rows, "rows_full": rows_full}


def run_jobs_here(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """In-process runner (--quick): imports are paid once; peak RSS is the process's so far."""
    import contextlib
    import importlib.util
    import resource

    from churnlens.logs import setup_logging

    home, results = Path.cwd(), {}
    for job in jobs:
        os.chdir(job["cwd"])
        Path(job["log"]).parent.mkdir(parents=True, exist_ok=True)
        before = resource.getrusage(resource.RUSAGE_SELF)
        load_before = os.getloadavg()[0]
        detail, kind = None, job["stage"]
        with open(job["log"], "w") as log, contextlib.redirect_stderr(log):
            setup_logging(kind)
            started = time.perf_counter()
            if kind == SAMPLE_JOB:
                detail = sample_training_rows(*job["args"])
            elif kind == PROBE_JOB:
                detail = probe(job["args"][0])
            elif kind == PANDAS_JOB:
                spec = importlib.util.spec_from_file_location("bench_pandas", PANDAS_SCRIPT)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                module.main(job["args"])
            else:
                importlib.import_module(f"churnlens.stages.{kind}").run(*job["args"])
            wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        results[job["name"]] = {
            "wall_s": wall, "peak_rss_mb": after.ru_maxrss / 1024.0,
            "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "returncode": 0, "in_process": True,
            "load_1m_before": load_before, "load_1m_after": os.getloadavg()[0]}
        if detail is not None:
            results[job["name"]]["detail"] = detail
        os.chdir(home)
    return results


# ------------------------------------------------------------------------------ sample loop
def sample_clone(target: Path) -> list[str]:
    """`git clone` of the repo at `target`, plus the working tree's uncommitted changes to
    tracked files and untracked files under src/ (what the bench's stage runs import).
    Returns the overlaid paths."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)

    def git(*cmd: str) -> list[str]:
        out = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
        return [x for x in out.split("\0") if x]

    changed = git("diff", "--name-only", "-z", "HEAD")
    changed += git("ls-files", "--others", "--exclude-standard", "-z", "--", "src")
    overlaid = []
    for rel in sorted(set(changed)):
        src, dst = REPO / rel, target / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.exists() and not src.exists():
            dst.unlink()
        overlaid.append(rel)
    return overlaid


def sample_env(clone: Path) -> dict[str, str]:
    env = child_env(clone)
    for key in THREAD_WAIT_ENV:  # the sample loop measures what the CLI itself sets
        if key not in os.environ:
            env.pop(key, None)
    env.pop("MLFLOW_TRACKING_URI", None)  # the clone's own ./mlflow.db, as in a checkout
    env["PYTHONPATH"] = str(clone / "src")  # the clone's code, not an editable install's
    env["DVC_NO_ANALYTICS"] = "1"
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(key, "churnlens bench")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(key, "bench@localhost")
    return env


THREAD_WAIT_ENV = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")
OUTPUT_FOLDERS = ("data", "models", "reports")   # --keep-clone: copied after each dvc run
STAGE_SHIM = """#!/bin/bash
start=$(date +%s.%N); load=$(cut -d' ' -f1 /proc/loadavg)
"PYTHON" -m churnlens.cli "$@"
rc=$?
if [ -n "$BENCH_STAGE_TIMES" ]; then
  end=$(date +%s.%N)
  times > "$BENCH_STAGE_TIMES.times"  # not in $(...): a subshell has no children
  echo "$1 $start $end $load $rc $(tail -n 1 "$BENCH_STAGE_TIMES.times")" >> "$BENCH_STAGE_TIMES"
fi
exit $rc
"""


def _bash_seconds(text: str) -> float:
    minutes, seconds = text.rstrip("s").split("m")
    return 60 * float(minutes) + float(seconds)


def parse_stage_times(path: Path) -> dict[str, dict[str, Any]]:
    """The stage shim's lines: stage, start, end, 1-min load, exit code, user and sys time."""
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 7:
            continue
        stage, start, end, load, rc, user, system = parts[:7]
        out[stage] = {"wall_s": float(end) - float(start),
                      "cpu_s": _bash_seconds(user) + _bash_seconds(system),
                      "load_1m_before": float(load), "returncode": int(rc)}
    return out


def parse_importtime(text: str) -> dict[str, Any]:
    """`python -X importtime` output: total import seconds (top-level imports) and, for each
    package of HEAVY_IMPORTS imported, its cumulative seconds where first imported and the
    churnlens module that imported it."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        try:
            _, cumulative, name = line[len("import time:"):].split("|", 2)
            cum_us = int(cumulative)
        except ValueError:
            continue
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, cum_us / 1e6, name.strip()))
    total = sum(s for depth, s, _ in rows if depth == 0)
    heavy: dict[str, dict[str, Any]] = {}
    for i, (depth, seconds, name) in enumerate(rows):
        if name not in HEAVY_IMPORTS or name in heavy:
            continue
        # who imported it: the nearest churnlens module above it (parents are printed after
        # their children, at a smaller depth), else the top-level package that pulled it in;
        # "top" = imported at depth 0: by the main module (`-m churnlens.cli`) or in a function
        via, top = None, None
        for d, _, parent in rows[i + 1:]:
            if d < depth and parent.startswith("churnlens") and via is None:
                via = parent
            if d == 0:
                top = parent
                break
        if depth == 0:
            via = "top"
        elif via is None and top:
            via = f"{top} (top)" if not top.startswith("churnlens") else top
        heavy[name] = {"s": seconds, "via": via}
    return {"total_s": total, "heavy": heavy}


def import_table(clone: Path, env: dict[str, str], logs: Path, run_stages: bool,
                 say) -> dict[str, Any]:
    """Per stage: `python -X importtime -c 'import churnlens.stages.X'` (what the stage pays
    before it starts), and with `run_stages` the imports of a whole `churnlens X` run on the
    sample (lazy imports included). The clone's bytecode caches are warm (the dvc runs)."""
    out: dict[str, Any] = {}
    cli = run_measured([sys.executable, "-X", "importtime", "-c", "import churnlens.cli"],
                       clone, logs / "import_cli.log", env)
    out["cli"] = {**parse_importtime((logs / "import_cli.log").read_text(errors="replace")),
                  "wall_s": cli["wall_s"], "cpu_s": cli["cpu_s"]}
    for stage in SAMPLE_STAGES:
        log = logs / f"import_{stage}.log"
        measured = run_measured([sys.executable, "-X", "importtime", "-c",
                                 f"import churnlens.cli, churnlens.stages.{stage}"],
                                clone, log, env)
        row = {"module": {**parse_importtime(log.read_text(errors="replace")),
                          "wall_s": measured["wall_s"], "cpu_s": measured["cpu_s"]}}
        if run_stages:
            log = logs / f"run_importtime_{stage}.log"
            measured = run_measured([sys.executable, "-X", "importtime", "-m", "churnlens.cli",
                                     stage], clone, log, env, check=False)
            row["run"] = {**parse_importtime(log.read_text(errors="replace")),
                          "wall_s": measured["wall_s"], "cpu_s": measured["cpu_s"],
                          "returncode": measured["returncode"]}
        out[stage] = row
        say(f"imports {stage}: {row['module']['total_s']:.2f} s at import"
            + (f", {row['run']['total_s']:.2f} s in a run" if run_stages else ""))
    return out


def sample_loop(workdir: Path, say, keep: bool = False) -> dict[str, Any]:
    """Issue 14's experiment loop on the bundled sample, in a temporary clone: `dvc repro`
    (first run: makes the sample and mlflow.db), then the timed `dvc repro -f` and
    `dvc exp run -S train.lgbm.num_leaves=23`, then the import table."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="churnlens-sample-loop-"))
    clone = tmp / "repo"
    logs = workdir / "logs" / "sample_loop"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        overlaid = sample_clone(clone)
        env = sample_env(clone)
        # dvc.yaml's `churnlens STAGE` through this interpreter: the venv's console script may
        # carry another interpreter's path in its shebang (a venv synced from elsewhere)
        # and it notes each stage's wall and CPU time (bash `times`: the child's user + sys)
        shim = tmp / "bin" / "churnlens"
        shim.parent.mkdir()
        shim.write_text(STAGE_SHIM.replace("PYTHON", sys.executable))
        shim.chmod(0o755)
        env["PATH"] = str(shim.parent) + os.pathsep + env["PATH"]
        dvc = str(Path(sys.executable).parent / "dvc")
        runs: dict[str, dict[str, Any]] = {}
        for name, cmd in (("first dvc repro", [dvc, "repro"]),
                          ("dvc repro -f", [dvc, "repro", "-f"]),
                          ("dvc exp run", [dvc, "exp", "run", "-S",
                                           "train.lgbm.num_leaves=23"])):
            say(f"sample loop: {name} ...")
            stage_times = logs / f"{name.replace(' ', '_')}.stages.txt"
            stage_times.unlink(missing_ok=True)
            runs[name] = run_measured(cmd, clone, logs / f"{name.replace(' ', '_')}.log",
                                      {**env, "BENCH_STAGE_TIMES": str(stage_times)})
            runs[name]["stages"] = parse_stage_times(stage_times)
            runs[name]["cmd"] = " ".join(["dvc", *cmd[1:]])
            if keep:  # the outputs as this run left them (later runs overwrite them)
                for folder in OUTPUT_FOLDERS:
                    if (clone / folder).is_dir():
                        shutil.copytree(clone / folder, tmp / name.replace(" ", "_") / folder,
                                        symlinks=True)
            say(f"sample loop: {name}: {runs[name]['wall_s']:.1f} s wall, "
                f"{runs[name]['cpu_s']:.1f} s CPU, load {runs[name]['load_1m_before']:.1f}")
        imports = import_table(clone, env, logs, run_stages=True, say=say)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"runs": runs, "imports": imports, "overlaid_uncommitted": overlaid,
            "clone": str(clone) if keep else None,
            # as the dvc runs got them; unset = the CLI's defaults (PASSIVE, 4: cli.py)
            "thread_wait_env": {k: env.get(k) for k in THREAD_WAIT_ENV},
            "note": "cpu_s includes every process dvc waited for (wait4 of the dvc process)"}


# ----------------------------------------------------------------------------------- probes
def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in its own process: raw data generation, or (in the workdir) the floor query,
    pandas check, score and explain timings."""
    if "events_target" in spec:
        return write_raw(spec, Path.cwd())
    if "jobs" in spec:
        return {"jobs": run_jobs_here(spec["jobs"])}
    if "sample_training" in spec:
        return sample_training_rows(*spec["sample_training"])
    out: dict[str, Any] = {}
    if spec.get("floor"):
        out["floor"] = probe_floor(spec)
    if spec.get("validate_floor"):
        out["validate_floor"] = probe_validate_floor(spec)
    if spec.get("compare"):
        out["pandas_check"] = compare_with_pandas(spec["compare"])
    if spec.get("score"):
        out["score"] = probe_score()
    if spec.get("explain"):
        out["explain"] = probe_explain(spec)
    return out


def probe_floor(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    tmp = Path("data/.floor_tmp")
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{spec['memory_limit']}'")
    con.execute(f"SET threads = {int(spec['threads'])}")
    con.execute(f"SET temp_directory = '{tmp}'")
    times, cpu = [], []
    for _ in range(3):
        started, cpu_started = time.perf_counter(), time.process_time()
        con.execute(f"CREATE OR REPLACE TEMP TABLE floor AS {FLOOR_SQL}")
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    groups = con.execute("SELECT COUNT(*) FROM floor").fetchone()[0]
    con.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"seconds": statistics.median(times), "runs_s": times, "groups": groups,
            "cpu_s": statistics.median(cpu), "sql": FLOOR_SQL}


def _raw_reader(raw: Path, table: str) -> str | None:
    """DuckDB table function reading a raw table as validate finds it (Parquet or CSV)."""
    for suffix in (".parquet", ".csv", ".csv.gz"):
        path = raw / f"{table}{suffix}"
        if path.exists():
            if suffix == ".parquet":
                return f"read_parquet('{path}')"
            return f"read_csv('{path}', all_varchar = true, header = true)"
    return None


def probe_validate_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The floor of the validate stage: DuckDB reads the same raw files and casts every column
    that validate keeps to the type validate writes (TRY_CAST: a bad value is NULL, as a
    quarantined one is not fatal), counting the non-NULL values of each column so that every
    cast is evaluated. No checks, no quarantine, no output files: a lower bound. Same
    `memory_limit` and threads as the feature stage; median of 3 runs."""
    import duckdb

    raw, interim = Path(spec["validate_floor"]["raw"]), Path(spec["validate_floor"]["interim"])
    tmp = Path("data/.validate_floor_tmp")
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{spec['memory_limit']}'")
    con.execute(f"SET threads = {int(spec['threads'])}")
    con.execute(f"SET temp_directory = '{tmp}'")
    queries: dict[str, str] = {}
    for table in (*RAW_TABLES, "interventions"):
        reader = _raw_reader(raw, table)
        typed = interim / f"{table}.parquet"
        if reader is None or not typed.exists():
            continue
        types = {r[0]: r[1] for r in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{typed}')").fetchall()}
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
        counts = [f'COUNT(TRY_CAST("{c}" AS {types[c]}))' if c in types else f'COUNT("{c}")'
                  for c in columns]
        queries[table] = f"SELECT COUNT(*), {', '.join(counts)} FROM {reader}"
    times, cpu, rows = [], [], 0
    for _ in range(3):
        started, cpu_started = time.perf_counter(), time.process_time()
        rows = sum(con.execute(sql).fetchone()[0] for sql in queries.values())
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    con.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return {"seconds": statistics.median(times), "runs_s": times, "cpu_s": statistics.median(cpu),
            "rows": rows, "tables": sorted(queries), "sql": queries}


def compare_with_pandas(pandas_path: str) -> dict[str, Any]:
    """Row-by-row comparison of the pandas rows with churnlens's training + scoring rows."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    training = Path("data/features/training_full.parquet")  # before --train-sample
    if not training.exists():
        training = Path("data/features/training.parquet")
    con.execute(f"CREATE VIEW cl AS SELECT * FROM read_parquet(['{training}', "
                "'data/features/scoring.parquet'], union_by_name = true)")
    con.execute(f"CREATE VIEW pd AS SELECT * FROM read_parquet('{pandas_path}')")
    cl_cols = [r[0] for r in con.execute("DESCRIBE cl").fetchall()]
    pd_cols = {r[0] for r in con.execute("DESCRIBE pd").fetchall()}
    compared = [c for c in cl_cols if c not in ("customer_id", "cutoff") and c in pd_cols]
    checks = []
    for c in compared:
        if c == "segment":
            checks.append(f"SUM(CASE WHEN a.{c} IS DISTINCT FROM b.{c} THEN 1 ELSE 0 END)")
        else:
            checks.append(
                f"SUM(CASE WHEN (a.{c} IS NULL) <> (b.{c} IS NULL) OR ABS(CAST(a.{c} AS DOUBLE) - "
                f"CAST(b.{c} AS DOUBLE)) > 1e-6 * GREATEST(1, ABS(CAST(a.{c} AS DOUBLE))) "
                "THEN 1 ELSE 0 END)")
    n_cl = con.execute("SELECT COUNT(*) FROM cl").fetchone()[0]
    n_pd = con.execute("SELECT COUNT(*) FROM pd").fetchone()[0]
    row = con.execute(f"SELECT COUNT(*), {', '.join(checks)} FROM cl a JOIN pd b "
                      "ON a.customer_id = b.customer_id AND a.cutoff = b.cutoff").fetchone()
    con.close()
    mismatches = {c: int(v) for c, v in zip(compared, row[1:], strict=True) if v}
    return {"rows_churnlens": n_cl, "rows_pandas": n_pd, "rows_joined": row[0],
            "columns_compared": len(compared),
            "columns_missing_in_pandas": [c for c in cl_cols if c not in pd_cols],
            "mismatched_values": mismatches,
            "match": n_cl == n_pd == row[0] and not mismatches}


def probe_score() -> dict[str, Any]:
    """Model predict in-process on the scoring rows, the way `churnlens score` runs it
    (`serving.ApprovedModel.predict`: LightGBM's trees scored by `churnlens.compiled_trees`) and,
    back to back in each round, with LightGBM's own predict (the path before compiled trees):
    wall and CPU time of each, and whether their probabilities are identical to the bit."""
    import numpy as np
    import pandas as pd

    from churnlens import paths
    from churnlens.compiled_trees import (
        accelerated_model,
        compiled_for,
        score_threads,
        tree_score_path,
    )
    from churnlens.packaging import feature_columns_of, load_model, to_model_input

    features = pd.read_parquet(paths.SCORING_ROWS)
    model = load_model(paths.MODEL_DIR)          # LightGBM's predict
    scorer = accelerated_model(model)            # what ApprovedModel.predict scores with
    expected = feature_columns_of(paths.MODEL_DIR)
    estimator = model.estimator
    model.predict(features.head(1000))          # warm-up; builds or loads the kernel
    scorer.predict(features.head(1000))
    compiled, how = compiled_for(estimator.booster_)
    predictors = {"pyfunc": scorer, "lightgbm_pyfunc": model}
    runs: dict[str, list[float]] = {name: [] for name in (
        "pyfunc", "lightgbm_pyfunc", "to_model_input", "transform", "booster", "compiled",
        "estimator")}
    cpu: dict[str, list[float]] = {"pyfunc": [], "lightgbm_pyfunc": []}

    def timed(name, fn, *fn_args):
        started, cpu_started = time.perf_counter(), time.process_time()
        value = fn(*fn_args)
        runs[name].append(time.perf_counter() - started)
        if name in cpu:
            cpu[name].append(time.process_time() - cpu_started)
        return value

    for round_ in range(3):  # median of 3 (fewer when one run takes > 30 s)
        # what `churnlens score` does (predict converts the rows itself), and the same with
        # LightGBM's predict, each going first in turn
        order = ("pyfunc", "lightgbm_pyfunc") if round_ % 2 == 0 else (
            "lightgbm_pyfunc", "pyfunc")
        proba = {name: timed(name, predictors[name].predict, features)[
            "churn_probability"].to_numpy() for name in order}
        frame = timed("to_model_input", to_model_input, features, expected)
        matrix = timed("transform", estimator.preprocessor_.matrix, frame)
        timed("booster", lambda m: estimator.booster_.predict(
            m, raw_score=True, num_iteration=estimator.best_iteration_), matrix)
        if compiled is not None:
            timed("compiled", compiled.raw_score, matrix)
        timed("estimator", estimator.predict_proba, frame)
        if max(runs["pyfunc"][-1], runs["lightgbm_pyfunc"][-1]) > 30:
            break
    n = len(features)
    med = {k: statistics.median(v) if v else None for k, v in runs.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ours, theirs = proba["pyfunc"], proba["lightgbm_pyfunc"]
    return {"customers": n, "predict_s": med["pyfunc"], "predict_runs_s": runs["pyfunc"],
            "customers_per_s": n / med["pyfunc"],
            "predict_cpu_s": med_cpu["pyfunc"],
            "customers_per_cpu_s": n / med_cpu["pyfunc"],
            "tree_scorer": tree_score_path(scorer.estimator), "tree_scorer_detail": how,
            "threads": score_threads(),
            "lightgbm_predict_s": med["lightgbm_pyfunc"],
            "lightgbm_predict_runs_s": runs["lightgbm_pyfunc"],
            "lightgbm_customers_per_s": n / med["lightgbm_pyfunc"],
            "lightgbm_predict_cpu_s": med_cpu["lightgbm_pyfunc"],
            "lightgbm_customers_per_cpu_s": n / med_cpu["lightgbm_pyfunc"],
            "speedup_vs_lightgbm": med["lightgbm_pyfunc"] / med["pyfunc"],
            "cpu_speedup_vs_lightgbm": med_cpu["lightgbm_pyfunc"] / med_cpu["pyfunc"],
            "identical_to_lightgbm": bool(np.array_equal(ours.view(np.int64),
                                                         theirs.view(np.int64))),
            "max_abs_difference": float(np.max(np.abs(ours - theirs))) if n else 0.0,
            "estimator_predict_proba_s": med["estimator"],
            "estimator_customers_per_s": n / med["estimator"],
            "breakdown_s": {"to_model_input": med["to_model_input"],
                            "preprocess_transform": med["transform"],
                            "lightgbm_raw_score": med["booster"],
                            "compiled_raw_score": med["compiled"]},
            "trees": int(estimator.lgbm_.booster_.num_trees()),
            "best_iteration": int(estimator.best_iteration_)}


def probe_explain(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    from churnlens import paths
    from churnlens.explain import shap_contributions, top_reasons
    from churnlens.export import rank_at_risk
    from churnlens.packaging import estimator_of

    predictions = pd.read_parquet(paths.PREDICTIONS)
    features = pd.read_parquet(paths.SCORING_ROWS).set_index("customer_id", drop=False)
    estimator = estimator_of(paths.MODEL_DIR)
    at_risk = rank_at_risk(predictions, top_n=int(spec["top_n"]), tiers=spec["tiers"])
    chosen = features.loc[at_risk["customer_id"]]
    top_reasons(shap_contributions(estimator, chosen.head(5)), chosen.head(5))  # warm-up
    started = time.perf_counter()
    contributions = shap_contributions(estimator, chosen)
    top_reasons(contributions, chosen)
    seconds = time.perf_counter() - started
    return {"customers": len(chosen), "seconds": seconds,
            "s_per_customer": seconds / max(len(chosen), 1)}


# ------------------------------------------------------------------------------- log parsing
_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")


def _log_time(line: str) -> datetime | None:
    match = _TS.match(line)
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S") if match else None


def train_details(log: Path, metrics: dict, params: dict) -> dict[str, Any]:
    """Boosting rounds run and the seconds of the evaluation model's fit (cross-fitting over
    `cv_folds` folds with early stopping, then the refit; log timestamps, 1 s resolution)."""
    lines = log.read_text(errors="replace").splitlines()
    before = [_log_time(x) for x in lines if "] test :" in x]
    after = [_log_time(x) for x in lines if "evaluation model:" in x]
    best = int(metrics.get("best_iteration") or 0)
    cfg = params.get("train") or {}
    n_estimators = int((cfg.get("lgbm") or {}).get("n_estimators", 100))
    stop = cfg.get("early_stopping_rounds")
    per_fold = min(n_estimators, best + int(stop)) if stop else n_estimators
    rounds = int(cfg.get("cv_folds", 4)) * per_fold + best
    fit_s = (after[0] - before[-1]).total_seconds() if before and after else None
    return {"best_iteration": best, "rounds_run": rounds, "fit_s": fit_s,
            "fit_s_per_round": fit_s / rounds if fit_s and rounds else None,
            "calibration": metrics.get("calibration_method"),
            "slices": {k: v.get("rows") for k, v in (metrics.get("slices") or {}).items()},
            "roc_auc": (metrics.get("model") or {}).get("roc_auc")}


def explain_stage_details(log: Path) -> dict[str, Any]:
    text = log.read_text(errors="replace")
    match = re.search(r"explained (\d+) customers \((\d+) at risk\) in ([\d.]+) s", text)
    if not match:
        return {}
    n, at_risk, seconds = int(match.group(1)), int(match.group(2)), float(match.group(3))
    return {"customers": n, "at_risk": at_risk, "seconds": seconds,
            "s_per_customer": seconds / max(n, 1)}


# ------------------------------------------------------------------------------- reporting
def machine_info() -> dict[str, Any]:
    import psutil

    versions = {}
    for name in ("churnlens", "duckdb", "pandas", "numpy", "pyarrow", "lightgbm", "scikit-learn",
                 "mlflow", "shap"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO,
                               capture_output=True, text=True, check=False).stdout.split("\n")
    except OSError:
        commit, dirty = None, []
    return {"cores": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": versions, "git_commit": commit,
            "uncommitted_src": [x[3:] for x in dirty if x.strip()],
            "load_average_start": list(os.getloadavg())}


def judge(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value >= bound if op == ">=" else value <= bound


def _measured(run: dict[str, Any] | None, **extra: Any) -> dict[str, Any] | None:
    if not run:
        return None
    return {"wall_s": run.get("wall_s"), "cpu_s": run.get("cpu_s"),
            "peak_rss_mb": run.get("peak_rss_mb"), "load_1m": run.get("load_1m_before"),
            **extra}


def target_rows(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 14's table from the figures of this run: for each row what was measured (wall,
    CPU, peak RSS, 1-minute load average before it), what it is compared with (same run),
    the judged value (and the same ratio in CPU time) and `met` = value <op> bound."""
    runs = (res.get("sample_loop") or {}).get("runs") or {}
    stages, extra = res.get("stages") or {}, res.get("extra_runs") or {}
    feats, f = stages.get("features"), res.get("features") or {}
    pandas, pandas1 = extra.get("pandas features"), extra.get("pandas features @1 cutoff")
    floor, vfloor, validate = f.get("floor"), res.get("validate_floor"), stages.get("validate")
    score, n_cut = res.get("score"), f.get("n_cutoffs")

    def cpu(run: dict[str, Any] | None) -> float | None:
        return None if not run else run.get("cpu_s")

    rows: dict[str, dict[str, Any]] = {}
    for key in ("dvc repro -f", "dvc exp run"):
        run = runs.get(key)
        name = "sample_repro_s" if key == "dvc repro -f" else "sample_exp_run_s"
        rows[name] = {"measured": _measured(run, what=(run or {}).get("cmd")), "against": None,
                      "value": run["wall_s"] if run else None, "value_cpu": None}
    speed = {"measured": _measured(feats, what="feature stage"),
             "against": _measured(pandas, what="pandas baseline"),
             "value": _ratio(pandas and pandas["wall_s"], feats and feats["wall_s"]),
             "value_cpu": _ratio(cpu(pandas), cpu(feats))}
    rows["features_speedup_vs_pandas"] = speed
    rows["features_cpu_speedup_vs_pandas"] = {**speed, "value": speed["value_cpu"],
                                              "value_cpu": None}
    rows["features_per_snapshot_vs_duckdb_floor"] = {
        "measured": _measured(feats, what=f"feature stage, {n_cut} snapshots"),
        "against": _measured(floor and {"wall_s": floor["seconds"], "cpu_s": floor.get("cpu_s")},
                             what="DuckDB scan + GROUP BY customer"),
        "value": f.get("per_snapshot_vs_floor"),
        "value_cpu": f.get("per_snapshot_cpu_vs_floor_cpu")}
    # one process for all jobs (--in-process, the quick default): peak RSS is cumulative there,
    # so the memory ratio is not measured
    cumulative_rss = bool(res.get("stages_in_process"))
    rows["features_memory_vs_pandas_single_cutoff"] = {
        "measured": _measured(feats, what="feature stage peak RSS"),
        "against": _measured(pandas1, what="pandas at as_of only, peak RSS"),
        "value": None if cumulative_rss else _ratio(feats and feats["peak_rss_mb"],
                                                     pandas1 and pandas1["peak_rss_mb"]),
        "value_cpu": None, "memory": True,
        "note": "not measured: all jobs in one process, peak RSS is cumulative"
        if cumulative_rss else None}
    rows["validate_vs_duckdb_typed_read"] = {
        "measured": _measured(validate, what="validate stage"),
        "against": _measured(vfloor and {"wall_s": vfloor["seconds"], "cpu_s": vfloor["cpu_s"]},
                             what="DuckDB typed read"),
        "value": _ratio(validate and validate["wall_s"], vfloor and vfloor["seconds"]),
        "value_cpu": _ratio(cpu(validate), vfloor and vfloor["cpu_s"])}
    rows["score_customers_per_s"] = {
        "measured": _measured(score and {"wall_s": score["predict_s"],
                                         "cpu_s": score["predict_cpu_s"],
                                         "load_1m_before": res.get("probes_load_1m")},
                              what=f"predict {score['customers']:,} customers" if score else None),
        "against": None, "value": score and score["customers_per_s"],
        "value_cpu": score and score["customers_per_cpu_s"]}
    repro = None
    if res.get("repro_s") is not None and stages:
        loads = [st.get("load_1m_before") for st in stages.values()
                 if st.get("load_1m_before") is not None]
        repro = {"wall_s": res["repro_s"], "cpu_s": sum(st.get("cpu_s", 0)
                                                         for st in stages.values()),
                 "peak_rss_mb": res.get("repro_peak_rss_mb"),
                 "load_1m_before": max(loads) if loads else None,
                 "load_1m_min": min(loads) if loads else None}
    rows["repro_s"] = {"measured": _measured(repro, what=f"{len(stages)} stages"),
                       "against": None, "value": repro and repro["wall_s"], "value_cpu": None}
    out = {}
    for name, (what, figure, op, bound, unit) in TARGETS.items():
        row = rows[name]
        out[name] = {"what": what, "figure": figure, "op": op, "bound": bound, "unit": unit,
                     **row, "met": judge(row["value"], op, bound)}
    return out


def _fig(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:.1f} s" if unit == "s" else f"{value:.2f}x"


def _side(m: dict[str, Any] | None, memory: bool = False) -> str:
    if not m:
        return "-"
    if memory:
        return f"{m['peak_rss_mb']:,.0f} MB"

    def num(x: float | None) -> str:
        return "-" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.1f}")

    return f"{num(m['wall_s'])} / {num(m.get('cpu_s'))}"


def render_targets(res: dict[str, Any]) -> list[str]:
    lines = ["issue 14 targets (same run; 'wall / CPU s' of what is measured and of what it is "
             "compared with; load = 1-min load average when it started):"]
    if res.get("mode") == "quick":
        lines.append(f"  (quick size: rows 3-9 are at {res.get('customers', 0):,} customers, "
                     "not 1M; their verdicts are the same comparison, not the issue's figure)")
    header = (f"  {'what':<52}{'wall / CPU s':>16}{'compared with':>17}{'figure':>13}"
              f"{'CPU ratio':>11}  {'target':<12}{'verdict':<9}{'load':>6}")
    lines += [header, "  " + "-" * (len(header) - 2)]
    for tg in res["targets"].values():
        memory = bool(tg.get("memory"))
        m = tg.get("measured") or {}
        verdict = {True: "met", False: "NOT met", None: "n/a"}[tg["met"]]
        cpu_ratio = "" if tg.get("value_cpu") is None else _fig(tg["value_cpu"], tg["unit"])
        bound = _fig(tg["bound"], tg["unit"]).replace(".0 s", " s").replace(".00x", "x")
        bound = bound.replace("200,000/s", "200k/s")
        load = m.get("load_1m")
        lines.append(f"  {tg['what'][:52]:<52}{_side(m or None, memory):>16}"
                     f"{_side(tg.get('against'), memory):>17}{_fig(tg['value'], tg['unit']):>13}"
                     f"{cpu_ratio:>11}  {tg['op'] + ' ' + bound:<12}{verdict:<9}"
                     f"{'-' if load is None else f'{load:.1f}':>6}")
    return lines


def render_sample_stages(sample: dict[str, Any] | None) -> list[str]:
    """Per dvc run on the sample: each stage's wall / CPU s, and what dvc itself adds."""
    lines = []
    for name, run in ((sample or {}).get("runs") or {}).items():
        stages = run.get("stages") or {}
        if not stages:
            continue
        inside = sum(st["wall_s"] for st in stages.values())
        lines.append(f"  {name} ({run['wall_s']:.1f} s wall / {run['cpu_s']:.1f} s CPU; stages "
                     f"{inside:.1f} s, dvc itself {run['wall_s'] - inside:.1f} s): "
                     + ", ".join(f"{stage} {st['wall_s']:.1f}/{st['cpu_s']:.1f}"
                                 for stage, st in stages.items()))
    return ["", "sample loop, per stage (wall / CPU s):", *lines] if lines else []


def render_imports(sample: dict[str, Any]) -> list[str]:
    imports = (sample or {}).get("imports") or {}
    if not imports:
        return []
    cli = imports.get("cli") or {}
    lines = ["", "imports per stage (python -X importtime on the sample clone, warm bytecode; "
             f"`import churnlens.cli` alone {cli.get('total_s', 0):.2f} s):",
             f"  {'stage':<10}{'at import s':>12}{'in a run s':>12}{'run wall s':>12}  "
             "heavy packages imported in the run: cumulative s where first imported "
             "[* = already at import] (via: importing churnlens module; top = at depth 0, by "
             "the CLI's main module or in a function)"]
    for stage, row in imports.items():
        if stage == "cli":
            continue
        mod, run = row.get("module") or {}, row.get("run") or {}
        heavy = run.get("heavy") or mod.get("heavy") or {}
        parts = [f"{name} {h['s']:.2f}{'*' if name in (mod.get('heavy') or {}) else ''}"
                 + (f" ({h['via']})" if h.get("via") else "")
                 for name, h in sorted(heavy.items(), key=lambda kv: -kv[1]["s"])
                 if h["s"] >= 0.05]
        lines.append(f"  {stage:<10}{mod.get('total_s', 0):>12.2f}"
                     f"{run.get('total_s', float('nan')):>12.2f}"
                     f"{run.get('wall_s', float('nan')):>12.1f}  " + ", ".join(parts))
    return lines


def main_sample_loop(args: argparse.Namespace, workdir: Path, machine: dict[str, Any], say,
                     bench_started: float) -> int:
    """`--only sample-loop`: the dvc runs on the bundled sample and the import table."""
    out = args.out if args.out != (REPO / "reports" / "bench.json").resolve() else (
        workdir / "sample_loop.json")
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    sample = sample_loop(workdir, say, keep=args.keep_clone)
    result: dict[str, Any] = {"date": date.today().isoformat(), "mode": "sample loop",
                              "sample_loop": sample, "machine": machine}
    result["targets"] = {k: v for k, v in target_rows(result).items()
                         if k in ("sample_repro_s", "sample_exp_run_s")}
    machine["load_average_end"] = list(os.getloadavg())
    result["bench_s"] = time.perf_counter() - bench_started
    lines = [f"churnlens benchmark {result['date']} (sample loop only); "
             f"{machine['cores']} cores, load avg at start "
             f"{machine['load_average_start'][0]:.1f}, at end "
             f"{machine['load_average_end'][0]:.1f}", "", *render_targets(result),
             *render_sample_stages(sample), *render_imports(sample)]
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    result["table"] = lines
    from churnlens.io import write_json

    write_json(result, out)
    say(f"wrote {out}")
    return 0


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def fmt_rows(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def render(res: dict[str, Any]) -> str:
    lines = [f"churnlens benchmark {res['date']} ({res['mode']}): {res['customers']:,} customers, "
             f"{res['events']:,} events, {res['transactions']:,} transactions; "
             f"{res['machine']['cores']} cores, {res['machine']['ram_gb']} GiB RAM, "
             f"load avg at start {res['machine']['load_average_start'][0]:.1f}"]
    gen = res["generate"]
    lines.append(f"raw data: {'reused, generated' if gen.get('reused') else 'generated'} in "
                 f"{gen['seconds']:.0f} s (event rows kept with "
                 f"p={gen['event_keep_probability']:.4f} of {gen['raw_event_rows']:,} generated)")
    lines.append("")
    header = (f"{'stage':<24}{'wall s':>9}{'cpu s':>9}{'peak RSS MB':>13}{'rows':>14}"
              f"{'rows/s':>13}  rows are")
    if res.get("stages_in_process"):
        lines.append("(all stages in one process: imports paid once, peak RSS is cumulative)")
    lines += [header, "-" * len(header)]
    def row(name: str, st: dict[str, Any]) -> str:
        return (f"{name:<24}{st['wall_s']:>9.1f}{st.get('cpu_s', 0):>9.1f}"
                f"{st['peak_rss_mb']:>13,.0f}{fmt_rows(st.get('rows')):>14}"
                f"{fmt_rows(st.get('rows_per_s')):>13}  {st.get('rows_are', '')}")

    for name, st in res["stages"].items():
        lines.append(row(name, st))
    if res.get("repro_s") is not None:
        cpu = sum(st.get("cpu_s", 0) for st in res["stages"].values())
        lines.append(f"{'repro (sum of stages)':<24}{res['repro_s']:>9.1f}{cpu:>9.1f}"
                     f"{res['repro_peak_rss_mb']:>13,.0f}")
    lines.append("")
    for name, st in res.get("extra_runs", {}).items():
        lines.append(row(name, st))
    lines.append("")
    f = res["features"]
    if f.get("duckdb_floor_s") is not None:
        lines.append("duckdb floor (scan events once, GROUP BY customer): "
                     f"{f['duckdb_floor_s']:.2f} s; features {res['features_s']:.1f} s / "
                     f"{f['n_cutoffs']} cutoffs = "
                     f"{f['per_snapshot_s']:.2f} s per snapshot = "
                     f"{f['per_snapshot_vs_floor']:.2f}x the floor "
                     f"(in-process {f['per_snapshot_in_process_vs_floor']:.2f}x; CPU time "
                     f"{_fmt(f.get('per_snapshot_cpu_vs_floor_cpu'))}x)")
    snaps = res.get("snapshots") or {}
    if snaps:
        parts = [f"{k} cutoffs ({v['n_cutoffs']} computed): {v['wall_s']:.1f} s"
                 for k, v in sorted(snaps.items(), key=lambda kv: int(kv[0]))]
        lines.append("feature stage by max_cutoffs: " + "; ".join(parts)
                     + (f"; growth {res['snapshot_growth']:.2f}x for "
                        f"{res['snapshot_cutoff_ratio']:.1f}x the snapshots"
                        if res.get("snapshot_growth") else ""))
    if res.get("pandas_features_s") is not None:
        check = res.get("pandas_check") or {}
        lines.append(f"pandas baseline: {res['pandas_features_s']:.1f} s, "
                     f"{res['pandas_peak_rss_mb']:,.0f} MB peak; pandas time / churnlens time "
                     f"{f['speedup_vs_pandas']:.2f} (CPU time "
                     f"{_fmt(f.get('cpu_speedup_vs_pandas'))}), churnlens memory / pandas "
                     f"{f['memory_vs_pandas']:.2f}; same rows/values: {check.get('match')} "
                     f"({check.get('columns_compared')} columns, "
                     f"{check.get('rows_joined', 0):,} rows)")
    t = res.get("train") or {}
    if t:
        per_round = t.get("fit_s_per_round")
        lines.append(f"train: {res['train_s']:.1f} s stage; {t['rows']:,} labelled rows ("
                     f"{t['customer_sample']:.0%} of customers; all: {t['rows_all_customers']:,})"
                     f", train slice {t['slices'].get('train', 0):,} rows; best "
                     f"iteration {t['best_iteration']}, {t['rounds_run']} rounds run, fit (trees + "
                     f"calibration) {t['fit_s']:.0f} s = "
                     + ("-" if per_round is None else f"{per_round:.2f} s per round"))
    s = res.get("score") or {}
    if s:
        b = s["breakdown_s"]
        lines.append(f"score: model predict {s['customers']:,} customers in {s['predict_s']:.2f} s "
                     f"= {s['customers_per_s']:,.0f} customers/s ("
                     f"{s['customers_per_cpu_s']:,.0f} per CPU-second; {s['trees']} trees; "
                     f"to_model_input {b['to_model_input']:.2f} s, preprocessing "
                     f"{b['preprocess_transform']:.2f} s, LightGBM {b['lightgbm_raw_score']:.2f} s)"
                     f"; stage wall {res['stages']['score']['wall_s']:.1f} s")
    e = res.get("explain") or {}
    if e:
        stage = e.get("stage") or {}
        lines.append(f"explain: at-risk list of {e['customers']} in {e['seconds']:.2f} s = "
                     f"{1000 * e['s_per_customer']:.2f} ms per customer; the stage explained "
                     f"{stage.get('customers', '-')} in {stage.get('seconds', float('nan')):.2f} s,"
                     f" stage wall {res['stages']['explain']['wall_s']:.1f} s")
    lines.append("")
    lines += render_targets(res)
    lines += render_sample_stages(res.get("sample_loop"))
    lines += render_imports(res.get("sample_loop"))
    lines.append("")
    generation = "reused" if gen.get("reused") else f"{gen['seconds']:.0f} s"
    lines.append(f"benchmark wall time {res['bench_s'] / 60:.1f} min (generation {generation}; "
                 f"CPU time of all measured processes {res['bench_cpu_s'] / 60:.1f} min); "
                 f"load avg at end {res['machine']['load_average_end'][0]:.1f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probe:
        result = probe(json.loads(args.spec.read_text()))
        Path(args.probe).write_text(json.dumps(result))
        return 0
    bench_started = time.perf_counter()
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    env = child_env(workdir)
    say = lambda msg: print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    machine = machine_info()
    machine["omp_wait_policy"] = env.get("OMP_WAIT_POLICY")  # as the children see it
    machine["openblas_thread_timeout"] = env.get("OPENBLAS_THREAD_TIMEOUT")

    if args.only == "sample-loop":
        return main_sample_loop(args, workdir, machine, say, bench_started)
    say(f"raw data: {args.customers:,} customers, ~{args.events:,} events in {workdir / 'raw'}")
    gen = generate_raw(args, workdir / "raw", env)
    rows = gen["rows"]
    say(f"raw data {'reused' if gen['reused'] else 'generated'}: {rows} ({gen['seconds']:.0f} s)")

    clean_outputs(workdir)
    params = write_params(args, workdir / "params.yaml")
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sample = (None if args.skip_sample_loop or args.only
              else sample_loop(workdir, say, keep=args.keep_clone))
    plan = ("validate", "features") if args.only == "features" else STAGES
    jobs = [stage_job(stage, stage, workdir, logs) for stage in plan]
    if args.train_sample < 1 and "train" in plan:
        jobs.insert(plan.index("train"), {
            "name": "sample training rows", "stage": SAMPLE_JOB, "cwd": str(workdir),
            "args": [args.train_sample, args.seed], "log": str(logs / "sample.log")})
    main_max = int(params["features"]["max_cutoffs"])
    variants = {k: snapshot_folder(args, workdir, k)
                for k in args.snapshot_cutoffs if k != main_max}
    jobs += [stage_job(f"features_{k}_cutoffs", "features", folder, logs)
             for k, folder in variants.items()]
    # the measurements that need the pipeline's outputs
    spec: dict[str, Any] = {"floor": True, "memory_limit": params["features"]["memory_limit"],
                            "threads": params["features"]["threads"]}
    pandas_path = workdir / "pandas_features" / "features.parquet"
    timing = workdir / "pandas_features" / "timing.json"
    if not args.skip_pandas and args.only is None:
        jobs.append({"name": "pandas features", "stage": PANDAS_JOB, "cwd": str(workdir),
                     "log": str(logs / "pandas_features.log"),
                     "args": ["--interim", "data/interim", "--meta", "data/features/meta.json",
                              "--params", "params.yaml", "--out", str(pandas_path),
                              "--timing", str(timing)]})
        spec["compare"] = str(pandas_path)
        # issue 14's memory row: pandas at one cutoff (as_of), where it needs the least memory
        jobs.append({"name": "pandas features @1 cutoff", "stage": PANDAS_JOB,
                     "cwd": str(workdir), "log": str(logs / "pandas_features_1.log"),
                     "args": ["--interim", "data/interim", "--meta", "data/features/meta.json",
                              "--params", "params.yaml", "--last-cutoffs", "1",
                              "--out", str(workdir / "pandas_features" / "as_of.parquet"),
                              "--timing", str(workdir / "pandas_features" / "timing_1.json")]})
    spec["validate_floor"] = {"raw": "raw", "interim": "data/interim"}
    if args.only is None:
        spec.update(score=True, explain=True, top_n=params["export"]["top_n"],
                    tiers=params["export"]["tiers"])
    jobs.append({"name": "probes", "stage": PROBE_JOB, "cwd": str(workdir), "args": [spec],
                 "log": str(logs / "probes.log")})
    ran = run_jobs(jobs, args.in_process, workdir, env, say)
    stages = {stage: ran[stage] for stage in plan}
    sampled = ran.get("sample training rows")
    probes = ran["probes"]["detail"]

    validation = json.loads((workdir / "data" / "interim" / "validation.json").read_text())
    meta = json.loads((workdir / "data" / "features" / "meta.json").read_text())
    accepted = {t: validation[t]["rows_accepted"] for t in validation}
    n_raw = sum(validation[t]["rows_in"] for t in validation)
    n_logs = accepted.get("events", 0) + accepted.get("transactions", 0)
    n_train, n_score = meta["n_training_rows"], meta["n_scoring_rows"]
    n_train_used = sampled["detail"]["rows"] if sampled else n_train
    n_cutoffs = len(meta["labelled_cutoffs"]) + 1
    row_counts = {"validate": (n_raw, "raw rows in (all tables)"),
                  "features": (n_logs, "event + transaction rows"),
                  "train": (n_train_used, "labelled feature rows"
                            + (f" ({args.train_sample:.0%} of customers)" if sampled else "")),
                  "score": (n_score, "customers scored"),
                  "drift": (n_train_used + n_score, "feature rows compared"),
                  "export": (n_score, "customers scored"),
                  "kpis": (n_logs, "event + transaction rows"),
                  "report": (n_score, "customers scored")}
    extra_runs: dict[str, dict[str, Any]] = {}
    if "pandas features" in ran:
        extra_runs["pandas features"] = {**ran["pandas features"], "rows": n_logs,
                                         "rows_are": "event + transaction rows",
                                         "detail": json.loads(timing.read_text())}
    if "pandas features @1 cutoff" in ran:
        extra_runs["pandas features @1 cutoff"] = {
            **ran["pandas features @1 cutoff"], "rows": n_logs,
            "rows_are": "event + transaction rows (as_of only)",
            "detail": json.loads((workdir / "pandas_features" / "timing_1.json").read_text())}

    snapshots: dict[str, dict[str, Any]] = {}
    for k in args.snapshot_cutoffs:
        if k == main_max:
            snapshots[str(k)] = {**stages["features"], "max_cutoffs": k, "n_cutoffs": n_cutoffs,
                                 "feature_rows": n_train + n_score,
                                 "in_process_s": meta.get("seconds"),
                                 "same_run_as": "features stage"}
        else:
            snapshots[str(k)] = snapshot_result(ran[f"features_{k}_cutoffs"], variants[k], k)
            extra_runs[f"features @{k} cutoffs"] = {**snapshots[str(k)], "rows": n_logs,
                                                    "rows_are": "event + transaction rows"}

    for name, st in {**stages, **extra_runs}.items():
        if name in row_counts:
            st["rows"], st["rows_are"] = row_counts[name]
        if name == "explain":
            st["explain_log"] = explain_stage_details(logs / "explain.log")
            st["rows"] = st["explain_log"].get("customers")
            st["rows_are"] = "customers explained"
        st["rows_per_s"] = st["rows"] / st["wall_s"] if st.get("rows") else None

    features_s = stages["features"]["wall_s"]
    floor_s = probes["floor"]["seconds"]
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "mode": "quick" if args.quick else ("features only" if args.only else "full"),
        "stages_in_process": bool(args.in_process),
        "customers": rows["customers"], "events": rows["events"],
        "transactions": rows["transactions"],
        "features_s": features_s, "features_peak_rss_mb": stages["features"]["peak_rss_mb"],
        "duckdb_floor_s": floor_s,
        "generate": gen, "raw_rows": rows, "accepted_rows": accepted,
        "stages": stages, "extra_runs": extra_runs, "snapshots": snapshots,
        "params": {"features": params["features"], "label": params["label"],
                   "train": params["train"], "export_top_n": params["export"]["top_n"]},
        "machine": machine,
        "sample_loop": sample,
        "validate_floor": probes.get("validate_floor"),
        "probes_load_1m": ran["probes"].get("load_1m_before"),
    }
    per_snapshot = features_s / n_cutoffs
    result["features"] = {
        "n_cutoffs": n_cutoffs, "max_cutoffs": main_max, "rows": n_train + n_score,
        "in_process_s": meta.get("seconds"), "duckdb_floor_s": floor_s,
        "floor": probes["floor"], "per_snapshot_s": per_snapshot,
        "per_snapshot_vs_floor": per_snapshot / floor_s,
        "per_snapshot_in_process_vs_floor":
            (meta.get("seconds") or features_s) / n_cutoffs / floor_s,
        "per_snapshot_cpu_vs_floor_cpu": _ratio(stages["features"]["cpu_s"] / n_cutoffs,
                                                probes["floor"].get("cpu_s")),
    }
    pandas = extra_runs.get("pandas features")
    result["pandas_features_s"] = pandas["wall_s"] if pandas else None
    result["pandas_peak_rss_mb"] = pandas["peak_rss_mb"] if pandas else None
    result["pandas_check"] = probes.get("pandas_check")
    result["features"]["speedup_vs_pandas"] = _ratio(result["pandas_features_s"], features_s)
    result["features"]["memory_vs_pandas"] = _ratio(stages["features"]["peak_rss_mb"],
                                                    result["pandas_peak_rss_mb"])
    result["features"]["cpu_speedup_vs_pandas"] = _ratio(pandas["cpu_s"] if pandas else None,
                                                         stages["features"]["cpu_s"])
    if "6" in snapshots and "24" in snapshots:
        result["features_s_6_cutoffs"] = snapshots["6"]["wall_s"]
        result["features_s_24_cutoffs"] = snapshots["24"]["wall_s"]
        result["snapshot_growth"] = snapshots["24"]["wall_s"] / snapshots["6"]["wall_s"]
        result["snapshot_cutoff_ratio"] = snapshots["24"]["n_cutoffs"] / snapshots["6"]["n_cutoffs"]
        result["marginal_s_per_snapshot"] = (
            (snapshots["24"]["wall_s"] - snapshots["6"]["wall_s"])
            / max(snapshots["24"]["n_cutoffs"] - snapshots["6"]["n_cutoffs"], 1))

    if args.only is None:
        metrics = json.loads((workdir / "reports" / "metrics.json").read_text())
        result["train_s"] = stages["train"]["wall_s"]
        result["train"] = {**train_details(logs / "train.log", metrics, params),
                           "rows": n_train_used, "rows_all_customers": n_train,
                           "customer_sample": args.train_sample,
                           "sample_step": sampled}
        result["train"]["s_per_round_stage"] = result["train_s"] / max(
            result["train"]["rounds_run"], 1)
        result["score"] = probes["score"]
        result["score_customers_per_s"] = probes["score"]["customers_per_s"]
        result["explain"] = {**probes["explain"], "stage": stages["explain"]["explain_log"]}
        result["explain_s_per_customer"] = probes["explain"]["s_per_customer"]
        result["repro_s"] = sum(st["wall_s"] for st in stages.values())
        result["repro_peak_rss_mb"] = max(st["peak_rss_mb"] for st in stages.values())
        result["repro_note"] = ("sum of the stage processes run one after another (what `dvc "
                                "repro` runs); DVC's own hashing of outputs not included")
    else:
        for key in ("train_s", "score_customers_per_s", "explain_s_per_customer", "repro_s",
                    "repro_peak_rss_mb"):
            result[key] = None

    result["targets"] = target_rows(result)
    result["meets_minimum_size"] = {k: result[k] >= v for k, v in MINIMUM.items()}
    machine["load_average_end"] = list(os.getloadavg())
    import resource

    machine["bench_process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    machine["rss_note"] = ("peak RSS = ru_maxrss of each child (os.wait4); a child's figure "
                           "includes at least the RSS of the bench process it was forked from")
    result["bench_s"] = time.perf_counter() - bench_started
    result["bench_cpu_s"] = sum(r.get("cpu_s", 0) for r in ran.values()) + (
        0 if gen.get("reused") else gen.get("cpu_s", 0))

    text = render(result)
    print("\n" + text, flush=True)
    (workdir / "bench.txt").write_text(text + "\n")
    result["table"] = text.splitlines()
    from churnlens.io import write_json

    missing = [k for k in REQUIRED_KEYS if k not in result]
    assert not missing, missing
    write_json(result, args.out)
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
