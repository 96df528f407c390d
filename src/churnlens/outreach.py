"""Did our outreach work? Control groups for the at-risk list and the measured effect per action
(pure functions over DataFrames; the export stage reads and writes the files).

Control group (`assign_holdout`). With `export.holdout_share` > 0 a random share of each week's
at-risk list is held out: those customers get "Do not contact (control group)" instead of their
action, and comparing them with the contacted ones later tells what the action changed.

* Every customer newly on a list is held out with probability `share`, whatever their stratum,
  so arms can be pooled across strata without confounding. Within each stratum (risk tier x
  suggested action) the count is fixed: `floor(share x n)` plus one more with probability equal
  to the remainder, so every stratum is split in the right proportion.
* Reproducible: who is held out depends only on `seed`, the data source, the list date, the
  stratum and the customer id (SHA-256 of them, no random-number state), so a rerun writes the
  same list.
* Sticky: a customer keeps the arm (and the action and date) of their first assignment for
  `window_days` (the measurement window, `label.horizon_days`): a control customer is never
  contacted while their outcome is being measured. After the window they are assigned afresh.

Measured effect (`measure_effect`). Each assignment is measured once, on the list where it was
made, when its window has passed: the share of contacted (treated = on the list and not held out,
intention to treat; or, with the `interventions` table, on the list, not held out and contacted
in the window, `contacts_in_window`, while control customers contacted all the same stay in the
control group and are counted as `control_contacted`) and control customers still active at the
end of it, the difference with a Newcombe (hybrid score, Wilson-based) 95 % interval, customers
kept = difference x contacted customers, revenue kept = difference x their expected revenue,
cost per customer kept when costs are given. An estimate is `too_thin` when an arm has fewer
than `min_per_arm` customers or the interval is wider than +-`max_half_width`; `plain_sentence`
says so in words.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

CONTROL_ACTION = "Do not contact (control group)"
ALL_ACTIONS = "all actions"
ALL_LISTS = "all"
MAX_HALF_WIDTH = 0.10  # +-10 points: a wider interval is "not enough customers yet to tell"
MIN_PER_ARM = 10
ASSIGNMENT_COLUMNS = ("customer_id", "holdout", "assigned", "action", "tier", "value")


def holdout_key(seed: int, source: str, list_date: str, *parts: str) -> float:
    """A uniform number in [0, 1) from the seed, data source, list date and `parts` (SHA-256)."""
    text = "|".join([str(seed), str(source), str(list_date), *map(str, parts)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_holdout(
    at_risk: pd.DataFrame,
    share: float,
    seed: int,
    previous_assignments: pd.DataFrame | Iterable[Mapping[str, Any]] | None,
    list_date: str,
    window_days: int,
    *,
    source: str = "",
    action_column: str = "suggested_action",
    tier_column: str = "risk_tier",
    value_column: str | None = None,
) -> pd.DataFrame:
    """The arm of each customer of the list `at_risk` (index kept): `customer_id`, `holdout`
    (bool), `assigned` (ISO date of the assignment still running), `action` and `tier` (the
    suggested action and risk tier at that assignment), `value` (expected revenue at that
    assignment, from `value_column`; NaN without it), `fresh` (assigned on this list).

    `previous_assignments`: records of earlier lists with at least `customer_id`, `holdout`,
    `assigned` (and `action`, `tier`, `value`); the latest record per customer counts, and only
    records of assignments made before `list_date`. A customer whose assignment is less than
    `window_days` old keeps it; the others are assigned afresh (see the module docstring).
    """
    if not 0.0 <= float(share) < 1.0:
        raise ValueError(f"holdout share must be in [0, 1), got {share!r}")
    day = pd.Timestamp(list_date).date()
    ids = at_risk["customer_id"].astype("string").astype(str)
    actions = at_risk[action_column].astype("string").fillna("").astype(str)
    tiers = at_risk[tier_column].astype("string").fillna("").astype(str)
    values = (pd.to_numeric(at_risk[value_column], errors="coerce") if value_column
              else pd.Series(np.nan, index=at_risk.index, dtype="float64"))
    out = pd.DataFrame({"customer_id": ids, "holdout": False, "assigned": day.isoformat(),
                        "action": actions, "tier": tiers, "value": values.astype("float64"),
                        "fresh": True}, index=at_risk.index)

    for index, record in _running(previous_assignments, day, window_days, set(ids)).items():
        for row in out.index[out["customer_id"] == index]:
            out.loc[row, ["holdout", "assigned", "action", "tier", "fresh"]] = [
                bool(record["holdout"]), record["assigned"],
                record.get("action", out.at[row, "action"]) or out.at[row, "action"],
                record.get("tier", out.at[row, "tier"]) or out.at[row, "tier"], False]
            value = pd.to_numeric(pd.Series([record.get("value")]), errors="coerce").iloc[0]
            if not pd.isna(value):
                out.loc[row, "value"] = float(value)

    fresh = out[out["fresh"]]
    for (tier, action), group in fresh.groupby(["tier", "action"], sort=True):
        expected = float(share) * len(group)
        count = math.floor(expected)
        if holdout_key(seed, source, day.isoformat(), "stratum", tier, action) < expected - count:
            count += 1
        keys = group["customer_id"].map(
            lambda cid: holdout_key(seed, source, day.isoformat(), "customer", cid))
        chosen = keys.sort_values(kind="mergesort").index[:count]
        out.loc[chosen, "holdout"] = True
    out["holdout"] = out["holdout"].astype(bool)
    out["fresh"] = out["fresh"].astype(bool)
    return out


def _running(previous: Any, day: Any, window_days: int, ids: set[str]) -> dict[str, dict]:
    """The latest earlier assignment per listed customer that is less than `window_days` old."""
    if previous is None:
        return {}
    records = (previous.to_dict("records") if isinstance(previous, pd.DataFrame)
               else [dict(r) for r in previous])
    latest: dict[str, dict] = {}
    for record in records:
        cid = str(record.get("customer_id"))
        if cid not in ids or not record.get("assigned"):
            continue
        assigned = pd.Timestamp(record["assigned"]).date()
        if not 0 < (day - assigned).days < int(window_days):
            continue
        record = dict(record, assigned=assigned.isoformat())
        if cid not in latest or latest[cid]["assigned"] < record["assigned"]:
            latest[cid] = record
    return latest


def control_actions(suggested: pd.Series, holdout: pd.Series) -> pd.Series:
    """The action shown on the list: `CONTROL_ACTION` for the control group."""
    return suggested.astype("object").where(~holdout.astype(bool), CONTROL_ACTION)


def wilson_interval(successes: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion ((nan, nan) for n = 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(x1: float, n1: float, x2: float, n2: float,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p1 - p2, from two Wilson intervals."""
    if n1 <= 0 or n2 <= 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def measure_effect(
    assignments: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    costs: pd.DataFrame | None = None,
    confidence: float = 0.95,
    max_half_width: float = MAX_HALF_WIDTH,
    min_per_arm: int = MIN_PER_ARM,
) -> list[dict[str, Any]]:
    """The measured effect per list date and action, plus `ALL_ACTIONS` per list and every
    action pooled over the lists (`list_date` `ALL_LISTS`).

    `assignments`: one row per assignment: `assigned` (list date), `customer_id`, `holdout`,
    `action`, optional `value` (expected revenue over the window), `treated` (default: not
    held out) and `contacted` (recorded outreach: each result then counts the control customers
    contacted all the same, `control_contacted`). `outcomes`: `assigned`, `customer_id`,
    `retained` (bool) for the assignments whose window has passed; the others are left out.
    `costs`: `assigned`, `customer_id`, `cost` (what was spent on that customer in the window),
    optional.

    Each result: list_date, action, treated/control counts and retention, `difference`, `ci_low`,
    `ci_high`, `half_width` (points as fractions), `customers_kept`, `revenue_kept`, `cost`,
    `cost_per_customer_kept`, `too_thin`; sorted by list date, then action.
    """
    keys = ["assigned", "customer_id"]
    frame = assignments.copy()
    frame["assigned"] = frame["assigned"].astype(str)
    frame["customer_id"] = frame["customer_id"].astype(str)
    if "treated" not in frame:
        frame["treated"] = ~frame["holdout"].astype(bool)
    if "value" not in frame:
        frame["value"] = np.nan
    found = outcomes[keys + ["retained"]].astype({"assigned": str, "customer_id": str})
    frame = frame.merge(found, on=keys, how="inner")
    frame["cost"] = 0.0
    if costs is not None and not costs.empty:
        spent = (costs.astype({"assigned": str, "customer_id": str})
                 .groupby(keys, as_index=False)["cost"].sum())
        frame = frame.drop(columns="cost").merge(spent, on=keys, how="left")
        frame["cost"] = pd.to_numeric(frame["cost"], errors="coerce").fillna(0.0)
    has_costs = costs is not None and not costs.empty
    frame = frame[frame["treated"].astype(bool) | frame["holdout"].astype(bool)]

    holdout = frame["holdout"].to_numpy(bool)
    arrays = {"treated": frame["treated"].to_numpy(bool) & ~holdout, "control": holdout,
              "retained": frame["retained"].to_numpy(bool),
              "value": pd.to_numeric(frame["value"], errors="coerce").to_numpy(float),
              "cost": pd.to_numeric(frame["cost"], errors="coerce").fillna(0).to_numpy(float)}
    if "contacted" in frame:  # recorded outreach: control customers contacted all the same
        arrays["control_contacted"] = holdout & frame["contacted"].to_numpy(bool)
    groups = [(key, rows) for key, rows in frame.groupby(["assigned", "action"]).indices.items()]
    groups += [((day, ALL_ACTIONS), rows)
               for day, rows in frame.groupby("assigned").indices.items()]
    groups += [((ALL_LISTS, action), rows)
               for action, rows in frame.groupby("action").indices.items()]
    if frame["assigned"].nunique() > 1:
        groups.append(((ALL_LISTS, ALL_ACTIONS), np.arange(len(frame))))
    results = [_effect({k: v[rows] for k, v in arrays.items()}, day, action,
                       confidence=confidence, max_half_width=max_half_width,
                       min_per_arm=min_per_arm, has_costs=has_costs)
               for (day, action), rows in groups]
    order = {ALL_LISTS: "~"}
    return sorted(results, key=lambda r: (order.get(r["list_date"], r["list_date"]),
                                          r["action"] == ALL_ACTIONS, r["action"]))


