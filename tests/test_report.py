"""Weekly report: formatting helpers, escaping, self-containment, optional inputs, warnings."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from churnlens import report
from churnlens.report import format_date, format_delta, format_money, format_percent, format_score
from churnlens.stages import report as report_stage

XSS = "<script>alert(1)</script>"


# --- helpers ---------------------------------------------------------------------------------


def test_format_percent_money_score_date():
    assert format_percent(0.8712) == "87.1%"
    assert format_percent(0.5, 0) == "50%"
    assert format_percent(None) == "n/a" and format_percent(float("nan")) == "n/a"
    assert format_money(12345.6) == "12,346"
    assert format_money(45.4) == "45" and format_money(0.2) == "<1" and format_money(0) == "0"
    assert format_money(-1500, "€") == "−€1,500"
    assert format_money(None) == "n/a"
    assert format_score(23.4) == "+23" and format_score(-5) == "−5" and format_score(0) == "0"
    assert format_date("2026-08-31") == "31 Aug 2026"
    assert format_date(None) == "n/a"


def test_format_delta_direction_per_kpi():
    up = format_delta(0.90, 0.88, kind="rate", higher_is_better=True)
    assert (up.arrow, up.text, up.tone, up.word) == ("▲", "+2.0 pts", "good", "better")
    churn_up = format_delta(0.12, 0.10, kind="rate", higher_is_better=False)
    assert (churn_up.arrow, churn_up.tone) == ("▲", "bad")
    churn_down = format_delta(0.08, 0.10, kind="rate", higher_is_better=False)
    assert (churn_down.arrow, churn_down.text, churn_down.tone) == ("▼", "−2.0 pts", "good")
    money = format_delta(900, 1000, kind="money", higher_is_better=True, currency="$")
    assert (money.arrow, money.text, money.tone) == ("▼", "−$100", "bad")
    assert format_delta(12, 10, kind="score", higher_is_better=True).text == "+2.0 pts"
    assert format_delta(0.5, 0.5, kind="rate", higher_is_better=True).text == "no change"
    assert format_delta(None, 0.5, kind="rate", higher_is_better=True).text == "n/a"


def test_risk_by_segment_counts_and_revenue():
    scores = pd.DataFrame({
        "customer_id": list("abcde"), "segment": ["pro", "pro", None, "basic", "pro"],
        "risk_tier": ["high", "low", "high", "medium", "medium"],
        "expected_revenue_at_risk": [100.0, 1, 50, 20, 30],
    })
    table = report.risk_by_segment(scores).set_index("segment")
    assert table.loc["pro", ["customers", "high", "medium", "low"]].tolist() == [3, 1, 1, 1]
    assert table.loc["pro", "revenue_at_risk"] == 131
    assert table.index.tolist() == ["pro", "unknown", "basic"]


def _drift(features, threshold=0.2):
    """drift.json as the drift stage writes it."""
    return {"threshold": threshold, "features": features,
            "flagged": sorted(f for f, v in features.items() if v.get("flag"))}


def test_drift_alerts_threshold_and_flag():
    drift = _drift({"events_30d": {"psi": 0.31, "flag": True},
                    "tenure_days": {"psi": 0.05, "flag": False},
                    "revenue_90d": {"psi": 0.25}, "last_nps": {"psi": 0.1, "flag": True}})
    alerts = report.drift_alerts(drift)
    assert [a["feature"] for a in alerts] == ["events_30d", "revenue_90d", "last_nps"]
    assert alerts[0]["label"] == "product events (last 30 days)"
    # the drift stage's own threshold decides, not the report's default
    assert [a["feature"] for a in report.drift_alerts({**drift, "threshold": 0.3})] == [
        "events_30d", "last_nps"]
    assert report.drift_alerts(None) == []


def test_drift_alerts_refuse_a_shape_they_do_not_know():
    """Issue 11.5: the stage passed the whole drift.json where the per-feature part was
    expected, and every alert was dropped without a word."""
    with pytest.raises(ValueError, match="features"):
        report.drift_alerts({"events_30d": {"psi": 0.31, "flag": True}})


# --- fixture project -------------------------------------------------------------------------

KPI_KEYS = ("customers_start", "customers_end", "new", "lost", "crr", "churn_rate", "ndr", "grr",
            "rpr", "clv", "nps")


def _kpis(nps=None):
    current = dict(zip(KPI_KEYS, [1000, 1010, 80, 70, 0.93, 0.06, 1.02, 0.95, 0.31, 812.5, nps],
                       strict=True))
    previous = dict(zip(KPI_KEYS, [990, 1000, 75, 65, 0.91, 0.07, 1.04, 0.96, 0.29, 790.0, None],
                        strict=True))
    notes = {"previous.nps": "no nps table"}
    if nps is None:
        notes["current.nps"] = "no nps table"
    return {
        "as_of": "2026-08-31",
        "period": {"start": "2026-08-02", "end": "2026-08-31", "days": 30},
        "current": current, "previous": previous,
        "by_segment": {"pro": current},
        "cohorts": [{"cohort": "2026-05", "size": 40, "retention": [1.0, 0.9, 0.8, 0.75]},
                    {"cohort": "2026-06", "size": 55, "retention": [0.98, 0.85, 0.8]},
                    {"cohort": "2026-07", "size": 61, "retention": [0.97, 0.9]}],
        "notes": notes,
    }


METRICS = {
    "test_cutoff": "2026-06-02", "n_test": 900, "churn_rate": 0.21,
    "model": {"roc_auc": 0.812, "pr_auc": 0.55, "brier": 0.131, "log_loss": 0.41, "ece": 0.02,
              "top_decile_precision": 0.62, "top_decile_lift": 2.9},
    "baselines": {
        "recency": {"roc_auc": 0.741, "brier": 0.16, "top_decile_precision": 0.5},
        "logistic": {"roc_auc": 0.78, "brier": 0.14, "top_decile_precision": 0.55},
    },
    "calibration_method": "sigmoid",
}

AT_RISK_HEADER = ("rank,customer_id,segment,churn_probability,expected_revenue_at_risk,risk_tier,"
                  "reasons,suggested_action,contact\n")


WIN_BACK_ROWS = [
    "1,w1,pro,0.700,150.00,high,no activity for 200 days,Reactivation campaign,"
    "Dan <dan@example.com>\n",
    "2,w2,basic,0.400,120.00,medium,no activity for 120 days,"
    "Resolve the open support ticket first; no promotion,\n",
]


def _project(tmp_path: Path, *, optional=True, nps=None, at_risk_rows=None, scores=None,
             promotion=None, drift=None, history=None, win_back_rows=None):
    reports = tmp_path / "reports"
    (reports / "plots").mkdir(parents=True)
    params = {"label": {"definition": "inactivity", "horizon_days": 90},
              "kpis": {"period_days": 30, "crr_target": 0.85}, "report": {"top_n": 25}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (reports / "kpis.json").write_text(json.dumps(_kpis(nps)))
    (reports / "metrics.json").write_text(json.dumps(METRICS))
    rows = at_risk_rows or [
        '1,c1,pro,0.912,1234.60,high,"no login for 40 days; usage down 60% vs previous 30 days",'
        "Reactivation campaign,ann@example.com\n",
        "2,c2,basic,0.610,300.00,medium,,Nurture,\n",
    ]
    (reports / "at_risk.csv").write_text(AT_RISK_HEADER + "".join(rows), encoding="utf-8-sig")
    if win_back_rows is None:
        win_back_rows = WIN_BACK_ROWS
    if win_back_rows != "missing":
        (reports / "win_back.csv").write_text(AT_RISK_HEADER + "".join(win_back_rows),
                                              encoding="utf-8-sig")
    if scores is None:
        scores = pd.DataFrame({
            "customer_id": ["c1", "c2", "c3", "w1", "w2", "w3"],
            "churn_probability": [0.912, 0.61, 0.1, 0.7, 0.4, 0.97],
            "risk_tier": ["high", "medium", "low", "high", "medium", "high"],
            "expected_revenue_at_risk": [1234.6, 300, 5, 0, 0, 0],
            "segment": ["pro", "basic", "pro", "pro", "basic", "lapsedonly"],
            "active": [True, True, True, False, False, False],
        })
    scores.to_parquet(reports / "scores.parquet", index=False)
    if optional:
        (reports / "train_summary.json").write_text(json.dumps(
            {"trained_at": "2026-08-31",
             "train_window": {"start": "2025-01-01", "end": "2026-03-04"}}))
        pd.DataFrame({"bin": [1, 2, 3] * 2, "mean_predicted": [0.1, 0.3, 0.7] * 2,
                      "observed_rate": [0.12, 0.28, 0.66, 0.2, 0.3, 0.4], "count": [300] * 6,
                      "model": ["model"] * 3 + ["recency"] * 3}
                     ).to_csv(reports / "plots" / "calibration.csv", index=False)
        promotion = promotion or {"is_champion": True, "reason": "no champion yet"}
        drift = drift or _drift({"events_30d": {"psi": 0.05, "flag": False}})
    if promotion is not None:
        serving = promotion.pop("serving", None)
        (reports / "promotion.json").write_text(json.dumps(promotion))
        if serving is not None:  # written by the score stage in a real run
            (reports / "serving.json").write_text(json.dumps(serving))
    if drift is not None:
        (reports / "drift.json").write_text(json.dumps(drift))
    if history is not None:
        (reports / "at_risk_history.json").write_text(json.dumps(history))
    return tmp_path


def _render(tmp_path, monkeypatch, **kwargs):
    """Render a fixture project; charts are skipped here (they are checked on `default_html`)."""
    monkeypatch.setattr(report, "segment_chart", lambda *args, **kw: None)
    monkeypatch.setattr(report, "calibration_chart", lambda *args, **kw: None)
    report_stage.run(root=_project(tmp_path, **kwargs))
    return (tmp_path / "reports" / "weekly_report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def default_html(tmp_path_factory):
    """The report of the default fixture (all inputs, NPS null), rendered once for several tests."""
    root = _project(tmp_path_factory.mktemp("default"))
    report_stage.run(root=root)
    return (root / "reports" / "weekly_report.html").read_text(encoding="utf-8")


def _text(html):
    """Visible text, roughly: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_report_renders_all_sections_from_fixture(default_html):
    html = default_html
    text = _text(html)
    assert "Data as of 31 Aug 2026" in text
    assert "2 Aug 2026 – 31 Aug 2026" in text
    assert "93.0%" in text and "Target 85% met" in text  # CRR vs target from params
    assert "▲ +2.0 pts (better)" in text  # CRR 91% -> 93%
    assert "▼ −1.0 pts (better)" in text  # churn 7% -> 6%: down is good
    assert "812" in text  # CLV
    assert "91%" in text and "1,235" in text  # probability and money of c1
    assert "No login for 40 days" in text and "Usage down 60%" in text
    assert "Reactivation campaign" in text
    assert "first report" in text
    assert "0.812" in text and "0.741" in text and "sigmoid" in text
    assert "Trained on data up to 31 Aug 2026".lower() in text.lower()
    assert html.count('src="data:image/png;base64,') == 2  # segment chart + calibration chart
    assert "75%" in text  # cohort cell
    assert 'id="not-champion"' not in html and 'id="drift"' not in html


