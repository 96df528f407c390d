"""At-risk and win-back lists: ranking, limits, columns, spreadsheet safety; contact data only in
at_risk.csv and win_back.csv."""

import csv
import io
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from churnlens import export
from churnlens.export import (
    AT_RISK_COLUMNS,
    build_at_risk,
    build_win_back,
    neutralise_cell,
    to_csv_text,
)
from churnlens.stages import export as export_stage


def _scores():
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
            "churn_probability": [0.9, 0.6, 0.6, 0.8, 0.1, 0.55],
            "risk_tier": ["high", "medium", "medium", "high", "low", "medium"],
            "expected_revenue_at_risk": [100.0, 300.0, 300.0, 300.0, 900.0, 50.0],
            "reason_1": ["Few logins", "A", None, "B", "C", "D"],
            "reason_2": ["No purchase", None, None, "B2", None, None],
            "reason_3": [None, None, None, "B3", None, None],
            "segment": ["pro", "basic", "basic", None, "pro", "trial"],
        }
    )


def _table(scores=None, **kwargs):
    scores = _scores() if scores is None else scores
    actions = pd.Series("Nurture", index=scores.index)
    kwargs = {"top_n": 10, "tiers": ["high", "medium"]} | kwargs
    return build_at_risk(scores, actions, **kwargs)


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_ranking_ties_and_tiers():
    table = _table()
    # c5 (low tier) is left out; 300-ties: higher probability first, then customer_id
    assert table["customer_id"].tolist() == ["c4", "c2", "c3", "c1", "c6"]
    assert table["rank"].tolist() == [1, 2, 3, 4, 5]
    assert list(table.columns) == list(AT_RISK_COLUMNS)
    assert table.loc[0, "reasons"] == "B; B2; B3"
    assert table.loc[2, "reasons"] == ""
    assert table.loc[0, "segment"] == ""


def test_top_n_and_tier_limits():
    assert _table(top_n=2)["customer_id"].tolist() == ["c4", "c2"]
    assert _table(tiers=["high"])["customer_id"].tolist() == ["c4", "c1"]
    assert _table(top_n=0).empty


def test_at_risk_holds_only_active_customers():
    scores = _scores()
    scores["active"] = [True, True, True, False, True, True]  # c4 lapsed: never on the list
    assert _table(scores)["customer_id"].tolist() == ["c2", "c3", "c1", "c6"]


def _lapsed():
    """Six lapsed customers (and one active) with their value if they come back."""
    return pd.DataFrame({
        "customer_id": ["w1", "w2", "w3", "w4", "w5", "w6", "act"],
        "churn_probability": [0.9, 0.5, 0.8, 0.6, 1.0, 0.7, 0.1],
        "risk_tier": ["high", "high", "high", "high", "high", "high", "low"],
        "expected_revenue_at_risk": [0.0] * 6 + [20.0],
        "active": [False] * 6 + [True],
        "win_back_value": [1000.0, 150.0, 250.0, 125.0, 900.0, 0.0, 5000.0],
        "days_since_last_activity": [200, 95, 120, 400, 150, 700, 3],
        "reason_1": [None, "no purchase for 95 days", None, None, None, None, None],
        "segment": ["pro"] * 7,
    })


def test_win_back_ranks_lapsed_by_chance_of_return_times_value():
    scores = _lapsed()
    actions = pd.Series("Reactivation campaign", index=scores.index)
    table = build_win_back(scores, actions, top_n=10)
    assert list(table.columns) == list(AT_RISK_COLUMNS)
    # (1 - p) x value: w1 100, w2 75, w3 50, w4 50 (tie: the higher value first); w5 (no chance
    # of return), w6 (no value) and the active customer are left out
    assert table["customer_id"].tolist() == ["w1", "w2", "w3", "w4"]
    assert table["expected_revenue_at_risk"].tolist() == pytest.approx([100.0, 75.0, 50.0, 50.0])
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert table["reasons"].tolist() == ["no activity for 200 days", "no purchase for 95 days",
                                         "no activity for 120 days", "no activity for 400 days"]
    assert build_win_back(scores, actions, top_n=2)["customer_id"].tolist() == ["w1", "w2"]
    assert build_win_back(scores.drop(columns="win_back_value"), actions, top_n=10).empty


