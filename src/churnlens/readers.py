"""Robust reading of one raw input file (CSV or Parquet) into an all-string DataFrame.

The validation stage wants every value exactly as it was written, so that it can
parse it explicitly (and quarantine the original text when it does not parse).
`read_table` therefore never lets pandas infer types: `00042` stays `"00042"`.

CSV handling
------------
* encoding: UTF-8 with or without BOM; UTF-16 when the file starts with a UTF-16 BOM;
  otherwise, if the bytes are not valid UTF-8, cp1252 and finally latin-1 (which decodes
  anything). The encoding used is returned (`RawTable.encoding`) and reported.
* delimiter: sniffed from the header line: the most frequent of `,` `;` tab `|` outside
  quotes (ties in that order; `,` when none occurs).
* quoting: standard double quotes, doubled quotes inside, newlines inside quoted fields.
* values are kept verbatim (no NA interpretation, no stripping); a row with fewer fields
  than the header gets missing values (NA) for the rest.
* a row with MORE fields than the header is not silently truncated: it is kept with its
  first fields and marked in the column `ROW_ERROR_COLUMN` (`"malformed_row"`), so the
  validation can quarantine it. (Such files are parsed row by row with the `csv` module,
  slower than pandas' C parser, which reads every well-formed file.) A quote left open
  until the end of the file makes the file unreadable.
* column names: whitespace stripped, lower-cased; empty names become `unnamed_<i>`.

Parquet handling
----------------
Any scalar column type is cast to string with Arrow (timestamps keep their full precision
and time zone, e.g. `2024-01-01 11:00:00.123456+0100`; dates become `2024-01-01`; floats
use the shortest round-trip representation; NaN becomes `"nan"`, null stays NA). A
float column holding only integral values whose name ends in `_id` is cast via int64 first
so that `42.0` becomes `"42"`. Nested types in a requested column are an error.

File-level problems raise `churnlens.errors.InputFileError(file, column, expected)`:
missing file, unknown suffix, empty file (0 bytes or no header line), unreadable file,
a requested column that appears twice.
"""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from churnlens.errors import InputFileError

__all__ = [
    "ROW_ERROR_COLUMN",
    "ROW_POSITION_COLUMN",
    "RawTable",
    "detect_encoding",
    "normalize_column_name",
    "read_table",
    "sniff_delimiter",
]

#: Column added by the reader: NA for normal rows, a reason code for rows the reader
#: could only partly parse (currently `"malformed_row"`).
ROW_ERROR_COLUMN = "__row_error__"
#: Column added by the reader: 0-based position of the row among the data rows of the file.
ROW_POSITION_COLUMN = "__source_row__"

DELIMITERS = (",", ";", "\t", "|")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RawTable:
    """One raw file read as strings.

    frame: the requested columns (all if none were requested), normalised names, dtype `str`,
        values verbatim, missing = NA; plus ROW_ERROR_COLUMN and ROW_POSITION_COLUMN.
    columns: every column name found in the file, normalised, in file order.
    format: "csv" or "parquet"; encoding / delimiter: for CSV only (else None).
    """

    frame: pd.DataFrame
    columns: tuple[str, ...]
    format: str
    encoding: str | None = None
    delimiter: str | None = None

    @property
    def malformed_rows(self) -> int:
        return int(self.frame[ROW_ERROR_COLUMN].notna().sum())


def normalize_column_name(name: object) -> str:
    """Strip whitespace (and a stray BOM) and lower-case a column name."""
    return str(name).replace("\ufeff", "").strip().lower()


