"""The outreach loop over the at-risk history: control groups on the weekly list, the measured
effect of the lists whose window has passed and the uplift ranking fitted on them (pure
functions over DataFrames and the history's records; the export stage reads the tables and
writes the files, `churnlens.outreach` and `churnlens.uplift` hold the statistics).

* `with_control_group`: the at-risk list with its control group (`outreach.assign_holdout`) and
  the records of the assignments made on this list, which go into the run's `arms` in
  `reports/at_risk_history.json` (each assignment once, in its own list's run).
* `history_assignments` / `due_customer_ids` / `outcomes_of_due`: the history's assignments with
  `due` (window passed by as_of) and, from the validated activity (inactivity) or cancel dates
  (cancellation), whether each due customer stayed. `retired_lists` / `with_retired`: the lists
  that left the history, kept as a summary so that the report can say they are not measured.
* `recorded_outreach`: treated = listed, not held out and contacted within the window per the
  `interventions` table (without it: intention to treat).
* `outreach_report`: the content of `reports/outreach.json`; `effects_plot_csv` its plot CSV.
* `uplift_rows` / `revenue_saved`: the measured assignments on their feature rows at the list
  date (and their action), an uplift model over them and `expected_revenue_saved` per scored
  customer; `held_out_evaluation`: the uplift and the risk ranking on the latest measured lists
  predicted by a model of the lists before them (Qini with bootstrap intervals), flattened for
  MLflow by `uplift_metrics` / `qini_curve_csv`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnlens import outreach, uplift
from churnlens.export import history_arms

EFFECTS_PLOT_COLUMNS = ("list_date", "action", "contacted_rate", "control_rate", "difference",
                        "ci_low", "ci_high")
ACTION_FEATURE = uplift.GROUP_FEATURE  # the (would-be) action, a feature of the uplift model
RISK_FEATURE = uplift.ANCHOR_FEATURE  # the churn model's probability on the list day
HELD_OUT_DAYS = 28  # the uplift is evaluated on the lists measured in the latest four weeks
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
    records of the assignments made on this list, for the history (a customer still in the
    window of an earlier assignment keeps it and is not recorded again: each assignment lives
    in the run of its own list only); and the arms (`fresh` = assigned on this list). Arms
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
    risk = pd.to_numeric(at_risk["expected_revenue_at_risk"], errors="coerce")
    probability = pd.to_numeric(at_risk["churn_probability"], errors="coerce")
    records = [
        {"customer_id": r["customer_id"], "holdout": bool(r["holdout"]),
         "assigned": r["assigned"], "action": r["action"], "tier": r["tier"],
         "value": None if pd.isna(r["value"]) else round(float(r["value"]), 2),
         "at_risk": None if pd.isna(r["_risk"]) else round(float(r["_risk"]), 2),
         "churn_probability": None if pd.isna(r["_p"]) else round(float(r["_p"]), 4)}
        for r in arms.assign(_risk=risk, _p=probability)[arms["fresh"]].to_dict("records")]
    return out, records, arms


def history_assignments(runs: list[dict[str, Any]], as_of: str, horizon: int) -> pd.DataFrame:
    """The history's assignments, one row each (`outreach.ASSIGNMENT_COLUMNS`), with `due`:
    the window has ended on or before `as_of`.

    An assignment counts from the run of the list that made it (`assigned` = the run's
    `as_of`) only. Histories written before 2026-11-26 also re-recorded a sticky customer on
    every later list they stayed on; those copies are ignored, so that a list whose run has left
    the history (`retired_lists`) is not measured on the part of it that happened to be listed
    again (the customers still active a week later: a biased part)."""
    own = [dict(a) for r in runs for a in (r.get("arms") or [])
           if isinstance(a, Mapping) and str(a.get("assigned")) == str(r.get("as_of"))]
    arms = pd.DataFrame(own, columns=[*outreach.ASSIGNMENT_COLUMNS, "at_risk",
                                      "churn_probability"])
    return outreach.due_assignments(arms, horizon, as_of)


def retired_lists(runs_before: list[dict[str, Any]], runs_after: list[dict[str, Any]],
                  as_of: str) -> list[dict[str, Any]]:
    """The lists with a control group that the history update dropped (in `runs_before`, not
    in `runs_after`): `list_date`, `customers`, `control` (their own assignments) and
    `retired_on` (`as_of`)."""
    kept = {str(r["as_of"]) for r in runs_after}
    out = []
    for run in runs_before:
        day = str(run["as_of"])
        own = [a for a in run.get("arms") or [] if str(a.get("assigned")) == day]
        if day in kept or day == str(as_of) or not own:
            continue
        out.append({"list_date": day, "customers": len(own),
                    "control": sum(bool(a.get("holdout")) for a in own),
                    "retired_on": str(as_of)})
    return out


def with_retired(history: dict[str, Any], source_id: str,
                 retired: list[dict[str, Any]]) -> dict[str, Any]:
    """`history` (from `export.update_history`) with `retired` added to the source's
    `retired_lists` (one entry per list date, the latest kept), so that `outreach.json` can
    still say which lists are no longer measured and why."""
    if not retired:
        return history
    sources = []
    for entry in history["sources"]:
        if entry.get("id") == source_id:
            known = {r["list_date"]: r for r in entry.get("retired_lists") or []}
            known.update({r["list_date"]: r for r in retired})
            entry = dict(entry, retired_lists=[known[k] for k in sorted(known)])
        sources.append(entry)
    return dict(history, sources=sources)


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
                    interventions: pd.DataFrame | None,
                    known_ids: set[str] | None = None,
                    retired: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The content of `reports/outreach.json`: each list with a control group (its size and the
    day its effect can be measured) and the measured effects (`outreach.measure_effect`) of the
    lists whose window has passed by `as_of`; `by_action` pools each action over the lists;
    `treatment` holds the counts of recorded outreach when `interventions` is given.

    Every due assignment is measured or listed under `unmeasured` with the reason: its customer
    is no longer in the data (`known_ids`: the current customers; such a customer's outcome
    cannot be told), listed but not contacted within the window (with `interventions`), or its
    whole list has left the history (`retired`, from `retired_lists`). `assignments` counts
    them (only with lists or retired lists: without control groups the report is as before)."""
    lists = [{"list_date": day, "customers": len(group), "control": int(group["holdout"].sum()),
              "measurable_on": (pd.Timestamp(day) + pd.Timedelta(days=horizon)).date().isoformat(),
              "measured": bool(group["due"].all())}
             for day, group in arms.groupby("assigned", sort=True)]
    due = arms[arms["due"]]
    unmeasured: list[dict[str, Any]] = []
    if known_ids is not None and len(due):
        gone = ~due["customer_id"].astype(str).isin(known_ids)
        unmeasured += _counts(due[gone], "no longer in the customers table: outcome unknown")
        due = due[~gone]
    effects: list[dict[str, Any]] = []
    recorded = None
    measured = 0
    if outcomes is not None and len(due):
        due, costs, recorded = recorded_outreach(due, interventions, horizon)
        if recorded is not None:
            left_out = due[~due["treated"].astype(bool) & ~due["holdout"].astype(bool)]
            unmeasured += _counts(left_out, "listed but not contacted within the window "
                                            "(interventions table): left out")
        effects = [dict(e, sentence=outreach.plain_sentence(e))
                   for e in outreach.measure_effect(due, outcomes, costs=costs)]
        compared = due if "treated" not in due else due[due["treated"].astype(bool)
                                                        | due["holdout"].astype(bool)]
        measured = len(compared.merge(outcomes[["assigned", "customer_id"]].astype(str),
                                      on=["assigned", "customer_id"]))
    for r in retired or []:
        unmeasured.append({"list_date": r["list_date"], "customers": r["customers"],
                           "control": r["control"],
                           "reason": f"list dropped from the history on {r['retired_on']} "
                                     f"({MEASURED_KEEP_DAYS} days after its window): no longer "
                                     "measured nor pooled"})
    pooled = [e for e in effects if e["list_date"] == outreach.ALL_LISTS
              and e["action"] != outreach.ALL_ACTIONS]
    report = {"as_of": as_of, "holdout_share": holdout_share,
              "horizon_days": horizon, "label_definition": definition, "confidence": 0.95,
              "max_half_width": outreach.MAX_HALF_WIDTH, "lists": lists, "by_action": pooled,
              "effects": effects}
    if recorded is not None:
        report["treatment"] = recorded
    if lists or retired:
        report["assignments"] = {
            "made": len(arms) + sum(r["customers"] for r in retired or []),
            "due": int(arms["due"].sum()) + sum(r["customers"] for r in retired or []),
            "measured": measured, "unmeasured": sum(u["customers"] for u in unmeasured)}
        report["unmeasured"] = sorted(unmeasured, key=lambda u: (u["list_date"], u["reason"]))
    return report


