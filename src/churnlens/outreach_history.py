"""The outreach loop over the at-risk history: control groups on the weekly list, the measured
effect of the lists whose window has passed and the uplift ranking fitted on them (pure
functions over DataFrames and the history's records; the export stage reads the tables and
writes the files, `churnlens.outreach` and `churnlens.uplift` hold the statistics).

* `with_control_group`: the at-risk list with its control group (`outreach.assign_holdout`) and
  the assignment records that go into the run's `arms` in `reports/at_risk_history.json`.
* `history_assignments` / `due_customer_ids` / `outcomes_of_due`: the history's assignments with
  `due` (window passed by as_of) and, from the validated activity (inactivity) or cancel dates
  (cancellation), whether each due customer stayed.
* `recorded_outreach`: treated = listed, not held out and contacted within the window per the
  `interventions` table (without it: intention to treat).
* `outreach_report`: the content of `reports/outreach.json`; `effects_plot_csv` its plot CSV.
* `uplift_rows` / `revenue_saved`: the measured assignments on their feature rows at the list
  date, an uplift model over them and `expected_revenue_saved` per scored customer, with the
  Qini of the latest measured list predicted by a model of the lists before it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from churnlens import outreach, uplift
from churnlens.export import history_arms

EFFECTS_PLOT_COLUMNS = ("list_date", "action", "contacted_rate", "control_rate", "difference",
                        "ci_low", "ci_high")
MEASURED_KEEP_DAYS = 182  # lists with a control group stay in the history this long after
                          # their measurement window, so their effects keep being pooled


def list_values(at_risk: pd.DataFrame, scores: pd.DataFrame) -> pd.Series:
    """Expected revenue over the horizon of each listed customer: the scores'
    `expected_revenue`, else expected revenue at risk / churn probability."""
    if "expected_revenue" in scores:
        lookup = dict(zip(scores["customer_id"].astype(str),
                          pd.to_numeric(scores["expected_revenue"], errors="coerce"), strict=True))
        return at_risk["customer_id"].astype(str).map(lookup).astype("float64")
    probability = pd.to_numeric(at_risk["churn_probability"], errors="coerce")
    return (at_risk["expected_revenue_at_risk"] / probability.where(probability > 0)).astype(
        "float64")


def with_control_group(at_risk: pd.DataFrame, scores: pd.DataFrame, *, share: float, seed: int,
                       runs: list[dict[str, Any]], source_id: str, as_of: str, horizon: int,
                       holdout_column: str = "holdout"
                       ) -> tuple[pd.DataFrame, list[dict[str, Any]], pd.DataFrame]:
    """The at-risk list with its control group (`outreach.assign_holdout`): a `holdout` column,
    the action "Do not contact (control group)" and no contact for the control customers; the
    assignment records for the history; and the arms (`fresh` = assigned on this list). Arms
    stick for `horizon` days across the earlier `runs` of the same data source."""
    previous = history_arms(r for r in runs if str(r["as_of"]) < as_of)
    arms = outreach.assign_holdout(
        at_risk.assign(_value=list_values(at_risk, scores)), share, seed, previous, as_of,
        horizon, source=source_id, value_column="_value")
    holdout = arms["holdout"].astype(bool)
    out = at_risk.assign(
        suggested_action=outreach.control_actions(at_risk["suggested_action"], holdout),
        contact=at_risk["contact"].where(~holdout, ""),
        **{holdout_column: holdout})
    records = [
        {"customer_id": r["customer_id"], "holdout": bool(r["holdout"]),
         "assigned": r["assigned"], "action": r["action"], "tier": r["tier"],
         "value": None if pd.isna(r["value"]) else round(float(r["value"]), 2)}
        for r in arms.to_dict("records")]
    return out, records, arms


def history_assignments(runs: list[dict[str, Any]], as_of: str, horizon: int) -> pd.DataFrame:
    """The history's assignments, one row each (`outreach.ASSIGNMENT_COLUMNS`), with `due`:
    the window has ended on or before `as_of`."""
    arms = pd.DataFrame(history_arms(runs), columns=list(outreach.ASSIGNMENT_COLUMNS))
    return outreach.due_assignments(arms, horizon, as_of)


def due_customer_ids(arms: pd.DataFrame) -> list[str]:
    """Sorted ids of the customers with a due assignment (whose outcomes must be read)."""
    return sorted(set(arms.loc[arms["due"], "customer_id"]))


def outcomes_of_due(arms: pd.DataFrame, *, horizon: int, definition: str,
                    activity: pd.DataFrame | None = None,
                    cancellations: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """`assigned`, `customer_id`, `retained` of the due assignments (None when none is due):
    from the cancel dates under the cancellation definition, else from the activity
    (`outreach.window_outcomes`)."""
    due = arms[arms["due"]]
    if due.empty:
        return None
    if definition == "cancellation":
        return outreach.window_outcomes(due, horizon_days=horizon, cancellations=cancellations)
    return outreach.window_outcomes(due, horizon_days=horizon, activity=activity)


def recorded_outreach(due: pd.DataFrame, interventions: pd.DataFrame | None, horizon: int
                      ) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any] | None]:
    """The due assignments with `treated`/`contacted` from the validated `interventions`
    table (`customer_id`, `timestamp`, `cost`), the costs spent on the treated in their
    window, and the counts for `outreach.json` (`treatment`). Without the table (None) the
    assignments as they are (intention to treat), no costs and None.

    Treated = listed, not held out and contacted in [list date, list date + horizon]; listed
    customers without a contact are left out of the comparison. Control customers contacted
    all the same stay in the control group (they were assigned to it) and are counted:
    `control_contacted`, since such contacts shrink the measured effect."""
    if interventions is None:
        return due, None, None
    window = outreach.contacts_in_window(due, interventions, horizon)
    frame = due.astype({"assigned": str, "customer_id": str}).merge(
        window, on=["assigned", "customer_id"], how="left")
    holdout = frame["holdout"].astype(bool)
    contacted = frame["contacted"].fillna(False).astype(bool)
    frame = frame.assign(contacted=contacted, treated=~holdout & contacted)
    spent = frame[frame["treated"] & frame["cost"].notna()]
    costs = spent[["assigned", "customer_id", "cost"]] if len(spent) else None
    info = {"treated_by": "interventions", "listed_contacted": int((~holdout & contacted).sum()),
            "listed_not_contacted": int((~holdout & ~contacted).sum()),
            "control": int(holdout.sum()), "control_contacted": int((holdout & contacted).sum())}
    return frame.drop(columns="cost"), costs, info


def outreach_report(arms: pd.DataFrame, outcomes: pd.DataFrame | None, *, as_of: str,
                    horizon: int, definition: str, holdout_share: float,
                    interventions: pd.DataFrame | None) -> dict[str, Any]:
    """The content of `reports/outreach.json`: each list with a control group (its size and the
    day its effect can be measured) and the measured effects (`outreach.measure_effect`) of the
    lists whose window has passed by `as_of`; `by_action` pools each action over the lists;
    `treatment` holds the counts of recorded outreach when `interventions` is given."""
    lists = [{"list_date": day, "customers": len(group), "control": int(group["holdout"].sum()),
              "measurable_on": (pd.Timestamp(day) + pd.Timedelta(days=horizon)).date().isoformat(),
              "measured": bool(group["due"].all())}
             for day, group in arms.groupby("assigned", sort=True)]
    due = arms[arms["due"]]
    effects: list[dict[str, Any]] = []
    recorded = None
    if outcomes is not None:
        due, costs, recorded = recorded_outreach(due, interventions, horizon)
        effects = [dict(e, sentence=outreach.plain_sentence(e))
                   for e in outreach.measure_effect(due, outcomes, costs=costs)]
    pooled = [e for e in effects if e["list_date"] == outreach.ALL_LISTS
              and e["action"] != outreach.ALL_ACTIONS]
    report = {"as_of": as_of, "holdout_share": holdout_share,
              "horizon_days": horizon, "label_definition": definition, "confidence": 0.95,
              "max_half_width": outreach.MAX_HALF_WIDTH, "lists": lists, "by_action": pooled,
              "effects": effects}
    if recorded is not None:
        report["treatment"] = recorded
    return report


def effects_plot_csv(effects: list[dict[str, Any]]) -> str:
    """`reports/plots/outreach_effects.csv`: one row per measured list and action (and `all
    actions` per list; the pooled rows over lists stay in outreach.json): contacted and control
    retention, the difference and its 95 % interval, as fractions. Only the header while no
    list with a control group has been measured."""
    rows = [{"list_date": e["list_date"], "action": e["action"],
             "contacted_rate": e["retention_treated"], "control_rate": e["retention_control"],
             "difference": e["difference"], "ci_low": e["ci_low"], "ci_high": e["ci_high"]}
            for e in effects if e["list_date"] != outreach.ALL_LISTS]
    return pd.DataFrame(rows, columns=list(EFFECTS_PLOT_COLUMNS)).to_csv(index=False)


def uplift_rows(arms: pd.DataFrame, outcomes: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Each measured assignment (due, with `retained`) on its customer's feature row at the
    latest cutoff on or before the list date (`rows`: `customer_id`, `cutoff`, features);
    assignments without such a row are left out."""
    due = arms[arms["due"]].merge(outcomes, on=["assigned", "customer_id"])
    rows = rows.assign(customer_id=rows["customer_id"].astype(str),
                       cutoff=pd.to_datetime(rows["cutoff"])).sort_values("cutoff")
    # merge_asof needs one resolution on both sides (pandas 3 parses these as [s] or [us])
    due = due.assign(_day=pd.to_datetime(due["assigned"]).astype(rows["cutoff"].dtype))
    due = due.sort_values("_day")
    return pd.merge_asof(due, rows, left_on="_day", right_on="cutoff", by="customer_id",
                         direction="backward").dropna(subset=["cutoff"])


