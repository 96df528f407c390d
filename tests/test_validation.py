"""churnlens.validation: every row accepted (typed) or quarantined (raw + one reason)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnlens.errors import InputFileError
from churnlens.readers import ROW_ERROR_COLUMN, ROW_POSITION_COLUMN
from churnlens.validation import (
    TABLE_NAMES,
    contract_columns,
    empty_result,
    empty_table,
    output_dtypes,
    reason_order,
    schema,
    summary_line,
    validate_table,
    validate_tables,
)

BASE = {
    "customers": {
        "customer_id": "C1",
        "signup_date": "2024-01-01",
        "segment": "pro",
        "country": "DE",
        "cancel_date": "",
    },
    "transactions": {
        "customer_id": "C1",
        "timestamp": "2024-03-01T10:00:00Z",
        "amount": "10.5",
        "quantity": "1",
    },
    "events": {
        "customer_id": "C1",
        "timestamp": "2024-03-01T10:00:00Z",
        "event_type": "login",
        "quantity": "",
    },
    "tickets": {
        "customer_id": "C1",
        "opened_at": "2024-03-01T10:00:00Z",
        "closed_at": "",
        "priority": "high",
    },
    "nps": {"customer_id": "C1", "timestamp": "2024-03-01", "score": "9"},
    "interventions": {
        "customer_id": "C1",
        "timestamp": "2024-03-02T09:30:00Z",
        "action": "Onboarding call",
        "channel": "phone",
        "cost": "25",
    },
}


def frame(rows: list[dict], columns=None) -> pd.DataFrame:
    columns = columns or list(rows[0]) if rows else columns
    return pd.DataFrame(rows, columns=columns, dtype="str")


def check_accounting(name, raw, result):
    report = result.report
    assert len(result.accepted) + len(result.quarantined) == len(raw)
    assert report["rows_in"] == len(raw)
    assert report["rows_accepted"] == len(result.accepted)
    assert report["rows_quarantined"] == len(result.quarantined)
    assert sum(report["reasons"].values()) == len(result.quarantined)
    reasons = result.quarantined["reason"]
    assert reasons.notna().all() and (reasons.str.len() > 0).all()
    assert set(reasons) <= set(reason_order(name))
    assert result.accepted.dtypes.to_dict() == output_dtypes(name)


def one(name, **override):
    """The reason of one overridden row (after a valid row, so the file is not wrong throughout)."""
    raw = frame([{**BASE[name], "customer_id": "C0"}, {**BASE[name], **override}])
    result = validate_table(
        name, raw, known_customers=["C0", "C1"] if name != "customers" else None
    )
    check_accounting(name, raw, result)
    q = result.quarantined
    assert q["source_row"].tolist() in ([], [1])
    return q["reason"].iloc[0] if len(q) else None


# --------------------------------------------------------------------------- dtypes and shape


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_accepted_rows_have_the_contract_dtypes(name):
    result = validate_table(name, frame([BASE[name]]), known_customers=["C1"])
    assert result.report["rows_accepted"] == 1, result.report
    assert list(result.accepted.columns) == contract_columns(name)
    assert result.accepted.dtypes.to_dict() == output_dtypes(name)
    assert empty_table(name).dtypes.to_dict() == output_dtypes(name)
    assert list(result.quarantined.columns) == [*contract_columns(name), "reason", "source_row"]


def test_contract_dtypes_are_those_of_the_architecture_doc():
    dtypes = {n: {c: str(d) for c, d in output_dtypes(n).items()} for n in TABLE_NAMES}
    assert dtypes["customers"] == {
        "customer_id": "str",
        "signup_date": "date32[day][pyarrow]",
        "segment": "str",
        "country": "str",
        "cancel_date": "date32[day][pyarrow]",
    }
    assert dtypes["transactions"] == {
        "customer_id": "str",
        "timestamp": "datetime64[us]",
        "amount": "float64",
        "quantity": "Int64",
    }
    assert dtypes["events"]["quantity"] == "float64"
    assert dtypes["tickets"]["closed_at"] == "datetime64[us]"
    assert dtypes["nps"]["score"] == "Int64"


def test_absent_table_result():
    result = empty_result("events")
    assert result.report["present"] is False and result.report["rows_in"] == 0
    assert len(result.accepted) == 0 and len(result.quarantined) == 0
    assert summary_line("events", result.report) == "events: absent, written empty"


def test_schema_is_a_pandera_schema_named_by_reasons():
    import pandera.pandas as pa

    s = schema("transactions")
    assert isinstance(s, pa.DataFrameSchema)
    names = {c.name for col in s.columns.values() for c in col.checks}
    assert {
        "impossible_date",
        "non_finite_amount",
        "amount_out_of_range",
        "negative_quantity",
    } <= names


# --------------------------------------------------------------------------- one reason per case


@pytest.mark.parametrize(
    ("table", "override", "reason"),
    [
        ("customers", {}, None),
        ("customers", {"customer_id": ""}, "missing_customer_id"),
        ("customers", {"customer_id": "  "}, "missing_customer_id"),
        ("customers", {"customer_id": "NULL"}, "missing_customer_id"),
        ("customers", {"signup_date": ""}, "missing_signup_date"),
        ("customers", {"signup_date": "soon"}, "unparseable_signup_date"),
        ("customers", {"signup_date": "2024-02-30"}, "impossible_date"),
        ("customers", {"signup_date": "2023-02-29"}, "impossible_date"),
        ("customers", {"signup_date": "2024-02-29"}, None),
        ("customers", {"signup_date": "1989-12-31"}, "impossible_date"),
        ("customers", {"signup_date": "2101-01-01"}, "impossible_date"),
        ("customers", {"signup_date": "2030-01-01"}, None),  # future signup: fine here
        ("customers", {"cancel_date": "2023-12-31"}, "cancel_before_signup"),
        ("customers", {"cancel_date": "2024-01-01"}, None),
        ("customers", {"cancel_date": "later"}, "unparseable_cancel_date"),
        ("customers", {"country": "NA"}, None),  # Namibia, not a missing value
        ("transactions", {"customer_id": "C2"}, "unknown_customer"),
        ("transactions", {"customer_id": " C1 "}, None),
        ("transactions", {"customer_id": "c1"}, "unknown_customer"),
        ("transactions", {"timestamp": ""}, "missing_timestamp"),
        ("transactions", {"timestamp": "tomorrow"}, "unparseable_timestamp"),
        ("transactions", {"timestamp": "2024-03-01T25:00:00"}, "impossible_date"),
        ("transactions", {"timestamp": "1970-01-01T00:00:00Z"}, "impossible_date"),
        ("transactions", {"timestamp": "2999-01-01T00:00:00Z"}, "impossible_date"),
        ("transactions", {"timestamp": "2024-03-01"}, None),
        ("transactions", {"amount": ""}, "missing_amount"),
        ("transactions", {"amount": "abc"}, "non_numeric_amount"),
        ("transactions", {"amount": "12,50"}, "non_numeric_amount"),
        ("transactions", {"amount": "NaN"}, "non_finite_amount"),
        ("transactions", {"amount": "-inf"}, "non_finite_amount"),
        ("transactions", {"amount": "1e400"}, "non_finite_amount"),
        ("transactions", {"amount": "1e9"}, None),
        ("transactions", {"amount": "-1000000000.01"}, "amount_out_of_range"),
        ("transactions", {"amount": " -5 "}, None),
        ("transactions", {"quantity": ""}, None),
        ("transactions", {"quantity": "-1"}, "negative_quantity"),
        ("transactions", {"quantity": "1.5"}, "non_integer_quantity"),
        ("transactions", {"quantity": "inf"}, "non_integer_quantity"),
        ("transactions", {"quantity": "nan"}, "non_integer_quantity"),
        ("transactions", {"quantity": "2e9"}, "quantity_out_of_range"),
        ("transactions", {"quantity": "two"}, "non_numeric_quantity"),
        ("events", {"event_type": ""}, "missing_event_type"),
        ("events", {"quantity": "-0.5"}, "negative_quantity"),
        ("events", {"quantity": "nan"}, "non_finite_quantity"),
        ("events", {"quantity": "0.5"}, None),
        ("events", {"customer_id": "X"}, "unknown_customer"),
        ("tickets", {"opened_at": ""}, "missing_opened_at"),
        ("tickets", {"closed_at": "2024-02-01"}, "closed_before_opened"),
        ("tickets", {"closed_at": "2024-03-02"}, None),
        ("tickets", {"closed_at": "never"}, "unparseable_closed_at"),
        ("nps", {"score": "0"}, None),
        ("nps", {"score": "10.0"}, None),
        ("nps", {"score": "11"}, "score_out_of_range"),
        ("nps", {"score": "-1"}, "score_out_of_range"),
        ("nps", {"score": "7.5"}, "score_out_of_range"),
        ("nps", {"score": "NaN"}, "score_out_of_range"),
        ("nps", {"score": "great"}, "non_numeric_score"),
        ("nps", {"score": ""}, "missing_score"),
        ("interventions", {"customer_id": ""}, "missing_customer_id"),
        ("interventions", {"customer_id": "X"}, "unknown_customer"),
        ("interventions", {"timestamp": "yesterday"}, "unparseable_timestamp"),
        ("interventions", {"timestamp": "2999-01-01T10:00:00"}, "impossible_date"),
        ("interventions", {"timestamp": "2099-01-01T10:00:00"}, "timestamp_in_future"),
        ("interventions", {"action": ""}, "missing_action"),
        ("interventions", {"channel": ""}, None),
        ("interventions", {"cost": ""}, None),
        ("interventions", {"cost": "0"}, None),
        ("interventions", {"cost": "-5"}, "negative_cost"),
        ("interventions", {"cost": "free"}, "non_numeric_cost"),
        ("interventions", {"cost": "inf"}, "non_finite_cost"),
        ("interventions", {"cost": "2e9"}, "cost_out_of_range"),
        ("interventions", {"action": "call jo@example.com"}, "email_in_action"),
        ("interventions", {"channel": "jo@example.com"}, "email_in_channel"),
    ],
)
def test_reasons(table, override, reason):
    assert one(table, **override) == reason


def test_first_failing_check_wins():
    rows = [
        {**BASE["transactions"], "customer_id": "", "timestamp": "x", "amount": "y"},
        {**BASE["transactions"], "timestamp": "x", "amount": "y"},
        {**BASE["transactions"], "amount": "nan", "quantity": "-3"},
        {**BASE["transactions"], "customer_id": "C9", "quantity": "-3"},  # row-level before unknown
        {**BASE["transactions"], "customer_id": "C9"},
    ]
    result = validate_table("transactions", frame(rows), known_customers=["C1"])
    assert result.quarantined["reason"].tolist() == [
        "missing_customer_id",
        "unparseable_timestamp",
        "non_finite_amount",
        "negative_quantity",
        "unknown_customer",
    ]


def test_quarantine_keeps_original_strings_and_positions():
    rows = [
        BASE["transactions"],
        {**BASE["transactions"], "amount": " 1e12 ", "customer_id": " C1"},
    ]
    result = validate_table("transactions", frame(rows), known_customers=["C1"])
    q = result.quarantined
    assert q["amount"].tolist() == [" 1e12 "] and q["customer_id"].tolist() == [" C1"]
    assert q["source_row"].tolist() == [1]


# --------------------------------------------------------------------------- values


def test_timestamps_become_naive_utc():
    stamps = [
        "2024-03-01T10:00:00Z",
        "2024-03-01T12:00:00+02:00",
        "2024-03-01T05:00:00-05:00",
        "2024-03-01 10:00:00",
        "2024-03-01T10:00:00.000001+00:00",
    ]
    rows = [{**BASE["transactions"], "timestamp": s} for s in stamps]
    accepted = validate_table("transactions", frame(rows), known_customers=["C1"]).accepted
    expected = [pd.Timestamp("2024-03-01 10:00:00")] * 4 + [
        pd.Timestamp("2024-03-01 10:00:00.000001")
    ]
    assert accepted["timestamp"].tolist() == expected
    assert accepted["timestamp"].dt.tz is None


def test_dates_accept_timestamps_and_take_the_utc_day():
    rows = [
        {**BASE["customers"], "customer_id": f"C{i}", "signup_date": d}
        for i, d in enumerate(["2024-01-01", "2024-01-01T23:30:00-02:00", "2024-01-01T10:00:00Z"])
    ]
    accepted = validate_table("customers", frame(rows)).accepted
    assert [d.isoformat() for d in accepted["signup_date"]] == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-01",
    ]


def test_leading_zeros_and_optional_defaults():
    rows = [
        {**BASE["events"], "customer_id": "00042"},
        {**BASE["events"], "customer_id": "00042", "quantity": "3"},
    ]
    accepted = validate_table("events", frame(rows), known_customers=["00042"]).accepted
    assert accepted["customer_id"].tolist() == ["00042", "00042"]
    assert accepted["quantity"].tolist() == [1.0, 3.0]


def test_optional_columns_may_be_absent():
    raw = frame([{"customer_id": "C1", "timestamp": "2024-03-01", "amount": "1"}])
    result = validate_table("transactions", raw, known_customers=["C1"])
    assert result.report["missing_optional_columns"] == ["quantity"]
    assert (
        result.accepted["quantity"].isna().all()
        and str(result.accepted["quantity"].dtype) == "Int64"
    )


def test_column_names_are_normalised_and_unknown_ones_reported():
    raw = pd.DataFrame(
        {" Customer_ID": ["C1"], "TIMESTAMP ": ["2024-03-01"], "Amount": ["1"], "Store": ["x"]},
        dtype="str",
    )
    result = validate_table("transactions", raw, known_customers=["C1"])
    assert result.report["rows_accepted"] == 1
    assert result.report["unknown_columns"] == ["store"]


def test_personal_data_is_dropped():
    raw = frame(
        [
            {**BASE["customers"], "email": "a@example.com", "Name": "Ann"},
            {**BASE["customers"], "customer_id": "", "email": "b@example.com", "Name": "Bob"},
        ]
    )
    result = validate_table("customers", raw)
    assert result.report["pii_columns_dropped"] == ["email", "name"]
    for out in (result.accepted, result.quarantined):
        assert not {"email", "name"} & set(out.columns)
        assert not out.astype(str).apply(lambda c: c.str.contains("example.com")).any().any()
    assert "email" not in result.report["unknown_columns"]


def test_reader_marks_become_reasons():
    raw = frame([BASE["transactions"], BASE["transactions"]])
    raw[ROW_ERROR_COLUMN] = pd.Series([None, "wrong_field_count"], dtype="str")
    raw[ROW_POSITION_COLUMN] = pd.array([0, 1], dtype="Int64")
    result = validate_table("transactions", raw, known_customers=["C1"])
    assert result.quarantined["reason"].tolist() == ["wrong_field_count"]
    assert ROW_ERROR_COLUMN not in result.report["unknown_columns"]


# --------------------------------------------------------------------------- duplicates


def test_duplicate_customers():
    c = BASE["customers"]
    rows = [
        {**c, "customer_id": "A"},
        {**c, "customer_id": "A", "signup_date": "2024-01-01T00:00:00Z"},  # identical
        {**c, "customer_id": "B"},
        {**c, "customer_id": "B", "segment": "basic"},  # conflicting
        {**c, "customer_id": "D"},
        {**c, "customer_id": "D", "signup_date": "bad"},  # one invalid copy
        {**c, "customer_id": "E"},
    ]
    result = validate_table("customers", frame(rows))
    assert result.accepted["customer_id"].tolist() == ["A", "D", "E"]
    assert result.report["reasons"] == {
        "duplicate_row": 1,
        "duplicate_customer_id_conflict": 2,
        "unparseable_signup_date": 1,
    }


def test_conflicting_customer_makes_its_rows_unknown():
    c, t = BASE["customers"], BASE["transactions"]
    raw = {
        "customers": frame(
            [c, {**c, "customer_id": "C2"}, {**c, "customer_id": "C2", "country": "FR"}]
        ),
        "transactions": frame([t, {**t, "customer_id": "C2"}]),
        "nps": frame([{**BASE["nps"], "customer_id": "C2"}]),
    }
    results = validate_tables(raw)
    assert results["transactions"].report["reasons"] == {"unknown_customer": 1}
    assert results["nps"].report["reasons"] == {"unknown_customer": 1}
    assert results["events"].report["present"] is False


# --------------------------------------------------------------------------- file-level errors


def test_missing_required_column():
    with pytest.raises(InputFileError) as err:
        validate_table(
            "transactions",
            frame([{"customer_id": "C1", "timestamp": "2024-03-01"}]),
            source="raw/transactions.csv",
        )
    assert err.value.column == "amount" and err.value.file == "raw/transactions.csv"
    assert "required column missing" in str(err.value)


@pytest.mark.parametrize(
    ("table", "column", "values"),
    [
        ("transactions", "amount", ["ten", "eleven"]),
        ("transactions", "timestamp", ["monday", ""]),
        ("customers", "signup_date", ["pro", "basic"]),
        ("nps", "score", ["good"]),
    ],
)
def test_wrong_type_throughout(table, column, values):
    rows = [{**BASE[table], "customer_id": f"C{i}", column: v} for i, v in enumerate(values)]
    with pytest.raises(InputFileError) as err:
        validate_table(table, frame(rows))
    assert err.value.column == column and "none of the" in str(err.value)


def test_decimal_comma_hint():
    rows = [{**BASE["transactions"], "amount": v} for v in ["1,5", "2,25"]]
    with pytest.raises(InputFileError, match="decimal commas"):
        validate_table("transactions", frame(rows))


def test_one_parseable_value_is_enough_and_empty_is_not_wrong_type():
    rows = [{**BASE["transactions"], "amount": v} for v in ["ten", "1"]]
    assert validate_table("transactions", frame(rows)).report["rows_accepted"] == 1
    rows = [{**BASE["transactions"], "amount": ""}]
    assert validate_table("transactions", frame(rows)).report["reasons"] == {"missing_amount": 1}


def test_customers_must_have_a_valid_row():
    empty = frame([], columns=list(BASE["customers"]))
    trans = frame([BASE["transactions"]])
    with pytest.raises(InputFileError, match="no customer rows"):
        validate_tables({"customers": empty, "transactions": trans})
    bad = frame([{**BASE["customers"], "customer_id": ""}])
    with pytest.raises(InputFileError, match="no valid customer row.*missing_customer_id=1"):
        validate_tables({"customers": bad, "transactions": trans})
    with pytest.raises(InputFileError, match="required table 'transactions'"):
        validate_tables({"customers": frame([BASE["customers"]])})


def test_header_only_transactions_are_a_valid_empty_table():
    results = validate_tables(
        {
            "customers": frame([BASE["customers"]]),
            "transactions": frame([], columns=list(BASE["transactions"])),
        }
    )
    assert results["transactions"].report["rows_in"] == 0
    assert results["transactions"].accepted.dtypes.to_dict() == output_dtypes("transactions")


# --------------------------------------------------------------------------- properties

GARBAGE = [
    "",
    " ",
    "NaN",
    "inf",
    "-1",
    "1e400",
    "null",
    "2024-02-30",
    "x",
    "1,5",
    "10",
    "0",
    "7.5",
    "\x00",
    "2024-03-01T10:00:00+14:00",
    "1899-01-01",
    "99999999999999999999",
    "💥",
    "00042",
    "C1",
]
VALID = {
    "customer_id": ["C1", "C2", "00042", " C1 "],
    "signup_date": ["2024-01-01", "2024-05-05T10:00:00Z"],
    "segment": ["pro", "trial"],
    "country": ["DE", "NA"],
    "cancel_date": ["", "2024-06-01", "2023-01-01"],
    "timestamp": ["2024-03-01T10:00:00Z", "2024-03-01 10:00", "2024-03-01T10:00:00-07:00"],
    "amount": ["10.5", "-3", "0"],
    "quantity": ["1", "", "2"],
    "event_type": ["login", "feature_x"],
    "opened_at": ["2024-03-01"],
    "closed_at": ["", "2024-03-02"],
    "priority": ["high"],
    "score": ["0", "9"],
}


def cell(column):
    return st.one_of(st.sampled_from(VALID[column]), st.sampled_from(GARBAGE), st.text(max_size=6))


def table_rows(name, max_size=6):
    return st.lists(
        st.fixed_dictionaries({c: cell(c) for c in contract_columns(name)}), max_size=max_size
    )


def other_table():
    """One of the optional tables with random rows (one per example keeps the test fast)."""
    names = st.sampled_from(["events", "nps", "tickets"])
    return names.flatmap(lambda name: st.tuples(st.just(name), table_rows(name)))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    customers=table_rows("customers"), transactions=table_rows("transactions"), other=other_table()
)
def test_random_rows_are_accounted_for(customers, transactions, other):
    raw = {}
    for name, rows in [("customers", customers), ("transactions", transactions), other]:
        good = {**BASE[name], "customer_id": "GOOD-CUSTOMER"}  # keeps file-level errors away
        raw[name] = frame([*rows, good], columns=contract_columns(name))
    results = validate_tables(raw)
    for name, result in results.items():
        if name in raw:
            check_accounting(name, raw[name], result)
        else:
            assert result.report["present"] is False and len(result.accepted) == 0
    known = set(results["customers"].accepted["customer_id"])
    assert len(known) == results["customers"].report["rows_accepted"]  # ids unique
    assert "GOOD-CUSTOMER" in known
    for name in ("transactions", "events", "nps", "tickets"):
        assert set(results[name].accepted["customer_id"]) <= known
    amounts = results["transactions"].accepted["amount"]
    assert np.isfinite(amounts).all() and (amounts.abs() <= 1e9).all()
    scores = results["nps"].accepted["score"]
    assert scores.between(0, 10).all()


# --------------------------------------------------------------------------- scale


@pytest.mark.slow
def test_a_million_rows_in_seconds():
    n = 1_000_000
    rng = np.random.default_rng(0)
    ids = pd.Series(rng.integers(0, 50_000, n)).map("{:06d}".format)
    stamps = pd.Series(
        pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s")
    )
    raw = pd.DataFrame(
        {
            "customer_id": ids,
            "timestamp": stamps.dt.strftime("%Y-%m-%dT%H:%M:%S")
            + np.where(rng.random(n) < 0.5, "Z", "+02:00"),
            "amount": rng.normal(50, 20, n).round(2).astype(str),
            "quantity": rng.integers(-1, 5, n).astype(str),
        },
        dtype="str",
    )
    known = pd.Series([f"{i:06d}" for i in range(40_000)], dtype="str")
    start = time.perf_counter()
    result = validate_table("transactions", raw, known_customers=known)
    elapsed = time.perf_counter() - start
    check_accounting("transactions", raw, result)
    assert elapsed < 30, elapsed


# --------------------------------------------------------------------------- timestamps after today


def test_timestamps_after_today_are_quarantined():
    import datetime as dt

    raw = pd.DataFrame({
        "customer_id": ["C1"] * 5,
        "timestamp": ["2026-11-25T23:59:59Z", "2026-11-26T00:00:00Z", "2099-01-01",
                      "2026-11-26T00:30:00+01:00", "2101-01-01"],
        "amount": ["1"] * 5,
    })
    result = validate_table("transactions", raw, known_customers=["C1"],
                            today=dt.date(2026, 11, 25))
    # the last day of today (UTC, offsets converted) is fine; a year past 2100 stays impossible
    assert result.report["reasons"] == {"timestamp_in_future": 2, "impossible_date": 1}
    assert result.quarantined["source_row"].tolist() == [1, 2, 4]
    assert result.report["rows_accepted"] == 2


def test_today_is_injectable_by_environment(monkeypatch):
    import datetime as dt

    from churnlens.errors import ChurnlensError
    from churnlens.validation import today

    raw = pd.DataFrame({"customer_id": ["C1", "C1"], "opened_at": ["2025-01-01", "2025-03-01"],
                        "closed_at": ["2025-02-01", ""]})
    monkeypatch.setenv("CHURNLENS_TODAY", "2025-01-15")
    assert today() == dt.date(2025, 1, 15)
    result = validate_table("tickets", raw, known_customers=["C1"])
    assert result.report["reasons"] == {"timestamp_in_future": 2}  # closed_at, opened_at
    monkeypatch.setenv("CHURNLENS_TODAY", "next week")
    with pytest.raises(ChurnlensError, match="CHURNLENS_TODAY"):
        today()
    monkeypatch.delenv("CHURNLENS_TODAY")
    assert today() == dt.datetime.now(dt.UTC).date()
    # dates are not timestamps: a scheduled cancellation or a future signup stays
    customers = pd.DataFrame({"customer_id": ["C1"], "signup_date": ["2099-01-01"],
                              "cancel_date": ["2099-02-01"]})
    assert validate_table("customers", customers).report["rows_accepted"] == 1


def test_an_email_shifted_into_segment_or_country_is_quarantined_not_a_feature():
    """Issue 12: a row with missing fields put the e-mail into `segment` and the name into
    `country`; the e-mail then reached features, scores, kpis.json, the model and MLflow."""
    raw = pd.DataFrame({"customer_id": ["a", "b", "c"],
                        "signup_date": ["2025-01-01", "2025-01-02", "2025-01-03"],
                        "segment": ["pro", "zoe@example.com", "basic"],
                        "country": ["DE", "FR", "bob.smith@mail.example.org"]})
    result = validate_table("customers", raw)
    assert result.accepted["customer_id"].tolist() == ["a"]
    reasons = dict(zip(result.quarantined["customer_id"], result.quarantined["reason"],
                       strict=True))
    assert reasons == {"b": "email_in_segment", "c": "email_in_country"}
    assert "@" not in result.accepted.to_string()


# ------------------------------------------------- issue 12 part 3: personal data in plain columns


def test_quarantined_rows_keep_their_place_but_not_the_email():
    raw = pd.DataFrame({"customer_id": ["a", "b"], "signup_date": ["2025-01-01", "2025-01-02"],
                        "segment": ["pro", "zoe@example.com"], "country": ["DE", "FR"]})
    q = validate_table("customers", raw).quarantined
    assert q[["customer_id", "segment", "country", "reason", "source_row"]].values.tolist() == [
        ["b", "<masked>", "FR", "email_in_segment", 1]]


@pytest.mark.parametrize(("table", "column"), [("events", "event_type"), ("tickets", "priority")])
def test_an_email_in_any_text_column_is_quarantined(table, column):
    assert one(table, **{column: "zoe@example.com"}) == f"email_in_{column}"


def test_misaligned_rows_of_a_file_with_personal_columns_are_masked_but_for_the_id():
    raw = pd.DataFrame({"customer_id": ["a", "b"], "signup_date": ["2025-01-01", "2025-01-02"],
                        "segment": ["pro", "Zoe"], "country": ["DE", "Zoe Example"],
                        "name": ["Ann", None]})
    raw[ROW_ERROR_COLUMN] = pd.Series([None, "wrong_field_count"], dtype="str")
    q = validate_table("customers", raw).quarantined
    assert q[["customer_id", "signup_date", "segment", "country"]].values.tolist() == [
        ["b", "<masked>", "<masked>", "<masked>"]]
    # without personal columns in the file a shifted value is a contract value: kept
    q = validate_table("customers", raw.drop(columns="name")).quarantined
    assert q["country"].tolist() == ["Zoe Example"]


def rare_customers(n: int, rare: dict[str, str]) -> pd.DataFrame:
    raw = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)],
                        "signup_date": ["2025-01-01"] * n,
                        "segment": ["pro" if i % 2 else "basic" for i in range(n)],
                        "country": ["DE"] * n})
    for column, value in rare.items():
        raw.loc[n - 1, column] = value
    return raw


def test_a_name_in_a_category_column_never_becomes_a_category():
    """Issue 12 part 3: a person's name (or any value held by one customer) in `segment` or
    `country` would become a model category, a KPI group and a report line."""
    raw = rare_customers(200, {"segment": "Zoe Example", "country": "Zoe Example"})
    raw.loc[:3, "country"] = "LI"  # 4 customers: rare too
    result = validate_table("customers", raw)
    assert result.report["rows_accepted"] == 200  # nobody is dropped for it
    assert "Zoe Example" not in result.accepted.to_string()
    assert set(result.accepted["segment"]) == {"pro", "basic", "other"}
    assert set(result.accepted["country"]) == {"DE", "other"}
    assert result.report["rare_values_generalised"] == {"segment": 1, "country": 5}


@pytest.mark.parametrize(("n", "generalised"), [(10, {}), (39, {}), (40, {"segment": 1}),
                                                (100, {"segment": 1})])
def test_in_a_handful_of_customers_nothing_is_rare(n, generalised):
    raw = rare_customers(n, {"segment": "trial"})
    assert validate_table("customers", raw).report["rare_values_generalised"] == generalised


def test_unknown_columns_that_look_like_emails_are_not_listed():
    raw = frame([{**BASE["customers"], "zoe@example.com": "x", "notes": "y"}])
    report = validate_table("customers", raw).report
    assert report["unknown_columns"] == ["<column 6>", "notes"]


def test_missing_column_error_lists_no_values_of_a_headerless_file():
    raw = frame([{"c1": "C2", "2024-01-01": "2024-02-01", "ann@example.com": "b@example.com",
                  "ann example": "Bob Example"}])
    with pytest.raises(InputFileError) as err:
        validate_table("customers", raw, source="customers.csv")
    message = str(err.value)
    assert "found 4 columns whose names look like data values" in message
    assert "ann" not in message and "c1" not in message
    with pytest.raises(InputFileError) as err:  # a real header: its names help
        validate_table("customers", frame([{"custmer_id": "C1", "signup_date": "2024-01-01"}]))
    assert "found: custmer_id, signup_date" in str(err.value)


# ------------------------------------------------- issue 12 part 7: activity before signup


def test_a_customer_active_before_signup_signed_up_on_the_first_activity_day():
    """Left alone, a signup after as_of hid a customer with real activity from scoring."""
    raw = {
        "customers": frame([
            {**BASE["customers"], "customer_id": "a", "signup_date": "2025-06-01"},
            {**BASE["customers"], "customer_id": "b", "signup_date": "2025-01-01"},
        ]),
        "transactions": frame([{**BASE["transactions"], "customer_id": "a",
                                "timestamp": "2025-03-02T10:00:00Z"}]),
        "events": frame([{**BASE["events"], "customer_id": "a",
                          "timestamp": "2025-02-27T23:00:00-03:00"},  # 28 Feb UTC
                         {**BASE["events"], "customer_id": "b",
                          "timestamp": "2025-02-01T00:00:00Z"}]),
    }
    results = validate_tables(raw)
    customers = results["customers"]
    assert [str(d) for d in customers.accepted["signup_date"]] == ["2025-02-28", "2025-01-01"]
    assert customers.report["signup_moved_to_first_activity"] == 1
    assert customers.accepted.dtypes.to_dict() == output_dtypes("customers")


def test_validation_does_not_import_pyspark_or_hypothesis(tmp_path):
    """pandera probes for its pyspark backend on import, and imports hypothesis when it
    registers its pandas backends; the pandas path must not pay for them (a fresh process:
    validate a folder, both stay out; importing them later still works)."""
    import subprocess
    import sys

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "customers.csv").write_text("customer_id,signup_date\nC1,2024-01-01\n")
    (raw / "transactions.csv").write_text("customer_id,timestamp,amount\nC1,2024-02-01,3\n")
    code = ("import sys\n"
            "from churnlens.validation_run import validate_folder\n"
            f"validate_folder({str(raw)!r}, {str(tmp_path / 'out')!r})\n"
            "assert 'pandera' in sys.modules\n"
            "print(sorted(m for m in sys.modules\n"
            "             if m.split('.')[0] in ('pyspark', 'hypothesis')))\n"
            "import pyspark, hypothesis\n"
            "print(pyspark.__name__, hypothesis.__name__)\n")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["[]", "pyspark hypothesis"]
    assert (tmp_path / "out" / "transactions.parquet").exists()