def _counts(frame: pd.DataFrame, reason: str) -> list[dict[str, Any]]:
    """Per list date: the assignments of `frame` (customers, control) with `reason`."""
    return [{"list_date": str(day), "customers": len(group),
             "control": int(group["holdout"].astype(bool).sum()), "reason": reason}
            for day, group in frame.groupby("assigned", sort=True)]


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


def uplift_rows(due: pd.DataFrame, outcomes: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Each measured assignment on its customer's feature row at the latest cutoff on or before
    the list date (`rows`: `customer_id`, `cutoff`, features), with `treated` and `retained`;
    assignments without such a row are left out.

    `due`: the due assignments; with a `treated` column (`recorded_outreach`: contacted per the
    interventions table) the treated and the control customers, listed customers nobody
    contacted left out; without it intention to treat (treated = not held out)."""
    keys = ["assigned", "customer_id"]
    due = due.astype({"assigned": str, "customer_id": str})
    if "treated" in due:
        due = due[due["treated"].astype(bool) | due["holdout"].astype(bool)]
        due = due.assign(treated=due["treated"].astype(bool) & ~due["holdout"].astype(bool))
    else:
        due = due.assign(treated=~due["holdout"].astype(bool))
    due = due.merge(outcomes[[*keys, "retained"]].astype({"assigned": str, "customer_id": str}),
                    on=keys)
    rows = rows.assign(customer_id=rows["customer_id"].astype(str),
                       cutoff=pd.to_datetime(rows["cutoff"])).sort_values("cutoff")
    # merge_asof needs one resolution on both sides (pandas 3 parses these as [s] or [us])
    due = due.assign(_day=pd.to_datetime(due["assigned"]).astype(rows["cutoff"].dtype))
    due = due.sort_values("_day")
    return pd.merge_asof(due, rows, left_on="_day", right_on="cutoff", by="customer_id",
                         direction="backward").dropna(subset=["cutoff"])


def enough_uplift_evidence(data: pd.DataFrame) -> bool:
    """Whether `data` (`uplift_rows`) has enough measured customers per arm for a model."""
    treated = data["treated"].astype(bool)
    return uplift.enough_evidence(treated, ~treated)[0]


def revenue_saved(data: pd.DataFrame, columns: list[str], scoring: pd.DataFrame | None,
                  scores: pd.DataFrame, actions: pd.Series | None = None, *,
                  learner: str = uplift.DEFAULT_LEARNER
                  ) -> tuple[pd.Series | None, dict[str, Any]]:
    """`expected_revenue_saved` per scored customer (aligned with `scores`) from an uplift model
    (`churnlens.uplift`) fitted on `data` (`uplift_rows`: treated vs control and retained,
    features `columns`) and applied to the scoring rows (`scoring`: `customer_id` + `columns`;
    only needed when `enough_uplift_evidence`).

    The action is part of the treatment: what contact does depends on whether it is an
    onboarding call or a discount offer. So the model also sees each assignment's (would-be)
    action as a categorical feature (`ACTION_FEATURE`), and a scored customer the action the
    list suggests now (`actions`: customer id -> action; missing for customers not on it); and
    the churn probability on the list day (`RISK_FEATURE`, see `with_action_feature`; a scored
    customer's from `scores`).

    None (risk ranking) with the reason while an arm has fewer than `uplift.MIN_PER_ARM`
    measured customers. The held-out evaluation (`held_out_evaluation`) goes into the returned
    info with `used`, `reason` and the counts."""
    info: dict[str, Any] = {"rank_by": "revenue_saved", "used": False}
    treated = data["treated"].astype(bool)
    ok, reason = uplift.enough_evidence(treated, ~treated)
    info.update(measured_contacted=int(treated.sum()), measured_control=int((~treated).sum()))
    if not ok:
        return None, dict(info, reason=reason)
    data, features = with_action_feature(data, columns)
    if learner == "rescue_harm" and RISK_FEATURE not in features:
        learner = "t"
        info["learner_note"] = ("the history has no churn probability for every measured "
                                "assignment (lists made before it was recorded): T-learner")
    info.update(held_out_evaluation(data, features, learner=learner))
    model = uplift.fit_uplift(data[features], treated, data["retained"], learner=learner)
    info["learner"] = learner
    if hasattr(model, "rates"):
        info["action_rates"] = model.rates()
    probability = pd.Series(pd.to_numeric(scores["churn_probability"], errors="coerce").to_numpy(),
                            index=scores["customer_id"].astype(str).to_numpy())
    lift = dict(zip(scoring["customer_id"].astype(str),
                    predict_uplift(model, features, scoring, actions, probability), strict=True))
    value = list_values(scores, scores)
    saved = pd.Series(uplift.expected_revenue_saved(
        scores["customer_id"].astype(str).map(lift).to_numpy(float), value), index=scores.index)
    return saved, dict(info, used=True, reason=reason)


def with_action_feature(data: pd.DataFrame, columns: list[str], *, risk: bool = True
                        ) -> tuple[pd.DataFrame, list[str]]:
    """`data` (`uplift_rows`) with the assignment's action as the feature `ACTION_FEATURE` and
    (`risk`) the churn model's probability on the list day as `RISK_FEATURE`, and the model's
    feature list (`columns` + those recorded for every row).

    Why the churn probability: contact can only keep a customer who would otherwise leave, so
    the effect of a rescue grows with the chance of leaving. The churn model learned that chance
    from every customer; the uplift model sees a few hundred measured ones and cannot learn it
    again from the raw features, but it can scale with it."""
    features = list(columns)
    if "action" in data:
        data = data.assign(**{ACTION_FEATURE: data["action"].astype(str)})
        features.append(ACTION_FEATURE)
    if risk and "churn_probability" in data and data["churn_probability"].notna().all():
        data = data.assign(**{RISK_FEATURE: pd.to_numeric(data["churn_probability"])})
        features.append(RISK_FEATURE)
    return data, features


def predict_uplift(model: uplift.UpliftModel, features: list[str], scoring: pd.DataFrame,
                   actions: pd.Series | None, probability: pd.Series | None = None
                   ) -> np.ndarray:
    """The model's uplift for the scoring rows, each with the action the list suggests now
    (`actions`: customer id -> action; missing for customers not on the list) and its churn
    probability now (`probability`: customer id -> probability)."""
    if RISK_FEATURE in features:
        lookup = {} if probability is None else dict(zip(probability.index.astype(str),
                                                         probability, strict=True))
        scoring = scoring.assign(**{RISK_FEATURE: scoring["customer_id"].astype(str).map(
            lookup).astype("float64")})
    if ACTION_FEATURE in features:
        lookup = {} if actions is None else dict(zip(actions.index.astype(str),
                                                     actions.astype(str), strict=True))
        scoring = scoring.assign(**{ACTION_FEATURE: scoring["customer_id"].astype(str).map(
            lookup)})
    return model.predict(scoring[features])


def held_out_evaluation(data: pd.DataFrame, features: list[str], *,
                        learner: str = uplift.DEFAULT_LEARNER,
                        held_out_days: int = HELD_OUT_DAYS) -> dict[str, Any]:
    """The uplift ranking against the risk ranking on held-out lists: the lists measured within
    `held_out_days` of the latest measured one are predicted by a model of the lists before
    them (when those have enough outcomes per arm). Empty without such a split.

    `qini` / `qini_revenue`: the uplift ranking's Qini curve, plain and weighted by the
    expected revenue (as before). `comparison`: per ranking (`uplift` = expected revenue saved,
    `risk` = expected revenue at risk on the list day, recorded with the assignment) the Qini
    coefficient with a bootstrap 95 % interval, plain (customers kept) and weighted by the
    expected revenue winsorised at its 95th percentile (`uplift.capped`: one large account would
    otherwise decide the sign); 0 = random."""
    days = pd.to_datetime(data["assigned"])
    latest = days.max()
    held_mask = (days > latest - pd.Timedelta(days=int(held_out_days))).to_numpy(bool)
    fit_part, held = data[~held_mask], data[held_mask]
    fit_treated = fit_part["treated"].astype(bool)
    if fit_part.empty or not uplift.enough_evidence(fit_treated, ~fit_treated)[0]:
        return {}
    model = uplift.fit_uplift(fit_part[features], fit_treated, fit_part["retained"],
                              learner=learner)
    score = model.predict(held[features])
    value = pd.to_numeric(held["value"], errors="coerce").fillna(0).clip(lower=0)
    treated, retained = held["treated"].astype(bool), held["retained"].astype(bool)
    saved = uplift.expected_revenue_saved(score, value)
    out: dict[str, Any] = {
        "held_out_list": sorted(held["assigned"].unique())[-1],
        "held_out_lists": sorted(held["assigned"].unique()),
        "qini": uplift.evaluate(score, treated, retained),
        "qini_revenue": uplift.evaluate(saved, treated, retained, value)}
    cap = uplift.capped(value)
    rankings = {"uplift": saved}
    if "at_risk" in held and held["at_risk"].notna().all():
        rankings["risk"] = pd.to_numeric(held["at_risk"], errors="coerce").to_numpy(float)
    comparison: dict[str, Any] = {
        "learner": learner, "customers": len(held), "contacted": int(treated.sum()),
        "control": int((~treated).sum()),
        "value_cap": round(float(cap.max()), 2) if len(cap) else None}
    for name, ranking in rankings.items():
        plain = uplift.qini_coefficient(ranking, treated, retained)
        weighted = uplift.qini_coefficient(ranking, treated, retained, cap)
        comparison[name] = {
            "qini": round(plain, 6),
            "qini_interval": [round(v, 6) for v in uplift.qini_interval(
                ranking, treated, retained)],
            "qini_revenue_capped": round(weighted, 4),
            "qini_revenue_capped_interval": [round(v, 4) for v in uplift.qini_interval(
                ranking, treated, retained, cap)],
            "curve": uplift.evaluate(ranking, treated, retained, cap)["curve"]}
    out["comparison"] = comparison
    return out


def uplift_metrics(comparison: dict[str, Any]) -> dict[str, float]:
    """Flat metrics of `held_out_evaluation`'s `comparison` (for MLflow): per ranking the Qini
    coefficient and its interval, plain and revenue-weighted (capped), and the counts."""
    metrics = {"uplift_held_out_customers": float(comparison["customers"]),
               "uplift_held_out_control": float(comparison["control"])}
    for name in ("uplift", "risk"):
        block = comparison.get(name)
        if not block:
            continue
        for key in ("qini", "qini_revenue_capped"):
            low, high = block[f"{key}_interval"]
            metrics.update({f"{name}_{key}": block[key], f"{name}_{key}_low": low,
                            f"{name}_{key}_high": high})
    return metrics


def qini_curve_csv(comparison: dict[str, Any]) -> str:
    """The Qini curves of `comparison` (revenue-weighted, capped) as CSV: `ranking`,
    `targeted_share`, `qini`, `random`."""
    rows = [dict(point, ranking=name) for name in ("uplift", "risk")
            for point in (comparison.get(name) or {}).get("curve", [])]
    return pd.DataFrame(rows, columns=["ranking", "targeted_share", "qini", "random"]).to_csv(
        index=False)
