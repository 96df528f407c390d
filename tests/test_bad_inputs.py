"""The bad-input corpus (tests/data/bad/CASE/) run through the `churnlens validate` CLI.

Each case folder holds a few input files and `expected.json`:

    {"exit": 0 | 1,
     "message_contains": [...],                 # exit 1: substrings of the one-line error
     "accepted":   {TABLE: rows},               # exit 0: rows_accepted
     "quarantine": {TABLE: {reason: count}},    # exit 0: exactly these reasons
     "report":     {TABLE: {key: value}},       # exit 0: entries of validation.json
     "values":     {TABLE: {column: [...]}},    # exit 0: the accepted column, in order
     "as_of":      {key: value}}                # exit 0: the default as_of of the validated
                                                # tables (`snapshot.complete_as_of`) and its tail

Every case runs in-process through the Typer app (same code path as the console script, fast);
the whole corpus also runs as real subprocesses (`python -m churnlens.cli`) under `-m slow`,
and one case does so in the default run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churnlens.cli import app

CORPUS = Path(__file__).parent / "data" / "bad"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expected.json").exists())
TABLES = ("customers", "transactions", "events", "tickets", "nps", "interventions")
ERROR_PREFIX = "churnlens validate: error:"

STRING = (pa.string(), pa.large_string())
CONTRACT = {  # docs/architecture.md, "Validated tables"
    "customers": {
        "customer_id": STRING,
        "signup_date": (pa.date32(),),
        "segment": STRING,
        "country": STRING,
        "cancel_date": (pa.date32(),),
    },
    "transactions": {
        "customer_id": STRING,
        "timestamp": (pa.timestamp("us"),),
        "amount": (pa.float64(),),
        "quantity": (pa.int64(),),
    },
    "events": {
        "customer_id": STRING,
        "timestamp": (pa.timestamp("us"),),
        "event_type": STRING,
        "quantity": (pa.float64(),),
    },
    "tickets": {
        "customer_id": STRING,
        "opened_at": (pa.timestamp("us"),),
        "closed_at": (pa.timestamp("us"),),
        "priority": STRING,
    },
    "nps": {"customer_id": STRING, "timestamp": (pa.timestamp("us"),), "score": (pa.int64(),)},
    "interventions": {
        "customer_id": STRING,
        "timestamp": (pa.timestamp("us"),),
        "action": STRING,
        "channel": STRING,
        "cost": (pa.float64(),),
    },
}


def expected(case: str) -> dict:
    return json.loads((CORPUS / case / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    logging.getLogger("churnlens").handlers.clear()  # handlers point at CliRunner's closed streams


def run_inprocess(raw: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", str(raw), str(out)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"exception escaped the CLI: {result.exception!r}"
        ) from result.exception
    return result.exit_code, result.stderr


def run_subprocess(raw: Path, out: Path) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "churnlens.cli", "validate", str(raw), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stderr


def check_case(case: str, code: int, stderr: str, out: Path) -> None:
    exp = expected(case)
    assert "Traceback" not in stderr
    assert code == exp["exit"], stderr
    errors = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if exp["exit"] == 1:
        assert len(errors) == 1, stderr
        for part in exp["message_contains"]:
            assert part in errors[0], (part, errors[0])
        assert not (out / "validation.json").exists()
        return
    assert errors == []
    check_outputs(out, exp)


def check_outputs(out: Path, exp: dict) -> dict:
    report = json.loads((out / "validation.json").read_text(encoding="utf-8"))
    assert set(report) == set(TABLES)
    for table in TABLES:
        rep = report[table]
        assert rep["rows_in"] == rep["rows_accepted"] + rep["rows_quarantined"], table
        assert sum(rep["reasons"].values()) == rep["rows_quarantined"], table
        accepted = pq.read_table(out / f"{table}.parquet")
        quarantined = pq.read_table(out / "quarantine" / f"{table}.parquet")
        assert accepted.num_rows == rep["rows_accepted"]
        assert quarantined.num_rows == rep["rows_quarantined"]
        assert accepted.column_names == list(CONTRACT[table]), table
        for name, types in CONTRACT[table].items():
            assert accepted.schema.field(name).type in types, (
                table,
                name,
                accepted.schema.field(name).type,
            )
        assert quarantined.column_names == [*CONTRACT[table], "reason", "source_row"]
        for name in CONTRACT[table]:
            assert quarantined.schema.field(name).type in STRING
        reasons = quarantined.column("reason").to_pylist()
        assert all(isinstance(r, str) and r for r in reasons)
        assert {r: reasons.count(r) for r in set(reasons)} == rep["reasons"]
        for pii in ("email", "name"):
            assert pii not in accepted.column_names and pii not in quarantined.column_names
    for table, rows in exp.get("accepted", {}).items():
        assert report[table]["rows_accepted"] == rows, (table, report[table])
    for table, reasons in exp.get("quarantine", {}).items():
        assert report[table]["reasons"] == reasons, table
    for table, entries in exp.get("report", {}).items():
        for key, value in entries.items():
            assert report[table][key] == value, (table, key)
    for table, columns in exp.get("values", {}).items():
        accepted = pq.read_table(out / f"{table}.parquet")
        for column, values in columns.items():
            assert_values(accepted.column(column).to_pylist(), values, f"{table}.{column}")
    if "as_of" in exp:
        assert default_as_of(out) == exp["as_of"]
    return report


def default_as_of(out: Path) -> dict:
    """The features stage's default as_of of a validated folder, and its thin tail."""
    from churnlens.feature_runner import daily_rows, interim_paths, register_tables
    from churnlens.features import DuckDBEngine, connect
    from churnlens.snapshot import complete_as_of

    engine = DuckDBEngine(connect("256MB", 1, None))
    try:
        register_tables(engine, interim_paths(out))
        choice = complete_as_of(daily_rows(engine))
    finally:
        engine.close()
    return {"as_of": choice.as_of.isoformat(), "tail_rows": choice.tail_rows,
            "tail_days": choice.tail_days}


