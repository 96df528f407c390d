"""`churnlens validate` streams the large tables: chunked output = unchunked output, exactly.

`validation_run.validate_folder` (the stage's work) reads transactions, events, tickets and nps
`chunk_rows` rows at a time. Each test runs it with a tiny chunk size and with a huge one (one
chunk per table, as before streaming) and compares every output file: same Arrow schema (pandas
metadata included), same rows, same validation.json; or the same one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnlens import validation_run
from churnlens.errors import InputFileError
from churnlens.generate import TABLES, generate_dataset
from churnlens.readers import ROW_POSITION_COLUMN, open_table, read_table
from churnlens.sample_io import write_csv_tables
from churnlens.stages import validate
from churnlens.validation import TABLE_NAMES, TableValidator, validate_table
from churnlens.validation_run import validate_folder

CORPUS = Path(__file__).parent / "data" / "bad"
TINY, HUGE = 7, 10**9


@pytest.fixture(scope="module")
def generated() -> dict[str, pd.DataFrame]:
    """The bundled generator's data with its bad rows (a few dozen to hundreds of rows a table).

    Events are thinned out (fewer chunks to run) but keep every bad row: those name no
    customer, an unknown one, or the last generated one (see `churnlens.generate`).
    """
    frames = generate_dataset(120, "2025-09-01", "2026-02-28", 11, bad_rows=True)
    events = frames["events"]
    last = frames["_truth"]["customer_id"].max()
    ids = events["customer_id"]
    keep = ids.isna() | (ids.fillna("") >= last) | (events.index % 40 == 0)
    frames["events"] = events[keep.to_numpy()].reset_index(drop=True)
    return {name: frames[name] for name in TABLES}


@pytest.fixture(scope="module")
def csv_raw(generated, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw_csv")
    write_csv_tables([generated], raw)
    return raw


@pytest.fixture(scope="module")
def parquet_raw(generated, tmp_path_factory) -> Path:
    """The same tables as Parquet (strings), several row groups each."""
    raw = tmp_path_factory.mktemp("raw_parquet")
    for name, frame in generated.items():
        text = frame.astype("str").where(frame.notna(), None)
        text.to_parquet(raw / f"{name}.parquet", row_group_size=5)
    return raw


def run_stage(raw: Path, out: Path, chunk_rows: int) -> Path:
    validate_folder(raw, out, chunk_rows=chunk_rows)
    return out


def assert_same_outputs(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".parquet"]) == 2 * len(TABLE_NAMES)
    for rel in files:
        if rel.suffix == ".json":
            assert json.loads((a / rel).read_text()) == json.loads((b / rel).read_text())
            continue
        ta, tb = pq.read_table(a / rel), pq.read_table(b / rel)
        assert ta.schema.equals(tb.schema, check_metadata=True), rel
        pd.testing.assert_frame_equal(pd.read_parquet(a / rel), pd.read_parquet(b / rel))


def compare_runs(raw: Path, tmp_path: Path, tiny: int = TINY) -> dict:
    small = run_stage(raw, tmp_path / "tiny", tiny)
    whole = run_stage(raw, tmp_path / "huge", HUGE)
    assert_same_outputs(small, whole)
    return json.loads((whole / "validation.json").read_text())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_generated_data_with_bad_rows(fmt, csv_raw, parquet_raw, tmp_path):
    raw = csv_raw if fmt == "csv" else parquet_raw
    report = compare_runs(raw, tmp_path)
    for name in ("transactions", "events", "tickets", "nps"):
        assert report[name]["rows_in"] > 2 * TINY, name  # several chunks each
        assert report[name]["rows_quarantined"] > 0, name  # the generator's bad rows
    quarantine = pd.read_parquet(tmp_path / "tiny/quarantine/events.parquet")
    raw_events = read_table(
        raw / f"events.{'csv' if fmt == 'csv' else 'parquet'}", ["customer_id"]
    ).frame
    positions = quarantine["source_row"].astype("int64")
    assert positions.max() >= TINY  # positions in the whole file, not in a chunk
    expected = raw_events["customer_id"].iloc[positions].reset_index(drop=True)
    pd.testing.assert_series_equal(quarantine["customer_id"], expected, check_names=False)


def test_pseudonymised_ids(csv_raw, tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    params.write_text("privacy:\n  pseudonymise_ids: true\n  salt_env: TEST_SALT\n")
    monkeypatch.setenv("TEST_SALT", "streaming-test-salt-0123456789")
    outs = []
    for size in (TINY, HUGE):
        monkeypatch.setattr(validation_run, "CHUNK_ROWS", size)  # the stage's default
        validate.run(csv_raw, tmp_path / str(size), params)
        outs.append(tmp_path / str(size))
    assert_same_outputs(*outs)
    ids = pd.read_parquet(outs[0] / "events.parquet")["customer_id"]
    assert ids.str.match(r"^p_[0-9a-f]{16}$").all()
    assert ids.isin(pd.read_parquet(outs[0] / "customers.parquet")["customer_id"]).all()


def test_chunk_size_of_one_on_the_bad_input_corpus(tmp_path):
    for case in sorted(p for p in CORPUS.iterdir() if (p / "expected.json").exists()):
        exit_code = json.loads((case / "expected.json").read_text())["exit"]
        if exit_code == 0:
            compare_runs(case, tmp_path / case.name, tiny=1)
            continue
        errors = []
        for size in (1, HUGE):
            with pytest.raises(InputFileError) as err:
                validate_folder(case, tmp_path / case.name / str(size), chunk_rows=size)
            errors.append(str(err.value))
        assert errors[0] == errors[1], case.name


def test_malformed_csv_row_after_the_first_chunk(tmp_path):
    """Such a file is read again with the row parser from the start, as when unchunked."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "customers.csv").write_text("customer_id,signup_date\nC1,2024-01-01\nC2,2024-01-02\n")
    rows = [f"C{1 + i % 3},2024-02-{1 + i % 28:02d},{i}.5" for i in range(30)]
    rows[23] += ",an,extra,field"
    rows.insert(11, "")  # blank line: not a row
    (raw / "transactions.csv").write_text("customer_id,timestamp,amount\n" + "\n".join(rows))
    report = compare_runs(raw, tmp_path, tiny=4)
    assert report["transactions"]["reasons"] == {"unknown_customer": 9, "wrong_field_count": 1}
    quarantine = pd.read_parquet(tmp_path / "tiny/quarantine/transactions.parquet")
    wrong = quarantine["reason"] == "wrong_field_count"
    assert quarantine.loc[wrong, "source_row"].tolist() == [23]


