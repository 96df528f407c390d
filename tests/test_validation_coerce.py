"""The Arrow fast paths of validation give what the pandas expressions they replace give."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnlens.readers import _positions
from churnlens.validation import (
    _EMAIL_LIKE,
    MISSING_TOKENS,
    NUMERIC_MISSING_TOKENS,
    TableValidator,
    _plausible_year,
    customer_set,
    first_activity_days,
)
from churnlens.validation_coerce import (
    looks_like_email,
    missing_mask,
    parse_numbers,
    parse_timestamps,
)
from churnlens.validation_sinks import FirstDays

ODD = [
    None, "", " ", "null", "NULL", "Null", "None", "nOnE", "nan", "NaN", "-nan", "NaT", "n/a",
    "N/A", "<NA>", "<na>", "inf", "abc", "12,50", "3.5", "\u00a0", "\u2003", "nul", "nulls",
    "İ", "K", "ñan", "bob@example.com", " alice@mail.org ", "x@y", "a@b.cd", "foo\u00a0@bar.com",
    "a\u000b@b.co", "ünï@côde.de", "a @b.com", "@@.de", "a@b.c", "x@y.z1", "Premium",
    "2024-01-01T10:00:00", "2024-02-28", "2024-02-29", "2023-02-29", "2024-02-30", "2024-04-31",
    "2024-12-31T23:59:59", "2024-06-30T24:00:00", "2024-01-01T23:60:00", "2024-01-01T23:59:60",
    "2024-00-10", "2024-01-00", "2024-13-01", "1899-12-31", "1900-01-01", "1989-12-31",
    "2099-12-28T00:00:00", "2100-01-01", "2101-01-01T00:00:00", "2300-01-01T00:00:00",
    "0001-01-01", "0000-01-01", "9999-12-31", "+2024-01-01", "2024-1-5", "2024-01-05T10:00",
    "2024-01-05T10", "2024-01-01 10:00:00", "2024-01-01T10:00:00Z", "2024-01-01T10:00:00+02:00",
    "2024-01-01T00:30:00+01:00", "2024-01-01T10:00:00.123456-05:30", "2024-01-01T10:00:00.5Z",
    "2024-01-01T10:00:00+0100", "2024-01-01T10:00:00.123456789", "20240101", "01/02/2024",
    "2024-01-01T10:00:00 ", "２０２４-01-01", "2024-01-01t10:00:00",
]


def strings(values) -> pd.Series:
    return pd.Series(values, dtype="str")


def random_timestamps(n: int, seed: int = 0) -> list[str]:
    """Digit-shaped timestamps with every field also out of range now and then."""
    rng = np.random.default_rng(seed)
    year = rng.choice(["1899", "1900", "1990", "2024", "2099", "2100", "2262", "2263"], n)
    month, day = rng.integers(0, 14, n), rng.integers(0, 33, n)  # 00 and 13, 00 and 32 too
    hour, minute, second = rng.integers(0, 25, n), rng.integers(0, 61, n), rng.integers(0, 61, n)
    tail = rng.choice(["", "", "", "Z", "+01:00", "-05:30", "+23:59", "-23:59", "+24:00",
                       "+01:60", "+0100", "-00:00", ".25", "date"], n)
    out = []
    for i in range(n):
        text = f"{year[i]}-{month[i]:02d}-{day[i]:02d}"
        if tail[i] != "date":
            text += f"T{hour[i]:02d}:{minute[i]:02d}:{second[i]:02d}{tail[i]}"
        out.append(text)
    return out


def test_looks_like_email_is_the_pandas_regex():
    values = strings(ODD)
    expected = values.astype("string").str.contains(_EMAIL_LIKE, regex=True, na=False)
    got = looks_like_email(values, _EMAIL_LIKE)
    assert got.dtype == bool
    assert got.tolist() == expected.astype(bool).tolist()
    assert got.any() and not got.all()


@pytest.mark.parametrize("tokens", [MISSING_TOKENS, NUMERIC_MISSING_TOKENS])
def test_missing_mask_is_lower_isin(tokens):
    values = strings(ODD).str.strip()
    expected = (values.isna() | values.str.lower().isin(tokens)).to_numpy(dtype=bool,
                                                                           na_value=True)
    got = missing_mask(values, tokens)
    assert got.tolist() == expected.tolist()
    assert got[ODD.index("NaN")] == ("nan" in tokens)


def test_missing_mask_of_real_nulls():
    """Parquet nulls (not the text "null") are missing too."""
    assert missing_mask(strings([None, "x", None]), MISSING_TOKENS).tolist() == [True, False, True]
    # no value short enough to be a token: only the nulls
    assert missing_mask(strings(["2024-01-01", None]), MISSING_TOKENS).tolist() == [False, True]
    assert missing_mask(strings([]), MISSING_TOKENS).tolist() == []


@pytest.mark.parametrize("values", [ODD, random_timestamps(20000)], ids=["odd", "random"])
def test_parse_timestamps_is_pandas_iso8601(values):
    present = strings(values).str.strip()
    expected = pd.to_datetime(present, errors="coerce", utc=True, format="ISO8601")
    expected = expected.dt.tz_localize(None).astype("datetime64[us]").to_numpy()
    got = parse_timestamps(present)
    assert got.dtype == np.dtype("datetime64[us]")
    np.testing.assert_array_equal(got, expected)
    assert np.isnat(got).any() and not np.isnat(got).all()


def test_parse_timestamps_without_plain_values_or_without_others():
    for values in (["2024-01-01T10:00:00Z"], ["2024-01-01T10:00:00"], [None], []):
        present = strings(values)
        expected = pd.to_datetime(present, errors="coerce", utc=True, format="ISO8601")
        expected = expected.dt.tz_localize(None).astype("datetime64[us]").to_numpy()
        np.testing.assert_array_equal(parse_timestamps(present), expected)


NUMBERS = ["+3", "5.", "-0", "-0.0", "-00.000", "-.0", "0", "+0", "007", "-12.50", "0.1", ".5",
           "123456789.123456", "0.1234567", "1234567890", "99999999999999999999", "1e3", "1e309",
           "0x10", "abc", "12,50", None, "nan", "-nan", "inf", "-inf", "4", "0.30000000000000004"]


def same_floats(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal values, NaN where NaN, and the same sign of zero."""
    np.testing.assert_array_equal(got, expected)
    numbers = ~np.isnan(expected)
    np.testing.assert_array_equal(np.signbit(got[numbers]), np.signbit(expected[numbers]))