def assert_values(actual: list, wanted: list, where: str) -> None:
    assert len(actual) == len(wanted), (where, actual)
    for got, want in zip(actual, wanted, strict=True):
        if isinstance(got, dt.datetime):
            got = got.isoformat(sep=" ")
        elif isinstance(got, dt.date):
            got = got.isoformat()
        if isinstance(want, float) and isinstance(got, float):
            assert math.isclose(got, want), (where, got, want)
        else:
            assert got == want, (where, got, want)


@pytest.mark.parametrize("case", CASES)
def test_case_inprocess(case, tmp_path):
    out = tmp_path / "interim"
    code, stderr = run_inprocess(CORPUS / case, out)
    check_case(case, code, stderr, out)


def test_corpus_covers_the_brief():
    wanted = {
        "missing_required_column",
        "wrong_type_throughout",
        "unparseable_and_impossible_dates",
        "mixed_timezones",
        "csv_with_bom",
        "semicolon_delimiter",
        "non_utf8_bytes",
        "empty_file",
        "header_only",
        "duplicate_customer_ids_conflicting",
        "unknown_customers",
        "nan_inf_huge_amounts",
        "negative_quantities",
        "single_customer",
        "purchase_only",
        "leading_zero_ids",
        "parquet_input",
        "stray_row_60_days_later",
        "timestamp_in_2099",
    }
    assert wanted <= set(CASES)