def test_report_is_self_contained(default_html):
    html = default_html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower()
    assert "@import" not in html and "url(" not in html
    assert "<link" not in html.lower()


def test_contact_never_in_report(default_html):
    html = default_html
    assert "ann@example.com" not in html and "@example" not in html


def test_data_strings_are_escaped(tmp_path, monkeypatch):
    rows = [f'1,c1,{XSS},0.9,10.00,high,"{XSS}; fine reason",Nurture,\n']
    scores = pd.DataFrame({"customer_id": ["c1"], "churn_probability": [0.9], "risk_tier": ["high"],
                           "expected_revenue_at_risk": [10.0], "segment": [XSS]})
    html = _render(tmp_path, monkeypatch, at_risk_rows=rows, scores=scores,
                   promotion={"is_champion": False, "reason": XSS})
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()


def test_null_kpi_shows_na_and_note(default_html):
    text = _text(default_html)
    nps_tile = text[text.index("Net Promoter Score"):]
    assert nps_tile.split("Net Promoter Score", 1)[1].strip().startswith("n/a")
    assert "No survey answers in the data, so there is no NPS." in nps_tile


def test_nps_with_value_but_no_previous(tmp_path, monkeypatch):
    text = _text(_render(tmp_path, monkeypatch, nps=31.0))
    assert "+31" in text
    assert "Previous period: no survey answers in the data, so there is no NPS." in text