def test_parse_numbers_is_pandas_to_numeric_when_some_do_not_parse():
    """Arrow casts only the plain decimals; the values are pandas' for the whole column."""
    values = strings(NUMBERS)
    expected = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    same_floats(parse_numbers(values), expected)


def test_parse_numbers_is_arrow_cast_when_all_parse():
    import pyarrow as pa

    values = strings([v for v in NUMBERS if v not in ("abc", "12,50", "0x10")])
    expected = pa.array(values, type=pa.large_string(), from_pandas=True).cast(pa.float64())
    same_floats(parse_numbers(values), expected.to_numpy(zero_copy_only=False))


def test_plausible_year_is_the_year_range():
    s = pd.Series(pd.to_datetime(
        ["1989-12-31T23:59:59.999999", "1990-01-01", "2100-12-31T23:59:59.999999",
         "2101-01-01", None, "0001-01-01", "9999-12-31"], format="ISO8601"
    ).astype("datetime64[us]"))
    expected = (s.dt.year >= 1990) & (s.dt.year <= 2100)
    assert _plausible_year(s).tolist() == expected.tolist()


def activity(ids, stamps) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series(ids, dtype="str"),
                         "timestamp": pd.Series(pd.to_datetime(stamps, format="ISO8601"),
                                                dtype="datetime64[us]")})


def test_first_days_is_first_activity_days_over_committed_chunks():
    known = pd.Series(["c1", "c2", "c3", "c4"], dtype="str")
    chunks = [activity(["c1", "c2", "c1"], ["2024-03-05 10:00", "2024-02-01 23:59", "2024-01-09"]),
              activity([], []),
              activity(["c2", "c3"], ["2024-01-31 00:01", "2023-12-31 12:00"])]
    days = FirstDays(known)
    for chunk in chunks:
        days.add(chunk)
    days.commit()
    days.add(activity(["c4"], ["2020-01-01"]))  # a table read again from scratch: forgotten
    days.restart()
    days.add(activity(["c1"], ["2024-01-10 05:00"]))
    days.commit()
    expected = first_activity_days(pd.concat([*chunks, activity(["c1"], ["2024-01-10 05:00"])]))
    got = days.days
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index())
    assert "c4" not in got.index


def test_validator_gives_the_positions_first_days_uses():
    """TableResult.known_positions: each accepted row's customer in customer_set(known); the
    days from them are the days from a lookup of the ids."""
    known = customer_set(pd.Series(["c3", "c1", "c2"], dtype="str"))
    raw = pd.DataFrame({"customer_id": ["c2", "c9", "c1", "", "c2"],
                        "timestamp": ["2024-01-05", "2024-01-01", "2024-02-01T10:00:00",
                                      "2024-01-01", "2023-12-31T23:00:00"],
                        "event_type": "login"}, dtype="str")
    result = TableValidator("events", known_customers=known, today=None).add(raw)
    assert result.report["reasons"] == {"unknown_customer": 1, "missing_customer_id": 1}
    assert result.known_positions.tolist() == [2, 1, 2]
    given, looked_up = FirstDays(known), FirstDays(known)
    given.add(result.accepted, result.known_positions)
    looked_up.add(result.accepted)
    for days in (given, looked_up):
        days.commit()
    pd.testing.assert_series_equal(given.days.sort_index(), looked_up.days.sort_index())
    assert given.days.sort_index().astype("str").tolist() == ["2024-02-01", "2023-12-31"]
    with pytest.raises(ValueError, match="not among the known customers"):
        given.add(result.accepted, np.array([2, -1, 2]))


def test_first_days_refuses_an_unknown_customer():
    days = FirstDays(pd.Series(["c1"], dtype="str"))
    with pytest.raises(ValueError, match="not among the known customers"):
        days.add(activity(["c9"], ["2024-01-01"]))
    assert len(FirstDays(pd.Series([], dtype="str")).days) == 0


def test_row_positions_are_an_int64_range():
    for start, n in ((0, 0), (0, 3), (1_000_000, 5)):
        assert _positions(start, n).equals(pd.array(range(start, start + n), dtype="Int64"))