def _effect(group: Mapping[str, np.ndarray], day: str, action: str, *, confidence: float,
            max_half_width: float, min_per_arm: int, has_costs: bool) -> dict[str, Any]:
    treated, control, retained = group["treated"], group["control"], group["retained"]
    n1, n2 = int(treated.sum()), int(control.sum())
    x1, x2 = int((retained & treated).sum()), int((retained & control).sum())
    r1 = x1 / n1 if n1 else None
    r2 = x2 / n2 if n2 else None
    diff = r1 - r2 if n1 and n2 else None
    low, high = newcombe_interval(x1, n1, x2, n2, confidence) if diff is not None else (None, None)
    half = (high - low) / 2 if diff is not None else None
    values = group["value"][treated]
    kept = diff * n1 if diff is not None else None
    revenue = (diff * float(np.nansum(values))
               if diff is not None and np.isfinite(values).any() else None)
    cost = float(group["cost"][treated].sum()) if has_costs else None
    per_kept = cost / kept if cost is not None and kept is not None and kept > 0 else None
    thin = min(n1, n2) < min_per_arm or half is None or half > max_half_width
    result = {
        "list_date": day, "action": action,
        "treated": n1, "control": n2, "treated_retained": x1, "control_retained": x2,
        "retention_treated": _round(r1), "retention_control": _round(r2),
        "difference": _round(diff), "ci_low": _round(low), "ci_high": _round(high),
        "half_width": _round(half), "confidence": confidence,
        "customers_kept": _round(kept, 2), "revenue_kept": _round(revenue, 2),
        "cost": _round(cost, 2), "cost_per_customer_kept": _round(per_kept, 2),
        "too_thin": bool(thin),
    }
    if "control_contacted" in group:
        result["control_contacted"] = int(group["control_contacted"].sum())
    return result