def test_a_new_model_waiting_for_approval_is_said_in_plain_words(tmp_path, monkeypatch):
    promotion = {"is_champion": False, "version": "7", "reason": "worse than the champion on AUC",
                 "serving": {"waiting_for_approval": True, "champion_version": "6"}}
    text = _text(_render(tmp_path, monkeypatch, promotion=promotion))
    assert "A new model (version 7) is waiting for approval." in text
    assert "come from the approved model (version 6)" in text and "churnlens promote 7" in text
    assert "AUC" not in text[:text.index("About the model")]


def test_not_champion_and_drift_warnings(tmp_path, monkeypatch):
    html = _render(tmp_path, monkeypatch,
                   promotion={"is_champion": False, "reason": "worse than the champion on AUC"},
                   drift=_drift({"events_30d": {"psi": 0.31, "flag": True},
                                 "tenure_days": {"psi": 0.05, "flag": False}}, 0.25))
    text = _text(html)
    assert 'id="not-champion"' in html and "could not score this week's data" in text
    assert "AUC" not in text[:text.index("About the model")]  # no jargon for CS readers
    assert 'id="drift"' in html and "Product events (last 30 days)" in text and "0.31" in text
    assert "for 1 of its inputs (stability index PSI above 0.25)" in text


def test_unapproved_model_scoring_is_flagged_even_when_it_won_the_gate(tmp_path, monkeypatch):
    """Issue 12.8: mlflow.db gone and no approved copy kept: the new model scores unapproved
    (serving.json `approved: false`); the CS reader must be told."""
    promotion = {"is_champion": True, "version": "3",
                 "serving": {"approved": False, "version": "3", "waiting_for_approval": False,
                             "reason": "the model registry could not be read"}}
    html = _render(tmp_path, monkeypatch, promotion=promotion)
    assert 'id="not-champion"' in html and "not the approved (champion) model" in _text(html)


