"""Validation of the raw input tables: pure functions DataFrame -> (accepted, quarantined, report).

Input: one DataFrame per table with the raw values as strings (see `churnlens.readers`).
Output (`TableResult`): the accepted rows with the dtypes of docs/architecture.md
("Validated tables"), the rejected rows with their original strings plus a `reason`, and a
report dict for `validation.json`. Every input row ends up in exactly one of the two frames.

How a table is checked
----------------------
1. Column names are stripped and lower-cased. Unknown columns are ignored and listed in
   `unknown_columns`; personal data (`email`, `name` of customers) is dropped at once and
   listed in `pii_columns_dropped` -- it reaches neither output nor the logs.
2. Coercion, explicit and vectorised: values are stripped; "" / null / none / nan / nat /
   n/a / <na> (any case) count as missing (for numbers `nan` is a value, non-finite);
   timestamps go through `pd.to_datetime(errors="coerce", utc=True, format="ISO8601")`,
   numbers through `pd.to_numeric(errors="coerce")` (an Arrow cast first, as a fast path
   when every value parses). The missing-value, e-mail and timestamp tests run in Arrow's
   kernels where that gives the same answer (`churnlens.validation_coerce`): plain
   `YYYY-MM-DD[THH:MM:SS]` values are cast by Arrow, every other value goes to pandas.
3. A pandera `DataFrameSchema` per table (`schema(name)`) holds the row-level checks
   (non-null, finiteness, ranges, integer-ness, cross-column order); it is run with
   `lazy=True` and its `failure_cases` are mapped back to row positions.
4. Cross-row checks: duplicate customers; rows of the other tables whose `customer_id` is
   not an accepted customer (`unknown_customer`).
5. Each rejected row gets ONE reason: the first in `reason_order(name)` that applies
   (column by column in contract order: missing, unparseable, impossible/range; then the
   cross-column checks; then duplicates / unknown customer).

Quarantine rows carry the contract columns as the raw strings of the file (personal data
excluded), `reason`, and `source_row`: the 0-based position of the row among the data rows
of the file (blank lines not counted). Personal data that sits in a contract column is masked
(`MASKED`, the raw file keeps it): any value that looks like an e-mail address, and, in a row
of the wrong width from a file with `email`/`name` columns, every value but `customer_id`
(its values may be shifted: the name in `country`).

Personal values in messages: errors, logs and the report name files, columns, counts and
reasons, never a cell. A header line that looks like data (a headerless file, whose "column
names" would be the first customer's e-mail and name) is described by its number of columns;
column names that look like e-mail addresses are shown as `<column N>`.

Rare category values: in the accepted customers, a `segment` or `country` value held by fewer
than `min(5, 5 % of the customers)` customers becomes `other` (`generalise_rare_values`,
counted in `rare_values_generalised`): a person's name, an id or a typo in a category column
is held by one customer and must not become a model category, a KPI group or a report line;
the rows are kept.

Chunks
------
`TableValidator` validates a table chunk by chunk (`add`, then `finish`); `validate_table` is
the one-chunk case, so both give the same rows. Row checks and the `unknown_customer` check
are per row; what concerns the whole table is decided over all chunks: "wrong type
throughout" (counts summed, checked at `finish`), the report (counts and reasons summed).
`customers` comes as one chunk (duplicate ids are checked across its rows).

Contradicting rows: a customer with transactions or events before their signup date gets the
day of their first activity as signup date (`move_signup_to_first_activity`, counted in
`signup_moved_to_first_activity`), so that nobody active is left out of scoring for a signup
after as_of; cancellations before signup are quarantined (`cancel_before_signup`).

Reason codes (one per quarantined row)
--------------------------------------
`wrong_field_count` (CSV row with fewer or more fields than the header: its values may sit in
the wrong columns, so no check of them counts), `missing_<column>`,
`unparseable_<column>` (timestamps, dates), `impossible_date` (ISO-shaped but not a real
date such as Feb 30, or year outside 1990-2100, any date/timestamp column),
`non_numeric_<column>`, `non_finite_amount`, `amount_out_of_range` (|amount| > 1e9),
`non_integer_quantity`, `negative_quantity`, `non_finite_quantity`, `quantity_out_of_range`
(> 1e9), `score_out_of_range` (nps score not an integer 0-10), `non_finite_cost`,
`negative_cost`, `cost_out_of_range` (interventions cost > 1e9), `timestamp_in_future` (a
timestamp -- not a date -- on a UTC day after today, see `today()`), `cancel_before_signup`,
`closed_before_opened`, `duplicate_row`, `duplicate_customer_id_conflict`, `unknown_customer`,
`email_in_<column>` for every free-text column (`segment`, `country`, `event_type`,
`priority`, `action`, `channel`: a value that looks like an e-mail address is personal data in
a plain column; it never becomes a feature or a category).

Decisions
---------
* Timestamps: ISO-8601; naive = UTC; offsets (mixed allowed) are converted to UTC and then
  dropped: output `datetime64[us]` (Parquet `timestamp[us]`, naive UTC).
* Dates (`signup_date`, `cancel_date`): a date or a timestamp; a timestamp is converted to
  UTC and its UTC day is taken. Output dtype is `date32` (pandas `date32[day][pyarrow]`,
  Parquet/DuckDB `DATE`; `pd.read_parquet` returns it as the same Arrow dtype).
* Ids are stripped strings, case-sensitive; `00042` stays `"00042"` and differs from `"42"`.
* Duplicate `customer_id` among otherwise valid customer rows: if all copies are identical
  on the contract columns (personal data ignored) the first is kept and the others are
  quarantined as `duplicate_row`; if they conflict, ALL copies are quarantined as
  `duplicate_customer_id_conflict`, so that customer is unknown and its transactions,
  events, tickets and nps answers are quarantined as `unknown_customer`.
  Duplicate rows in the other tables are kept (two equal purchases can be real).
* `events.quantity` missing -> 1.0. `transactions.quantity` missing -> null (Int64).
  `tickets.closed_at` missing (or column absent) -> open ticket.
* Timestamps after today (UTC day, `today()`: the machine's date, or `CHURNLENS_TODAY` /
  the `today` argument in tests) cannot be real: `timestamp_in_future`. Otherwise rows after
  any date are fine here: validation does not know `as_of`. Dates (signup, cancel) are not
  checked against today (a cancellation can be scheduled).
* File-level errors (`InputFileError(file, column, expected)`, the CLI exits 1):
  required table or required column missing; a required date/timestamp/number column in
  which no non-empty value parses ("wrong type throughout", e.g. amount all text);
  a `customers` table with no rows (header only) or with no valid row -- nothing can run.
  A header-only `transactions` or optional table is a valid empty table. Unparseable values
  in OPTIONAL columns (quantity, cancel_date, closed_at) only quarantine their rows.
  Reader-level errors (missing/empty/unreadable file) come from `churnlens.readers`.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnlens.errors import ChurnlensError, InputFileError
from churnlens.readers import (
    ROW_ERROR_COLUMN,
    ROW_POSITION_COLUMN,
    WRONG_FIELD_COUNT,
    normalize_column_name,
)
from churnlens.validation_coerce import (
    looks_like_email,
    missing_mask,
    parse_numbers,
    parse_timestamps,
)

__all__ = [
    "OPTIONAL_TABLES",
    "PII_COLUMNS",
    "REQUIRED_TABLES",
    "TABLES",
    "TABLE_NAMES",
    "TableResult",
    "TableSpec",
    "TableValidator",
    "contract_columns",
    "customer_set",
    "empty_quarantine",
    "empty_result",
    "empty_table",
    "output_dtypes",
    "reason_order",
    "schema",
    "summary_line",
    "today",
    "validate_customers",
    "validate_table",
    "validate_tables",
]

MIN_YEAR, MAX_YEAR = 1990, 2100
MAX_ABS_AMOUNT = 1e9
MAX_QUANTITY = 1e9
MISSING_TOKENS = frozenset({"", "null", "none", "nan", "nat", "n/a", "<na>"})
NUMERIC_MISSING_TOKENS = MISSING_TOKENS - {"nan"}
NAN_TOKENS = frozenset({"nan", "+nan", "-nan"})
PII_COLUMNS = ("email", "name")
REASON_COLUMN = "reason"
SOURCE_ROW_COLUMN = "source_row"
_OK = np.iinfo(np.int32).max  # rank of a row without any reason
_ISO_DATE_SHAPE = r"^[+-]?\d{4,}-\d{1,2}-\d{1,2}(?:$|[T ])"
TODAY_ENV = "CHURNLENS_TODAY"  # ISO date: "today" for the future-timestamp check (tests)

DATE32 = pd.ArrowDtype(pa.date32())
# dtype while checking (parse stage) and in the output, per column kind
_PARSE_DTYPE = {
    "id": "str",
    "text": "str",
    "timestamp": "datetime64[us]",
    "date": "datetime64[us]",
    "float": "float64",
    "int": "float64",
}
_OUTPUT_DTYPE = {
    "id": "str",
    "text": "str",
    "timestamp": "datetime64[us]",
    "date": DATE32,
    "float": "float64",
    "int": "Int64",
}
_EXPECTED = {
    "timestamp": "ISO-8601 timestamps (e.g. 2024-05-01T12:00:00Z)",
    "date": "ISO-8601 dates (e.g. 2024-05-01)",
    "float": "numbers (e.g. 12.50)",
    "int": "whole numbers (e.g. 3)",
}

Predicate = Callable[[pd.Series], pd.Series]


@dataclass(frozen=True)
class Col:
    """One contract column; `checks`: (reason, vectorised predicate on parsed values, True = ok)."""

    name: str
    kind: str  # id | text | timestamp | date | float | int
    required: bool = False  # the column must exist in the file
    nullable: bool = True  # an empty value is allowed
    default: float | None = None  # replaces a missing value (events.quantity)
    checks: tuple[tuple[str, Predicate], ...] = ()


@dataclass(frozen=True)
class TableSpec:
    name: str
    required: bool
    columns: tuple[Col, ...]
    row_checks: tuple[tuple[str, Callable[[pd.DataFrame], pd.Series]], ...] = ()
    pii: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _finite(s: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(s.to_numpy(dtype="float64", na_value=0.0)), index=s.index)


def _integral(s: pd.Series) -> pd.Series:
    return _finite(s) & (s == np.floor(s))


def _plausible_year(s: pd.Series) -> pd.Series:
    """Year MIN_YEAR..MAX_YEAR: `s.dt.year` in range, as two comparisons with instants."""
    return (s >= pd.Timestamp(MIN_YEAR, 1, 1)) & (s < pd.Timestamp(MAX_YEAR + 1, 1, 1))


#: What a quarantined value that may be personal data is replaced by (the raw file keeps it).
MASKED = "<masked>"
#: Free-text customer columns whose values become categories (features, KPI groups, lists).
CATEGORY_COLUMNS = ("segment", "country")
#: A category value held by fewer customers than this is generalised to OTHER_CATEGORY ...
MIN_CATEGORY_CUSTOMERS = 5
#: ... or, in a table of fewer than 100 customers, by fewer than this share of them (so that in
#: a handful of customers, where rare cannot be told from normal, nothing is generalised).
MIN_CATEGORY_SHARE = 0.05
OTHER_CATEGORY = "other"

_CUSTOMER_ID = Col("customer_id", "id", required=True, nullable=False)
_EMAIL_LIKE = r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"


def _no_email(s: pd.Series) -> pd.Series:
    """True where a text value does not look like an e-mail address (personal data that a
    row with missing fields would shift into a plain column, e.g. `segment`)."""
    return pd.Series(~looks_like_email(s, _EMAIL_LIKE), index=s.index)

TABLES: dict[str, TableSpec] = {
    "customers": TableSpec(
        "customers",
        required=True,
        columns=(
            _CUSTOMER_ID,
            Col("signup_date", "date", required=True, nullable=False),
            Col("segment", "text", checks=(("email_in_segment", _no_email),)),
            Col("country", "text", checks=(("email_in_country", _no_email),)),
            Col("cancel_date", "date"),
        ),
        row_checks=(("cancel_before_signup", lambda d: ~(d["cancel_date"] < d["signup_date"])),),
        pii=PII_COLUMNS,
    ),
    "transactions": TableSpec(
        "transactions",
        required=True,
        columns=(
            _CUSTOMER_ID,
            Col("timestamp", "timestamp", required=True, nullable=False),
            Col(
                "amount",
                "float",
                required=True,
                nullable=False,
                checks=(
                    ("non_finite_amount", _finite),
                    ("amount_out_of_range", lambda s: s.abs() <= MAX_ABS_AMOUNT),
                ),
            ),
            Col(
                "quantity",
                "int",
                checks=(
                    ("non_integer_quantity", _integral),
                    ("negative_quantity", lambda s: s >= 0),
                    ("quantity_out_of_range", lambda s: s <= MAX_QUANTITY),
                ),
            ),
        ),
    ),
    "events": TableSpec(
        "events",
        required=False,
        columns=(
            _CUSTOMER_ID,
            Col("timestamp", "timestamp", required=True, nullable=False),
            Col("event_type", "text", required=True, nullable=False,
                checks=(("email_in_event_type", _no_email),)),
            Col(
                "quantity",
                "float",
                default=1.0,
                checks=(
                    ("non_finite_quantity", _finite),
                    ("negative_quantity", lambda s: s >= 0),
                    ("quantity_out_of_range", lambda s: s <= MAX_QUANTITY),
                ),
            ),
        ),
    ),
    "tickets": TableSpec(
        "tickets",
        required=False,
        columns=(
            _CUSTOMER_ID,
            Col("opened_at", "timestamp", required=True, nullable=False),
            Col("closed_at", "timestamp"),
            Col("priority", "text", checks=(("email_in_priority", _no_email),)),
        ),
        row_checks=(("closed_before_opened", lambda d: ~(d["closed_at"] < d["opened_at"])),),
    ),
    "nps": TableSpec(
        "nps",
        required=False,
        columns=(
            _CUSTOMER_ID,
            Col("timestamp", "timestamp", required=True, nullable=False),
            Col(
                "score",
                "int",
                required=True,
                nullable=False,
                checks=(("score_out_of_range", lambda s: _integral(s) & (s >= 0) & (s <= 10)),),
            ),
        ),
    ),
    "interventions": TableSpec(  # outreach the team actually did (optional; churnlens.outreach)
        "interventions",
        required=False,
        columns=(
            _CUSTOMER_ID,
            Col("timestamp", "timestamp", required=True, nullable=False),
            Col("action", "text", required=True, nullable=False,
                checks=(("email_in_action", _no_email),)),
            Col("channel", "text", checks=(("email_in_channel", _no_email),)),
            Col(
                "cost",
                "float",
                checks=(
                    ("non_finite_cost", _finite),
                    ("negative_cost", lambda s: s >= 0),
                    ("cost_out_of_range", lambda s: s <= MAX_ABS_AMOUNT),
                ),
            ),
        ),
    ),
}
TABLE_NAMES = tuple(TABLES)
REQUIRED_TABLES = tuple(n for n, t in TABLES.items() if t.required)
OPTIONAL_TABLES = tuple(n for n, t in TABLES.items() if not t.required)


@dataclass
class TableResult:
    """accepted: output dtypes; quarantined: raw contract strings, reason, source_row.

    known_positions: for each accepted row, the position of its customer in the validator's
    known customers (`customer_set`); None when no known customers were given.
    """

    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)
    known_positions: np.ndarray | None = None


# --------------------------------------------------------------------------- public helpers


def contract_columns(name: str) -> list[str]:
    """The contract columns of a table (without personal data), in contract order."""
    return TABLES[name].names


def output_dtypes(name: str) -> dict[str, Any]:
    """Column -> dtype of the validated table (docs/architecture.md, "Validated tables")."""
    return {c.name: _OUTPUT_DTYPE[c.kind] for c in TABLES[name].columns}


def empty_table(name: str) -> pd.DataFrame:
    """A 0-row validated table with the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in output_dtypes(name).items()})