def test_csv_text_columns_and_decimals():
    scores = _scores()
    scores.loc[0, "churn_probability"] = 0.91236
    scores.loc[0, "expected_revenue_at_risk"] = 1234.5
    rows = _rows(to_csv_text(_table(scores)))
    assert list(rows[0]) == list(AT_RISK_COLUMNS)
    assert rows[0]["customer_id"] == "c1"
    assert rows[0]["churn_probability"] == "0.912"
    assert rows[0]["expected_revenue_at_risk"] == "1234.50"
    assert rows[1]["churn_probability"] == "0.800"
    assert rows[1]["expected_revenue_at_risk"] == "300.00"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "' cmd"),
        ("line one\nline two\r\nthree", "line one line two three"),
        ("fine = ok", "fine = ok"),
        (None, ""),
    ],
)
def test_neutralise_cell(raw, expected):
    assert neutralise_cell(raw) == expected


def test_injection_and_newlines_in_the_written_csv():
    scores = _scores()
    scores["segment"] = ['=HYPERLINK("x")', "+1", "-2", "@SUM", "x", "multi\nline"]
    scores["reason_1"] = ["-2 logins", "ok", "ok", "ok", "ok", "a\nb"]
    text = to_csv_text(_table(scores))
    rows = {r["customer_id"]: r for r in _rows(text)}
    assert rows["c1"]["segment"] == '\'=HYPERLINK("x")'
    assert rows["c1"]["reasons"].startswith("'-2 logins")
    assert rows["c2"]["segment"] == "'+1"
    assert rows["c3"]["segment"] == "'-2"
    assert rows["c4"]["segment"] == "'@SUM"
    assert rows["c6"]["segment"] == "multi line" and rows["c6"]["reasons"] == "a b"
    assert len(text.strip().split("\n")) == 6  # header + 5 rows: no newline inside a cell
    for row in rows.values():  # numbers stay numbers
        assert not row["churn_probability"].startswith("'")


def test_contacts_from_raw():
    raw = pd.DataFrame(
        {"customer_id": ["c1", "c2", "c3", "c1"], "email": ["a@x.io", "", "c@x.io", "dup@x.io"],
         "name": ["Ann", "Bob", "", "Dup"]}
    )
    contacts = export.contacts_from_raw(raw)
    assert dict(zip(contacts["customer_id"], contacts["contact"], strict=True)) == {
        "c1": "Ann <a@x.io>", "c2": "", "c3": "c@x.io"}
    no_email = export.contacts_from_raw(raw.drop(columns="email"))
    assert set(no_email["contact"]) == {""}


def _customers(ids, signup="2025-01-01"):
    ids = [str(i) for i in ids]
    return pd.DataFrame({"customer_id": ids,
                         "signup_date": pd.to_datetime([signup] * len(ids))})


SOURCE = export.data_source(_customers(f"c{i:04d}" for i in range(500)), "data/sample")
OTHER = export.data_source(_customers(f"x{i:04d}" for i in range(500)), "data/sample")


def _runs(history, source_id=None):
    source_id = source_id or history["current"]["source"]
    return next(s["runs"] for s in history["sources"] if s["id"] == source_id)


def test_history_keeps_one_entry_per_date_and_finds_previous():
    h = export.update_history(None, "2026-08-24", ["a", "b"], source=SOURCE)
    h = export.update_history(h, "2026-08-31", ["b", "c"], source=SOURCE)
    h = export.update_history(h, "2026-08-31", ["b", "d"], source=SOURCE)  # rerun of the week
    assert [r["as_of"] for r in _runs(h)] == ["2026-08-24", "2026-08-31"]
    assert export.previous_run(h, "2026-08-31")["customer_ids"] == ["a", "b"]
    assert export.previous_run(h, None)["customer_ids"] == ["a", "b"]  # as_of from the history
    h = export.update_history(h, "2026-09-07", [], source=SOURCE, keep=2)
    assert len(_runs(h)) == 2 and len(h["sources"]) == 1


def test_history_is_kept_per_data_source():
    """Issue 11.6: after a run on other data, the sample's report compared its list with the
    other data's list ("200 new, 200 no longer on it")."""
    h = export.update_history(None, "2026-08-24", ["c0001", "c0002"], source=SOURCE)
    h = export.update_history(h, "2026-08-31", ["x0001", "x0002"], source=OTHER)
    assert len(h["sources"]) == 2
    assert export.previous_run(h, "2026-08-31") is None  # other data: a first list, no movers
    h = export.update_history(h, "2026-09-07", ["c0003"], source=SOURCE)
    assert export.previous_run(h, "2026-09-07")["customer_ids"] == ["c0001", "c0002"]
    h = export.update_history(h, "2026-09-07", ["x0003"], source=OTHER)
    assert export.previous_run(h, "2026-09-07")["customer_ids"] == ["x0001", "x0002"]