def test_drift_file_of_another_shape_is_a_clear_error(tmp_path, monkeypatch):
    from churnlens.errors import ChurnlensError

    with pytest.raises(ChurnlensError, match="drift.json.*features"):
        _render(tmp_path, monkeypatch, drift={"events_30d": {"psi": 0.31, "flag": True}})


def test_works_without_optional_inputs(tmp_path, monkeypatch):
    html = _render(tmp_path, monkeypatch, optional=False)
    text = _text(html)
    assert "No calibration data available" in text
    assert report.calibration_chart(None) is None
    assert "first report" in text
    assert 'id="not-champion"' not in html and 'id="drift"' not in html


def test_movers_from_history(tmp_path, monkeypatch):
    history = {"runs": [{"as_of": "2026-08-24", "customer_ids": ["c2", "gone"]},
                        {"as_of": "2026-08-31", "customer_ids": ["c1", "c2"]}]}
    text = _text(_render(tmp_path, monkeypatch, history=history))
    assert ("Since the list of 24 Aug 2026: 1 customer is new on the list "
            "and 1 is no longer on it") in text
    movers = text[text.index("New on the list"):text.index("Risk by segment")]
    assert "c1" in movers and "c2" not in movers


def test_movers_only_against_a_list_of_the_same_data_source(tmp_path, monkeypatch):
    """Issue 11.6: the list of other data (run in between) is not compared with."""
    from churnlens import export

    sample = export.data_source(pd.DataFrame({"customer_id": ["c1", "c2", "c3"]}))
    other = export.data_source(pd.DataFrame({"customer_id": ["o1", "o2", "o3"]}))
    history = export.update_history(None, "2026-08-17", ["c2", "gone"], source=sample)
    history = export.update_history(history, "2026-08-24", ["o1", "o2"], source=other)
    text = _text(_render(tmp_path / "other", monkeypatch, history=history))
    assert "first report" in text and "new on the list" not in text
    history = export.update_history(history, "2026-08-31", ["c1", "c2"], source=sample)
    text = _text(_render(tmp_path / "sample", monkeypatch, history=history))
    assert ("Since the list of 17 Aug 2026: 1 customer is new on the list "
            "and 1 is no longer on it") in text


