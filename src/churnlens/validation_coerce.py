"""Vectorised text tests and parsing for `churnlens.validation`, with the results of the
pandas calls they replace but run in Arrow's kernels.

Each function takes a string Series (pandas `str` dtype: Arrow storage) and gives the same
answer as the slower pandas expression named in its docstring:

* `looks_like_email`: Arrow keeps the rows with an `@` (no `@`, no address); only those go
  through Python's `re` (the pattern's `\\s` is Python's Unicode whitespace, not RE2's).
* `missing_mask`: `is_in` the set of the tokens' ASCII upper/lower-case spellings (the tokens
  are ASCII; no other character lower-cases to one of their letters).
* `parse_timestamps`: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS` values that are valid on every
  calendar (years 1900-2099, days 01-28, hours 00-23) are cast by Arrow; every other value
  (offsets, fractions, days 29-31, anything odd) goes to `pd.to_datetime(format="ISO8601")`.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import product

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["arrow_strings", "looks_like_email", "missing_mask", "parse_timestamps"]

#: Timestamps/dates Arrow's cast reads exactly like pandas' ISO8601 parser: no day that
#: some month lacks, no leap second, years far inside the nanosecond range.
_PLAIN_DATETIME = (
    r"^(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"
    r"(?:T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)?$"
)


def arrow_strings(values: pd.Series) -> pa.Array:
    """The values as one Arrow large_string array (nulls for missing)."""
    array = pa.array(values, type=pa.large_string(), from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def looks_like_email(values: pd.Series, pattern: str) -> np.ndarray:
    """`values.astype("string").str.contains(pattern, regex=True, na=False)` as a bool array,
    for a `pattern` that cannot match without an `@`."""
    strings = arrow_strings(values)
    with_at = pc.fill_null(pc.match_substring(strings, "@"), False).to_numpy(zero_copy_only=False)
    found = np.zeros(len(values), dtype=bool)
    where = np.flatnonzero(with_at)
    if len(where):
        search = re.compile(pattern).search
        candidates = strings.take(pa.array(where)).to_pylist()
        found[where] = [search(text) is not None for text in candidates]
    return found


def missing_mask(stripped: pd.Series, tokens: frozenset[str]) -> np.ndarray:
    """`stripped.isna() | stripped.str.lower().isin(tokens)` as a bool array (ASCII tokens:
    one lookup in the set of all their spellings in upper and lower case)."""
    strings = arrow_strings(stripped)
    hit = pc.is_in(strings, value_set=_spellings(tokens))
    return pc.or_(hit, pc.is_null(strings)).to_numpy(zero_copy_only=False)


@cache
def _spellings(tokens: frozenset[str]) -> pa.Array:
    """Every upper/lower-case spelling of each (short, ASCII) token: `nan`, `NaN`, `NAN`, ..."""
    spellings = {"".join(chars) for token in tokens
                 for chars in product(*({c.lower(), c.upper()} for c in token))}
    return pa.array(sorted(spellings), pa.large_string())


def parse_timestamps(present: pd.Series) -> np.ndarray:
    """`pd.to_datetime(present, errors="coerce", utc=True, format="ISO8601")` as naive UTC
    `datetime64[us]` values (NaT where missing or unparseable)."""
    strings = arrow_strings(present)
    plain = pc.fill_null(pc.match_substring_regex(strings, _PLAIN_DATETIME), False)
    out = np.full(len(present), np.datetime64("NaT"), dtype="datetime64[us]")
    fast = plain.to_numpy(zero_copy_only=False)
    if fast.any():
        cast = pc.cast(strings.filter(plain), pa.timestamp("us"))
        out[fast] = cast.to_numpy(zero_copy_only=False)
    rest = ~fast & present.notna().to_numpy()
    if rest.any():
        parsed = pd.to_datetime(
            present[rest], errors="coerce", utc=True, format="ISO8601"
        ).dt.tz_localize(None)
        out[rest] = parsed.astype("datetime64[us]").to_numpy()
    return out
