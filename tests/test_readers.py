"""churnlens.readers: any raw CSV/Parquet file -> verbatim strings, or a one-line file error."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnlens.errors import InputFileError
from churnlens.readers import (
    ROW_ERROR_COLUMN,
    ROW_POSITION_COLUMN,
    WRONG_FIELD_COUNT,
    detect_encoding,
    normalize_column_name,
    open_table,
    read_table,
    sniff_delimiter,
)

CSV = "customer_id,signup_date,segment\n00042,2024-01-01,pro\n 7 ,2024-01-02,\n"


def write(tmp_path, text_or_bytes, name="t.csv"):
    path = tmp_path / name
    if isinstance(text_or_bytes, bytes):
        path.write_bytes(text_or_bytes)
    else:
        path.write_text(text_or_bytes, encoding="utf-8", newline="")
    return path


def data(table):
    return table.frame.drop(columns=[ROW_ERROR_COLUMN, ROW_POSITION_COLUMN])


def test_values_are_verbatim_strings(tmp_path):
    table = read_table(write(tmp_path, CSV))
    frame = data(table)
    assert list(frame.columns) == ["customer_id", "signup_date", "segment"]
    assert all(str(t) == "str" for t in frame.dtypes)
    assert frame["customer_id"].tolist() == ["00042", " 7 "]
    assert frame["segment"].tolist() == ["pro", ""]
    assert table.format == "csv" and table.encoding == "utf-8" and table.delimiter == ","
    assert table.frame[ROW_POSITION_COLUMN].tolist() == [0, 1]
    assert table.frame[ROW_ERROR_COLUMN].isna().all()


def test_column_selection_and_names(tmp_path):
    path = write(tmp_path, " Customer_ID ;SIGNUP_DATE;Email\n1;2024-01-01;a@b.c\n")
    table = read_table(path, columns=["customer_id", "signup_date", "amount"])
    assert table.columns == ("customer_id", "signup_date", "email")
    assert list(data(table).columns) == ["customer_id", "signup_date"]  # email never loaded


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("a,b,c", ","),
        ("a;b;c", ";"),
        ("a\tb\tc", "\t"),
        ("a|b|c", "|"),
        ("a", ","),
        ('"x;y",b,c', ","),
        ("a;b,c;d", ";"),
    ],
)
def test_sniff_delimiter(header, delimiter):
    assert sniff_delimiter(header) == delimiter


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_delimiters(tmp_path, delimiter):
    table = read_table(write(tmp_path, CSV.replace(",", delimiter)))
    assert table.delimiter == delimiter
    assert data(table)["customer_id"].tolist() == ["00042", " 7 "]


def test_bom(tmp_path):
    table = read_table(write(tmp_path, b"\xef\xbb\xbf" + CSV.encode()))
    assert table.encoding == "utf-8-sig"
    assert table.columns[0] == "customer_id"


def test_utf16(tmp_path):
    table = read_table(write(tmp_path, CSV.replace(",", "\t").encode("utf-16")))
    assert table.encoding == "utf-16" and table.delimiter == "\t"
    assert data(table)["customer_id"].tolist() == ["00042", " 7 "]


def test_cp1252_fallback(tmp_path):
    path = write(tmp_path, "id,country\n1,Curaçao\n2,€uro\n".encode("cp1252"))
    assert detect_encoding(path) == "cp1252"
    assert data(read_table(path))["country"].tolist() == ["Curaçao", "€uro"]


def test_latin1_last_resort(tmp_path):
    path = write(tmp_path, b"id,country\n1,a\x81b\n")  # 0x81 is undefined in cp1252
    table = read_table(path)
    assert table.encoding == "latin-1"
    assert data(table)["country"].tolist() == ["a\x81b"]


def test_quoted_fields(tmp_path):
    path = write(tmp_path, 'id,note\n1,"two\nlines"\n2,"a, ""quoted"" comma"\n')
    assert data(read_table(path))["note"].tolist() == ["two\nlines", 'a, "quoted" comma']


def test_blank_lines_and_short_rows(tmp_path):
    table = read_table(write(tmp_path, "a,b,c\n1,2,3\n\n4,5\n"))
    frame = data(table)
    assert frame["a"].tolist() == ["1", "4"]
    assert pd.isna(frame["c"].iloc[1])  # absent, not an empty field
    assert table.frame[ROW_ERROR_COLUMN].tolist()[1] == WRONG_FIELD_COUNT
    assert table.frame[ROW_ERROR_COLUMN].isna().tolist() == [True, False]


@pytest.mark.parametrize("chunk_rows", [None, 2])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_short_rows_are_marked_not_padded(tmp_path, encoding, chunk_rows):
    """A row with a missing field would shift an e-mail into `segment`: it is marked, whatever
    the encoding, chunked or not; empty fields of a full-width row are not."""
    text = ("customer_id;signup_date;segment;email\n"
            "C1;2024-01-01;pro;a@x.org\n"
            "C2;2024-01-01;b@x.org\n"
            "C3;2024-01-01;;\n"
            "C4;2024-01-01;basic;é@x.org;extra\n")
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode(encoding))
    table = open_table(path, None, chunk_rows)
    frame = pd.concat(list(table.frames), ignore_index=True)
    assert frame[ROW_ERROR_COLUMN].tolist()[1] == WRONG_FIELD_COUNT
    assert frame[ROW_ERROR_COLUMN].tolist()[3] == WRONG_FIELD_COUNT
    assert frame[ROW_ERROR_COLUMN].isna().tolist() == [True, False, True, False]
    assert frame[ROW_POSITION_COLUMN].tolist() == [0, 1, 2, 3]
    assert frame["segment"].tolist()[2] == ""


def test_well_formed_files_keep_the_fast_parser(tmp_path, monkeypatch):
    import churnlens.readers as readers

    def fail(*args, **kwargs):
        raise AssertionError("row parser used for a well-formed file")

    monkeypatch.setattr(readers, "_row_parser_chunks", fail)
    frame = data(read_table(write(tmp_path, 'a,b,c\n1,"x\ny",\n\n,,\n')))
    assert frame["b"].tolist() == ["x\ny", ""]


def test_rows_with_too_many_fields_are_kept_and_marked(tmp_path):
    table = read_table(write(tmp_path, 'a,b\n1,2\n3,4,5\n\n6,"7\n8"\n'))
    assert table.malformed_rows == 1
    frame = table.frame
    assert frame["a"].tolist() == ["1", "3", "6"]
    assert frame["b"].tolist() == ["2", "4", "7\n8"]
    assert frame[ROW_ERROR_COLUMN].tolist()[1] == WRONG_FIELD_COUNT
    assert frame[ROW_ERROR_COLUMN].isna().tolist() == [True, False, True]
    assert frame[ROW_POSITION_COLUMN].tolist() == [0, 1, 2]


def test_ragged_first_row_is_not_truncated_silently(tmp_path):
    table = read_table(write(tmp_path, "a,b\n1,2,3\n4,5\n"))
    assert table.frame[ROW_ERROR_COLUMN].tolist()[0] == WRONG_FIELD_COUNT
    assert len(table.frame) == 2


def test_header_only(tmp_path):
    table = read_table(write(tmp_path, "customer_id,signup_date\n"))
    assert len(table.frame) == 0
    assert table.columns == ("customer_id", "signup_date")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_files(tmp_path, content):
    with pytest.raises(InputFileError, match="empty|no header"):
        read_table(write(tmp_path, content))


def test_duplicate_wanted_column(tmp_path):
    path = write(tmp_path, "id,Amount,amount \n1,2,3\n")
    with pytest.raises(InputFileError) as err:
        read_table(path, columns=["id", "amount"])
    assert err.value.column == "amount"
    assert read_table(path, columns=["id"]).columns == ("id", "amount", "amount.1")


def test_empty_header_names(tmp_path):
    table = read_table(write(tmp_path, "a,b,\n1,2,\n"))  # trailing delimiter
    assert table.columns == ("a", "b", "unnamed_2")


def test_unclosed_quote_is_a_file_error(tmp_path):
    with pytest.raises(InputFileError, match="unreadable"):
        read_table(write(tmp_path, 'a,b\n1,"oops\n2,3\n'))


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(InputFileError, match="unsupported"):
        read_table(write(tmp_path, "a\n1\n", name="t.xlsx"))


def test_normalize_column_name():
    assert normalize_column_name("\ufeff Customer_ID \t") == "customer_id"


# --------------------------------------------------------------------------- Parquet


def test_parquet_types_become_exact_strings(tmp_path):
    table = pa.table(
        {
            "Customer_ID": pa.array([42.0, 7.0, None]),
            "ts_tz": pa.array(
                [0, 1_700_000_000_123_456, None], type=pa.timestamp("us", tz="Europe/Berlin")
            ),
            "ts_ns": pa.array([1_700_000_000_123_456_789, 0, None], type=pa.timestamp("ns")),
            "day": pa.array([dt.date(2024, 2, 29), None, dt.date(1999, 1, 1)], type=pa.date32()),
            "amount": pa.array([0.1, float("nan"), None]),
            "n": pa.array([1, None, 3], type=pa.int8()),
            "flag": pa.array([True, False, None]),
            "seg": pa.array(["pro", None, "pro"]).dictionary_encode(),
            "nested": pa.array([[1], [], None]),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    raw = read_table(
        path, columns=["customer_id", "ts_tz", "ts_ns", "day", "amount", "n", "flag", "seg"]
    )
    frame = data(raw)
    assert raw.format == "parquet" and raw.encoding is None
    assert raw.columns[0] == "customer_id" and "nested" in raw.columns
    assert frame["customer_id"].tolist()[:2] == ["42", "7"]
    ts = pd.to_datetime(frame["ts_tz"], utc=True, format="ISO8601")
    assert ts.iloc[1] == pd.Timestamp(1_700_000_000_123_456, unit="us", tz="UTC")
    assert (
        pd.to_datetime(frame["ts_ns"], format="ISO8601").iloc[0].value == 1_700_000_000_123_456_789
    )
    assert frame["day"].tolist()[0] == "2024-02-29"
    assert frame["amount"].tolist()[:2] == ["0.1", "nan"]
    assert (
        frame.loc[2, ["customer_id", "ts_tz", "ts_ns", "amount", "flag"]].isna().all()
    )  # nulls stay NA
    assert frame["n"].tolist()[0] == "1" and frame["flag"].tolist()[0] == "true"
    assert frame["seg"].tolist()[0] == "pro"
    assert all(str(t) == "str" for t in frame.dtypes)


def test_parquet_nested_wanted_column_is_an_error(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"amount": pa.array([[1.0]])}), path)
    with pytest.raises(InputFileError) as err:
        read_table(path, columns=["amount"])
    assert err.value.column == "amount"


def test_parquet_float_ids_with_fractions_stay_as_written(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"customer_id": pa.array([1.5, 2.0])}), path)
    assert data(read_table(path))["customer_id"].tolist() == ["1.5", "2"]


@pytest.mark.parametrize("content", [b"", b"PAR1 definitely not parquet"])
def test_broken_parquet(tmp_path, content):
    with pytest.raises(InputFileError, match="empty|unreadable"):
        read_table(write(tmp_path, content, name="t.parquet"))


def test_parquet_zero_rows(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": pa.array([], type=pa.int64())}), path)
    raw = read_table(path)
    assert len(raw.frame) == 0 and raw.columns == ("a",)


def test_error_messages_carry_no_cell_values():
    from churnlens.readers import redact

    assert redact("Failed to parse string: 'Ann Example' as double") == (
        "Failed to parse string: '…' as double")
    assert "ann@example.com" not in redact("bad value ann@example.com in row 3")
    # the parser's own words stay readable
    assert redact("'utf-8' codec can't decode byte 0xe9") == "'utf-8' codec can't decode byte 0xe9"
    assert redact("',' expected after '\"'") == "',' expected after '\"'"