def test_missing_required_input_is_a_clear_error(tmp_path):
    from churnlens.errors import ChurnlensError

    root = _project(tmp_path)
    (tmp_path / "reports" / "kpis.json").unlink()
    with pytest.raises(ChurnlensError, match="kpis.json is missing: run `dvc repro kpis` first"):
        report_stage.run(root=root)


def test_build_context_refuses_contact_column():
    with pytest.raises(ValueError):
        report.build_context(kpis={}, metrics={}, scores=pd.DataFrame(),
                             at_risk=pd.DataFrame({"contact": ["x@y.z"]}))


def test_empty_list_and_formula_like_ids(tmp_path, monkeypatch):
    html = _render(tmp_path, monkeypatch, at_risk_rows=[""])  # header only
    assert "No customer is on the at-risk list this week." in _text(html)
    history = {"runs": [{"as_of": "2026-08-24", "customer_ids": ["-2"]}]}
    rows = ["1,'-2,pro,0.9,10.00,high,'=cmd reason,Nurture,\n"]
    text = _text(_render(tmp_path / "second", monkeypatch, at_risk_rows=rows, history=history))
    assert "0 customers are new" in text  # '-2 in the CSV is customer -2 of the history
    assert "=cmd reason" in text and "'=cmd" not in text


def test_win_back_section_next_to_the_at_risk_list(default_html):
    text = _text(default_html)
    assert default_html.index('id="at-risk"') < default_html.index('id="win-back"') \
        < default_html.index('id="segments"')
    # high / medium / segments count the active customers only; the lapsed are counted here
    assert "1 customers are at high risk and 1 at medium risk (of 3 active customers)" in text
    assert "lapsedonly" not in text
    section = text[text.index("Win back"):text.index("Risk by segment")]
    assert "3 customers have lapsed: no purchase and no product use for 90 days or more" in section
    assert "holds the 2 lapsed customers most worth winning back, together 270 in expected" \
        in section
    assert "w1 pro 30% 150 Reactivation campaign" in section  # chance of coming back = 1 - 0.7
    assert "w2 basic 60% 120 Resolve the open support ticket first" in section
    assert "Dan" not in default_html and "dan@example.com" not in default_html


def test_win_back_missing_or_empty(tmp_path, monkeypatch):
    text = _text(_render(tmp_path, monkeypatch, win_back_rows="missing"))
    assert "win_back.csv is missing" in text
    text = _text(_render(tmp_path / "empty", monkeypatch, win_back_rows=[""]))
    assert "No lapsed customer is on the win-back list this week" in text


def test_phone_layout_rules_present(default_html):
    assert 'name="viewport" content="width=device-width' in default_html
    assert "@media (max-width: 640px)" in default_html
    assert default_html.count('<div class="scroll">') >= 2  # wide tables scroll, not the page


def test_contact_lists_turn_into_labelled_cards_on_a_phone(default_html):
    """At 390 px the at-risk table was 752 px wide with the reasons and actions off-screen: the
    lists are cards on narrow screens, and every cell says what it is."""
    import re

    assert re.search(r"@media \(max-width: 640px\) \{[^@]*table\.cards thead \{ display:none; \}",
                     default_html)
    section = default_html[default_html.index('id="at-risk"'):default_html.index('id="movers"')]
    table = section[section.index('<table class="cards">'):section.index("</table>")]
    body = table[table.index("<tbody>"):]
    cells = re.findall(r"<td[^>]*>", body)
    assert cells and all("data-label=" in cell for cell in cells)
    assert 'data-label="Why"' in body and 'data-label="Action"' in body


