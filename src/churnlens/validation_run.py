"""Validate a folder of raw tables into an output folder: TABLE.parquet, quarantine/TABLE.parquet
and validation.json (`validate_folder`). The validate stage and `churnlens.score_logs` both run it.

Streams, so that memory does not grow with the size of the logs: `customers` is read whole
(it is the known-customer set and needs the duplicate-id check), while transactions, events,
tickets, nps and interventions are read (`churnlens.readers.open_table`) and validated
(`churnlens.validation.TableValidator`) `CHUNK_ROWS` rows at a time, and each chunk's accepted
and quarantined rows are appended to the output Parquet files (`churnlens.validation_sinks`:
`pyarrow.parquet.ParquetWriter`, same schemas as `DataFrame.to_parquet`). Whole-table checks and
the report cover all chunks. The output does not depend on the chunk size.
Only contract columns are loaded: personal data and unknown columns are never read, just listed.

The whole output folder is built in a temporary folder next to OUT_DIR and renamed onto it, so
a killed or failed run leaves the previous OUT_DIR intact. If OUT_DIR already holds files this
module does not write, it is not replaced: the tables are then validated whole, in memory, and
the files written one by one (each atomically, validation.json last).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from churnlens.errors import InputFileError
from churnlens.io import atomic_path, find_table
from churnlens.logs import get_logger
from churnlens.privacy import pseudonymise
from churnlens.readers import RowParserNeeded, TableChunks, open_table
from churnlens.validation import (
    ACTIVITY_TABLES,
    TABLE_NAMES,
    TABLES,
    TableResult,
    TableValidator,
    contract_columns,
    customer_set,
    empty_result,
    move_signup_to_first_activity,
    summary_line,
    validate_customers,
)
from churnlens.validation_sinks import QUARANTINE, REPORT, FirstDays, MemorySink, ParquetSink

__all__ = ["CHUNK_ROWS", "QUARANTINE", "REPORT", "validate_folder"]

log = get_logger("validate")

#: Rows per chunk of the streamed tables (peak memory grows with it: 1.2 GB in all at 1M rows
#: on 1M customers / 51.6M events, customers held whole).
CHUNK_ROWS = 1_000_000


def validate_folder(raw_dir: str | Path, out_dir: str | Path, salt: bytes | None = None,
                    chunk_rows: int | None = None) -> None:
    """Validate `raw_dir`; write accepted and quarantined rows and the report (`REPORT`) to
    `out_dir`.

    `salt` (`churnlens.privacy.pseudonymise_setting`): each `customer_id` written is a keyed
    hash; None writes the ids as read. `chunk_rows`: rows per chunk of the streamed tables
    (default `CHUNK_ROWS`). Raises `InputFileError` (one line naming file, column and what was
    expected) for an unusable folder or file.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    chunk_rows = CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
    _check_folders(raw_dir, out_dir)
    paths = _find_tables(raw_dir)
    foreign = _foreign_files(out_dir)
    if foreign:
        log.warning(
            "%s holds other files (%s); writing files one by one instead of replacing the folder",
            out_dir,
            ", ".join(foreign[:5]),
        )
        _validate(paths, MemorySink(out_dir), salt, chunk_rows=None, reread_rows=chunk_rows)
    else:
        with atomic_path(out_dir) as tmp:
            _validate(paths, ParquetSink(tmp), salt, chunk_rows=chunk_rows, reread_rows=chunk_rows)


def _find_tables(raw_dir: Path) -> dict[str, Path | None]:
    paths = {name: find_table(raw_dir, name) for name in TABLE_NAMES}
    for name, path in paths.items():
        if path is None and TABLES[name].required:
            raise InputFileError(
                str(raw_dir / f"{name}.csv"),
                None,
                f"required table '{name}' is missing: expected {name}.csv or {name}.parquet",
            )
        if path is not None and path.suffix == ".parquet" and (raw_dir / f"{name}.csv").exists():
            log.warning("%s: both .parquet and .csv found; using %s", name, path.name)
    return paths