def contacts_in_window(assignments: pd.DataFrame, interventions: pd.DataFrame,
                       horizon_days: int) -> pd.DataFrame:
    """Recorded outreach per assignment: `assigned`, `customer_id`, `contacted` (the
    `interventions` table has a row for the customer on a day in [assigned, assigned +
    horizon]) and `cost` (the sum of those rows' costs; NaN when none is given).

    `interventions`: `customer_id`, `timestamp`, optional `cost` (the validated table)."""
    frame = assignments[["assigned", "customer_id"]].astype(str).drop_duplicates()
    frame = frame.reset_index(drop=True)
    start = pd.to_datetime(frame["assigned"])
    costs = (pd.to_numeric(interventions["cost"], errors="coerce") if "cost" in interventions
             else pd.Series(np.nan, index=interventions.index, dtype="float64"))
    done = pd.DataFrame({"customer_id": interventions["customer_id"].astype(str),
                         "day": pd.to_datetime(interventions["timestamp"]).dt.normalize(),
                         "cost": costs.astype("float64")})
    joined = frame.assign(_row=frame.index, _start=start,
                          _end=start + pd.Timedelta(days=int(horizon_days))).merge(
        done, on="customer_id")
    hit = joined[(joined["day"] >= joined["_start"]) & (joined["day"] <= joined["_end"])]
    spent = hit.groupby("_row")["cost"].sum(min_count=1)
    return frame.assign(contacted=frame.index.isin(hit["_row"]),
                        cost=spent.reindex(frame.index).to_numpy(float))


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def plain_sentence(effect: Mapping[str, Any]) -> str:
    """One sentence for people, e.g. "Reactivation campaign: 41 % vs 33 % stayed, +8 pts (±5),
    about 19 customers and 12,400 of revenue kept", or "...: not enough customers yet to tell
    (35 contacted, 4 in the control group)"."""
    action = effect.get("action") or ALL_ACTIONS
    label = action[:1].upper() + action[1:]
    warning = (f" (control group contacted: {effect['control_contacted']})"
               if effect.get("control_contacted") else "")
    if effect.get("too_thin") or effect.get("difference") is None:
        return (f"{label}: not enough customers yet to tell ({effect.get('treated', 0)} "
                f"contacted, {effect.get('control', 0)} in the control group){warning}")
    diff, half = effect["difference"], effect["half_width"]
    pts = round(diff * 100)
    sign = "+" if pts > 0 else ("\u2212" if pts < 0 else "\u00b1")
    text = (f"{label}: {effect['retention_treated'] * 100:.0f} % vs "
            f"{effect['retention_control'] * 100:.0f} % stayed, {sign}{abs(pts)} pts "
            f"(\u00b1{half * 100:.0f})")
    if effect["ci_low"] <= 0 <= effect["ci_high"]:
        return text + ", no clear difference yet" + warning
    kept = abs(effect["customers_kept"] or 0.0)
    verb = "kept" if diff > 0 else "lost"
    text += f", about {kept:,.0f} customers"
    if effect.get("revenue_kept") is not None:
        text += f" and {abs(effect['revenue_kept']):,.0f} of revenue"
    text += f" {verb}"
    if effect.get("cost_per_customer_kept") is not None:
        text += f", {effect['cost_per_customer_kept']:,.0f} spent per customer kept"
    return text + warning