def test_model_card_says_plainly_when_the_gradient_boosted_model_lost():
    from churnlens.report import model_card

    lost = {**METRICS,
            "lightgbm": {"roc_auc": 0.77, "brier": 0.15, "top_decile_precision": 0.5},
            "populations": {"active": {"n": 400, "churn_rate": 0.1,
                                       "model": {"roc_auc": 0.7},
                                       "baselines": {"recency": {"roc_auc": 0.6}}}},
            "gate": {"shipped": "blend", "summary": "Scores come from a blend. It lost.",
                     "test": {"lightgbm_beats_simple": False, "model_beats_simple": True}}}
    card = model_card(lost, None, None, 90, "inactivity")
    assert card["gate_alert"] and card["gate_summary"].endswith("It lost.")
    assert "Gradient-boosted model alone (LightGBM)" in [r["name"] for r in card["rows"]]
    assert card["active"] == {"n": "400", "churn_rate": "10.0%", "auc": "0.700",
                              "recency_auc": "0.600"}
    won = {**lost, "gate": {**lost["gate"], "test": {"lightgbm_beats_simple": True,
                                                     "model_beats_simple": True}}}
    assert not model_card(won, None, None, 90, "inactivity")["gate_alert"]
    assert model_card(METRICS, None, None, 90, "inactivity")["active"] is None


# --------------------------------------------------------------------------- KPI delta direction


@pytest.mark.parametrize("spec", report.KPI_TILES, ids=lambda s: s.key)
def test_every_kpi_delta_direction(spec):
    """Up is better for CRR, NDR, GRR, RPR, CLV, NPS; down is better for churn rate."""
    assert spec.higher_is_better == (spec.key != "churn_rate")
    low, high = (0.2, 1.3) if spec.kind == "rate" else (10.0, 40.0)
    rise = report.kpi_tiles({"current": {spec.key: high}, "previous": {spec.key: low}})
    fall = report.kpi_tiles({"current": {spec.key: low}, "previous": {spec.key: high}})
    rise_delta = next(t for t in rise if t["key"] == spec.key)["delta"]
    fall_delta = next(t for t in fall if t["key"] == spec.key)["delta"]
    assert (rise_delta.arrow, fall_delta.arrow) == ("▲", "▼")
    if spec.higher_is_better:
        assert (rise_delta.word, rise_delta.tone) == ("better", "good")
        assert (fall_delta.word, fall_delta.tone) == ("worse", "bad")
    else:
        assert (rise_delta.word, rise_delta.tone) == ("worse", "bad")
        assert (fall_delta.word, fall_delta.tone) == ("better", "good")


def test_ndr_fall_is_worse_and_a_rise_below_100_is_not_better():
    def ndr_tile(cur, prev):
        tiles = report.kpi_tiles({"current": {"ndr": cur}, "previous": {"ndr": prev}})
        return next(t for t in tiles if t["key"] == "ndr")

    fall = ndr_tile(0.44, 0.697)["delta"]
    assert (fall.arrow, fall.word, fall.tone) == ("▼", "worse", "bad")
    rise = ndr_tile(0.697, 0.44)["delta"]  # the "▲ +25.7 pts (better)"
    assert rise.arrow == "▲" and rise.text == "+25.7 pts"
    assert "better" not in rise.word and rise.tone == "neutral"
    assert ndr_tile(1.05, 0.98)["delta"].word == "better"