def test_data_source_follows_the_customers_not_the_folder():
    """A moved folder and a weekly refresh with new signups are the same source; other data,
    even with the same ids but other signup dates, is not."""
    ids = [f"c{i:04d}" for i in range(500)]
    moved = export.data_source(_customers(ids), "/elsewhere/logs")
    grown = export.data_source(pd.concat([_customers(ids), _customers(
        [f"c{i:04d}" for i in range(500, 560)], "2026-09-01")]), "data/sample")
    numbered_alike = export.data_source(_customers(ids, "2019-03-01"), "data/sample")
    assert export.sketch_similarity(SOURCE["sketch"], moved["sketch"]) == 1.0
    assert export.sketch_similarity(SOURCE["sketch"], grown["sketch"]) >= export.SAME_SOURCE
    assert export.sketch_similarity(SOURCE["sketch"], numbered_alike["sketch"]) == 0.0
    assert export.sketch_similarity(SOURCE["sketch"], OTHER["sketch"]) == 0.0
    h = export.update_history(None, "2026-08-24", ["c0001"], source=SOURCE)
    previous = "2026-08-24"
    for source, as_of in ((moved, "2026-08-31"), (grown, "2026-09-07")):
        h = export.update_history(h, as_of, ["c0002"], source=source)
        assert len(h["sources"]) == 1 and export.previous_run(h, as_of)["as_of"] == previous
        previous = as_of
    assert h["sources"][0]["raw_dir"] == "data/sample" and h["sources"][0]["customers"] == 560


def test_old_history_without_sources_is_migrated():
    old = {"runs": [{"as_of": "2026-08-17", "customer_ids": ["x0001", "x0002"]},  # other data
                    {"as_of": "2026-08-24", "customer_ids": ["c0001", "c0002", "c0003"]}]}
    assert export.previous_run(old, "2026-08-31")["as_of"] == "2026-08-24"  # still readable
    known = [f"c{i:04d}" for i in range(500)]
    h = export.update_history(old, "2026-08-31", ["c0004"], source=SOURCE, known_ids=known)
    assert [r["as_of"] for r in _runs(h)] == ["2026-08-24", "2026-08-31"]  # adopted
    assert export.previous_run(h, "2026-08-31")["customer_ids"] == ["c0001", "c0002", "c0003"]
    assert _runs(h, export.UNKNOWN_SOURCE) == old["runs"][:1]  # kept, never compared with
    assert export.migrate_history(h) == h  # the new shape is stable
    h = export.update_history(h, "2026-09-07", ["c0005"], source=SOURCE, known_ids=known)
    assert [s["id"] for s in h["sources"]].count(h["current"]["source"]) == 1


# --- the stage, end to end on a tiny project folder -------------------------------------------

EMAILS = ("ann@example.com", "bob@example.org", "=evil@example.net", "sev@example.com",
          "ate@example.com")
OPEN = "Resolve the open support ticket first; no promotion"


def _project(tmp_path: Path, raw_format="csv", with_email=True, actions=None):
    (tmp_path / "raw").mkdir()
    (tmp_path / "data" / "interim").mkdir(parents=True)
    (tmp_path / "reports").mkdir()
    params = {
        "data": {"raw_dir": "raw"},
        "snapshot": {"as_of": "2026-08-31"},
        "export": {"top_n": 3, "tiers": ["high", "medium"], "high_value_quantile": 0.9,
                   "inactive_days": 30},
    }
    if actions is not None:
        params["export"]["actions"] = actions
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    scores = _scores()
    scores["open_tickets"] = [0, 0, 0, 0, 0, 0]
    scores["is_trial"] = [False, False, False, False, False, True]
    scores["events_first_14d"] = [9, 9, 9, 9, 9, 0]
    scores["days_since_last_activity"] = [45, 1, 1, 1, 1, 1]
    scores["expected_revenue"] = [110.0, 500, 500, 5000, 1000, 90]
    # lapsed (no activity for 90+ days, no `active` column: the stage derives it): high risk,
    # nothing at risk, but w7 and w8 (open ticket) are worth winning back; w9 has no value
    lapsed = pd.DataFrame({
        "customer_id": ["w7", "w8", "w9"], "churn_probability": [0.7, 0.4, 0.95],
        "risk_tier": ["high", "medium", "high"], "expected_revenue_at_risk": [0.0, 0.0, 0.0],
        "segment": ["pro", "basic", "pro"], "open_tickets": [0, 0, 0],
        "is_trial": [False, False, False], "events_first_14d": [9, 9, 9],
        "days_since_last_activity": [200, 120, 300], "expected_revenue": [0.0, 0.0, 0.0],
        "win_back_value": [500.0, 300.0, 0.0],
    })
    scores = pd.concat([scores, lapsed], ignore_index=True)
    scores.to_parquet(tmp_path / "reports" / "scores.parquet", index=False)
    pd.DataFrame(
        {"customer_id": ["c4", "c1", "w8"],
         "opened_at": pd.to_datetime(["2026-08-01", "2026-07-01", "2026-05-01"]),
         "closed_at": pd.to_datetime([None, "2026-07-03", None]),
         "priority": ["high", "low", "low"]}
    ).to_parquet(tmp_path / "data" / "interim" / "tickets.parquet", index=False)
    raw = pd.DataFrame(
        {"customer_id": ["c1", "c2", "c4", "c6", "w7", "w8"], "signup_date": ["2025-01-01"] * 6,
         "email": [EMAILS[0], EMAILS[1], EMAILS[2], "", EMAILS[3], EMAILS[4]],
         "name": ["Ann", "", "Eve", "Zed", "Sev", ""]}
    )
    if not with_email:
        raw = raw.drop(columns=["email", "name"])
    if raw_format == "csv":
        raw.to_csv(tmp_path / "raw" / "customers.csv", index=False)
    else:
        raw.to_parquet(tmp_path / "raw" / "customers.parquet", index=False)
    return tmp_path