def empty_quarantine(name: str) -> pd.DataFrame:
    """A 0-row quarantine table: contract columns as strings, `reason`, `source_row`."""
    cols = {c: pd.Series([], dtype="str") for c in contract_columns(name)}
    cols[REASON_COLUMN] = pd.Series([], dtype="str")
    cols[SOURCE_ROW_COLUMN] = pd.Series([], dtype="Int64")
    return pd.DataFrame(cols)


def empty_result(name: str) -> TableResult:
    """The result for an absent (optional) table: 0 rows, `present: false`."""
    return TableResult(
        empty_table(name), empty_quarantine(name), _report(name, None, 0, 0, {}, [], [])
    )


def reason_order(name: str) -> list[str]:
    """All reason codes of a table in priority order: a row gets the first that applies."""
    spec = TABLES[name]
    order = [WRONG_FIELD_COUNT]
    for col in spec.columns:
        if col.kind in ("timestamp", "date"):
            order += [f"missing_{col.name}", f"unparseable_{col.name}", "impossible_date"]
            if col.kind == "timestamp":
                order.append("timestamp_in_future")
        elif col.kind in ("float", "int"):
            order += [f"missing_{col.name}", f"non_numeric_{col.name}"]
        else:
            order.append(f"missing_{col.name}")
        order += [reason for reason, _ in col.checks]
    order += [reason for reason, _ in spec.row_checks]
    if name == "customers":
        order += ["duplicate_row", "duplicate_customer_id_conflict"]
    else:
        order.append("unknown_customer")
    return list(dict.fromkeys(order))