def due_assignments(assignments: pd.DataFrame, horizon_days: int, as_of: str) -> pd.DataFrame:
    """One row per assignment (`assigned`, `customer_id`; a sticky customer is recorded on
    every list they stayed on, the first record counts) with `due`: its window
    (assigned, assigned + horizon] has ended on or before `as_of`."""
    if assignments.empty:
        return assignments.assign(due=pd.Series(dtype=bool))
    frame = assignments.astype({"assigned": str, "customer_id": str}).drop_duplicates(
        ["assigned", "customer_id"], keep="first").reset_index(drop=True)
    end = pd.to_datetime(frame["assigned"]) + pd.Timedelta(days=int(horizon_days))
    return frame.assign(due=(end <= pd.Timestamp(as_of)).to_numpy(bool))


def window_outcomes(
    assignments: pd.DataFrame,
    *,
    horizon_days: int,
    activity: pd.DataFrame | None = None,
    cancellations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`assigned`, `customer_id`, `retained` of each assignment (rows of `assignments`): under
    the inactivity definition (`activity`: `customer_id`, `timestamp` of every transaction and
    event) retained = any activity on a day in (assigned, assigned + horizon]; under the
    cancellation definition (`cancellations`: `customer_id`, `cancel_date`) retained = no
    cancel date in it. The caller passes only assignments whose window has ended."""
    frame = assignments[["assigned", "customer_id"]].astype(str).reset_index(drop=True)
    start = pd.to_datetime(frame["assigned"])
    end = start + pd.Timedelta(days=int(horizon_days))
    if cancellations is not None:
        cancel = cancellations.dropna(subset=["cancel_date"]).astype({"customer_id": str})
        day = dict(zip(cancel["customer_id"], pd.to_datetime(cancel["cancel_date"]).dt.normalize(),
                       strict=True))
        when = pd.to_datetime(frame["customer_id"].map(day))
        left = (when > start) & (when <= end)
        return frame.assign(retained=~left.fillna(False).to_numpy(bool))
    days = pd.DataFrame({"customer_id": activity["customer_id"].astype(str),
                         "day": pd.to_datetime(activity["timestamp"]).dt.normalize()})
    joined = frame.assign(_row=frame.index, _start=start, _end=end).merge(days, on="customer_id")
    hit = joined[(joined["day"] > joined["_start"]) & (joined["day"] <= joined["_end"])]
    return frame.assign(retained=frame.index.isin(hit["_row"]))


def report_section(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the weekly report shows from `reports/outreach.json`: None without control groups,
    else a `summary` line and one plain sentence per action (pooled over the measured lists)."""
    lists = list((report or {}).get("lists") or [])
    if not lists:
        return None
    horizon = report.get("horizon_days")
    measured = [x for x in lists if x.get("measured")]
    waiting = [x for x in lists if not x.get("measured")]
    parts = []
    if measured:
        parts.append(f"{len(measured)} list{'s' if len(measured) > 1 else ''} with a control "
                     f"group measured (from {measured[0]['list_date']}): share of contacted and "
                     f"of control customers still active {horizon} days after the list.")
    if waiting:
        latest = waiting[-1]
        parts.append(f"{latest['control']} of the {latest['customers']} customers on the list of "
                     f"{latest['list_date']} are the control group; its effect can be measured "
                     f"from {latest['measurable_on']}.")
    sentences = [e.get("sentence") or plain_sentence(e) for e in report.get("by_action") or []]
    return {"summary": " ".join(parts), "sentences": sentences,
            "ranking": ranking_sentence(report.get("uplift")),
            "ranking_rates": rate_sentences(report.get("uplift"))}


def ranking_sentence(info: Mapping[str, Any] | None) -> str | None:
    """How this week's list is ranked, in words (`outreach.json`'s `uplift`, present with
    `export.rank_by: revenue_saved`): by expected revenue saved, or by revenue at risk and why.
    None without that entry."""
    if not info:
        return None
    if not info.get("used"):
        return f"The list stays ranked by revenue at risk: {info.get('reason', 'no reason given')}."
    return (f"The list is ranked by expected revenue saved, from "
            f"{info.get('measured_contacted')} contacted and {info.get('measured_control')} "
            f"control customers measured so far.")


def rate_sentences(info: Mapping[str, Any] | None) -> list[str]:
    """One sentence per action from the uplift learner's rates (`uplift.action_rates`, the
    rescue/harm learner), highest rescue rate first; empty without them."""
    rates = sorted((info or {}).get("action_rates") or [], key=lambda r: -r["rescue_rate"])
    return [f"{r['action']}: estimated to keep about {r['rescue_rate'] * 100:.0f} % of the "
            f"customers who would have left, and to lose about {r['harm_rate'] * 100:.0f} % of "
            f"those who would have stayed." for r in rates]
