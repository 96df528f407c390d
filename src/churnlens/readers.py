"""Robust reading of one raw input file (CSV or Parquet) into an all-string DataFrame.

The validation stage wants every value exactly as it was written, so that it can
parse it explicitly (and quarantine the original text when it does not parse).
`read_table` therefore never lets pandas infer types: `00042` stays `"00042"`.
`open_table` gives the same frame in chunks of rows, for files larger than memory.

CSV handling
------------
* encoding: UTF-8 with or without BOM; UTF-16 when the file starts with a UTF-16 BOM;
  otherwise, if the bytes are not valid UTF-8, cp1252 and finally latin-1 (which decodes
  anything). The encoding used is returned (`RawTable.encoding`) and reported.
* delimiter: sniffed from the header line: the most frequent of `,` `;` tab `|` outside
  quotes (ties in that order; `,` when none occurs).
* quoting: standard double quotes, doubled quotes inside, newlines inside quoted fields.
* values are kept verbatim (no NA interpretation, no stripping).
* a row with FEWER or MORE fields than the header is neither padded nor truncated silently:
  it is kept (its first fields, NA for absent ones) and marked in the column
  `ROW_ERROR_COLUMN` (`"wrong_field_count"`), so the validation quarantines it -- a padded
  row would shift values into the wrong columns (an e-mail into `segment`). Such files are
  parsed row by row with the `csv` module; every other file by pandas' C parser, after a
  quick structural pass by Arrow's CSV reader that only checks the field counts
  (`_field_counts_match`; ~0.3 s for 5M rows). A quote left open until the end of the file
  makes the file unreadable.
* column names: whitespace stripped, lower-cased; empty names become `unnamed_<i>`.

Parquet handling
----------------
Any scalar column type is cast to string with Arrow (timestamps keep their full precision
and time zone, e.g. `2024-01-01 11:00:00.123456+0100`; dates become `2024-01-01`; floats
use the shortest round-trip representation; NaN becomes `"nan"`, null stays NA). A
float column holding only integral values whose name ends in `_id` is cast via int64 first
so that `42.0` becomes `"42"`. Nested types in a requested column are an error.

Chunks (`open_table(path, columns, chunk_rows)`)
-----------------------------------------------
Parquet: record batches of `chunk_rows` rows (`ParquetFile.iter_batches`); the `_id`
float decision above is taken over the whole column first. CSV: pandas' C parser with
`chunksize`; the row parser yields chunks too. Concatenated, the chunks equal the frame of
`read_table`, row positions included. One exception cannot be streamed: a row pandas cannot
parse met after chunks were handed out means the whole file must be read by the row parser, so
iterating raises `RowParserNeeded` and the caller starts again with `row_parser=True`.

File-level problems raise `churnlens.errors.InputFileError(file, column, expected)`:
missing file, unknown suffix, empty file (0 bytes or no header line), unreadable file,
a requested column that appears twice.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import warnings
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnlens.errors import InputFileError

__all__ = [
    "ROW_ERROR_COLUMN",
    "ROW_POSITION_COLUMN",
    "RawTable",
    "RowParserNeeded",
    "TableChunks",
    "WRONG_FIELD_COUNT",
    "detect_encoding",
    "normalize_column_name",
    "open_table",
    "read_table",
    "sniff_delimiter",
]

#: Column added by the reader: NA for normal rows, a reason code for rows the reader
#: could only partly parse (`WRONG_FIELD_COUNT`).
ROW_ERROR_COLUMN = "__row_error__"
#: The reason code of a CSV row whose number of fields differs from the header's.
WRONG_FIELD_COUNT = "wrong_field_count"
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


@dataclass(frozen=True)
class TableChunks:
    """One raw file opened by `open_table`: its frames come one chunk of rows at a time.

    frames: like `RawTable.frame`, `chunk_rows` rows each (the last may be shorter); at least
        one frame (0 rows for a file without data rows); ROW_POSITION_COLUMN counts from the
        start of the file. columns / format / encoding / delimiter: as in RawTable.
    """

    columns: tuple[str, ...]
    format: str
    frames: Iterator[pd.DataFrame]
    encoding: str | None = None
    delimiter: str | None = None


class RowParserNeeded(Exception):
    """A malformed CSV row was met after the first chunks were handed out by the fast parser.

    Such a file is read entirely with the row parser: start again with
    `open_table(..., row_parser=True)`.
    """


def normalize_column_name(name: object) -> str:
    """Strip whitespace (and a stray BOM) and lower-case a column name."""
    return str(name).replace("\ufeff", "").strip().lower()


def read_table(path: str | Path, columns: Collection[str] | None = None) -> RawTable:
    """Read one `.csv` or `.parquet` file into a string-typed DataFrame (see module doc).

    `columns`: normalised names to keep (missing ones are simply absent from the frame);
    None keeps every column.
    """
    table = open_table(path, columns)
    frame = next(table.frames)
    return RawTable(frame, table.columns, table.format, table.encoding, table.delimiter)


def open_table(
    path: str | Path,
    columns: Collection[str] | None = None,
    chunk_rows: int | None = None,
    *,
    row_parser: bool = False,
) -> TableChunks:
    """Open one `.csv` or `.parquet` file for reading in chunks of `chunk_rows` rows.

    chunk_rows None: one frame, the whole file (what `read_table` returns). Problems with the
    file itself or its header raise InputFileError here; problems further into the file raise
    it while iterating `frames`, and so can RowParserNeeded (CSV; `row_parser=True` reads
    with the csv module from the start). The frames are the same, chunked or not.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise InputFileError(file, None, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _open_csv(path, columns, chunk_rows, row_parser)
    if suffix == ".parquet":
        return _open_parquet(path, columns, chunk_rows)
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


def _open_csv(
    path: Path, columns: Collection[str] | None, chunk_rows: int | None, row_parser: bool
) -> TableChunks:
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
    parse = _row_parser_chunks if row_parser else _c_parser_chunks
    chunks = parse(path, encoding, delimiter, names, chunk_rows)
    frames = _positioned(file, chunks, columns)
    return TableChunks(tuple(names), "csv", frames, encoding=encoding, delimiter=delimiter)


def _positioned(file: str, chunks: Iterator[pd.DataFrame], columns) -> Iterator[pd.DataFrame]:
    """Add the row positions (counted over the whole file), keep `columns`, name read errors."""
    start = 0
    try:
        for frame in chunks:
            frame[ROW_POSITION_COLUMN] = _positions(start, len(frame))
            start += len(frame)
            yield _select(frame, columns)
    except (OSError, UnicodeError, ValueError, csv.Error) as err:
        raise InputFileError(file, None, f"unreadable CSV ({_short(err)})") from None


def _positions(start: int, n: int) -> pd.arrays.IntegerArray:
    """Row positions start .. start + n - 1 as an Int64 array (built from numpy, not a range)."""
    return pd.arrays.IntegerArray(np.arange(start, start + n, dtype=np.int64), np.zeros(n, bool))


def _c_parser_chunks(path, encoding, delimiter, names, chunk_rows) -> Iterator[pd.DataFrame]:
    """Fast path: pandas' C parser. A row of the wrong width sends the file to the row parser.

    pandas pads a short row without a word (and with `na_filter=False` the padding cannot be
    told from empty fields), so the field counts are checked first, before any chunk is out.
    """
    if not _field_counts_match(path, encoding, delimiter, len(names)):
        yield from _row_parser_chunks(path, encoding, delimiter, names, chunk_rows)
        return
    handed_out = False
    try:
        for frame in _c_parser_frames(path, _csv_options(encoding, delimiter, names), chunk_rows):
            frame[ROW_ERROR_COLUMN] = pd.Series(pd.NA, index=frame.index, dtype="str")
            handed_out = True
            yield frame
    except (pd.errors.ParserError, pd.errors.ParserWarning):
        # A row with more fields than the header, or a quote left open: parse row by row
        # with the csv module, keeping over-long rows (marked) instead of losing them.
        if handed_out:
            raise RowParserNeeded(str(path)) from None
        yield from _row_parser_chunks(path, encoding, delimiter, names, chunk_rows)


def _field_counts_match(path, encoding: str, delimiter: str, width: int) -> bool:
    """True when every non-blank line of the file (header included) has `width` fields.

    A structural pass with Arrow's streaming CSV reader (same quoting rules, one column
    converted): it stops at the first row of another width. Anything Arrow cannot read
    answers False too: the row parser then decides (and names the error).
    """
    import pyarrow.csv as pacsv

    def stop(row) -> str:  # the row's text is never kept or shown
        return "error"

    read = pacsv.ReadOptions(
        autogenerate_column_names=True, encoding=_arrow_codec(encoding), block_size=1 << 22
    )
    parse = pacsv.ParseOptions(
        delimiter=delimiter,
        quote_char='"',
        double_quote=True,
        newlines_in_values=True,
        ignore_empty_lines=True,
        invalid_row_handler=stop,
    )
    convert = pacsv.ConvertOptions(
        column_types={f"f{i}": pa.string() for i in range(width)}, include_columns=["f0"]
    )
    try:
        with pacsv.open_csv(path, read_options=read, parse_options=parse,
                            convert_options=convert) as reader:
            for _ in reader:
                pass
    except (pa.ArrowException, OSError, UnicodeError, ValueError):
        return False
    return True


def _arrow_codec(encoding: str) -> str:
    """Arrow reads UTF-8 natively (BOM skipped); other codecs go through Python's."""
    return "utf8" if encoding in ("utf-8", "utf-8-sig") else encoding


def _csv_options(encoding: str, delimiter: str, names: list[str]) -> dict:
    return dict(
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


def _c_parser_frames(path, options: dict, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """The whole file (chunk_rows None) or chunks of it; at least one frame."""
    if chunk_rows is None:
        yield _strict(lambda: pd.read_csv(path, engine="c", **options))
        return
    with _strict(lambda: pd.read_csv(path, engine="c", chunksize=chunk_rows, **options)) as reader:
        empty = True
        while (frame := _strict(lambda: next(reader, None))) is not None:
            empty = False
            yield frame
    if empty:
        yield _empty_frame(options["names"])


def _strict(call):
    """Run a pandas parser call with ParserWarning as an error.

    (e.g. "Length of header or names does not match length of data": pandas would drop the
    extra fields of a long first row silently.)
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return call()


def _row_parser_chunks(path, encoding, delimiter, names, chunk_rows) -> Iterator[pd.DataFrame]:
    """Slow path: parse with the csv module; rows of the wrong width are marked
    `wrong_field_count` (short ones get NA for the absent fields, long ones are cut).

    Yields frames of `chunk_rows` rows (the whole file when None); at least one frame.
    """
    width = len(names)
    rows: list[list[str | None]] = []
    errors: list[str | None] = []
    empty = True
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
            errors.append(WRONG_FIELD_COUNT if len(row) != width else None)
            rows.append((row + [None] * width)[:width])
            if chunk_rows is not None and len(rows) >= chunk_rows:
                yield _rows_frame(rows, errors, names)
                rows, errors, empty = [], [], False
    if rows or empty:
        yield _rows_frame(rows, errors, names)


def _rows_frame(rows: list, errors: list, names: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=names, dtype="str") if rows else _empty_frame(names)
    frame[ROW_ERROR_COLUMN] = pd.Series(errors, index=frame.index, dtype="str")
    return frame


def _empty_frame(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({n: pd.Series([], dtype="str") for n in names})


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
    """The parser's own words for an error, one line, without cell values: quoted text with
    a space or an `@` in it and anything like an e-mail address are replaced by `…`."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {redact(text[-1])[:200]}" if text else type(err).__name__


_QUOTED_VALUE = re.compile(
    r"(?<![^\s:(\[])(?:'[^']*[\s@][^']*'|\"[^\"]*[\s@][^\"]*\")(?![^\s,;:.)\]])"
)
_EMAIL_TEXT = re.compile(r"[^@\s'\"]+@[^@\s'\"]+")


def redact(text: str) -> str:
    """`text` (a library's error message) with cell-like values replaced by `…`."""
    return _EMAIL_TEXT.sub("…", _QUOTED_VALUE.sub("'…'", text))


# --------------------------------------------------------------------------- Parquet


def _open_parquet(
    path: Path, columns: Collection[str] | None, chunk_rows: int | None
) -> TableChunks:
    file = str(path)
    if path.stat().st_size == 0:
        raise InputFileError(file, None, "file is empty (0 bytes): expected a Parquet file")
    with _unreadable_parquet(file):
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    names = _unique_names(file, [normalize_column_name(n) for n in schema.names], columns)
    picked = [i for i, n in enumerate(names) if columns is None or n in columns]
    frames = _parquet_frames(file, parquet, picked, names, chunk_rows)
    return TableChunks(tuple(names), "parquet", frames)


@contextmanager
def _unreadable_parquet(file: str) -> Iterator[None]:
    """pyarrow raises many kinds of errors (ArrowInvalid, OSError, ...): one file error."""
    try:
        yield
    except InputFileError:
        raise
    except Exception as err:
        raise InputFileError(file, None, f"unreadable Parquet ({_short(err)})") from None


def _parquet_frames(file, parquet, picked, names, chunk_rows) -> Iterator[pd.DataFrame]:
    """The picked columns as string frames of `chunk_rows` rows (all rows when None)."""
    schema = parquet.schema_arrow
    raw = [schema.names[i] for i in picked]
    as_int = _integral_float_ids(file, parquet, picked, names, chunk_rows)
    start = 0
    for batch in _parquet_batches(file, parquet, raw, chunk_rows):
        data = {
            names[i]: _arrow_to_str(file, names[i], batch.column(k), names[i] in as_int)
            for k, i in enumerate(picked)
        }
        frame = pd.DataFrame(data, index=pd.RangeIndex(batch.num_rows))
        frame[ROW_POSITION_COLUMN] = _positions(start, batch.num_rows)
        frame[ROW_ERROR_COLUMN] = pd.Series(pd.NA, index=frame.index, dtype="str")
        start += batch.num_rows
        yield frame


def _integral_float_ids(file, parquet, picked, names, chunk_rows) -> set[str]:
    """Float `_id` columns holding only whole numbers: read via int64 (`42.0` -> `"42"`).

    Decided over the whole column (a pass over that column alone), not batch by batch.
    """
    schema = parquet.schema_arrow
    found = set()
    for i in picked:
        if names[i].endswith("_id") and pa.types.is_floating(_value_type(schema.field(i).type)):
            batches = _parquet_batches(file, parquet, [schema.names[i]], chunk_rows)
            if _whole_numbers(batch.column(0) for batch in batches):
                found.add(names[i])
    return found


def _parquet_batches(file, parquet, raw_columns, chunk_rows):
    """Record batches (one table when chunk_rows is None) of `raw_columns`; at least one."""
    with _unreadable_parquet(file):
        if chunk_rows is None or not raw_columns:
            batches = iter([parquet.read(columns=raw_columns)])
        else:
            batches = parquet.iter_batches(batch_size=chunk_rows, columns=raw_columns)
    empty = True
    while True:
        with _unreadable_parquet(file):
            batch = next(batches, None)
        if batch is None:
            break
        empty = False
        yield batch
    if empty:
        yield parquet.schema_arrow.empty_table().select(raw_columns)


def _value_type(kind):
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _decoded(column):
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def _whole_numbers(columns: Iterable) -> bool:
    """At least one value, and every present value is a finite whole number (float ids)."""
    seen = False
    for column in columns:
        present = pc.drop_null(_decoded(column))
        if len(present) == 0:
            continue
        if not (
            pc.all(pc.is_finite(present)).as_py()
            and pc.all(pc.equal(present, pc.round(present))).as_py()
        ):
            return False
        seen = True
    return seen


def _arrow_to_str(file: str, name: str, column, as_int: bool) -> pd.Series:
    column = _decoded(column)
    kind = column.type
    if pa.types.is_nested(kind):
        raise InputFileError(file, name, f"unsupported nested type {kind}: expected scalar values")
    try:
        if as_int:
            column = pc.cast(column, pa.int64())
        as_str = pc.cast(column, pa.large_string())  # binary: fails unless valid UTF-8
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise InputFileError(file, name, f"cannot read values as text ({_short(err)})") from None
    return pd.Series(as_str.to_pandas(), dtype="str")
