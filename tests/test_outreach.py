"""Control groups and measured effects (churnlens.outreach): reproducible, stratified, sticky
holdout; the interval of the measured effect covers a known simulated effect at about its
nominal rate; plain sentences."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from churnlens import outreach
from churnlens.errors import ChurnlensError
from churnlens.export import AT_RISK_COLUMNS
from churnlens.outreach import (
    CONTROL_ACTION,
    assign_holdout,
    measure_effect,
    newcombe_interval,
    plain_sentence,
)
from churnlens.stages import export as export_stage

ACTIONS = ("Onboarding call", "Reactivation campaign", "Nurture")


def _list(n=300, prefix="c", seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"{prefix}{i:04d}" for i in range(n)],
        "risk_tier": rng.choice(["high", "medium"], n),
        "suggested_action": rng.choice(ACTIONS, n),
        "expected_revenue": rng.uniform(50, 500, n).round(2),
    })


def _assign(at_risk, previous=None, list_date="2026-03-02", share=0.2, seed=7, source="s1"):
    return assign_holdout(at_risk, share, seed, previous, list_date, 90, source=source,
                          value_column="expected_revenue")


def test_holdout_is_reproducible_and_depends_on_seed_source_and_date():
    at_risk = _list()
    first = _assign(at_risk)
    assert first["holdout"].equals(_assign(at_risk)["holdout"])
    # the order of the list does not matter either
    shuffled = _assign(at_risk.sample(frac=1, random_state=3))
    assert shuffled["holdout"].sort_index().equals(first["holdout"])
    for other in (_assign(at_risk, seed=8), _assign(at_risk, source="s2"),
                  _assign(at_risk, list_date="2026-03-09")):
        assert not other["holdout"].equals(first["holdout"])


def test_holdout_is_stratified_by_tier_and_action():
    at_risk = _list(600)
    arms = _assign(at_risk, share=0.1)
    for _, group in arms.groupby(["tier", "action"]):
        expected = 0.1 * len(group)
        assert math.floor(expected) <= group["holdout"].sum() <= math.ceil(expected)
    assert set(arms["action"]) == set(ACTIONS)  # the would-be action is kept for measurement


def test_every_customer_has_the_same_chance_whatever_the_stratum():
    # a stratum of 3 customers at share 0.1 is held out 0 or 1 times; on average 0.3
    at_risk = _list(3)
    at_risk["suggested_action"] = "Nurture"
    at_risk["risk_tier"] = "high"
    counts = [_assign(at_risk, list_date=day, share=0.1)["holdout"].sum()
              for day in pd.date_range("2025-01-01", periods=400).strftime("%Y-%m-%d")]
    assert 0.075 <= np.mean(counts) / 3 <= 0.125


def test_share_zero_holds_out_nobody():
    arms = _assign(_list(), share=0.0)
    assert not arms["holdout"].any() and arms["fresh"].all()
    with pytest.raises(ValueError):
        _assign(_list(), share=1.0)


def test_arms_are_sticky_during_the_window_and_reassigned_after():
    week1 = _assign(_list(200), list_date="2026-03-02")
    # next week: the same customers, with other actions and tiers
    again = _list(200, seed=5)
    week2 = _assign(again, previous=week1, list_date="2026-03-09")
    assert week2["holdout"].equals(week1["holdout"])
    assert (week2["assigned"] == "2026-03-02").all() and not week2["fresh"].any()
    assert week2["action"].equals(week1["action"])  # the action of the first assignment
    # after the 90-day window, everyone is assigned afresh on the new date
    later = _assign(again, previous=week1, list_date="2026-06-01")
    assert later["fresh"].all() and (later["assigned"] == "2026-06-01").all()
    # new customers on a list are assigned fresh next to the sticky ones
    mixed = pd.concat([_list(200), _list(100, prefix="n")], ignore_index=True)
    week2 = _assign(mixed, previous=week1, list_date="2026-03-09")
    assert week2["fresh"].sum() == 100
    assert week2.loc[week2["fresh"], "holdout"].sum() == pytest.approx(20, abs=3)


def test_a_rerun_on_the_same_date_does_not_stick_to_itself():
    at_risk = _list(100)
    first = _assign(at_risk)
    again = _assign(at_risk, previous=first)
    assert again["fresh"].all() and again["holdout"].equals(first["holdout"])


def test_control_actions():
    shown = outreach.control_actions(pd.Series(["A", "B"]), pd.Series([True, False]))
    assert shown.tolist() == [CONTROL_ACTION, "B"]


def _simulate(rng, n, share, truth, base, list_date="2026-01-05"):
    """One list of n customers; control retention `base[action]`, treated + `truth[action]`."""
    actions = rng.choice(list(truth), n)
    holdout = rng.random(n) < share
    p = np.array([base[a] for a in actions]) + np.where(holdout, 0.0,
                                                        [truth[a] for a in actions])
    ids = [f"{list_date}-{i}" for i in range(n)]
    assignments = pd.DataFrame({"assigned": list_date, "customer_id": ids, "holdout": holdout,
                                "action": actions, "value": 100.0})
    outcomes = pd.DataFrame({"assigned": list_date, "customer_id": ids,
                             "retained": rng.random(n) < p})
    return assignments, outcomes


@pytest.mark.parametrize("n, share", [(1500, 0.2), (600, 0.1)])  # control arms ~100 and ~20
def test_interval_covers_the_simulated_effect_at_about_95_percent(n, share):
    rng = np.random.default_rng(2024)
    truth = {"Reactivation campaign": 0.08, "Onboarding call": 0.15, "Nurture": -0.05}
    base = {"Reactivation campaign": 0.33, "Onboarding call": 0.4, "Nurture": 0.6}
    covered = {a: 0 for a in truth}
    sims = 200
    for _ in range(sims):
        assignments, outcomes = _simulate(rng, n, share, truth, base)
        effects = measure_effect(assignments, outcomes)
        for e in effects:
            if e["list_date"] != outreach.ALL_LISTS and e["action"] in truth:
                covered[e["action"]] += e["ci_low"] <= truth[e["action"]] <= e["ci_high"]
    for action, hits in covered.items():
        assert 0.90 <= hits / sims <= 0.99, (action, hits)


def test_newcombe_interval_small_and_extreme_counts():
    low, high = newcombe_interval(10, 10, 0, 10)
    assert 0 < low < 1 and high <= 1
    assert newcombe_interval(5, 10, 5, 10)[0] < 0 < newcombe_interval(5, 10, 5, 10)[1]
    assert all(math.isnan(v) for v in newcombe_interval(1, 0, 1, 10))


def test_measure_effect_figures_and_pooling():
    rng = np.random.default_rng(1)
    truth = {"Reactivation campaign": 0.1}
    base = {"Reactivation campaign": 0.3}
    a1, o1 = _simulate(rng, 4000, 0.25, truth, base, "2026-01-05")
    a2, o2 = _simulate(rng, 4000, 0.25, truth, base, "2026-01-12")
    costs = a1[~a1["holdout"]][["assigned", "customer_id"]].assign(cost=2.0)
    effects = measure_effect(pd.concat([a1, a2]), pd.concat([o1, o2]), costs=costs)
    by_key = {(e["list_date"], e["action"]): e for e in effects}
    assert set(by_key) == {("2026-01-05", "Reactivation campaign"), ("2026-01-05", "all actions"),
                           ("2026-01-12", "Reactivation campaign"), ("2026-01-12", "all actions"),
                           ("all", "Reactivation campaign"), ("all", "all actions")}
    pooled = by_key[("all", "Reactivation campaign")]
    assert pooled["treated"] + pooled["control"] == 8000
    assert pooled["ci_low"] <= 0.1 <= pooled["ci_high"] and not pooled["too_thin"]
    assert pooled["customers_kept"] == pytest.approx(pooled["difference"] * pooled["treated"],
                                                     abs=0.5)
    assert pooled["revenue_kept"] == pytest.approx(pooled["customers_kept"] * 100, abs=1)
    first = by_key[("2026-01-05", "Reactivation campaign")]
    assert first["cost"] == pytest.approx(2.0 * first["treated"])
    assert first["cost_per_customer_kept"] == pytest.approx(first["cost"] / first["customers_kept"],
                                                            rel=1e-3)


def test_only_measured_assignments_count_and_thin_estimates_are_flagged():
    rng = np.random.default_rng(3)
    a, o = _simulate(rng, 60, 0.1, {"Nurture": 0.1}, {"Nurture": 0.5})
    effects = measure_effect(a, o.iloc[:30])
    [row] = [e for e in effects if e["action"] == "Nurture" and e["list_date"] != "all"]
    assert row["treated"] + row["control"] == 30 and row["too_thin"]
    assert "not enough customers yet to tell" in plain_sentence(row)


def test_customers_assigned_but_not_treated_are_left_out():
    a = pd.DataFrame({"assigned": "d", "customer_id": list("abcd"),
                      "holdout": [False, False, True, True], "treated": [True, False, False, False],
                      "action": "A"})
    o = a[["assigned", "customer_id"]].assign(retained=True)
    [row, *_] = measure_effect(a, o, min_per_arm=1)
    assert (row["treated"], row["control"]) == (1, 2)


def test_plain_sentences():
    effect = {"action": "Reactivation campaign", "treated": 400, "control": 100,
              "retention_treated": 0.41, "retention_control": 0.33, "difference": 0.08,
              "ci_low": 0.03, "ci_high": 0.13, "half_width": 0.05, "customers_kept": 19.2,
              "revenue_kept": 12400.0, "cost_per_customer_kept": None, "too_thin": False}
    assert plain_sentence(effect) == ("Reactivation campaign: 41 % vs 33 % stayed, +8 pts (±5), "
                                      "about 19 customers and 12,400 of revenue kept")
    worse = effect | {"retention_treated": 0.27, "difference": -0.06, "ci_low": -0.11,
                      "ci_high": -0.01, "customers_kept": -24.0, "revenue_kept": -3100.0,
                      "cost_per_customer_kept": None}
    assert plain_sentence(worse).endswith("−6 pts (±5), about 24 customers and 3,100 of "
                                          "revenue lost")
    unclear = effect | {"ci_low": -0.02}
    assert plain_sentence(unclear).endswith("no clear difference yet")
    costly = effect | {"cost_per_customer_kept": 52.4}
    assert plain_sentence(costly).endswith("kept, 52 spent per customer kept")
    thin = effect | {"too_thin": True, "treated": 35, "control": 4}
    assert plain_sentence(thin) == ("Reactivation campaign: not enough customers yet to tell "
                                    "(35 contacted, 4 in the control group)")


# --- through the export stage -------------------------------------------------------------

def _stage_project(root: Path, n=300, share=None, as_of="2026-03-02") -> Path:
    (root / "raw").mkdir()
    (root / "data" / "interim").mkdir(parents=True)
    (root / "reports").mkdir()
    rng = np.random.default_rng(0)
    ids = [f"c{i:04d}" for i in range(n)]
    probability = rng.uniform(0.3, 0.95, n).round(3)
    value = rng.uniform(50, 900, n).round(2)
    scores = pd.DataFrame({
        "customer_id": ids, "churn_probability": probability,
        "risk_tier": np.where(probability >= 0.5, "high", "medium"),
        "expected_revenue": value, "expected_revenue_at_risk": (probability * value).round(2),
        "segment": rng.choice(["trial", "basic", "pro"], n), "open_tickets": 0,
        "is_trial": False, "events_first_14d": 9,
        "days_since_last_activity": rng.choice([1, 5, 40], n), "reason_1": "few logins",
    })
    scores.to_parquet(root / "reports" / "scores.parquet", index=False)
    pd.DataFrame({"customer_id": ids, "signup_date": pd.Timestamp("2025-01-01")}).to_parquet(
        root / "data" / "interim" / "customers.parquet", index=False)
    pd.DataFrame({"customer_id": ids, "signup_date": "2025-01-01",
                  "email": [f"{c}@example.com" for c in ids]}).to_csv(
        root / "raw" / "customers.csv", index=False)
    _params(root, share, as_of)
    return root


def _params(root: Path, share, as_of):
    params = {"data": {"raw_dir": "raw"}, "snapshot": {"as_of": as_of},
              "label": {"horizon_days": 90}, "export": {"top_n": 250}}
    if share is not None:
        params["export"]["holdout_share"] = share
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _export(root: Path, share, as_of):
    _params(root, share, as_of)
    export_stage.run(root=root)
    text = (root / "reports" / "at_risk.csv").read_text(encoding="utf-8-sig")
    history = json.loads((root / "reports" / "at_risk_history.json").read_text())
    return text, pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), history


def test_stage_without_holdout_share_writes_what_it_wrote_before(tmp_path):
    _stage_project(tmp_path)
    text_default, table, history = _export(tmp_path, None, "2026-03-02")
    assert list(table.columns) == list(AT_RISK_COLUMNS)
    assert "arms" not in history["sources"][0]["runs"][0]
    (tmp_path / "reports" / "at_risk_history.json").unlink()
    text_zero, _, history_zero = _export(tmp_path, 0.0, "2026-03-02")
    assert text_zero == text_default and history_zero == history


def test_stage_marks_a_sticky_reproducible_control_group(tmp_path):
    _stage_project(tmp_path)
    text, table, history = _export(tmp_path, 0.2, "2026-03-02")
    assert list(table.columns) == [*AT_RISK_COLUMNS, "holdout"]
    assert set(table["holdout"]) == {"true", "false"}
    control = table[table["holdout"] == "true"]
    assert len(control) == pytest.approx(0.2 * len(table), abs=4)
    assert (control["suggested_action"] == CONTROL_ACTION).all()
    assert (control["contact"] == "").all()  # nobody mails the control group by mistake
    contacted = table[table["holdout"] == "false"]
    assert CONTROL_ACTION not in set(contacted["suggested_action"])
    assert (contacted["contact"] != "").all()
    [run] = history["sources"][0]["runs"]
    arms = pd.DataFrame(run["arms"])
    assert set(arms.loc[arms["holdout"], "customer_id"]) == set(control["customer_id"])
    assert CONTROL_ACTION not in set(arms["action"])  # the would-be action is recorded
    assert (arms["assigned"] == "2026-03-02").all() and arms["value"].notna().all()

    again, _, _ = _export(tmp_path, 0.2, "2026-03-02")  # rerun: the same list
    assert again == text
    _, week2, history2 = _export(tmp_path, 0.2, "2026-03-09")  # sticky next week
    assert set(week2.loc[week2["holdout"] == "true", "customer_id"]) == set(control["customer_id"])
    assert [r["as_of"] for r in history2["sources"][0]["runs"]] == ["2026-03-02", "2026-03-09"]
    _, later, _ = _export(tmp_path, 0.2, "2026-06-15")  # window over: assigned afresh
    assert set(later.loc[later["holdout"] == "true", "customer_id"]) != set(
        control["customer_id"])


def test_bad_holdout_share_is_refused(tmp_path):
    _stage_project(tmp_path, n=20)
    with pytest.raises(ChurnlensError, match="holdout_share"):
        _export(tmp_path, 1.5, "2026-03-02")


def test_stage_measures_the_effect_once_the_window_has_passed(tmp_path):
    _stage_project(tmp_path, n=400)
    _, first, _ = _export(tmp_path, 0.3, "2026-03-02")
    report = json.loads((tmp_path / "reports" / "outreach.json").read_text())
    assert report["effects"] == [] and report["lists"] == [
        {"list_date": "2026-03-02", "customers": len(first),
         "control": int((first["holdout"] == "true").sum()), "measurable_on": "2026-05-31",
         "measured": False}]
    # what happened next: 70 % of contacted and 40 % of control customers stayed active
    rng = np.random.default_rng(5)
    stays = np.where(first["holdout"] == "true", 0.4, 0.7)
    active = first.loc[rng.random(len(first)) < stays, "customer_id"]
    pd.DataFrame({"customer_id": active, "timestamp": pd.Timestamp("2026-04-10 12:00"),
                  "amount": 10.0}).to_parquet(
        tmp_path / "data/interim/transactions.parquet", index=False)
    pd.DataFrame({"customer_id": first["customer_id"],  # activity on the list day: not counted
                  "timestamp": pd.Timestamp("2026-03-02 18:00"), "event_type": "login"}
                 ).to_parquet(tmp_path / "data/interim/events.parquet", index=False)
    _export(tmp_path, 0.3, "2026-06-08")
    report = json.loads((tmp_path / "reports" / "outreach.json").read_text())
    assert [x["measured"] for x in report["lists"]] == [True, False]
    effects = {(e["list_date"], e["action"]): e for e in report["effects"]}
    overall = effects[("2026-03-02", "all actions")]
    assert overall["treated"] + overall["control"] == len(first)
    assert overall["ci_low"] <= 0.3 <= overall["ci_high"]
    assert overall["retention_control"] == pytest.approx(0.4, abs=0.12)
    assert all(e["sentence"].startswith(e["action"][:1].upper()) for e in report["by_action"])
    assert {e["action"] for e in report["by_action"]} == set(first.loc[
        first["holdout"] == "false", "suggested_action"])


def test_contacts_in_window_counts_contacts_from_the_list_day_to_the_horizon():
    assignments = pd.DataFrame({"assigned": ["2026-03-02"] * 4, "customer_id": list("abcd")})
    done = pd.DataFrame({
        "customer_id": ["a", "a", "b", "c", "x"],
        "timestamp": pd.to_datetime(["2026-03-02 08:00", "2026-03-20 00:00", "2026-05-31 23:00",
                                     "2026-06-01 00:00", "2026-03-03 00:00"]),
        "cost": [10.0, 2.5, np.nan, 4.0, 1.0]})
    window = outreach.contacts_in_window(assignments, done, 90)
    assert window["contacted"].tolist() == [True, True, False, False]  # c: day 91, d: none
    assert window["cost"].tolist()[0] == 12.5 and np.isnan(window["cost"].tolist()[1])


def test_stage_with_interventions_measures_the_contacted_and_flags_a_contacted_control(
        tmp_path):
    _stage_project(tmp_path, n=400)
    _, first, _ = _export(tmp_path, 0.3, "2026-03-02")
    control = first[first["holdout"] == "true"]["customer_id"]
    listed = first[first["holdout"] == "false"]["customer_id"]
    reached = listed.iloc[: int(0.8 * len(listed))]  # the team reached 80 % of the list ...
    stray = control.iloc[:5]  # ... and called 5 control customers by mistake
    pd.DataFrame({"customer_id": pd.concat([reached, stray]),
                  "timestamp": pd.Timestamp("2026-03-04 10:00"), "action": "call",
                  "channel": "phone", "cost": 20.0}).to_parquet(
        tmp_path / "data/interim/interventions.parquet", index=False)
    # contacted stay at 70 %, listed but not reached at 10 % (left out), control at 40 %
    rng = np.random.default_rng(5)
    stays = np.where(first["customer_id"].isin(reached), 0.7,
                     np.where(first["holdout"] == "true", 0.4, 0.1))
    active = first.loc[rng.random(len(first)) < stays, "customer_id"]
    pd.DataFrame({"customer_id": active, "timestamp": pd.Timestamp("2026-04-10 12:00"),
                  "amount": 10.0}).to_parquet(
        tmp_path / "data/interim/transactions.parquet", index=False)
    _export(tmp_path, 0.3, "2026-06-08")
    report = json.loads((tmp_path / "reports" / "outreach.json").read_text())
    assert report["treatment"] == {
        "treated_by": "interventions", "listed_contacted": len(reached),
        "listed_not_contacted": len(listed) - len(reached), "control": len(control),
        "control_contacted": 5}
    overall = {(e["list_date"], e["action"]): e for e in report["effects"]}[
        ("2026-03-02", "all actions")]
    assert overall["treated"] == len(reached) and overall["control"] == len(control)
    assert overall["control_contacted"] == 5
    assert overall["ci_low"] <= 0.3 <= overall["ci_high"]  # intention to treat would be ~0.2
    assert overall["cost"] == pytest.approx(20.0 * len(reached))
    assert overall["cost_per_customer_kept"] == pytest.approx(
        overall["cost"] / overall["customers_kept"], rel=1e-3)
    assert all("(control group contacted: " in e["sentence"] for e in report["by_action"]
               if e["control_contacted"])
    plot = pd.read_csv(tmp_path / "reports" / "plots" / "outreach_effects.csv")
    assert list(plot.columns) == ["list_date", "action", "contacted_rate", "control_rate",
                                  "difference", "ci_low", "ci_high"]
    assert len(plot) == sum(e["list_date"] != "all" for e in report["effects"])
    row = plot[plot["action"] == "all actions"].iloc[0]
    assert (row["difference"], row["ci_low"]) == (overall["difference"], overall["ci_low"])


def test_stage_without_control_groups_writes_an_empty_outreach_report(tmp_path):
    _stage_project(tmp_path, n=20)
    _export(tmp_path, None, "2026-03-02")
    report = json.loads((tmp_path / "reports" / "outreach.json").read_text())
    assert report["lists"] == [] and report["effects"] == [] and report["holdout_share"] == 0
    assert (tmp_path / "reports" / "plots" / "outreach_effects.csv").read_text() == (
        "list_date,action,contacted_rate,control_rate,difference,ci_low,ci_high\n")


def test_weekly_report_says_per_action_what_outreach_did(tmp_path, monkeypatch):
    from churnlens import report
    from churnlens.stages import report as report_stage
    from test_report import _project as report_project
    from test_report import _text

    monkeypatch.setattr(report, "segment_chart", lambda *args, **kw: None)
    monkeypatch.setattr(report, "calibration_chart", lambda *args, **kw: None)
    report_project(tmp_path)
    report_stage.run(root=tmp_path)
    html = (tmp_path / "reports" / "weekly_report.html").read_text(encoding="utf-8")
    assert "Did our outreach work?" not in html  # no outreach.json: nothing shown

    effect = {"list_date": "all", "action": "Reactivation campaign", "treated": 400,
              "control": 100, "retention_treated": 0.41, "retention_control": 0.33,
              "difference": 0.08, "ci_low": 0.03, "ci_high": 0.13, "half_width": 0.05,
              "customers_kept": 19.2, "revenue_kept": 12400.0, "cost_per_customer_kept": None,
              "too_thin": False}
    thin = effect | {"action": "Onboarding call", "too_thin": True, "treated": 30, "control": 3}
    lists = [{"list_date": "2026-03-02", "customers": 200, "control": 20,
              "measurable_on": "2026-05-31", "measured": True},
             {"list_date": "2026-08-31", "customers": 200, "control": 21,
              "measurable_on": "2026-11-29", "measured": False}]
    uplift_info = {"used": True, "measured_contacted": 250, "measured_control": 240,
                   "action_rates": [
                       {"action": "Onboarding call", "rescue_rate": 0.3149, "harm_rate": 0.001},
                       {"action": "Nurture", "rescue_rate": 0.05, "harm_rate": 0.0612}]}
    (tmp_path / "reports" / "outreach.json").write_text(json.dumps(
        {"horizon_days": 90, "lists": lists, "by_action": [effect, thin], "effects": [],
         "uplift": uplift_info}))
    report_stage.run(root=tmp_path)
    text = _text((tmp_path / "reports" / "weekly_report.html").read_text(encoding="utf-8"))
    assert "Did our outreach work?" in text
    assert ("Reactivation campaign: 41 % vs 33 % stayed, +8 pts (±5), about 19 customers and "
            "12,400 of revenue kept") in text
    assert "Onboarding call: not enough customers yet to tell (30 contacted, 3 in the control " \
           "group)" in text
    assert "21 of the 200 customers on the list of 2026-08-31 are the control group" in text
    assert ("The list is ranked by expected revenue saved, from 250 contacted and 240 control "
            "customers measured so far.") in text
    onboarding = ("Onboarding call: estimated to keep about 31 % of the customers who would have "
                  "left, and to lose about 0 % of those who would have stayed.")
    nurture = ("Nurture: estimated to keep about 5 % of the customers who would have left, and "
               "to lose about 6 % of those who would have stayed.")
    assert onboarding in text and nurture in text
    assert text.index(onboarding) < text.index(nurture)  # highest rescue rate first
    assert outreach.report_section({"lists": []}) is None
    assert outreach.ranking_sentence({"used": False, "reason": "too few"}) == (
        "The list stays ranked by revenue at risk: too few.")


@pytest.mark.slow
def test_pipeline_measures_an_earlier_list_after_its_window(tmp_path):
    """Two weekly runs of the whole pipeline on one sample, 5 months apart: the first list's
    control group is measured from the validated data in the second run."""
    from pipeline_helpers import AFTER_GENERATE, new_run, run_pipeline, run_stages

    overrides = {"export.holdout_share": 0.3, "snapshot.as_of": "2026-03-31"}
    first = run_pipeline(tmp_path, n_customers=800, overrides=overrides)
    table = pd.read_csv(first / "reports/at_risk.csv", dtype=str, keep_default_na=False,
                        encoding="utf-8-sig")
    control = table[table["holdout"] == "true"]
    assert len(control) > 0 and (control["contact"] == "").all()
    assert (control["suggested_action"] == CONTROL_ACTION).all()
    params = dict(first.params, snapshot={"as_of": "2026-08-31"})
    second = run_stages(new_run(tmp_path, params), AFTER_GENERATE)
    report = json.loads((second / "reports/outreach.json").read_text())
    assert [x["list_date"] for x in report["lists"]] == ["2026-03-31", "2026-08-31"]
    assert [x["measured"] for x in report["lists"]] == [True, False]
    overall = next(e for e in report["effects"]
                   if (e["list_date"], e["action"]) == ("2026-03-31", outreach.ALL_ACTIONS))
    assert overall["treated"] + overall["control"] == len(table)
    assert overall["control"] == len(control)
    assert 0 <= overall["retention_control"] <= 1 and overall["ci_low"] < overall["ci_high"]
    html = (second / "reports/weekly_report.html").read_text(encoding="utf-8")
    assert "Did our outreach work?" in html and report["by_action"]
    assert all(e["sentence"] in html for e in report["by_action"])


# --- the generator's simulated outreach: measured effects cover the simulated ones -------------


def _simulated_measurement(seed, n=5000, weeks=12, share=0.4):
    """Measured effects (per action and per action / subgroup, pooled over the lists) on the
    generator's simulated outreach, and the simulated truth (`true_effects`)."""
    from churnlens.generate import OUTREACH_KEY, OutreachSettings, generate_dataset, true_effects

    settings = OutreachSettings(weeks=weeks, horizon_days=90, holdout_share=share)
    frames = generate_dataset(n, "2024-09-01", "2026-08-31", seed=seed, bad_rows=False,
                              outreach=settings)
    truth = frames[OUTREACH_KEY]
    activity = pd.concat([frames[t][["customer_id", "timestamp"]]
                          for t in ("transactions", "events")], ignore_index=True)
    activity["timestamp"] = pd.to_datetime(activity["timestamp"], utc=True,
                                           format="ISO8601").dt.tz_localize(None)
    lists = truth.rename(columns={"list_date": "assigned"})[
        ["assigned", "customer_id", "holdout", "action", "subgroup", "value"]]
    outcomes = outreach.window_outcomes(lists, horizon_days=90, activity=activity)
    measured = {}
    for frame in (lists, lists.assign(action=lists["action"] + " / " + lists["subgroup"])):
        for e in measure_effect(frame.drop(columns="subgroup"), outcomes):
            if e["list_date"] == outreach.ALL_LISTS and e["action"] != outreach.ALL_ACTIONS:
                measured[e["action"]] = e
    simulated = {e["action"] if e["subgroup"] == "all" else f"{e['action']} / {e['subgroup']}":
                 e["effect"] for e in true_effects(truth, settings)["effects"]}
    return measured, simulated