def test_wrong_type_is_decided_over_the_whole_column(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "customers.csv").write_text("customer_id,signup_date\nC1,2024-01-01\n")
    text = ["oops"] * 9 + ["12.5"]  # the first chunks hold no number at all
    lines = [f"C1,2024-02-01,{v}" for v in text]
    (raw / "transactions.csv").write_text("customer_id,timestamp,amount\n" + "\n".join(lines))
    report = compare_runs(raw, tmp_path, tiny=3)
    assert report["transactions"]["reasons"] == {"non_numeric_amount": 9}

    lines = [f"C1,2024-02-01,{v}" for v in ['"1,5"', "x"] * 4 + ["", ""]]
    (raw / "transactions.csv").write_text("customer_id,timestamp,amount\n" + "\n".join(lines))
    with pytest.raises(InputFileError, match="none of the 8 values parse; decimal commas"):
        validate_folder(raw, tmp_path / "error", chunk_rows=3)
    assert not (tmp_path / "error").exists()


def test_validator_chunks_add_up_to_validate_table():
    raw = pd.DataFrame(
        {
            "customer_id": ["C1", "C9", "C1", None, "C1", "C1", "C2"],
            "timestamp": [
                "2024-01-01",
                "2024-01-02",
                "bad",
                "2024-01-03",
                "2024-02-30",
                "2024-01-04",
                "2024-01-05T10:00:00+02:00",
            ],
            "amount": ["1", "2", "3", "4", "5", "nan", "7"],
        },
        dtype="str",
    )
    whole = validate_table("transactions", raw, known_customers=["C1", "C2"])
    validator = TableValidator("transactions", known_customers=["C1", "C2"])
    parts = [validator.add(raw.iloc[i : i + 2]) for i in range(0, len(raw), 2)]
    assert validator.finish() == whole.report
    accepted = pd.concat([p.accepted for p in parts], ignore_index=True)
    quarantined = pd.concat([p.quarantined for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(accepted, whole.accepted)
    pd.testing.assert_frame_equal(quarantined, whole.quarantined)
    assert quarantined["source_row"].tolist() == [1, 2, 3, 4, 5]


def test_customers_cannot_be_chunked():
    validator = TableValidator("customers")
    validator.add(pd.DataFrame({"customer_id": ["C1"], "signup_date": ["2024-01-01"]}))
    with pytest.raises(ValueError, match="one chunk"):
        validator.add(pd.DataFrame({"customer_id": ["C1"], "signup_date": ["2024-01-01"]}))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_reader_chunks_concatenate_to_the_whole_file(fmt, csv_raw, parquet_raw):
    path = (csv_raw if fmt == "csv" else parquet_raw) / f"transactions.{fmt}"
    whole = read_table(path).frame
    chunks = list(open_table(path, chunk_rows=TINY).frames)
    assert len(chunks) == -(-len(whole) // TINY)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1e16, 2.0, 3.0, 4.5], ["1e+16", "2", "3", "4.5"]),  # not all whole: floats throughout
        ([1e16, 2.0, 3.0, 4.0], ["10000000000000000", "2", "3", "4"]),  # all whole: via int64
    ],
)
def test_float_ids_are_decided_over_the_whole_parquet_column(tmp_path, values, expected):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"customer_id": pa.array(values)}), path, row_group_size=2)
    chunks = [f["customer_id"].tolist() for f in open_table(path, chunk_rows=2).frames]
    assert chunks == [expected[:2], expected[2:]]
    assert read_table(path).frame["customer_id"].tolist() == expected


@pytest.mark.parametrize(
    ("name", "content"),
    [("t.csv", "customer_id,amount\n"), ("t.parquet", None)],
)
def test_empty_files_give_one_empty_chunk(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"customer_id": pa.array([], type=pa.string())}), path)
    else:
        path.write_text(content)
    chunks = list(open_table(path, chunk_rows=3).frames)
    assert len(chunks) == 1 and len(chunks[0]) == 0
    assert ROW_POSITION_COLUMN in chunks[0].columns
