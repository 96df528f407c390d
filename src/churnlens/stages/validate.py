"""Stage `validate`: RAW_DIR -> OUT_DIR/{TABLE.parquet, quarantine/TABLE.parquet, validation.json}.

Reads each table with `churnlens.readers.read_table` (contract columns only: personal data
and unknown columns are never loaded, just listed), validates with
`churnlens.validation.validate_tables`, and writes the whole output folder at once: it is
built in a temporary folder next to OUT_DIR and renamed onto it, so a killed run leaves the
previous OUT_DIR intact. If OUT_DIR already holds files this stage does not write, it is
not replaced; the files are then written one by one (each atomically, validation.json last).
"""

from __future__ import annotations

from pathlib import Path

from churnlens.config import load_params
from churnlens.errors import InputFileError
from churnlens.io import atomic_path, find_table, write_json, write_parquet
from churnlens.logs import get_logger
from churnlens.privacy import pseudonymise, pseudonymise_setting
from churnlens.readers import read_table
from churnlens.validation import (
    TABLE_NAMES,
    TABLES,
    TableResult,
    contract_columns,
    summary_line,
    validate_tables,
)

log = get_logger("validate")

QUARANTINE = "quarantine"
REPORT = "validation.json"


def run(raw_dir: str | Path, out_dir: str | Path, params_path: str | Path | None = None) -> None:
    """Validate `raw_dir`; write accepted and quarantined rows and the report to `out_dir`.

    With `privacy.pseudonymise_ids` on in `params_path`, every `customer_id` written is a keyed hash.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    salt = _pseudonym_salt(params_path)
    _check_folders(raw_dir, out_dir)
    paths = {name: find_table(raw_dir, name) for name in TABLE_NAMES}
    for name in TABLE_NAMES:
        if paths[name] is None and TABLES[name].required:
            raise InputFileError(
                str(raw_dir / f"{name}.csv"),
                None,
                f"required table '{name}' is missing: expected {name}.csv or {name}.parquet",
            )
        if (
            paths[name] is not None
            and (raw_dir / f"{name}.csv").exists()
            and paths[name].suffix == ".parquet"
        ):
            log.warning("%s: both .parquet and .csv found; using %s", name, paths[name].name)

    raw, extra = {}, {}
    for name, path in paths.items():
        if path is None:
            continue
        table = read_table(path, columns=contract_columns(name))
        raw[name] = table
        extra[name] = {
            "format": table.format,
            "encoding": table.encoding,
            "delimiter": table.delimiter,
        }
        if table.encoding not in (None, "utf-8", "utf-8-sig"):
            log.warning("%s: decoded as %s (not UTF-8)", path.name, table.encoding)

    results = validate_tables(
        {name: t.frame for name, t in raw.items()},
        sources={name: str(p) for name, p in paths.items() if p is not None},
        file_columns={name: t.columns for name, t in raw.items()},
    )
    for name, result in results.items():
        result.report.update(extra.get(name, {"format": None, "encoding": None, "delimiter": None}))
        log.info(summary_line(name, result.report))
        if name == "customers" and result.report.get("pii_columns_dropped"):
            log.info(
                "customers: personal data columns dropped: %s",
                ", ".join(result.report["pii_columns_dropped"]),
            )
    if salt is not None:
        results = {name: _pseudonymised(result, salt) for name, result in results.items()}
        log.info("customer ids pseudonymised (privacy.pseudonymise_ids)")
    _write(out_dir, results)
    log.info("wrote %s", out_dir)


def _pseudonym_salt(params_path: str | Path | None) -> bytes | None:
    if params_path is None or not Path(params_path).exists():
        return None
    return pseudonymise_setting(load_params(params_path))


def _pseudonymised(result: TableResult, salt: bytes) -> TableResult:
    for frame in (result.accepted, result.quarantined):
        if "customer_id" in frame.columns:
            frame["customer_id"] = pseudonymise(frame["customer_id"], salt).astype(
                frame["customer_id"].dtype)
    return result


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


def _outputs(results: dict[str, TableResult]) -> set[str]:
    return {f"{name}.parquet" for name in results} | {QUARANTINE, REPORT}


def _write(out_dir: Path, results: dict[str, TableResult]) -> None:
    foreign = (
        sorted(p.name for p in out_dir.iterdir() if p.name not in _outputs(results))
        if out_dir.is_dir()
        else []
    )
    if foreign:
        log.warning(
            "%s holds other files (%s); writing files one by one instead of replacing the folder",
            out_dir,
            ", ".join(foreign[:5]),
        )
        _write_into(out_dir, results)
        return
    with atomic_path(out_dir) as tmp:
        _write_into(tmp, results)


def _write_into(folder: Path, results: dict[str, TableResult]) -> None:
    (folder / QUARANTINE).mkdir(parents=True, exist_ok=True)
    for name, result in results.items():
        write_parquet(result.accepted, folder / f"{name}.parquet")
        write_parquet(result.quarantined, folder / QUARANTINE / f"{name}.parquet")
    write_json({name: r.report for name, r in results.items()}, folder / REPORT)  # last