@pytest.mark.parametrize("raw_format", ["csv", "parquet"])
def test_stage_writes_bom_csv_with_actions_and_contacts(tmp_path, raw_format):
    _project(tmp_path, raw_format)
    export_stage.run(root=tmp_path)
    data = (tmp_path / "reports" / "at_risk.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = _rows(data.decode("utf-8-sig"))
    assert [r["customer_id"] for r in rows] == ["c4", "c2", "c3"]
    by_id = {r["customer_id"]: r for r in rows}
    # c4 has an open ticket in the ticket table and is the most valuable: still no promotion
    assert by_id["c4"]["suggested_action"] == "Resolve the open support ticket first; no promotion"
    assert by_id["c4"]["contact"] == "Eve <=evil@example.net>"  # starts with E: untouched
    assert by_id["c2"]["contact"] == "bob@example.org"
    assert by_id["c3"]["contact"] == ""
    history = json.loads((tmp_path / "reports" / "at_risk_history.json").read_text())
    [source] = history["sources"]
    assert history["current"] == {"source": source["id"], "as_of": "2026-08-31"}
    assert source["runs"] == [{"as_of": "2026-08-31", "customer_ids": ["c4", "c2", "c3"]}]
    # no data/interim/customers.parquet here: the source is the 9 scored customers
    assert source["customers"] == 9 and source["raw_dir"] == "raw"


def test_stage_keeps_the_history_of_each_data_source_apart(tmp_path):
    _project(tmp_path)
    sample = pd.read_parquet(tmp_path / "reports/scores.parquet")

    def export_on(scores, as_of):
        scores.to_parquet(tmp_path / "reports/scores.parquet", index=False)
        _customers(scores["customer_id"]).to_parquet(
            tmp_path / "data/interim/customers.parquet", index=False)
        params = yaml.safe_load((tmp_path / "params.yaml").read_text())
        params["snapshot"] = {"as_of": as_of}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        export_stage.run(root=tmp_path)
        return json.loads((tmp_path / "reports/at_risk_history.json").read_text())

    first = export_on(sample, "2026-08-24")
    other = export_on(sample.assign(customer_id="z" + sample["customer_id"]), "2026-08-31")
    assert len(other["sources"]) == 2
    assert export.previous_run(other, None) is None  # no movers against the sample's list
    again = export_on(sample, "2026-09-07")
    assert again["current"]["source"] == first["current"]["source"]
    assert export.previous_run(again, None)["as_of"] == "2026-08-24"


def test_stage_writes_win_back_csv_of_lapsed_customers(tmp_path):
    _project(tmp_path)
    export_stage.run(root=tmp_path)
    at_risk = _rows((tmp_path / "reports" / "at_risk.csv").read_text(encoding="utf-8-sig"))
    data = (tmp_path / "reports" / "win_back.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = _rows(data.decode("utf-8-sig"))
    assert list(rows[0]) == list(AT_RISK_COLUMNS)
    # 0.6 x 300 = 180 before 0.3 x 500 = 150; w9 (no value) is not worth it; none is at risk
    assert [(r["customer_id"], r["expected_revenue_at_risk"]) for r in rows] == [
        ("w8", "180.00"), ("w7", "150.00")]
    assert not {r["customer_id"] for r in at_risk} & {"w7", "w8", "w9"}
    by_id = {r["customer_id"]: r for r in rows}
    assert by_id["w8"]["suggested_action"] == OPEN  # open ticket: no promotion
    assert by_id["w7"]["suggested_action"] == "Reactivation campaign"
    assert by_id["w7"]["contact"] == "Sev <sev@example.com>"
    assert by_id["w7"]["reasons"] == "no activity for 200 days"
    history = json.loads((tmp_path / "reports" / "at_risk_history.json").read_text())
    assert _runs(history)[0]["customer_ids"] == ["c4", "c2", "c3"]  # the at-risk list only


def test_win_back_is_cut_to_top_n(tmp_path):
    _project(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["export"]["top_n"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    export_stage.run(root=tmp_path)
    rows = _rows((tmp_path / "reports" / "win_back.csv").read_text(encoding="utf-8-sig"))
    assert [r["customer_id"] for r in rows] == ["w8"]


def test_contact_appears_only_in_the_lists_and_never_in_logs(tmp_path, caplog):
    _project(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["export"]["top_n"] = 10
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with caplog.at_level(logging.DEBUG, logger="churnlens"):
        export_stage.run(root=tmp_path)
    found = {}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.parent.name != "raw":
            text = path.read_bytes().decode("utf-8", errors="replace")
            found[path.name] = [e for e in EMAILS if e in text]
    assert found.pop("at_risk.csv") == [EMAILS[0], EMAILS[1], EMAILS[2]]
    assert found.pop("win_back.csv") == [EMAILS[3], EMAILS[4]]
    assert all(not hits for hits in found.values()), found
    assert not any(e in caplog.text for e in EMAILS)
    assert "Ann" not in caplog.text and "Sev" not in caplog.text


def test_contact_that_looks_like_a_formula_is_neutralised(tmp_path):
    _project(tmp_path)
    raw = pd.read_csv(tmp_path / "raw/customers.csv", dtype=str, keep_default_na=False)
    raw["name"] = ""
    raw.to_csv(tmp_path / "raw/customers.csv", index=False)
    export_stage.run(root=tmp_path)
    rows = _rows((tmp_path / "reports" / "at_risk.csv").read_text(encoding="utf-8-sig"))
    assert rows[0]["contact"] == "'=evil@example.net"


def test_no_email_column_gives_empty_contacts(tmp_path):
    _project(tmp_path, with_email=False)
    export_stage.run(root=tmp_path)
    for name in ("at_risk.csv", "win_back.csv"):
        rows = _rows((tmp_path / "reports" / name).read_text(encoding="utf-8-sig"))
        assert rows and all(r["contact"] == "" for r in rows)


def test_rules_from_params_are_used(tmp_path):
    actions = [{"when": "open_ticket", "action": "Fix it"}, {"when": "always", "action": "Wait"}]
    _project(tmp_path, actions=actions)
    export_stage.run(root=tmp_path)
    rows = _rows((tmp_path / "reports" / "at_risk.csv").read_text(encoding="utf-8-sig"))
    assert [r["suggested_action"] for r in rows] == ["Fix it", "Wait", "Wait"]


def test_segment_comes_from_interim_customers_when_scores_lack_it(tmp_path):
    _project(tmp_path)
    scores = pd.read_parquet(tmp_path / "reports/scores.parquet").drop(columns="segment")
    scores.to_parquet(tmp_path / "reports/scores.parquet", index=False)
    pd.DataFrame({"customer_id": ["c4", "c2"], "segment": ["gold", "silver"]}).to_parquet(
        tmp_path / "data/interim/customers.parquet", index=False)
    export_stage.run(root=tmp_path)
    rows = _rows((tmp_path / "reports" / "at_risk.csv").read_text(encoding="utf-8-sig"))
    assert [r["segment"] for r in rows] == ["gold", "silver", ""]


@pytest.mark.parametrize("encoding,delimiter", [("cp1252", ";"), ("utf-16", ","),
                                                ("utf-8-sig", ";")])
def test_contacts_are_read_like_validation_reads_the_file(tmp_path, encoding, delimiter):
    """Issue 12: a cp1252, UTF-16 or semicolon customers file passed validation and then
    crashed export (plain `pd.read_csv`). One reader for both."""
    from churnlens.stages.export import read_contacts

    text = (f"customer_id{delimiter}signup_date{delimiter}email{delimiter}name\n"
            f"007{delimiter}2025-01-01{delimiter}zoe@example.com{delimiter}Zoë Müller\n"
            f"008{delimiter}2025-01-02{delimiter}{delimiter}\n")
    (tmp_path / "customers.csv").write_bytes(text.encode(encoding))
    contacts = read_contacts(tmp_path).set_index("customer_id")["contact"].to_dict()
    assert contacts == {"007": "Zoë Müller <zoe@example.com>", "008": ""}