def test_kpi_tiles_show_the_longer_revenue_window_and_its_caveat():
    caveat = "Revenue retention is measured over the last 90 days against the 90 days before."
    kpis = {"period": {"days": 30}, "current": {"ndr": 0.56, "grr": 0.4},
            "previous": {"ndr": 0.55, "grr": 0.38},
            "revenue_window": {"days": 90, "period_days": 30, "caveat": caveat}}
    tiles = {t["key"]: t for t in report.kpi_tiles(kpis)}
    assert tiles["ndr"]["title"] == "Net revenue retention (90 days)"
    assert tiles["grr"]["title"] == "Gross revenue retention (90 days)"
    assert "last 90 days" in tiles["ndr"]["explain"]
    assert tiles["ndr"]["caveat"] == caveat
    assert [t["key"] for t in tiles.values() if t["caveat"]] == ["ndr"]  # the line shows once
    assert tiles["crr"]["title"] == "Customer retention"
    plain = {t["key"]: t for t in report.kpi_tiles({"current": {"ndr": 0.9}, "previous": {}})}
    assert plain["ndr"]["title"] == "Net revenue retention" and plain["ndr"]["caveat"] is None


# --- issue 12 part 5: a thin tail cut off by the default as_of, through real stage outputs ---


def _add_stray_row(raw_dir: Path) -> None:
    """One purchase 60 days after the end of the log (a clock two months ahead)."""
    path = raw_dir / "transactions.csv"
    tx = pd.read_csv(path, dtype=str, keep_default_na=False)
    stray = tx.iloc[[0]].copy()
    last = pd.to_datetime(tx["timestamp"], errors="coerce", utc=True, format="ISO8601").max()
    stray["timestamp"] = (last + pd.Timedelta(days=60)).isoformat()
    pd.concat([tx, stray]).to_csv(path, index=False)


@pytest.fixture(scope="module")
def stray_row_run(tmp_path_factory):
    from pipeline_helpers import run_pipeline

    return run_pipeline(tmp_path_factory.mktemp("stray"), n_customers=60,
                        env={"CHURNLENS_TODAY": "2100-01-01"}, raw_hook=_add_stray_row,
                        stages=["privacy", "validate", "features", "kpis"])


def test_kpis_use_the_as_of_of_the_features_stage(stray_row_run):
    """One rule, one as_of: the KPI period ends where the features' snapshot does, not on
    the stray row's day."""
    meta = json.loads((stray_row_run / "data/features/meta.json").read_text())
    kpis = json.loads((stray_row_run / "reports/kpis.json").read_text())
    assert meta["as_of_rule"] == "complete_data" and meta["tail_rows"] == 1
    assert kpis["as_of"] == kpis["period"]["end"] == meta["as_of"]
    for key in ("as_of_rule", "tail_rows", "tail_days", "last_data_day"):
        assert kpis[key] == meta[key], key
    assert kpis["last_data_day"] > kpis["as_of"]


def test_report_says_in_one_plain_line_that_late_rows_were_left_out(
        stray_row_run, tmp_path, monkeypatch):
    root = _project(tmp_path)
    kpis = (stray_row_run / "reports/kpis.json").read_text()
    (root / "reports" / "kpis.json").write_text(kpis)
    monkeypatch.setattr(report, "segment_chart", lambda *args, **kw: None)
    monkeypatch.setattr(report, "calibration_chart", lambda *args, **kw: None)
    report_stage.run(root=root)
    text = _text((root / "reports" / "weekly_report.html").read_text(encoding="utf-8"))
    last = report.format_date(json.loads(kpis)["last_data_day"])
    as_of = report.format_date(json.loads(kpis)["as_of"])
    assert (f"1 late row up to {last} came in after a long silence in the data and is left "
            f"out: this report covers the data up to {as_of}.") in text


def test_no_tail_line_without_a_tail(default_html):
    assert "late row" not in _text(default_html)
    assert report.tail_note({"as_of": "2026-08-31", "tail_rows": 0}) is None
    assert report.tail_note({"as_of": "2026-08-31", "tail_rows": 12, "tail_days": 3,
                             "last_data_day": "2026-10-30"}) == (
        "12 late rows on 3 days up to 30 Oct 2026 came in after a long silence in the data and "
        "are left out: this report covers the data up to 31 Aug 2026.")