def _run_subprocess_cases(cases: list[str], tmp_path: Path) -> None:
    workers = min(len(cases), os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # a few interpreters at a time
        results = pool.map(lambda c: run_subprocess(CORPUS / c, tmp_path / c), cases)
        runs = dict(zip(cases, results, strict=True))
    for case, (code, stderr) in runs.items():
        check_case(case, code, stderr, tmp_path / case)


def test_real_cli_subprocess(tmp_path):
    """The console entry point itself: exit code 1, one error line, no traceback.

    (One case only: each interpreter start costs seconds; `-m slow` runs the whole corpus.)
    """
    _run_subprocess_cases(["empty_file"], tmp_path)


@pytest.mark.slow
def test_corpus_subprocess(tmp_path):
    _run_subprocess_cases(CASES, tmp_path)


# --------------------------------------------------------------------------- output folder


def test_personal_data_never_written_or_logged(tmp_path):
    out = tmp_path / "out"
    code, stderr = run_inprocess(CORPUS / "duplicate_customer_ids_conflicting", out)
    assert code == 0
    assert "example.com" not in stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert b"example.com" not in path.read_bytes(), path
    report = json.loads((out / "validation.json").read_text())
    assert report["customers"]["pii_columns_dropped"] == ["email"]


def test_failed_run_leaves_previous_output_intact(tmp_path):
    out = tmp_path / "interim"
    assert run_inprocess(CORPUS / "single_customer", out)[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_inprocess(CORPUS / "wrong_type_throughout", out)[0] == 1
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["interim"]  # no temp folders left behind


def test_rerun_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "interim"
    assert run_inprocess(CORPUS / "unknown_customers", out)[0] == 0
    (out / "quarantine" / "stale.parquet").write_bytes(b"old")
    assert run_inprocess(CORPUS / "purchase_only", out)[0] == 0
    assert not (out / "quarantine" / "stale.parquet").exists()
    assert pq.read_table(out / "events.parquet").num_rows == 0  # not the old events


def test_foreign_files_in_out_dir_are_kept(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, stderr = run_inprocess(CORPUS / "single_customer", out)
    assert code == 0, stderr
    assert (out / "notes.txt").read_text() == "mine"
    check_outputs(out, expected("single_customer"))


@pytest.mark.parametrize("inside", [False, True])
def test_out_dir_must_not_hold_the_input(tmp_path, inside):
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in (CORPUS / "single_customer").glob("*.csv"):
        (raw / f.name).write_bytes(f.read_bytes())
    code, stderr = run_inprocess(raw, tmp_path if inside else raw)
    assert code == 1
    assert "output folder must not be the input folder" in stderr
    assert sorted(p.name for p in raw.iterdir()) == ["customers.csv", "transactions.csv"]


def test_missing_raw_dir(tmp_path):
    code, stderr = run_inprocess(tmp_path / "nope", tmp_path / "out")
    assert code == 1
    assert "input folder not found" in stderr


# ------------------------------------------------------------- issue 12 parts 3, 5, 7 (helper D)
# Personal data never leaves the raw files: not in the accepted or quarantined tables, the
# report, the log or the one-line error -- whatever shape the file has (rows of the wrong
# width, no header, names in category columns).

ISSUE_12_CASES = {"wrong_field_count_every_table", "headerless_customers", "name_in_segment",
                  "activity_before_signup"}


def raw_personal_values(case: str) -> set[str]:
    """Every value of the `email` and `name` columns of the case's customers file (as read)."""
    from churnlens.readers import read_table
    from churnlens.validation import PII_COLUMNS

    files = sorted((CORPUS / case).glob("customers.*"))
    if not files or files[0].stat().st_size == 0:
        return set()
    frame = read_table(files[0]).frame
    values = set()
    for column in PII_COLUMNS:
        if column in frame.columns:
            values |= {v.strip() for v in frame[column].dropna() if len(v.strip()) >= 3}
    return values


def output_strings(out: Path) -> list[str]:
    """Every string cell of every Parquet file under `out`, and the text of the other files."""
    found = []
    for path in sorted(out.rglob("*")):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            for column in table.columns:
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    found += [v for v in column.to_pylist() if v is not None]
        elif path.is_file():
            found.append(path.read_text(encoding="utf-8", errors="replace"))
    return found


def test_corpus_covers_issue_12_cases():
    assert ISSUE_12_CASES <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_no_personal_value_in_any_output_or_message(case, tmp_path):
    personal = raw_personal_values(case)
    if not personal:
        pytest.skip("no email/name values in this case")
    out = tmp_path / "interim"
    code, stderr = run_inprocess(CORPUS / case, out)
    texts = [stderr, *output_strings(out)] if out.exists() else [stderr]
    for value in personal:
        leaks = [t for t in texts if value in t]
        assert not leaks, (value, leaks[:3])


def test_quarantine_keeps_the_row_but_masks_shifted_personal_data(tmp_path):
    out = tmp_path / "interim"
    code, stderr = run_inprocess(CORPUS / "wrong_field_count_every_table", out)
    assert code == 0, stderr
    quarantine = pq.read_table(out / "quarantine" / "customers.parquet").to_pandas()
    rows = quarantine.set_index("customer_id")
    # C2: one field short, e-mail shifted into segment and name into country
    assert rows.loc["C2", "reason"] == "wrong_field_count"
    assert rows.loc["C2", "source_row"] == 1
    assert rows.loc["C2", ["segment", "country"]].tolist() == ["<masked>", "<masked>"]
    assert rows.loc["C3", "reason"] == "wrong_field_count"  # one field too many
    # C5: full width, e-mail typed into segment: that value masked, the rest kept
    assert rows.loc["C5", "reason"] == "email_in_segment"
    assert rows.loc["C5", ["segment", "country"]].tolist() == ["<masked>", "DE"]


def test_headerless_customers_error_names_columns_not_values(tmp_path):
    code, stderr = run_inprocess(CORPUS / "headerless_customers", tmp_path / "out")
    assert code == 1
    assert "C1" not in stderr and "example.com" not in stderr and "Example" not in stderr


@pytest.mark.parametrize("case", [c for c in CASES if "as_of" in expected(c)])
def test_kpis_take_the_same_default_as_of_as_features(case, tmp_path):
    """Issue 12 part 5: one rule for the default as_of; the KPI stage's counts give the same."""
    import pyarrow.dataset as ds

    from churnlens.kpis import daily_activity_rows
    from churnlens.snapshot import default_as_of as snapshot_as_of

    out = tmp_path / "interim"
    assert run_inprocess(CORPUS / case, out)[0] == 0
    tables = [ds.dataset(str(out / f"{t}.parquet")) for t in ("transactions", "events")]
    decision = snapshot_as_of(None, daily_activity_rows(*tables))
    assert {"as_of": decision.as_of.isoformat(), "tail_rows": decision.tail_rows,
            "tail_days": decision.tail_days} == expected(case)["as_of"] == default_as_of(out)


# =========================================================================== issue 12 part 8
# Bad params and run-time failures, through the CLI: one line on stderr, exit 1, no traceback,
# and a safe state (nothing half-written, nothing registered). Params are checked once, up front,
# by `config.load_params` (`churnlens.params_check`); any other error becomes one line pointing
# at the stage log (`logs/STAGE.log`); train refuses tiny data before MLflow and holds a lock.
# Corpus cases with a "train" entry in expected.json also run features and train.

PIPELINE_CASES = [c for c in CASES if "train" in expected(c)]
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

# name: ({dotted key: value}, substrings of the one error line)
BAD_PARAMS = {
    "memory_limit_without_unit": ({"features.memory_limit": "4"}, ["features.memory_limit"]),
    "memory_limit_words": ({"features.memory_limit": "lots"}, ["features.memory_limit",
                                                               "e.g. 4GB"]),
    "threads_zero": ({"features.threads": 0}, ["features.threads", ">= 1", "got 0"]),
    "threads_text": ({"features.threads": "two"}, ["features.threads", "got 'two'"]),
    "as_of_not_a_date": ({"snapshot.as_of": "yesterday"}, ["snapshot.as_of", "ISO date"]),
    "as_of_impossible_date": ({"snapshot.as_of": "2026-02-30"}, ["snapshot.as_of"]),
    "horizon_negative": ({"label.horizon_days": -90}, ["label.horizon_days"]),
    "definition_unknown": ({"label.definition": "churned"}, ["label.definition",
                                                             "inactivity, cancellation"]),
    "cv_folds_one": ({"train.cv_folds": 1}, ["train.cv_folds", ">= 2"]),
    "tiers_out_of_order": ({"score.tiers": {"high": 0.25, "medium": 0.5, "low": 0.0}},
                           ["score.tiers", "highest tier first"]),
    "windows_zero": ({"features.windows": [0, 30]}, ["features.windows"]),
    "top_n_negative": ({"export.top_n": -1}, ["export.top_n"]),
    "unknown_action_condition": ({"export.actions": [{"when": "sometimes", "action": "Call"},
                                                     {"when": "always", "action": "Nurture"}]},
                                 ["export.actions rule 1", "unknown condition 'sometimes'"]),
    "many_bad_keys_at_once": ({"features.memory_limit": "lots", "features.threads": 0,
                               "snapshot.as_of": "yesterday"},
                              ["3 bad values", "features.memory_limit", "features.threads",
                               "snapshot.as_of"]),
}


def write_params(folder: Path, overrides: dict, raw_dir: Path | None = None) -> Path:
    import yaml

    params = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    if raw_dir is not None:
        params["data"]["raw_dir"] = str(raw_dir)
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    escaped = None if isinstance(result.exception, SystemExit | type(None)) else result.exception
    return result.exit_code, result.stderr, escaped


def one_error_line(stage: str, code: int, stderr: str, escaped) -> str:
    assert escaped is None, f"exception escaped the CLI: {escaped!r}"
    assert code == 1, stderr
    assert "Traceback" not in stderr and "╭" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"churnlens {stage}: error: "), stderr
    return errors[0]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder as cwd; stage logs and MLflow inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURNLENS_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_bad_params_one_line_before_anything_is_written(case, project):
    overrides, wanted = BAD_PARAMS[case]
    params = write_params(project, overrides, raw_dir=CORPUS / "single_customer")
    out = project / "interim"
    line = one_error_line("validate", *invoke("validate", str(CORPUS / "single_customer"),
                                              str(out), "--params", str(params)))
    for part in wanted:
        assert part in line, (part, line)
    assert not out.exists()


@pytest.mark.parametrize("stage", ["privacy", "features", "train", "score", "drift",
                                   "explain", "export", "kpis", "report", "generate"])
def test_every_stage_checks_the_whole_params_file_first(stage, project):
    params = write_params(project, BAD_PARAMS["many_bad_keys_at_once"][0])
    line = one_error_line(stage, *invoke(stage, "--params", str(params)))
    assert "3 bad values" in line and "features.threads" in line
    assert sorted(p.name for p in project.iterdir()) == ["logs", "params.yaml"]


def test_as_of_typed_as_a_yaml_date(project):
    """`as_of: 2026-08-31` unquoted is a YAML date: read as the ISO string, the run goes on."""
    from churnlens.config import load_params

    params = write_params(project, {})
    params.write_text(params.read_text().replace("as_of: null", "as_of: 2026-08-31"))
    assert load_params(params)["snapshot"]["as_of"] == "2026-08-31"
    code, stderr, escaped = invoke("validate", str(CORPUS / "single_customer"),
                                   str(project / "interim"), "--params", str(params))
    assert (code, escaped) == (0, None), stderr


def test_missing_params_file_is_one_line(project):
    line = one_error_line("features", *invoke("features", "--params", "nope.yaml"))
    assert "params file nope.yaml not found" in line


@pytest.mark.parametrize("case", PIPELINE_CASES)
def test_tiny_data_stops_train_before_mlflow(case, project):
    """Three customers validate and get features, but train stops with one line before
    anything is fitted, saved or registered (it used to crash, or register a model whose
    test figures the promotion gate could not compare)."""
    exp = expected(case)["train"]
    params = write_params(project, {"train.register_model": True}, raw_dir=CORPUS / case)
    for stage in ("validate", "features"):
        code, stderr, escaped = invoke(stage, "--params", str(params))
        assert (code, escaped) == (0, None), stderr
    code, stderr, escaped = invoke("train", "--params", str(params))
    if exp["exit"] == 0:
        assert (code, escaped) == (0, None), stderr
        return
    line = one_error_line("train", code, stderr, escaped)
    for part in exp["message_contains"]:
        assert part in line, (part, line)
    assert "nothing was trained or registered" in line
    assert not (project / "mlflow.db").exists()          # MLflow never opened
    assert not (project / "models" / "churn_model").exists()
    assert not (project / "reports").exists()
    assert line.split("error: ", 1)[1] in (project / "logs" / "train.log").read_text()


def test_corpus_has_the_three_customers_case():
    assert "three_customers" in PIPELINE_CASES


def test_unexpected_error_is_one_line_with_the_log_holding_the_traceback(project,
                                                                       monkeypatch):
    from churnlens.stages import kpis

    def boom(*args, **kwargs):
        raise ValueError("something nobody expected\nsecond line")

    monkeypatch.setattr(kpis, "run", boom)
    line = one_error_line("kpis", *invoke("kpis"))
    log = project / "logs" / "kpis.log"
    assert "unexpected ValueError: something nobody expected" in line
    assert f"full traceback in {log}" in line and "CHURNLENS_DEBUG=1" in line
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "second line" in text
    monkeypatch.setenv("CHURNLENS_DEBUG", "1")
    code, stderr, escaped = invoke("kpis")
    assert isinstance(escaped, ValueError)   # the developer's view: the exception itself


@pytest.mark.parametrize(("error", "wanted"), [
    ("oom", ["DuckDB ran out of memory", "features.memory_limit=4GB", "temp folder"]),
    ("disk", ["disk full", "temp folder", "No space left on device"]),
])
def test_duckdb_out_of_memory_or_disk_is_one_line(error, wanted, project, monkeypatch):
    import duckdb

    from churnlens import features

    assert invoke("validate", str(CORPUS / "three_customers"), "data/interim")[0] == 0
    write_params(project, {})

    def copy_fails(engine, query, target):  # the DuckDB engine's COPY of a result to Parquet
        if error == "oom":
            raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate 256 KiB")
        raise duckdb.IOException('IO Error: Could not write file "x": No space left on device')

    monkeypatch.setattr(features.DuckDBEngine, "write", copy_fails)
    line = one_error_line("features", *invoke("features"))
    for part in wanted:
        assert part in line, (part, line)
    leftovers = [p.name for p in (project / "data" / "features").iterdir()]
    assert leftovers == []           # the spill folder is removed, no half-written outputs


def test_disk_full_anywhere_is_one_line(project, monkeypatch):
    import errno

    from churnlens.stages import kpis

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "reports/kpis.json")

    monkeypatch.setattr(kpis, "run", full)
    line = one_error_line("kpis", *invoke("kpis"))
    assert "disk full writing reports/kpis.json" in line


def test_two_trains_at_once_the_second_stops_in_one_line(project):
    """A running train holds models/.train.lock; a second one says so and touches nothing
    (it used to run on and delete the first one's temp folders)."""
    import yaml

    from test_train_stage import AS_OF, PARAMS, feature_rows

    (project / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (project / "data" / "features").mkdir(parents=True)
    feature_rows().to_parquet(project / "data/features/training.parquet", index=False)
    (project / "data/features/meta.json").write_text(json.dumps({"as_of": AS_OF.isoformat()}))
    first_temp = project / "models" / ".churn_model.first"   # the running train's temp folder
    first_temp.mkdir(parents=True)
    holder = subprocess.Popen(   # a real second process holding the lock, as a train would
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         "fd = os.open('models/.train.lock', os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n"],
        cwd=project, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_error_line("train", *invoke("train"))
        assert f"another churnlens train is running (pid {holder.pid})" in line
        assert first_temp.is_dir()
        assert not (project / "reports").exists() and not (project / "models/churn_model").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # the lock goes with its process: the next train is not blocked by a stale lock file
    (project / "data/features/training.parquet").unlink()
    line = one_error_line("train", *invoke("train"))
    assert "training.parquet is missing: run `dvc repro features` first" in line


# Issue 12 part 7: every customer is either scored or quarantined with a reason (or, by the
# contract, not a customer at as_of: cancelled on or before it, or signed up after it without
# any activity before). Contradicting rows -- activity before the signup date -- used to vanish.


def _contradictions(raw: Path) -> None:
    """Edit a generated sample: signups after the customer's own activity, one even after the
    end of the data; a row of the wrong width; a cancellation before signup; a future signup."""
    import pandas as pd

    customers = pd.read_csv(raw / "customers.csv", dtype=str, keep_default_na=False)
    tx = pd.read_csv(raw / "transactions.csv", dtype=str, keep_default_na=False)
    ts = pd.to_datetime(tx["timestamp"], errors="coerce", utc=True, format="ISO8601")
    first, last = ts.groupby(tx["customer_id"]).min(), ts.groupby(tx["customer_id"]).max()
    buyers = [c for c in tx["customer_id"].value_counts().index if c in set(customers.customer_id)]
    edits = {
        buyers[0]: ts.max() + pd.Timedelta(days=30),  # after all the data (and as_of)
        buyers[1]: first[buyers[1]] + (last[buyers[1]] - first[buyers[1]]) / 2,
        buyers[2]: last[buyers[2]] + pd.Timedelta(days=1),
    }
    for cid, day in edits.items():
        row = customers["customer_id"] == cid
        customers.loc[row, "signup_date"] = day.date().isoformat()
        customers.loc[row, "cancel_date"] = ""
    extra = pd.DataFrame([
        {"customer_id": "X-CANCEL", "signup_date": "2025-06-01", "cancel_date": "2025-05-01"},
        {"customer_id": "X-FUTURE", "signup_date": (ts.max() + pd.Timedelta(days=9)).date()},
    ])
    text = pd.concat([customers, extra]).to_csv(index=False) + "X-SHORT,2025-01-01\n"
    (raw / "customers.csv").write_text(text, encoding="utf-8")
    (raw / "contradictions.txt").write_text("\n".join(edits))  # unknown file: ignored


def _accounting(run, predictions: str) -> None:
    import pandas as pd

    from churnlens.readers import read_table

    raw_ids = set(read_table(run.raw_dir / "customers.csv").frame["customer_id"].str.strip())
    quarantine = pd.read_parquet(run / "data/interim/quarantine/customers.parquet")
    assert quarantine["reason"].str.len().gt(0).all()
    quarantined = set(quarantine["customer_id"].str.strip())
    scored = set(pd.read_parquet(run / predictions)["customer_id"])
    accepted = pd.read_parquet(run / "data/interim/customers.parquet")
    as_of = json.loads((run / "data/features/meta.json").read_text())["as_of"]
    signup = accepted["signup_date"].astype(str)
    cancel = accepted["cancel_date"].astype(str)
    active_by_as_of = set()
    for table in ("transactions", "events"):
        rows = pd.read_parquet(run / f"data/interim/{table}.parquet")
        seen = rows["timestamp"].dt.strftime("%Y-%m-%d") <= as_of
        active_by_as_of |= set(rows.loc[seen, "customer_id"])
    not_yet = set(accepted.loc[signup > as_of, "customer_id"]) - active_by_as_of
    not_yet_or_gone = not_yet | set(accepted.loc[cancel <= as_of, "customer_id"])
    lost = raw_ids - scored - quarantined - not_yet_or_gone
    assert not lost, sorted(lost)[:10]
    contradicting = (run.raw_dir / "contradictions.txt").read_text().split()
    assert set(contradicting) <= scored  # activity before signup: scored, not left out
    assert {"X-CANCEL", "X-SHORT"} <= quarantined and "X-FUTURE" in not_yet_or_gone
    report = json.loads((run / "data/interim/validation.json").read_text())["customers"]
    assert report["signup_moved_to_first_activity"] >= 3


def _contradiction_run(root: Path, stages: list[str]):
    from pipeline_helpers import run_pipeline

    return run_pipeline(root, n_customers=200, env={"CHURNLENS_TODAY": "2100-01-01"},
                        raw_hook=_contradictions, stages=stages)


@pytest.mark.slow  # ~20 s: a generated sample through validate and features
def test_every_customer_is_in_the_scoring_rows_or_quarantined(tmp_path):
    run = _contradiction_run(tmp_path, ["privacy", "validate", "features"])
    _accounting(run, "data/features/scoring.parquet")


@pytest.mark.slow
def test_every_customer_is_scored_or_quarantined(tmp_path):
    run = _contradiction_run(tmp_path, ["privacy", "validate", "features", "train", "score"])
    _accounting(run, "data/processed/predictions.parquet")
