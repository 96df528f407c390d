"""Vectorised text tests and parsing for `churnlens.validation`, with the results of the
pandas calls they replace but run in Arrow's kernels.

Each function takes a string Series (pandas `str` dtype: Arrow storage) and gives the same
answer as the slower pandas expression named in its docstring:

* `looks_like_email`: Arrow keeps the rows with an `@` (no `@`, no address); only those go
  through Python's `re` (the pattern's `\\s` is Python's Unicode whitespace, not RE2's).
* `missing_mask`: `is_in` the set of the tokens' ASCII upper/lower-case spellings (the tokens
  are ASCII; no other character lower-cases to one of their letters).
* `parse_numbers`: when a chunk holds a value Arrow cannot cast, only the values that are not
  plain decimals go to `pd.to_numeric` (before: the whole chunk).
* `parse_timestamps`: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[Z|+HH:MM]` values that are valid
  on every calendar (years 1900-2099, no Feb 29, hours 00-23) are cast by Arrow; every other
  value (fractions, leap days, anything odd) goes to `pd.to_datetime(format="ISO8601")`.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import product

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["arrow_strings", "looks_like_email", "missing_mask", "parse_numbers", "parse_timestamps"]

#: Dates that exist on every calendar they can be written on: years 1900-2099 (far inside the
#: nanosecond range), no Feb 29 (leap years are left to pandas), no 31st of a 30-day month.
_DAY = (r"(?:19|20)\d\d-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"
        r"|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)")
_TIME = r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
#: What Arrow's cast reads exactly like pandas' ISO8601 parser: naive (UTC) ...
_PLAIN_DATETIME = rf"^{_DAY}(?:{_TIME})?$"
#: ... or with `Z` or an offset of whole minutes (converted to UTC by both).
_ZONED_DATETIME = rf"^{_DAY}{_TIME}(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"

#: Decimals of at most 15 digits: Arrow's cast and pandas' parser both round them exactly.
#: Negative zeros are left to pandas (its object parser reads `-0` as the integer 0: +0.0).
_PLAIN_NUMBER = r"^[+-]?\d{1,9}(?:\.\d{0,6})?$"
_NEGATIVE_ZERO = r"^-0*\.?0*$"
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


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
    missing = pc.is_null(strings)
    longest = max(len(token.encode()) for token in tokens)
    if pc.any(pc.less_equal(pc.binary_length(strings), longest)).as_py():  # else: no token
        missing = pc.or_(pc.is_in(strings, value_set=_spellings(tokens)), missing)
    return missing.to_numpy(zero_copy_only=False)


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
    out = np.full(len(present), np.datetime64("NaT"), dtype="datetime64[us]")
    rest = present.notna().to_numpy().copy()
    for pattern, arrow_type in ((_PLAIN_DATETIME, pa.timestamp("us")),
                                (_ZONED_DATETIME, pa.timestamp("us", tz="UTC"))):
        where = np.flatnonzero(rest)
        if not len(where):
            break
        candidates = strings.take(pa.array(where)) if len(where) < len(strings) else strings
        match = pc.fill_null(pc.match_substring_regex(candidates, pattern), False)
        matched = where[match.to_numpy(zero_copy_only=False)]
        if len(matched):
            cast = pc.cast(candidates.filter(match), arrow_type).cast(pa.int64())
            out[matched] = cast.to_numpy(zero_copy_only=False).view("datetime64[us]")
            rest[matched] = False
    if rest.any():
        parsed = pd.to_datetime(
            present[rest], errors="coerce", utc=True, format="ISO8601"
        ).dt.tz_localize(None)
        out[rest] = parsed.astype("datetime64[us]").to_numpy()
    return out


def parse_numbers(present: pd.Series) -> np.ndarray:
    """float64 values (NaN where missing): Arrow's cast of the whole column when every value
    parses (as before); otherwise Arrow for the plain decimals and
    `pd.to_numeric(errors="coerce")` for the other values, which is what pandas gave them."""
    strings = arrow_strings(present)
    try:
        return pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False)
    except _CAST_ERRORS:
        pass
    plain = pc.and_(pc.match_substring_regex(strings, _PLAIN_NUMBER),
                    pc.invert(pc.match_substring_regex(strings, _NEGATIVE_ZERO)))
    plain = pc.fill_null(plain, False)
    fast = plain.to_numpy(zero_copy_only=False)
    out = np.full(len(present), np.nan)
    if fast.any():
        out[fast] = pc.cast(strings.filter(plain), pa.float64()).to_numpy(zero_copy_only=False)
    rest = ~fast & present.notna().to_numpy()
    if rest.any():
        out[rest] = pd.to_numeric(present[rest], errors="coerce").astype("float64").to_numpy()
    return out