@contextmanager
def _quiet_pandera():
    # pandera probes for optional backends (pyspark prints a FutureWarning under pandas 3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*PySpark", category=FutureWarning)
        yield


#: Optional packages pandera probes for on import that validation never uses: pyspark (its
#: pyspark backend) and hypothesis (data synthesis strategies; ~0.5-1 s of imports).
_UNUSED_BY_VALIDATION = ("pyspark", "hypothesis")


def _pandera():
    """`pandera.pandas` with its pandas backends, imported on first use without pyspark and
    hypothesis.

    pandera's import probes for its optional pyspark backend (`pandera.typing.pyspark`,
    `external_config`: `import pyspark.pandas`, which starts pyspark's own imports and a
    FutureWarning under pandas 3), and registering its pandas backends (on the first
    `validate`) imports its hypothesis strategies. Validation only hands pandera pandas frames
    and never synthesises data, so while pandera and its pandas backends are first imported
    these packages are marked as absent in `sys.modules`, which pandera's probes treat as "not
    installed" (`pandera.strategies` then reports hypothesis missing in this process). A package
    a process has already imported (the Spark engine, the test suite's hypothesis) is left as it
    is; the markers are removed afterwards either way, so a later import works as usual.
    """
    loaded = sys.modules.get("pandera.pandas")
    if loaded is not None:
        return loaded
    blocked = [name for name in _UNUSED_BY_VALIDATION if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        with _quiet_pandera():
            import pandera.backends.pandas.builtin_checks  # noqa: F401  (what validate imports)
            import pandera.pandas as pandera
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return pandera


@cache
def schema(name: str):
    """The pandera DataFrameSchema of the row-level checks of a table (on parsed values).

    Check names are reason codes; `not_nullable` failures map to `missing_<column>`.
    """
    pandera = _pandera()
    spec = TABLES[name]
    columns = {}
    for col in spec.columns:
        checks = [pandera.Check(fn, name=reason) for reason, fn in col.checks]
        if col.kind in ("timestamp", "date"):
            checks.insert(
                0,
                pandera.Check(
                    _plausible_year,
                    name="impossible_date",
                ),
            )
        columns[col.name] = pandera.Column(
            _PARSE_DTYPE[col.kind], checks=checks, nullable=col.nullable or col.default is not None
        )
    frame_checks = [pandera.Check(fn, name=reason) for reason, fn in spec.row_checks]
    return pandera.DataFrameSchema(
        columns, checks=frame_checks, strict=False, coerce=False, name=name
    )


def summary_line(name: str, report: Mapping[str, Any], top: int = 3) -> str:
    """`transactions: 10 in, 8 accepted, 2 quarantined (unknown_customer=2)` -- no row contents."""
    if not report.get("present"):
        return f"{name}: absent, written empty"
    reasons = sorted(report["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    why = ", ".join(f"{r}={n}" for r, n in reasons)
    return (
        f"{name}: {report['rows_in']} in, {report['rows_accepted']} accepted, "
        f"{report['rows_quarantined']} quarantined" + (f" ({why})" if why else "")
    )


def today() -> date:
    """Today's UTC date, or the ISO date in the environment variable `CHURNLENS_TODAY`."""
    value = os.environ.get(TODAY_ENV, "").strip()
    if value:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            raise ChurnlensError(
                f"{TODAY_ENV} must be an ISO date (YYYY-MM-DD), got {value!r}"
            ) from None
    return datetime.now(UTC).date()


_machine_today = today  # `today` is also a parameter name below


# --------------------------------------------------------------------------- validation


def validate_tables(
    raw: Mapping[str, pd.DataFrame | None],
    *,
    sources: Mapping[str, str] | None = None,
    file_columns: Mapping[str, Sequence[str]] | None = None,
    today: date | None = None,
) -> dict[str, TableResult]:
    """Validate all tables: customers first, then the others against the accepted customers.

    `raw[name]` is the raw string frame or None/absent for a missing table. `sources[name]`
    is the file path shown in errors; `file_columns[name]` all column names of the file
    (when the frame holds only a selection); `today`: see `validate_table`. Raises
    InputFileError for unusable input.
    """
    sources = dict(sources or {})
    file_columns = dict(file_columns or {})
    for name in REQUIRED_TABLES:
        if raw.get(name) is None:
            raise InputFileError(
                sources.get(name, f"{name}.csv"),
                None,
                f"required table '{name}' is missing: expected {name}.csv or {name}.parquet",
            )
    customers = validate_customers(
        raw["customers"],
        source=sources.get("customers"),
        file_columns=file_columns.get("customers"),
    )
    results: dict[str, TableResult] = {"customers": customers}
    known = customers.accepted["customer_id"]
    first_days = None
    for name in TABLE_NAMES[1:]:
        frame = raw.get(name)
        if frame is None:
            results[name] = empty_result(name)
        else:
            results[name] = validate_table(
                name,
                frame,
                known_customers=known,
                source=sources.get(name),
                file_columns=file_columns.get(name),
                today=today,
            )
        if name in ACTIVITY_TABLES:
            first_days = first_activity_days(results[name].accepted, first_days)
    results["customers"] = move_signup_to_first_activity(customers, first_days)
    return results


def validate_customers(
    raw: pd.DataFrame, *, source: str | None = None, file_columns: Sequence[str] | None = None
) -> TableResult:
    """`validate_table("customers", ...)`, and an error when no customer row is usable."""
    result = validate_table("customers", raw, source=source, file_columns=file_columns)
    source = source or "customers"
    report = result.report
    if report["rows_in"] == 0:
        raise InputFileError(
            source, None, "no customer rows (header only): expected at least one customer"
        )
    if report["rows_accepted"] == 0:
        why = ", ".join(f"{r}={n}" for r, n in report["reasons"].items())
        raise InputFileError(
            source, None, f"no valid customer row: all {report['rows_in']} rows rejected ({why})"
        )
    return result


def validate_table(
    name: str,
    raw: pd.DataFrame,
    *,
    known_customers: pd.Series | pd.Index | Sequence[str] | None = None,
    source: str | None = None,
    file_columns: Sequence[str] | None = None,
    today: date | None = None,
) -> TableResult:
    """Validate one raw table (strings) -> accepted rows, quarantined rows and the report.

    known_customers: accepted customer ids; rows of non-customer tables with another id are
        quarantined as `unknown_customer` (None = do not check).
    source: file path for error messages (its name goes into the report).
    file_columns: every column of the file, if `raw` holds only a selection of them.
    today: timestamps on a later (UTC) day are `timestamp_in_future`; None = `today()`.
    Raises InputFileError for a missing required column or a column of the wrong type throughout.
    """
    validator = TableValidator(
        name, known_customers=known_customers, source=source, file_columns=file_columns,
        today=today,
    )
    result = validator.add(raw)
    result.report = validator.finish()
    return result


@dataclass
class _Tally:
    """A required typed column over the chunks so far: non-empty values, how many do not parse."""

    present: int = 0
    unparseable: int = 0
    decimal_comma: bool = False  # a value like `12,50` among columns that parse nowhere


class TableValidator:
    """Validate one table chunk by chunk, with the meaning `validate_table` has on the whole.

    `add(raw)` validates the next chunk of rows (raw strings, as from `churnlens.readers`) and
    returns its accepted and quarantined rows and that chunk's report. `finish()` returns the
    report of the whole table (counts summed) and raises InputFileError for a required typed
    column in which no value of the whole table parses. `customers` must come as one chunk:
    its duplicate ids are checked within a chunk.
    """

    def __init__(
        self,
        name: str,
        *,
        known_customers: pd.Series | pd.Index | Sequence[str] | None = None,
        source: str | None = None,
        file_columns: Sequence[str] | None = None,
        today: date | None = None,
    ) -> None:
        self.name, self.source, self.file_columns = name, source or name, file_columns
        self.today = today if today is not None else _machine_today()
        self._known = None if known_customers is None else customer_set(known_customers)
        self._tallies = {c.name: _Tally() for c in _typed_required(name)}
        self._reasons: dict[str, int] = {}
        self._first: dict[str, Any] | None = None  # report of the first chunk
        self._rows_in = self._rows_accepted = 0

    def add(self, raw: pd.DataFrame) -> TableResult:
        """Validate the next chunk; source rows continue from the previous chunks."""
        if self.name == "customers" and self._first is not None:
            raise ValueError("customers must be validated in one chunk (duplicate ids)")
        result, tallies = _validate_chunk(
            self.name, raw, self._known, self.source, self.file_columns, self._rows_in,
            self.today,
        )
        report = result.report
        if self._first is None:
            self._first = report
        self._rows_in += report["rows_in"]
        self._rows_accepted += report["rows_accepted"]
        for reason, count in report["reasons"].items():
            self._reasons[reason] = self._reasons.get(reason, 0) + count
        for column, tally in self._tallies.items():
            _add_tally(tally, tallies[column])
        return result

    def finish(self) -> dict[str, Any]:
        """The report of all chunks; raises InputFileError for a column of the wrong type."""
        for col in _typed_required(self.name):
            _check_parses_somewhere(self.source, col, self._tallies[col.name])
        first = self._first
        reasons = dict(sorted(self._reasons.items(), key=lambda kv: -kv[1]))  # stable
        report = _report(
            self.name,
            self.source,
            self._rows_in,
            self._rows_accepted,
            reasons,
            first["unknown_columns"],
            first["missing_optional_columns"],
        )
        for key in ("pii_columns_dropped", "rare_values_generalised"):  # one-chunk tables
            if key in first:
                report[key] = first[key]
        return report


def _validate_chunk(
    name, raw, known, source, file_columns, offset, today=None
) -> tuple[TableResult, dict[str, _Tally]]:
    """validate_table on one chunk, without the whole-column type check (see TableValidator).

    Returns the chunk's result and the tallies for that check. `offset`: rows in the chunks
    before (for source row positions when `raw` has no ROW_POSITION_COLUMN).
    """
    spec = TABLES[name]
    raw, unknown, pii_dropped, missing_optional = _contract_frame(name, raw, source, file_columns)
    n = len(raw)
    strings = {
        c: raw[c].astype("str")
        if c in raw.columns
        else pd.Series(pd.NA, index=raw.index, dtype="str")
        for c in spec.names
    }
    order = reason_order(name)
    rank = np.full(n, _OK, dtype=np.int32)  # index into `order` of the reason that applies

    def flag(reason: str, mask) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            if reason not in order:
                order.append(reason)
            rank[mask & (rank > order.index(reason))] = order.index(reason)

    if ROW_ERROR_COLUMN in raw.columns:
        errors = raw[ROW_ERROR_COLUMN]
        for reason in errors.dropna().unique():
            flag(str(reason), (errors == reason).fillna(False).to_numpy())

    parsed: dict[str, pd.Series] = {}
    raw_missing: dict[str, np.ndarray] = {}
    tallies: dict[str, _Tally] = {}
    for col in spec.columns:
        values, missing, flags = _coerce(col, strings[col.name])
        parsed[col.name], raw_missing[f"missing_{col.name}"] = values, missing
        for reason, mask in flags.items():
            flag(reason, mask)
        if col.kind == "timestamp" and today is not None:
            tomorrow = pd.Timestamp(today) + pd.Timedelta(days=1)
            flag("timestamp_in_future", (values >= tomorrow).to_numpy(dtype=bool, na_value=False))
        if col.required and col.kind in _EXPECTED:
            tallies[col.name] = _tally(col, strings[col.name], missing, flags)
    parsed_df = pd.DataFrame(parsed, index=raw.index)

    for reason, mask in _schema_failures(name, parsed_df).items():
        # pandera sees a value that did not parse as null too; "missing" means empty in the file
        flag(reason, mask & raw_missing[reason] if reason in raw_missing else mask)

    # cross-row checks, on the rows that passed every row-level check
    if name == "customers":
        for reason, mask in _duplicates(parsed_df, rank == _OK).items():
            flag(reason, mask)
    positions = None
    if name != "customers" and known is not None:
        positions = _positions_in(parsed_df["customer_id"], known)
        flag("unknown_customer", positions < 0)

    ok = rank == _OK
    accepted = _to_output(name, parsed_df.loc[ok].reset_index(drop=True))
    generalised = {}
    if name == "customers":
        accepted, generalised = generalise_rare_values(accepted, CATEGORY_COLUMNS)
    masked_rows = _misaligned(rank, order) if pii_dropped else None
    quarantined = _quarantine(name, strings, raw, ~ok, rank, order, offset, masked_rows)
    counts = pd.Series(rank[~ok]).value_counts()
    reasons = {order[int(r)]: int(c) for r, c in counts.sort_values(ascending=False).items()}
    report = _report(name, source, n, int(ok.sum()), reasons, unknown, missing_optional)
    if spec.pii:
        report["pii_columns_dropped"] = pii_dropped
    if name == "customers":
        report["rare_values_generalised"] = generalised
    known_positions = None if positions is None else positions[ok]
    return TableResult(accepted, quarantined, report, known_positions), tallies


def _contract_frame(name, raw, source, file_columns):
    """Normalised names, personal data dropped, required columns checked.

    Returns (frame, unknown columns, personal data columns dropped, absent optional columns).
    """
    spec = TABLES[name]
    raw = _normalise_names(raw, source)
    reader_cols = {ROW_ERROR_COLUMN, ROW_POSITION_COLUMN}
    if file_columns is None:
        file_columns = [c for c in raw.columns if c not in reader_cols]
    else:
        file_columns = [normalize_column_name(c) for c in file_columns]
    known_names = set(spec.names) | set(spec.pii)
    unknown = [c for c in file_columns if c not in known_names]
    pii_dropped = [c for c in spec.pii if c in file_columns]
    raw = raw.drop(columns=[c for c in spec.pii if c in raw.columns])  # personal data: gone here
    absent_required = [c.name for c in spec.columns if c.required and c.name not in raw.columns]
    if absent_required:
        needed = ", ".join(c.name for c in spec.columns if c.required)
        raise InputFileError(
            source,
            absent_required[0],
            f"required column missing: table {name} needs {needed} ({_found(file_columns)})",
        )
    missing_optional = [c.name for c in spec.columns if c.name not in raw.columns]
    unknown = [_shown_name(c, file_columns.index(c)) for c in unknown]
    return raw.reset_index(drop=True), unknown, pii_dropped, missing_optional


_NUMBER_LIKE = r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:e[+-]?\d+)?$"


def _looks_like_value(name: str) -> bool:
    """A header field that is a date, a number or an e-mail: a data row taken for the header."""
    text = str(name).strip()
    return bool(
        re.search(_ISO_DATE_SHAPE, text)
        or re.match(_NUMBER_LIKE, text, flags=re.IGNORECASE)
        or re.search(_EMAIL_LIKE, text)
    )


def _shown_name(name: str, position: int) -> str:
    """A column name as it may appear in a message or report: never an e-mail address."""
    return f"<column {position + 1}>" if re.search(_EMAIL_LIKE, str(name)) else str(name)


def _found(file_columns: Sequence[str]) -> str:
    """The columns of a file for an error message, without personal data: when the first line
    looks like data (a headerless file: the first customer's e-mail and name would be its
    "column names") only how many; otherwise the names, e-mail-like ones replaced."""
    n = len(file_columns)
    if not n:
        return "found no columns"
    if any(_looks_like_value(c) for c in file_columns):
        return (f"found {n} columns whose names look like data values, not shown: "
                "expected a header line with column names first")
    shown = [_shown_name(c, i) for i, c in enumerate(file_columns[:15])]
    return "found: " + ", ".join(shown) + (", ..." if n > 15 else "")


# --------------------------------------------------------------------------- internals


def _report(
    name, source, rows_in, rows_accepted, reasons, unknown, missing_optional
) -> dict[str, Any]:
    return {
        "present": source is not None,
        "source": Path(source).name if source is not None else None,
        "rows_in": int(rows_in),
        "rows_accepted": int(rows_accepted),
        "rows_quarantined": int(rows_in - rows_accepted),
        "reasons": dict(reasons),
        "unknown_columns": list(unknown),
        "missing_optional_columns": list(missing_optional),
    }


def _normalise_names(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    names = [
        c if c in (ROW_ERROR_COLUMN, ROW_POSITION_COLUMN) else normalize_column_name(c)
        for c in raw.columns
    ]
    seen: set[str] = set()
    for c in names:
        if c in seen:
            raise InputFileError(
                source, c, "column appears more than once: expected unique column names"
            )
        seen.add(c)
    return raw.set_axis(names, axis=1)


def _missing(stripped: pd.Series, tokens: frozenset[str]) -> np.ndarray:
    return missing_mask(stripped, tokens)


def _coerce(col: Col, raw: pd.Series) -> tuple[pd.Series, np.ndarray, dict[str, np.ndarray]]:
    """Raw strings -> parsed values (parse dtype), the mask of empty values, and
    {reason: row mask} for values that do not parse."""
    stripped = raw.str.strip()
    if col.kind in ("id", "text"):
        missing = _missing(stripped, MISSING_TOKENS)
        return stripped.mask(missing).astype("str"), missing, {}
    if col.kind in ("timestamp", "date"):
        missing = _missing(stripped, MISSING_TOKENS)
        values = pd.Series(parse_timestamps(stripped.mask(missing)), index=raw.index)
        if col.kind == "date":
            values = values.dt.floor("D")
        failed = ~missing & values.isna().to_numpy()
        shaped = np.zeros(len(raw), dtype=bool)
        if failed.any():
            shaped[failed] = (
                stripped[failed].str.match(_ISO_DATE_SHAPE).to_numpy(dtype=bool, na_value=False)
            )
        return (
            values,
            missing,
            {f"unparseable_{col.name}": failed & ~shaped, "impossible_date": failed & shaped},
        )
    # numbers
    missing = _missing(stripped, NUMERIC_MISSING_TOKENS)
    values = _to_float(stripped.mask(missing))
    failed = ~missing & values.isna().to_numpy()
    if failed.any():
        # A literal NaN is a (non-finite) value, not a missing one: parse it as +inf so that the
        # finiteness / integer / range checks reject it (the row is rejected either way).
        literal_nan = np.zeros(len(raw), dtype=bool)
        literal_nan[failed] = stripped[failed].str.lower().isin(NAN_TOKENS).to_numpy(dtype=bool)
        values = values.mask(literal_nan, np.inf)
        failed &= ~literal_nan
    if col.default is not None:
        values = values.mask(missing, col.default)
    return values, missing, {f"non_numeric_{col.name}": failed}


def _to_float(values: pd.Series) -> pd.Series:
    """`pd.to_numeric(errors="coerce")` as float64; Arrow's cast when every value parses, else
    Arrow for the plain decimals and pandas for the rest (`validation_coerce.parse_numbers`)."""
    return pd.Series(parse_numbers(values), index=values.index, dtype="float64")


def customer_set(ids) -> pa.Array:
    """Distinct non-null ids as an Arrow array, in order of first appearance: the known
    customers of `TableValidator` (built once per table), whose positions
    `TableResult.known_positions` gives. Built again from its own output it is the same."""
    distinct = pd.Series(ids, dtype="str").dropna().unique()
    return pa.array(distinct, type=pa.large_string(), from_pandas=True)


def _positions_in(values: pd.Series, value_set: pa.Array) -> np.ndarray:
    """Position of each string in `value_set`, -1 where absent or missing (Arrow `index_in`;
    pandas' str isin is slow for large sets)."""
    result = pc.index_in(
        pa.array(values, type=pa.large_string(), from_pandas=True), value_set=value_set
    )
    return result.fill_null(-1).to_numpy(zero_copy_only=False)


def _typed_required(name: str) -> list[Col]:
    """The columns checked for "wrong type throughout": required dates, timestamps, numbers."""
    return [c for c in TABLES[name].columns if c.required and c.kind in _EXPECTED]


def _tally(
    col: Col, raw: pd.Series, missing: np.ndarray, flags: Mapping[str, np.ndarray]
) -> _Tally:
    """Count the non-empty and the unparseable values of one chunk of a column."""
    unparseable = flags.get(f"unparseable_{col.name}", flags.get(f"non_numeric_{col.name}"))
    tally = _Tally(int((~missing).sum()), int(unparseable.sum()))
    if tally.present and tally.unparseable == tally.present and col.kind in ("float", "int"):
        tally.decimal_comma = bool(raw.str.strip().str.fullmatch(r"-?\d+,\d+").fillna(False).any())
    return tally


def _add_tally(total: _Tally, chunk: _Tally) -> None:
    total.present += chunk.present
    total.unparseable += chunk.unparseable
    total.decimal_comma |= chunk.decimal_comma


def _check_parses_somewhere(source: str, col: Col, tally: _Tally) -> None:
    """A required typed column in which no non-empty value parses is the wrong type throughout."""
    if tally.present and tally.unparseable == tally.present:
        hint = "; decimal commas are not supported, use a dot" if tally.decimal_comma else ""
        raise InputFileError(
            source,
            col.name,
            f"expected {_EXPECTED[col.kind]}, but none of the {tally.present} values parse{hint}",
        )


def _schema_failures(name: str, parsed: pd.DataFrame) -> dict[str, np.ndarray]:
    """Run the pandera schema lazily; return {reason: row mask} from its failure cases."""
    pandera = _pandera()
    with _quiet_pandera():
        try:
            schema(name).validate(parsed, lazy=True)
            return {}
        except pandera.errors.SchemaErrors as err:
            cases = err.failure_cases
    if cases["index"].isna().any():  # dtype or check crash: a bug here, not bad input
        bad = cases[cases["index"].isna()][["column", "check"]]  # no failure_case: raw values
        raise RuntimeError(f"validation schema for {name} failed as a whole:\n{bad.to_string()}")
    reasons = np.where(
        cases["check"] == "not_nullable",
        "missing_" + cases["column"].astype("str"),
        cases["check"].astype("str"),
    )
    positions = parsed.index.get_indexer(cases["index"].astype("int64"))
    out: dict[str, np.ndarray] = {}
    for reason in pd.unique(reasons):
        mask = np.zeros(len(parsed), dtype=bool)
        mask[positions[reasons == reason]] = True
        out[str(reason)] = mask
    return out


#: Tables whose timestamps are a customer's activity (features, KPIs, as_of).
ACTIVITY_TABLES = ("transactions", "events")


def first_activity_days(accepted: pd.DataFrame, so_far: pd.Series | None = None) -> pd.Series:
    """customer_id -> first activity day (datetime64, midnight) of accepted transaction/event
    rows, merged with `so_far` (the days of earlier chunks or tables)."""
    days = (accepted["timestamp"].astype("datetime64[us]").dt.floor("D")
            .groupby(accepted["customer_id"].astype("str")).min())
    if so_far is not None and len(so_far):
        days = pd.concat([so_far, days]) if len(days) else so_far
        days = days.groupby(level=0).min()
    return days.astype("datetime64[us]").rename("first_activity_day")


def move_signup_to_first_activity(result: TableResult, first_days: pd.Series) -> TableResult:
    """A customer active before their signup date signed up on their first activity day.

    Such a row contradicts itself (activity of someone not yet a customer); left alone, a signup
    after as_of hides a customer with real activity from scoring without a word. The signup
    date moves to the first activity day (the earliest day we know them), and the report
    counts it (`signup_moved_to_first_activity`); the raw file keeps the original date.
    """
    customers = result.accepted
    signup = pd.to_datetime(customers["signup_date"].astype("datetime64[us]"))
    early = np.zeros(len(customers), dtype=bool)
    if first_days is not None and len(first_days):
        first = pd.Series(first_days.reindex(customers["customer_id"].to_numpy()).to_numpy(),
                          index=customers.index)
        early = (first < signup).to_numpy(dtype=bool, na_value=False)
    report = dict(result.report)
    report["signup_moved_to_first_activity"] = int(early.sum())
    if early.any():
        moved = signup.mask(early, first).astype("datetime64[us]")
        arrow = pa.Array.from_pandas(moved, type=pa.timestamp("us")).cast(pa.date32())
        customers = customers.assign(signup_date=pd.Series(
            pd.arrays.ArrowExtensionArray(arrow), index=customers.index))
    return TableResult(customers, result.quarantined, report)


def generalise_rare_values(
    customers: pd.DataFrame, columns: Sequence[str] = CATEGORY_COLUMNS
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Replace the rare values of free-text category columns by OTHER_CATEGORY.

    A value held by fewer than `min(MIN_CATEGORY_CUSTOMERS, MIN_CATEGORY_SHARE * customers)`
    customers (at least one) is rare. A plan or a country is shared by many customers; a
    person's name, an id or a typo shifted into `segment` is held by one, and would otherwise
    become a model category (pickled with the model), a KPI group and a report line. Returns
    the frame and {column: rows changed} for the columns where something changed.
    """
    threshold = max(1, min(MIN_CATEGORY_CUSTOMERS, int(MIN_CATEGORY_SHARE * len(customers))))
    changed: dict[str, int] = {}
    out = customers
    for column in columns:
        if column not in customers.columns:
            continue
        values = customers[column]
        counts = values.value_counts(dropna=True)
        rare = values.isin(counts.index[counts < threshold]).to_numpy(dtype=bool)
        if rare.any():
            if out is customers:
                out = customers.copy()
            out[column] = values.mask(rare, OTHER_CATEGORY).astype(values.dtype)
            changed[column] = int(rare.sum())
    return out, changed


def _duplicates(parsed: pd.DataFrame, ok: np.ndarray) -> dict[str, np.ndarray]:
    """Duplicate customer ids among valid rows: identical -> keep first; conflicting -> all out."""
    n = len(parsed)
    valid = np.flatnonzero(ok)
    dup = parsed["customer_id"].iloc[valid].duplicated(keep=False).to_numpy()
    if not dup.any():
        return {}
    where = valid[dup]
    rows = parsed.iloc[where]
    distinct = rows.drop_duplicates()
    conflict_ids = distinct["customer_id"][distinct["customer_id"].duplicated()].unique()
    conflict = np.zeros(n, dtype=bool)
    conflict[where] = rows["customer_id"].isin(conflict_ids).to_numpy()
    repeat = np.zeros(n, dtype=bool)
    repeat[where] = rows.duplicated(keep="first").to_numpy()
    return {"duplicate_customer_id_conflict": conflict, "duplicate_row": repeat & ~conflict}


def _to_output(name: str, parsed: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for col in TABLES[name].columns:
        values = parsed[col.name]
        if col.kind == "date":
            arrow = pa.Array.from_pandas(values, type=pa.timestamp("us")).cast(pa.date32())
            values = pd.Series(pd.arrays.ArrowExtensionArray(arrow), index=parsed.index)
        else:
            values = values.astype(_OUTPUT_DTYPE[col.kind])
        out[col.name] = values
    return pd.DataFrame(out, index=parsed.index)


def _misaligned(rank: np.ndarray, order: list[str]) -> np.ndarray:
    """Rows whose values may sit in the wrong columns (CSV rows of the wrong width)."""
    if WRONG_FIELD_COUNT not in order:
        return np.zeros(len(rank), dtype=bool)
    return rank == order.index(WRONG_FIELD_COUNT)


def _masked(values: pd.Series, everything: np.ndarray | None = None) -> pd.Series:
    """Quarantine strings without personal data: e-mail-like values, and every value of the
    rows in `everything` (misaligned rows of a file with personal columns), become MASKED."""
    hide = looks_like_email(values, _EMAIL_LIKE)
    if everything is not None:
        hide |= everything & values.notna().to_numpy()
    return values.mask(hide, MASKED) if hide.any() else values


def _quarantine(name, strings, raw, bad, rank, order, offset=0, misaligned=None) -> pd.DataFrame:
    if not bad.any():
        return empty_quarantine(name)
    out = {}
    for c in contract_columns(name):
        # the id stays readable (it is what the row is about), unless it looks like an e-mail
        everything = None if misaligned is None or c == "customer_id" else misaligned[bad]
        out[c] = _masked(strings[c][bad].reset_index(drop=True), everything)
    out[REASON_COLUMN] = pd.Series(np.asarray(order, dtype=object)[rank[bad]], dtype="str")
    if ROW_POSITION_COLUMN in raw.columns:
        position = raw[ROW_POSITION_COLUMN].astype("Int64")[bad]
    else:
        position = pd.Series(np.flatnonzero(bad) + offset, dtype="Int64")
    out[SOURCE_ROW_COLUMN] = position.reset_index(drop=True).astype("Int64")
    return pd.DataFrame(out)