def _validate(paths: dict[str, Path | None], sink, salt: bytes | None, chunk_rows: int | None,
              reread_rows: int) -> None:
    """Validate every table into `sink`: customers first, the others against them.
    `reread_rows`: chunk size when a table is read again with the row parser."""
    tables = {  # every file's header is checked before any row is validated
        name: _open(name, path, chunk_rows) for name, path in paths.items() if path is not None
    }
    customers = _validate_customers(paths["customers"], tables["customers"])
    reports = {}
    known = customer_set(customers.accepted["customer_id"])  # one lookup set for every table
    first_days = FirstDays(known)
    for name in (*TABLE_NAMES[1:], "customers"):  # customers last: signups may move
        if name in tables and name != "customers":
            days = first_days if name in ACTIVITY_TABLES else None
            report = _stream_table(name, paths[name], tables[name], known, sink, salt, days,
                                   reread_rows)
        else:
            result = empty_result(name)
            if name == "customers":
                result = move_signup_to_first_activity(customers, first_days.days)
            with sink.table(name) as write:
                write(_pseudonymised(result, salt))
            report = result.report
        reports[name] = _with_format(report, tables.get(name))
    reports = {name: reports[name] for name in TABLE_NAMES}
    for name, report in reports.items():
        log.info(summary_line(name, report))
    moved = reports["customers"].get("signup_moved_to_first_activity")
    if moved:
        log.warning("customers: %d signup dates after the customer's first transaction or event "
                    "moved to that day (signup_moved_to_first_activity)", moved)
    if reports["customers"].get("pii_columns_dropped"):
        log.info(
            "customers: personal data columns dropped: %s",
            ", ".join(reports["customers"]["pii_columns_dropped"]),
        )
    sink.finish(reports)


def _open(name: str, path: Path, chunk_rows: int | None, row_parser: bool = False) -> TableChunks:
    """Open a raw file: contract columns only; customers in one chunk."""
    chunks = None if name == "customers" else chunk_rows
    table = open_table(path, contract_columns(name), chunks, row_parser=row_parser)
    if table.encoding not in (None, "utf-8", "utf-8-sig") and not row_parser:
        log.warning("%s: decoded as %s (not UTF-8)", path.name, table.encoding)
    return table


def _validate_customers(path: Path, table: TableChunks) -> TableResult:
    frame = next(table.frames)
    table.frames.close()
    return validate_customers(frame, source=str(path), file_columns=table.columns)


def _stream_table(name: str, path: Path, table: TableChunks, known: pa.Array, sink, salt,
                  first_days: FirstDays | None, reread_rows: int) -> dict:
    """Validate and write one table chunk by chunk; returns its report. `first_days`: fed
    with each chunk's accepted rows."""
    try:
        report = _stream_chunks(name, path, table, known, sink, salt, first_days)
    except RowParserNeeded:  # the table's files are started again from scratch
        log.info("%s: malformed row after the first chunk; reading it row by row", path.name)
        if first_days is not None:
            first_days.restart()
        table = _open(name, path, reread_rows, row_parser=True)
        report = _stream_chunks(name, path, table, known, sink, salt, first_days)
    if first_days is not None:
        first_days.commit()
    return report


def _stream_chunks(name, path, table, known, sink, salt, first_days=None) -> dict:
    validator = TableValidator(
        name, known_customers=known, source=str(path), file_columns=table.columns
    )
    with sink.table(name) as write:
        for frame in table.frames:
            result = validator.add(frame)
            if first_days is not None:
                first_days.add(result.accepted, result.known_positions)
            write(_pseudonymised(result, salt))
    return validator.finish()  # raises for a column of the wrong type throughout


def _with_format(report: dict, table: TableChunks | None) -> dict:
    report = dict(report)
    report["format"] = table.format if table else None
    report["encoding"] = table.encoding if table else None
    report["delimiter"] = table.delimiter if table else None
    return report


def _pseudonymised(result: TableResult, salt: bytes | None) -> TableResult:
    if salt is None:
        return result
    frames = [
        frame.assign(
            customer_id=pseudonymise(frame["customer_id"], salt).astype(frame["customer_id"].dtype)
        )
        for frame in (result.accepted, result.quarantined)
    ]
    return TableResult(*frames, result.report)


def _check_folders(raw_dir: Path, out_dir: Path) -> None:
    if not raw_dir.is_dir():
        raise InputFileError(
            str(raw_dir),
            None,
            "input folder not found: expected a folder with "
            "customers and transactions tables (.csv or .parquet)",
        )
    raw_abs, out_abs = raw_dir.resolve(), out_dir.resolve()
    if raw_abs == out_abs or raw_abs.is_relative_to(out_abs):
        raise InputFileError(
            str(out_dir), None, "output folder must not be the input folder nor contain it"
        )


def _foreign_files(out_dir: Path) -> list[str]:
    """Names in OUT_DIR this module does not write."""
    if not out_dir.is_dir():
        return []
    ours = {f"{name}.parquet" for name in TABLE_NAMES} | {QUARANTINE, REPORT}
    return sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