def read_table(path: str | Path, columns: Collection[str] | None = None) -> RawTable:
    """Read one `.csv` or `.parquet` file into a string-typed DataFrame (see module doc).

    `columns`: normalised names to keep (missing ones are simply absent from the frame);
    None keeps every column.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise InputFileError(file, None, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, columns)
    if suffix == ".parquet":
        return _read_parquet(path, columns)
    raise InputFileError(file, None, "unsupported file type: expected .csv or .parquet")


# --------------------------------------------------------------------------- CSV


def detect_encoding(path: str | Path) -> str:
    """Return the codec name to read `path` with: utf-8-sig, utf-16, utf-8, cp1252 or latin-1."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig", "cp1252", "latin-1"]
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    else:
        candidates = ["utf-8", "cp1252", "latin-1"]
    for encoding in candidates[:-1]:
        if _decodes(path, encoding):
            return encoding
    return candidates[-1]


def _decodes(path: Path | str, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def sniff_delimiter(header: str) -> str:
    """The most frequent of `,` `;` tab `|` outside double quotes in `header` (default `,`)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])  # max keeps the first of equal counts
    return best if counts[best] else ","


def _header_fields(path: Path, encoding: str) -> list[str] | None:
    """The raw header fields (None when the file has no non-blank line), delimiter sniffed."""
    with open(path, encoding=encoding, newline="") as handle:
        text = handle.read(64 * 1024)
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        return None
    delimiter = sniff_delimiter(first)
    start = text.index(first)
    reader = csv.reader(io.StringIO(text[start:]), delimiter=delimiter)
    return [delimiter, *next(reader)]


def _read_csv(path: Path, columns: Collection[str] | None) -> RawTable:
    file = str(path)
    try:
        if path.stat().st_size == 0:
            raise InputFileError(file, None, "file is empty (0 bytes): expected a CSV header line")
        encoding = detect_encoding(path)
        header = _header_fields(path, encoding)
    except (OSError, UnicodeError, csv.Error) as err:
        raise InputFileError(
            file, None, f"unreadable ({type(err).__name__}): expected a CSV file"
        ) from None
    if header is None:
        raise InputFileError(file, None, "file has no header line: expected column names")
    delimiter, *raw_names = header
    names = _unique_names(file, [normalize_column_name(n) for n in raw_names], columns)
    options = dict(
        sep=delimiter,
        dtype=str,
        encoding=encoding,
        header=0,
        names=names,
        index_col=False,
        keep_default_na=False,
        na_filter=False,
        skip_blank_lines=True,
        quotechar='"',
        doublequote=True,
    )
    try:
        try:
            with warnings.catch_warnings():
                # e.g. "Length of header or names does not match length of data": pandas would
                # drop the extra fields of a long first row silently
                warnings.simplefilter("error", pd.errors.ParserWarning)
                frame = pd.read_csv(path, engine="c", **options)
            frame[ROW_ERROR_COLUMN] = pd.Series(pd.NA, index=frame.index, dtype="str")
        except (pd.errors.ParserError, pd.errors.ParserWarning):
            # A row with more fields than the header, or a quote left open: parse row by row
            # with the csv module, keeping over-long rows (marked) instead of losing them.
            frame = _read_csv_rows(path, encoding, delimiter, names)
    except (OSError, UnicodeError, ValueError, csv.Error) as err:
        raise InputFileError(file, None, f"unreadable CSV ({_short(err)})") from None
    frame[ROW_POSITION_COLUMN] = pd.array(range(len(frame)), dtype="Int64")
    frame = _select(frame, columns)
    return RawTable(frame, tuple(names), "csv", encoding=encoding, delimiter=delimiter)


def _read_csv_rows(path: Path, encoding: str, delimiter: str, names: list[str]) -> pd.DataFrame:
    """Slow path: parse with the csv module; over-long rows are cut and marked `malformed_row`."""
    width = len(names)
    rows: list[list[str | None]] = []
    errors: list[str | None] = []
    with open(path, encoding=encoding, newline="") as handle:
        reader = csv.reader(
            handle, delimiter=delimiter, quotechar='"', doublequote=True, strict=True
        )
        header_seen = False
        for row in reader:
            if not row or not any(field.strip() for field in row) and len(row) == 1:
                continue  # blank line
            if not header_seen:
                header_seen = True
                continue
            errors.append("malformed_row" if len(row) > width else None)
            rows.append((row + [None] * width)[:width])
    frame = (
        pd.DataFrame(rows, columns=names, dtype="str")
        if rows
        else pd.DataFrame({n: pd.Series([], dtype="str") for n in names})
    )
    frame[ROW_ERROR_COLUMN] = pd.Series(errors, index=frame.index, dtype="str")
    return frame


def _unique_names(file: str, names: list[str], wanted: Collection[str] | None) -> list[str]:
    """Name empty headers `unnamed_<i>`; a wanted column appearing twice is an error.

    Other duplicates get a `.<k>` suffix (they are unknown columns and ignored anyway).
    """
    seen: dict[str, int] = {}
    result = []
    for i, name in enumerate(names):
        name = name or f"unnamed_{i}"
        if name in seen:
            if wanted is None or name in wanted:
                raise InputFileError(
                    file, name, "column appears more than once: expected unique column names"
                )
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        result.append(name)
    return result


def _select(frame: pd.DataFrame, columns: Collection[str] | None) -> pd.DataFrame:
    keep = [
        c
        for c in frame.columns
        if columns is None or c in columns or c in (ROW_ERROR_COLUMN, ROW_POSITION_COLUMN)
    ]
    frame = frame[keep]
    data_cols = [c for c in keep if c not in (ROW_ERROR_COLUMN, ROW_POSITION_COLUMN)]
    return frame.astype(dict.fromkeys(data_cols, "str"))


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1][:200]}" if text else type(err).__name__


# --------------------------------------------------------------------------- Parquet


def _read_parquet(path: Path, columns: Collection[str] | None) -> RawTable:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    file = str(path)
    if path.stat().st_size == 0:
        raise InputFileError(file, None, "file is empty (0 bytes): expected a Parquet file")
    try:
        schema = pq.read_schema(path)
        raw_names = list(schema.names)
        names = _unique_names(file, [normalize_column_name(n) for n in raw_names], columns)
        picked = [i for i, n in enumerate(names) if columns is None or n in columns]
        table = pq.read_table(path, columns=[raw_names[i] for i in picked]) if picked else None
        n_rows = pq.ParquetFile(path).metadata.num_rows
    except InputFileError:
        raise
    except Exception as err:  # pyarrow raises many kinds (ArrowInvalid, OSError, ...)
        raise InputFileError(file, None, f"unreadable Parquet ({_short(err)})") from None

    data: dict[str, pd.Series] = {}
    for position, i in enumerate(picked):
        column = table.column(position)
        data[names[i]] = _arrow_to_str(file, names[i], column, pa, pc)
    frame = pd.DataFrame(data, index=pd.RangeIndex(n_rows))
    frame[ROW_POSITION_COLUMN] = pd.array(range(n_rows), dtype="Int64")
    frame[ROW_ERROR_COLUMN] = pd.Series(pd.NA, index=frame.index, dtype="str")
    return RawTable(frame, tuple(names), "parquet")


def _arrow_to_str(file, name, column, pa, pc) -> pd.Series:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
        kind = column.type
    if pa.types.is_nested(kind):
        raise InputFileError(file, name, f"unsupported nested type {kind}: expected scalar values")
    try:
        if pa.types.is_floating(kind) and name.endswith("_id"):
            present = pc.drop_null(column)
            if (
                len(present)
                and pc.all(pc.is_finite(present)).as_py()
                and pc.all(pc.equal(present, pc.round(present))).as_py()
            ):
                column = pc.cast(column, pa.int64())
        as_str = pc.cast(column, pa.large_string())  # binary: fails unless valid UTF-8
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise InputFileError(file, name, f"cannot read values as text ({_short(err)})") from None
    return pd.Series(as_str.to_pandas(), dtype="str")