def enough_uplift_evidence(data: pd.DataFrame) -> bool:
    """Whether `data` (`uplift_rows`) has enough measured customers per arm for a model."""
    treated = ~data["holdout"].astype(bool)
    return uplift.enough_evidence(treated, ~treated)[0]


def revenue_saved(data: pd.DataFrame, columns: list[str], scoring: pd.DataFrame | None,
                  scores: pd.DataFrame) -> tuple[pd.Series | None, dict[str, Any]]:
    """`expected_revenue_saved` per scored customer (aligned with `scores`) from an uplift model
    (`churnlens.uplift`) fitted on `data` (`uplift_rows`: contacted vs control and retained,
    features `columns`) and applied to the scoring rows (`scoring`: `customer_id` + `columns`;
    only needed when `enough_uplift_evidence`).
    None (risk ranking) with the reason while an arm has fewer than `uplift.MIN_PER_ARM`
    measured customers. The Qini coefficient of the latest measured list, predicted by a model
    of the lists before it, goes into the returned info (`used`, `reason`, counts)."""
    info: dict[str, Any] = {"rank_by": "revenue_saved", "used": False}
    treated = ~data["holdout"].astype(bool)
    ok, reason = uplift.enough_evidence(treated, ~treated)
    info.update(measured_contacted=int(treated.sum()), measured_control=int((~treated).sum()))
    if not ok:
        return None, dict(info, reason=reason)
    lists = sorted(data["assigned"].unique())
    if len(lists) > 1:
        fit_part, held = data[data["assigned"] != lists[-1]], data[data["assigned"] == lists[-1]]
        fit_treated = ~fit_part["holdout"].astype(bool)
        if uplift.enough_evidence(fit_treated, ~fit_treated)[0]:
            model = uplift.fit_uplift(fit_part[columns], fit_treated, fit_part["retained"])
            score = model.predict(held[columns])
            value = pd.to_numeric(held["value"], errors="coerce").fillna(0).clip(lower=0)
            info["held_out_list"] = lists[-1]
            info["qini"] = uplift.evaluate(score, ~held["holdout"].astype(bool),
                                           held["retained"])
            info["qini_revenue"] = uplift.evaluate(uplift.expected_revenue_saved(score, value),
                                                   ~held["holdout"].astype(bool),
                                                   held["retained"], value)
    model = uplift.fit_uplift(data[columns], treated, data["retained"])
    lift = dict(zip(scoring["customer_id"].astype(str), model.predict(scoring[columns]),
                    strict=True))
    value = list_values(scores, scores)
    saved = pd.Series(uplift.expected_revenue_saved(
        scores["customer_id"].astype(str).map(lift).to_numpy(float), value), index=scores.index)
    return saved, dict(info, used=True, reason=reason)
