"""`scripts/bench.py --quick` end to end: the script works and writes every key of bench.json.

Not a timed test: the figures of a 3,000-customer run mean nothing, only that they are there.
The pandas baseline (`scripts/bench_pandas_features.py`) is checked against churnlens's own
feature rows on the same run, so the speed comparison of the real benchmark is like for like.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench.py"
DESIGN_KEYS = ("customers", "events", "transactions", "features_s", "features_peak_rss_mb",
               "pandas_features_s", "pandas_peak_rss_mb", "duckdb_floor_s", "train_s",
               "score_customers_per_s", "explain_s_per_customer", "repro_s", "repro_peak_rss_mb")


def _bench_module():
    spec = importlib.util.spec_from_file_location("churnlens_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    out = work / "out" / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--workdir", str(work), "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return work, json.loads(out.read_text()), proc.stdout


def test_bench_json_has_every_design_key_with_a_measured_value(quick_run):
    _, result, _ = quick_run
    for key in DESIGN_KEYS:
        assert key in result, key
        assert isinstance(result[key], int | float) and result[key] > 0, (key, result[key])
    assert result["customers"] >= 3_000
    assert set(result["stages"]) == {"validate", "features", "train", "score", "drift",
                                     "explain", "export", "kpis", "report"}
    assert result["repro_s"] == pytest.approx(sum(s["wall_s"] for s in result["stages"].values()))
    assert {"6", "24"} <= set(result["snapshots"])
    assert result["features_s_6_cutoffs"] > 0 and result["features_s_24_cutoffs"] > 0
    assert set(result["targets"]) == {"features_speedup_vs_pandas", "features_memory_vs_pandas",
                                      "features_per_snapshot_vs_duckdb_floor",
                                      "score_customers_per_s"}
    assert all(t["met"] in (True, False) for t in result["targets"].values())
    assert result["machine"]["cores"] >= 1 and result["machine"]["versions"]["duckdb"]


def test_events_are_thinned_to_the_requested_size(quick_run):
    _, result, _ = quick_run
    generated = result["generate"]
    assert generated["raw_event_rows"] > result["events"]  # the generator makes more
    assert result["events"] == pytest.approx(150_000, rel=0.03)
    assert result["accepted_rows"]["events"] <= result["events"]  # bad rows are quarantined


def test_the_table_is_printed(quick_run):
    _, result, stdout = quick_run
    assert "repro (sum of stages)" in stdout and "targets:" in stdout
    assert result["table"] and result["table"][0].startswith("churnlens benchmark")


def test_bench_check_of_the_pandas_rows_passes(quick_run):
    _, result, _ = quick_run
    check = result["pandas_check"]
    assert check["match"], check
    assert check["columns_missing_in_pandas"] == []


def test_pandas_baseline_computes_the_same_features(quick_run):
    """Independent of the bench's own DuckDB check: every row and column, float tolerance."""
    work, _, _ = quick_run
    features = work / "data" / "features"
    ours = pd.concat([pd.read_parquet(features / "training.parquet"),
                      pd.read_parquet(features / "scoring.parquet")], ignore_index=True)
    theirs = pd.read_parquet(work / "pandas_features" / "features.parquet")
    assert list(theirs.columns) == list(ours.columns)
    key = ["cutoff", "customer_id"]
    for frame in (ours, theirs):
        frame["cutoff"] = frame["cutoff"].astype(str)
        frame["customer_id"] = frame["customer_id"].astype(str)
        frame.sort_values(key, inplace=True, ignore_index=True)
    assert len(ours) == len(theirs) > 1_000
    assert (ours[key].to_numpy() == theirs[key].to_numpy()).all()
    assert ours["cutoff"].nunique() == 22
    for column in ours.columns.drop(key):
        a, b = ours[column], theirs[column]
        if column == "segment":
            assert (a.astype(str) == b.astype(str)).all(), column
            continue
        a, b = a.astype("float64").to_numpy(), b.astype("float64").to_numpy()
        assert (np.isnan(a) == np.isnan(b)).all(), column
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)


def test_quick_writes_elsewhere_than_the_real_figures():
    bench = _bench_module()
    quick = bench.parse_args(["--quick"])
    full = bench.parse_args([])
    assert full.out == REPO / "reports" / "bench.json"
    assert quick.out != full.out and quick.out.is_relative_to(REPO / "bench")
    assert quick.workdir != full.workdir
    assert (full.customers, full.events) == (1_000_000, 50_000_000)
    assert quick.in_process and not full.in_process
    assert bench.parse_args(["--events", "200000000"]).events == 200_000_000