def test_measured_effects_cover_the_generators_simulated_effects():
    """One seeded sample: every action's and every action x subgroup's 95 % interval covers the
    simulated effect (the mean of Y1 - Y0 over the listed customers), and the heterogeneity
    shows: the discount offer hurts customers with an open ticket and helps small plans."""
    measured, simulated = _simulated_measurement(seed=9)
    assert set(measured) == set(simulated) and len(simulated) == 10
    for key, truth in simulated.items():
        e = measured[key]
        assert e["ci_low"] <= truth <= e["ci_high"], (key, truth, e)
    assert measured["Discount offer / open ticket"]["ci_high"] < 0
    assert measured["Discount offer / small plan"]["ci_low"] > 0
    assert measured["Onboarding call / idle trial"]["ci_low"] > 0


@pytest.mark.slow
def test_measured_effects_cover_the_simulated_ones_at_about_the_nominal_rate():
    hits = total = 0
    for seed in range(10, 16):
        measured, simulated = _simulated_measurement(seed=seed)
        for key, truth in simulated.items():
            hits += measured[key]["ci_low"] <= truth <= measured[key]["ci_high"]
            total += 1
    assert hits / total >= 0.88, (hits, total)


def test_stage_ranks_by_revenue_saved_once_enough_outcomes_are_measured(tmp_path):
    """export.rank_by revenue_saved: risk ranking with a logged reason until a list is measured;
    then (`export.uplift_learner: t`) a T-learner over the feature rows on the list date ranks
    those whom contact helps (x < 0.5: 80 % vs 40 % stay) above those whom it drives away
    (x >= 0.5: 30 % vs 60 %). The default learner (rescue_harm) sees only the action and the
    churn probability, not x, and says so in outreach.json with its per-action rates."""
    _stage_project(tmp_path, n=1000)

    def run(as_of, rank_by, learner="t"):
        params = {"data": {"raw_dir": "raw"}, "snapshot": {"as_of": as_of},
                  "label": {"horizon_days": 90},
                  "export": {"top_n": 1000, "holdout_share": 0.5, "rank_by": rank_by,
                             **({"uplift_learner": learner} if learner else {})}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        export_stage.run(root=tmp_path)
        text = (tmp_path / "reports" / "at_risk.csv").read_text(encoding="utf-8-sig")
        report = json.loads((tmp_path / "reports" / "outreach.json").read_text())
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), report

    first, report = run("2026-03-02", "revenue_saved")
    assert "expected_revenue_saved" not in first.columns
    assert not report["uplift"]["used"] and "measured" in report["uplift"]["reason"]
    rng = np.random.default_rng(8)
    ids = first["customer_id"]
    x = pd.Series(rng.random(len(ids)), index=ids.to_numpy())
    (tmp_path / "data/features").mkdir(parents=True)
    pd.DataFrame({"customer_id": x.index, "cutoff": pd.Timestamp("2026-02-28"), "label": 0,
                  "x": x.to_numpy()}).to_parquet(
        tmp_path / "data/features/training.parquet", index=False)
    pd.DataFrame({"customer_id": x.index, "x": x.to_numpy()}).to_parquet(
        tmp_path / "data/features/scoring.parquet", index=False)
    (tmp_path / "data/features/meta.json").write_text(json.dumps({"feature_columns": ["x"]}))
    held = (first["holdout"] == "true").to_numpy()
    helps = (x[ids].to_numpy() < 0.5)
    stays = np.where(helps, np.where(held, 0.4, 0.8), np.where(held, 0.6, 0.3))
    active = ids[rng.random(len(ids)) < stays]
    pd.DataFrame({"customer_id": active, "timestamp": pd.Timestamp("2026-04-10 12:00"),
                  "amount": 10.0}).to_parquet(
        tmp_path / "data/interim/transactions.parquet", index=False)
    later, report = run("2026-06-08", "revenue_saved")
    info = report["uplift"]
    assert info["used"] and info["measured_contacted"] >= 200 and info["measured_control"] >= 200
    saved = pd.to_numeric(later["expected_revenue_saved"])
    assert saved.is_monotonic_decreasing
    top = later.head(200)["customer_id"]
    assert (x[top] < 0.5).mean() > 0.9
    assert later["rank"].tolist() == [str(i) for i in range(1, len(later) + 1)]
    assert info["learner"] == "t" and "action_rates" not in info
    _, report = run("2026-06-08", "revenue_saved", learner=None)
    info = report["uplift"]
    assert info["used"] and info["learner"] == "rescue_harm"
    rates = info["action_rates"]
    assert rates and all(0 <= r["rescue_rate"] <= 1 and 0 <= r["harm_rate"] <= 1 for r in rates)
    section = outreach.report_section(report)
    assert section["ranking"].startswith("The list is ranked by expected revenue saved, from "
                                         f"{info['measured_contacted']} contacted and "
                                         f"{info['measured_control']} control customers")
    assert len(section["ranking_rates"]) == len(rates)
    for r in rates:
        assert any(line.startswith(f"{r['action']}: estimated to keep about "
                                   f"{r['rescue_rate'] * 100:.0f} %")
                   for line in section["ranking_rates"])
    with pytest.raises(ChurnlensError, match="rank_by"):
        run("2026-06-08", "churn")
    with pytest.raises(ChurnlensError, match="uplift_learner"):
        run("2026-06-08", "revenue_saved", learner="s")
