#!/usr/bin/env python
"""Closed-loop outreach simulation: the pipeline's own lists, control groups and measured effects
checked against a known truth (issue 13).

    python scripts/simulate_outreach_loop.py                   # sample size, weekly lists
    python scripts/simulate_outreach_loop.py --customers 1500 --lists 6 --every-days 14
    make simulate-outreach

The generator's own outreach simulation (`generate.outreach_weeks`) plays a CS team that never
sees the pipeline's lists, so the pipeline's measurement of its *own* lists has no truth to be
checked against. Here the team works from the pipeline's lists instead:

1. In a work folder (default: a new temp folder; `--work`), `churnlens generate` writes the base
   sample (`generate.outreach_weeks` 0: no built-in outreach) to `data/base`.
2. For each list date d (`--first`, then every `--every-days`, `--lists` of them) the real stages
   run in-process as `dvc.yaml` calls them (`churnlens privacy, validate, features, train, score,
   explain, export`; train on the first list and every `--retrain-every` lists after it, the
   registry's champion scores in between) on `data/sample`, with `snapshot.as_of` = d,
   `export.holdout_share` (`--holdout-share`, 0.5), `export.top_n` (`--top-n`, 400: the list is
   then every active high/medium-risk customer) and `export.rank_by` (`--rank-by`,
   `revenue_saved`: the risk ranking until enough outcomes are measured, then the uplift
   ranking). One MLflow store and one `reports/at_risk_history.json` for the whole loop, so arms
   stick across lists as they do week after week.
3. The simulated team contacts the list's fresh assignments (`assigned` = d in the history) that
   are not held out, each reached with probability `--reach` (0.9), on day d + 1..3: one
   `interventions` row (action, channel, cost). The control group is never contacted. Each
   fresh assignment gets both potential outcomes Y0 (any activity in (d, d + horizon] in the
   current data) and Y1 (the same after contact), from the known effect `TRUE_EFFECTS` of its
   action and subgroup (subgroups from the raw data on d: plan, days without activity):
   "rescue q": a customer with Y0 = 0 is kept with probability q (weekly `login` events through
   the window and, for customers who paid in the 90 days before d, a monthly transaction of
   their last amount); "harm h": the customer leaves at the contact with probability h (every
   event and transaction from the contact day on is removed). Only reached contacted customers
   get Y1 written into the raw logs; the next list sees the changed data.
4. A last run at the last list date + horizon (all stages but train) measures every list:
   `reports/outreach.json` gives per list and action, and pooled per action, contacted vs
   control retention with a 95 % interval. The simulated effect of an action is the mean of
   Y1 - Y0 over its fresh assignments that the final run still measures (both arms: what a
   perfect experiment would measure; the history drops lists older than the horizon + 182 days
   but keeps their customers re-recorded on later lists); coverage = the share of intervals
   that contain it. Subgroups are measured with the same function
   (`churnlens.outreach.measure_effect`) on the same assignments. Control customers contacted
   within their window (`churnlens.outreach.contacts_in_window`) are counted: always 0 here.
5. Uplift on held-out lists: on each list the export ranked by expected revenue saved (the
   T-learner was fitted only on lists measured before that date), the fresh assignments are
   ranked by `expected_revenue_saved` and by `expected_revenue_at_risk`: Qini coefficients
   (revenue-weighted and plain, observed outcomes, reached contacted vs control; 0 = random) and
   the revenue each ranking truly keeps when contacting its top 20 % / 30 % / all (sum of
   (Y1 - Y0) x expected revenue, per list).

`--reevaluate WORK` computes the figures again from a kept work folder (`truth.csv`,
`loop_state.json`, the final run's outputs).

Prints a table and writes `--out` (default `reports/outreach_loop.json` in the repo). Nothing in
the repo's own data, models, MLflow store or reports is touched besides that file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # LightGBM threads spin on a busy machine
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's churnlens, whatever .venv points at
DAY = np.timedelta64(1, "D")
EPOCH = np.datetime64("1970-01-01", "D")
LARGE_PLANS = ("pro", "enterprise")
RESOLVE = "Resolve the open support ticket first; no promotion"
# (action, subgroup) -> (kind, rate): "rescue q" keeps a customer who would have left (Y0 = 0)
# with probability q; "harm h" makes a customer leave at the contact with probability h.
TRUE_EFFECTS: dict[tuple[str, str], tuple[str, float]] = {
    (RESOLVE, "all"): ("rescue", 0.30),
    ("Onboarding call", "idle trial"): ("rescue", 0.35),      # no activity for 7+ days
    ("Onboarding call", "trial in use"): ("rescue", 0.05),
    ("Reactivation campaign", "small plan, inactive 30-59 days"): ("rescue", 0.25),
    ("Reactivation campaign", "small plan, inactive 60+ days"): ("rescue", 0.05),
    ("Reactivation campaign", "large plan"): ("harm", 0.20),  # a win-back mail to a dormant paid
    ("Personal outreach by the CSM", "all"): ("rescue", 0.20),  # account reminds it to cancel
    ("Nurture", "small plan"): ("rescue", 0.10),
    ("Nurture", "large plan"): ("harm", 0.20),
}
CHANNELS = {RESOLVE: ("phone", 15.0), "Onboarding call": ("phone", 25.0),
            "Reactivation campaign": ("email", 0.5), "Personal outreach by the CSM":
            ("meeting", 60.0), "Nurture": ("email", 0.2)}
LIST_STAGES = ("privacy", "validate", "features", "train", "score", "explain", "export")
FINAL_STAGES = ("privacy", "validate", "features", "score", "drift", "explain", "export", "kpis",
                "report")
SHARES = (0.2, 0.3, 1.0)


def subgroup(action: str, segment: str, idle_days: int) -> str:
    """The subgroup of `TRUE_EFFECTS` a listed customer falls in (from the raw data on d)."""
    large = segment in LARGE_PLANS
    if action == "Onboarding call":
        return "idle trial" if idle_days >= 7 else "trial in use"
    if action == "Reactivation campaign":
        if large:
            return "large plan"
        return f"small plan, inactive {'60+' if idle_days >= 60 else '30-59'} days"
    if action == "Nurture":
        return "large plan" if large else "small plan"
    return "all"


# --- the raw logs, held in memory and changed by the simulated contacts ----------------------


class RawLogs:
    """The base sample's tables as text (written back unchanged but for the simulated contacts)
    plus each event/transaction row's UTC day (days since 1970-01-01; NaN when unparseable)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tables = {name: pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)
                       for name in ("customers", "transactions", "events", "tickets", "nps")}
        for name in ("events", "transactions"):
            frame = self.tables[name]
            frame["_day"] = _days(frame["timestamp"])
        customers = self.tables["customers"].drop_duplicates("customer_id")
        self.segment = dict(zip(customers["customer_id"], customers["segment"], strict=True))
        self.interventions = pd.DataFrame(columns=["customer_id", "timestamp", "action",
                                                   "channel", "cost"])

    def activity(self, ids: list[str]) -> pd.DataFrame:
        """`customer_id`, `_day` of every event and transaction of `ids`."""
        parts = [f.loc[f["customer_id"].isin(ids), ["customer_id", "_day"]]
                 for f in (self.tables["events"], self.tables["transactions"])]
        return pd.concat(parts, ignore_index=True).dropna(subset=["_day"])

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in self.tables.items():
            out = frame.drop(columns=["_day"], errors="ignore")
            if name in ("events", "transactions"):
                out = out.sort_values("timestamp", kind="mergesort")
            out.to_csv(folder / f"{name}.csv", index=False)
        if len(self.interventions):
            self.interventions.to_csv(folder / "interventions.csv", index=False)

    def remove_from(self, cut: dict[str, int]) -> int:
        """Drop every event and transaction of the customers in `cut` on or after their day."""
        removed = 0
        for name in ("events", "transactions"):
            frame = self.tables[name]
            day = frame["customer_id"].map(cut)
            drop = (frame["_day"] >= day).fillna(False).to_numpy(bool)
            removed += int(drop.sum())
            self.tables[name] = frame[~drop].reset_index(drop=True)
        return removed

    def add(self, name: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            extra = pd.DataFrame(rows)
            extra["_day"] = _days(extra["timestamp"])
            self.tables[name] = pd.concat([self.tables[name], extra], ignore_index=True)


def _days(text: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    stamps = stamps.dt.tz_localize(None).dt.floor("D")
    return ((stamps - pd.Timestamp("1970-01-01")) // pd.Timedelta(days=1)).astype("float64")


def _iso(day: int, seconds: int) -> str:
    stamp = pd.Timestamp("1970-01-01") + pd.Timedelta(days=int(day), seconds=int(seconds))
    return stamp.strftime("%Y-%m-%dT%H:%M:%S")


def day_number(date: str) -> int:
    return int((np.datetime64(date, "D") - EPOCH) / DAY)


def day_text(day: int) -> str:
    return str(EPOCH + int(day) * DAY)


# --- the pipeline, in-process ------------------------------------------------------------------


class Pipeline:
    """The real stages (`churnlens STAGE`, as `dvc.yaml` runs them) in the work folder."""

    def __init__(self, work: Path, params: dict[str, Any]) -> None:
        self.work = work
        self.params = params
        self.log = work / "loop.log"

    def set(self, **dotted: Any) -> None:
        for key, value in dotted.items():
            node = self.params
            *parents, last = key.split("__")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        (self.work / "params.yaml").write_text(yaml.safe_dump(self.params, sort_keys=False),
                                               encoding="utf-8")

    def run(self, stages: tuple[str, ...] | list[str]) -> dict[str, float]:
        import typer

        from churnlens.cli import app

        seconds = {}
        old = Path.cwd()
        os.chdir(self.work)
        try:
            with open(self.log, "a", encoding="utf-8") as sink, \
                    contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
                for stage in stages:
                    started = time.perf_counter()
                    try:
                        code = app([stage], standalone_mode=False)
                    except typer.Exit as err:
                        code = err.exit_code
                    if code:
                        raise RuntimeError(f"churnlens {stage} failed (exit {code}); see "
                                           f"{self.log}")
                    seconds[stage] = round(time.perf_counter() - started, 1)
        finally:
            os.chdir(old)
            import logging

            for handler in logging.getLogger("churnlens").handlers[:]:  # they write to `sink`
                handler.close()
                logging.getLogger("churnlens").removeHandler(handler)
        return seconds

    def read_json(self, rel: str) -> dict[str, Any]:
        return json.loads((self.work / rel).read_text(encoding="utf-8"))

    def at_risk(self) -> pd.DataFrame:
        return pd.read_csv(self.work / "reports/at_risk.csv", dtype=str, keep_default_na=False,
                           encoding="utf-8-sig")

    def arms(self, as_of: str) -> pd.DataFrame:
        """The control-group assignments the export recorded for the list of `as_of`."""
        history = self.read_json("reports/at_risk_history.json")
        current = history["current"]["source"]
        runs = next(s["runs"] for s in history["sources"] if s["id"] == current)
        run = next((r for r in runs if r["as_of"] == as_of), {})
        return pd.DataFrame(run.get("arms") or [],
                            columns=["customer_id", "holdout", "assigned", "action", "tier",
                                     "value"])


def keep_feature_rows(work: Path, list_date: str, assigned: set[str]) -> None:
    """Copies of the feature rows the export saw on `list_date` (`lists/scoring_DATE.parquet`,
    and `lists/training_DATE.parquet` for the customers assigned so far: `assigned` and the
    history's), so the uplift can be refitted later exactly as the export fitted it on that day
    (walk-forward; the history may already have dropped a list the export fitted on)."""
    shutil.copyfile(work / "data/features/scoring.parquet",
                    work / f"lists/scoring_{list_date}.parquet")
    history = json.loads((work / "reports/at_risk_history.json").read_text(encoding="utf-8"))
    ids = sorted(assigned | {str(a["customer_id"]) for src in history["sources"]
                             for r in src["runs"] for a in r.get("arms") or []})
    rows = pd.read_parquet(work / "data/features/training.parquet",
                           filters=[("customer_id", "in", ids)] if ids else None)
    rows.to_parquet(work / f"lists/training_{list_date}.parquet", index=False)


def new_work_folder(work: Path, args: argparse.Namespace) -> Pipeline:
    """The work folder with the repo's params.yaml (sample size, seed, base data folder)."""
    work.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    pipeline = Pipeline(work, params)
    pipeline.set(generate__n_customers=int(args.customers), generate__seed=int(args.seed),
                 generate__out_dir="data/base", generate__outreach_weeks=0,
                 data__raw_dir="data/sample", export__holdout_share=float(args.holdout_share),
                 export__top_n=int(args.top_n), train__register_model=True)
    if args.rank_by != "revenue_at_risk":
        pipeline.set(export__rank_by=args.rank_by)
    return pipeline


# --- one list: the simulated team's contacts and the true effect -------------------------------


def contact_list(raw: RawLogs, arms: pd.DataFrame, at_risk: pd.DataFrame, list_date: str, *,
                 horizon: int, reach: float, rng: np.random.Generator,
                 last_day: int) -> pd.DataFrame:
    """Contact the fresh assignments of the list of `list_date` that are not held out (each
    reached with probability `reach`), write Y1 of the reached into `raw`, and return one truth
    row per fresh assignment (both arms): subgroup, kind, rate, y0, y1, tau, reached, ..."""
    d = day_number(list_date)
    fresh = arms[arms["assigned"] == list_date].reset_index(drop=True)
    columns = ["list_date", "customer_id", "holdout", "reached", "action", "subgroup", "kind",
               "rate", "y0", "y1", "tau", "value", "churn_probability",
               "expected_revenue_at_risk", "expected_revenue_saved"]
    if fresh.empty:
        return pd.DataFrame(columns=columns)
    ids = fresh["customer_id"].astype(str).tolist()
    listed = at_risk.set_index("customer_id")
    activity = raw.activity(ids)
    before = activity[activity["_day"] <= d].groupby("customer_id")["_day"].max()
    window = activity[(activity["_day"] > d) & (activity["_day"] <= d + horizon)]
    tx = raw.tables["transactions"]
    paid = tx[tx["customer_id"].isin(ids) & (tx["_day"] > d - 90) & (tx["_day"] <= d)]
    last_amount = paid.sort_values("timestamp").groupby("customer_id")["amount"].last()

    n = len(fresh)
    u = rng.random(n)
    reached_draw = rng.random(n) < reach
    contact_day = d + rng.integers(1, 4, n)
    contact_sec = rng.integers(9 * 3600, 18 * 3600, n)
    rows, cut, events, payments, contacts = [], {}, [], [], []
    for i, arm in fresh.iterrows():
        cid, action = str(arm["customer_id"]), str(arm["action"])
        segment = str(raw.segment.get(cid, ""))
        idle = int(d - before.get(cid, d - 10**6))
        sub = subgroup(action, segment, idle)
        kind, rate = TRUE_EFFECTS.get((action, sub), ("rescue", 0.0))
        days = window.loc[window["customer_id"] == cid, "_day"].to_numpy()
        y0 = len(days) > 0
        hit = u[i] < rate
        c = int(contact_day[i])
        if kind == "rescue":
            y1 = y0 or hit
        else:  # harm: leaves at the contact; activity between the list and the contact stays
            y1 = bool((days < c).any()) if hit else y0
        holdout = bool(arm["holdout"])
        reached = (not holdout) and bool(reached_draw[i])
        if reached:
            channel, cost = CHANNELS.get(action, ("email", 1.0))
            contacts.append({"customer_id": cid, "timestamp": _iso(c, contact_sec[i]),
                             "action": action, "channel": channel, "cost": cost})
            if kind == "harm" and hit:
                cut[cid] = c
            elif kind == "rescue" and y1 and not y0:
                events += rescue_events(cid, d, horizon, last_day, rng)
                if cid in last_amount.index:
                    payments += rescue_payments(cid, d, horizon, last_day,
                                                str(last_amount[cid]), rng)
        row = listed.loc[cid] if cid in listed.index else pd.Series(dtype=object)
        rows.append({"list_date": list_date, "customer_id": cid, "holdout": holdout,
                     "reached": reached, "action": action, "subgroup": sub, "kind": kind,
                     "rate": rate, "y0": bool(y0), "y1": bool(y1), "tau": int(y1) - int(y0),
                     "value": _float(arm.get("value")),
                     "churn_probability": _float(row.get("churn_probability")),
                     "expected_revenue_at_risk": _float(row.get("expected_revenue_at_risk")),
                     "expected_revenue_saved": _float(row.get("expected_revenue_saved"))})
    raw.remove_from(cut)
    raw.add("events", events)
    raw.add("transactions", payments)
    raw.interventions = pd.concat([raw.interventions, pd.DataFrame(contacts)],
                                  ignore_index=True)
    return pd.DataFrame(rows, columns=columns)


def rescue_events(cid: str, d: int, horizon: int, last_day: int,
                  rng: np.random.Generator) -> list[dict[str, Any]]:
    """Weekly logins through the window (the kept customer uses the product again)."""
    days = d + 1 + int(rng.integers(0, 7)) + np.arange(0, horizon, 7)
    days = days[days <= min(d + horizon, last_day)]
    return [{"customer_id": cid, "timestamp": _iso(x, int(rng.integers(8 * 3600, 20 * 3600))),
             "event_type": "login", "quantity": "1"} for x in days]


def rescue_payments(cid: str, d: int, horizon: int, last_day: int, amount: str,
                    rng: np.random.Generator) -> list[dict[str, Any]]:
    """A monthly payment of the last amount through the window (a paying customer kept)."""
    days = d + 1 + int(rng.integers(0, 30)) + np.arange(0, horizon, 30)
    days = days[days <= min(d + horizon, last_day)]
    return [{"customer_id": cid, "timestamp": _iso(x, int(rng.integers(8 * 3600, 20 * 3600))),
             "amount": amount, "quantity": "1"} for x in days]


def arms_without_control(at_risk: pd.DataFrame, list_date: str, earlier: list[pd.DataFrame],
                         horizon: int) -> pd.DataFrame:
    """With `export.holdout_share` 0 the history records no arms: the team contacts everyone on
    the list not contacted in the `horizon` days before (no control group)."""
    recent = set()
    for part in earlier:
        days = (pd.Timestamp(list_date) - pd.to_datetime(part["list_date"])).dt.days
        recent |= set(part.loc[days < horizon, "customer_id"])
    fresh = at_risk[~at_risk["customer_id"].isin(recent)]
    return pd.DataFrame({"customer_id": fresh["customer_id"], "holdout": False,
                         "assigned": list_date, "action": fresh["suggested_action"],
                         "tier": fresh["risk_tier"], "value": np.nan})


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


# --- evaluation --------------------------------------------------------------------------------


def measured_vs_simulated(truth: pd.DataFrame, report: dict[str, Any],
                          final_activity: pd.DataFrame, horizon: int) -> dict[str, Any]:
    """Per action (from `reports/outreach.json`, pooled over the lists), per action x subgroup
    and per list x action (same function on the same assignments): measured difference and 95 %
    interval vs the simulated effect (mean Y1 - Y0 over the fresh assignments)."""
    from churnlens import outreach

    frame = truth.rename(columns={"list_date": "assigned"}).assign(
        treated=lambda f: f["reached"] & ~f["holdout"])
    outcomes = outreach.window_outcomes(frame, horizon_days=horizon, activity=final_activity)
    pipeline = {e["action"]: e for e in report.get("by_action") or []}
    rows = []
    for key in ("action", "subgroup"):
        labelled = frame if key == "action" else frame.assign(
            action=frame["action"] + " / " + frame["subgroup"])
        for e in outreach.measure_effect(labelled[["assigned", "customer_id", "holdout", "action",
                                                   "value", "treated"]], outcomes):
            if e["action"] == outreach.ALL_ACTIONS:
                continue
            part = labelled[labelled["action"] == e["action"]]
            if e["list_date"] != outreach.ALL_LISTS:
                part = part[part["assigned"] == e["list_date"]]
            simulated = float(part["tau"].mean())
            if key == "action" and e["list_date"] == outreach.ALL_LISTS:
                mine = e
                e = pipeline.get(e["action"], {})
                e["matches_own_measurement"] = all(
                    e.get(k) == mine[k] for k in ("treated", "control", "difference", "ci_low",
                                                  "ci_high"))
            if key == "subgroup" and e["list_date"] != outreach.ALL_LISTS:
                continue
            rows.append(_row(e, simulated, key, part))
    return {"rows": rows}


def _row(e: dict[str, Any], simulated: float, level: str, part: pd.DataFrame) -> dict[str, Any]:
    low, high = e.get("ci_low"), e.get("ci_high")
    covered = None if low is None else bool(low - 1e-9 <= simulated <= high + 1e-9)
    return {"level": level if e.get("list_date") == "all" else "list",
            "list_date": e.get("list_date"), "action": e.get("action"),
            "simulated": round(simulated, 4), "measured": e.get("difference"),
            "ci_low": low, "ci_high": high, "covered": covered,
            "contacted": e.get("treated"), "control": e.get("control"),
            "assigned": len(part), "not_reached": int((~part["reached"] & ~part["holdout"]).sum()),
            "matches_own_measurement": e.get("matches_own_measurement")}


def coverage(rows: list[dict[str, Any]], level: str, min_per_arm: int) -> dict[str, Any]:
    """Share of intervals (arms >= `min_per_arm`) that contain the simulated effect."""
    chosen = [r for r in rows if r["level"] == level and r["covered"] is not None
              and min(r["contacted"] or 0, r["control"] or 0) >= min_per_arm]
    hits = sum(r["covered"] for r in chosen)
    return {"level": level, "min_per_arm": min_per_arm, "intervals": len(chosen),
            "covered": hits, "rate": round(hits / len(chosen), 4) if chosen else None}


def uplift_on_held_out(truth: pd.DataFrame, used_on: list[str],
                       final_activity: pd.DataFrame, horizon: int) -> dict[str, Any]:
    """On the lists ranked by revenue saved (`used_on`): Qini of the uplift and of the risk
    ranking on the observed outcomes, and the revenue each truly keeps at `SHARES` contacted."""
    from churnlens import outreach, uplift

    held = truth[truth["list_date"].isin(used_on)].copy()
    if held.empty:
        return {"lists": [], "reason": "no list was ranked by revenue saved (too few measured "
                                       "outcomes before the last list)"}
    held["gain"] = held["tau"] * held["value"].fillna(0).clip(lower=0)
    measured = held[held["reached"] | held["holdout"]]
    outcomes = outreach.window_outcomes(measured.rename(columns={"list_date": "assigned"}),
                                        horizon_days=horizon, activity=final_activity)
    retained = outcomes["retained"].to_numpy(bool)
    treated = ~measured["holdout"].to_numpy(bool)
    value = measured["value"].fillna(0).clip(lower=0).to_numpy(float)
    rankings = {"uplift (expected_revenue_saved)": "expected_revenue_saved",
                "risk (expected_revenue_at_risk)": "expected_revenue_at_risk"}
    out: dict[str, Any] = {"lists": used_on, "customers": len(held),
                           "measured_contacted": int(treated.sum()),
                           "measured_control": int((~treated).sum()), "rankings": {}}
    for name, column in rankings.items():
        score = measured[column].fillna(-np.inf).to_numpy(float)
        kept = {}
        for share in SHARES:
            kept[f"top_{int(share * 100)}pct"] = round(sum(
                uplift.kept_by_ranking(g[column].fillna(-np.inf), g["gain"], share)
                for _, g in held.groupby("list_date")), 2)
        out["rankings"][name] = {
            "qini_revenue": round(uplift.qini_coefficient(score, treated, retained, value), 4),
            "qini_customers": round(uplift.qini_coefficient(score, treated, retained), 5),
            "true_revenue_kept": kept}
    out["random_true_revenue_kept"] = {f"top_{int(s * 100)}pct": round(
        s * float(held["gain"].sum()), 2) for s in SHARES}
    return out


def walk_forward(work: Path, truth: pd.DataFrame, final_activity: pd.DataFrame, horizon: int,
                 learners: tuple[str, ...] = ("rescue_harm", "t", "x", "t_norisk")
                 ) -> dict[str, Any]:
    """The uplift refitted as the export fits it on each list date d (`churnlens.outreach_history`:
    the assignments measured by d and still in its history, treated = reached, on the feature
    rows the export saw on d, kept in `lists/`), for every list with enough measured outcomes
    per arm, and each learner; its expected revenue saved on the list's fresh assignments is
    compared with the risk
    ranking (`ranking_figures`) pooled over those lists. With the default learner this is the
    ranking the export itself wrote on the lists it ranked by revenue saved
    (`reproduces_pipeline`)."""
    from churnlens import outreach, outreach_history, uplift

    meta = json.loads((work / "data/features/meta.json").read_text(encoding="utf-8"))
    columns = [c for c in meta.get("feature_columns") or [] if c != "customer_id"]
    frame = truth.rename(columns={"list_date": "assigned"}).astype(
        {"assigned": str, "customer_id": str}).reset_index(drop=True)
    frame = frame.assign(treated=frame["reached"] & ~frame["holdout"], due=True, tier="")
    outcomes = outreach.window_outcomes(frame, horizon_days=horizon, activity=final_activity)
    frame["retained"] = outcomes["retained"].to_numpy(bool)
    day = pd.to_datetime(frame["assigned"])
    scored: dict[str, list[pd.DataFrame]] = {learner: [] for learner in learners}
    dates = sorted(frame["assigned"].unique())
    for k, d in enumerate(dates):
        path = work / f"lists/training_{d}.parquet"
        # the export fits before it updates the history, which was last pruned on the list date
        # before d: lists at most horizon + 182 days older than that date
        pruned = pd.Timestamp(dates[k - 1] if k else d)
        young = ((pruned - day).dt.days <= horizon + outreach_history.MEASURED_KEEP_DAYS)
        measured = (pd.Timestamp(d) - day).dt.days >= horizon
        past = frame[(young & measured).to_numpy(bool)]
        if past.empty or not path.exists():
            continue
        rows = pd.read_parquet(path, columns=["customer_id", "cutoff", *columns])
        due = past[["assigned", "customer_id", "holdout", "action", "tier", "value", "due",
                    "treated", "churn_probability"]]
        data = outreach_history.uplift_rows(due, past[["assigned", "customer_id", "retained"]],
                                            rows)
        if not outreach_history.enough_uplift_evidence(data):
            continue
        held = frame[frame["assigned"] == d]
        scoring = pd.read_parquet(work / f"lists/scoring_{d}.parquet",
                                  columns=["customer_id", *columns])
        scoring = scoring[scoring["customer_id"].astype(str).isin(set(held["customer_id"]))]
        actions = pd.Series(held["action"].to_numpy(), index=held["customer_id"].to_numpy())
        probability = pd.Series(held["churn_probability"].to_numpy(),
                                index=held["customer_id"].to_numpy())
        for variant in learners:
            learner, risk = variant.removesuffix("_norisk"), not variant.endswith("_norisk")
            fit, features = outreach_history.with_action_feature(data, columns, risk=risk)
            model = uplift.fit_uplift(fit[features], fit["treated"], fit["retained"],
                                      learner=learner)
            lift = dict(zip(scoring["customer_id"].astype(str),
                            outreach_history.predict_uplift(model, features, scoring, actions,
                                                            probability), strict=True))
            scored[variant].append(held.assign(
                uplift=held["customer_id"].map(lift), fitted_contacted=int(data["treated"].sum()),
                fitted_control=int((~data["treated"]).sum())))
    if not any(scored.values()):
        return {"lists": [], "reason": "no list date with enough measured outcomes per arm"}
    out: dict[str, Any] = {}
    for learner, parts in scored.items():
        held = pd.concat(parts, ignore_index=True)
        held["saved"] = held["uplift"] * held["value"].fillna(0).clip(lower=0)
        out.setdefault("lists", sorted(held["assigned"].unique()))
        out.setdefault("customers", len(held))
        out.setdefault("fitted_per_arm_first", [int(held["fitted_contacted"].iloc[0]),
                                                int(held["fitted_control"].iloc[0])])
        out[f"uplift_{learner}"] = ranking_figures(held, "saved")
        pipeline = held.dropna(subset=["expected_revenue_saved"])
        if learner == uplift.DEFAULT_LEARNER and len(pipeline):
            out["reproduces_pipeline"] = bool(np.allclose(
                pipeline["saved"], pipeline["expected_revenue_saved"], atol=0.01))
    out["risk"] = ranking_figures(held, "expected_revenue_at_risk")
    out["random"] = ranking_figures(held, None)
    # the best any ranking could do: by the simulated effect itself; its Qini interval on the
    # observed outcomes tells whether these held-out lists can show a ranking's worth at all
    out["oracle"] = ranking_figures(held.assign(
        true_gain=held["tau"] * held["value"].fillna(0).clip(lower=0)), "true_gain")
    return out


def ranking_figures(held: pd.DataFrame, column: str | None, draws: int = 500) -> dict[str, Any]:
    """A ranking (`column`, highest first; None = random order, the expectation) on held-out
    fresh assignments of several lists: Qini coefficients on the observed outcomes of the
    reached contacted vs control customers (plain; weighted by expected revenue winsorised at
    its 95th percentile, `uplift.capped`; and uncapped) with bootstrap 95 % intervals, and the
    revenue it truly keeps (sum over lists of (Y1 - Y0) x value, capped and uncapped) when
    contacting its top 20 % / 30 % / all of each list."""
    from churnlens import uplift

    value = held["value"].fillna(0).clip(lower=0)
    cap = float(np.quantile(value, 0.95)) if len(value) else 0.0
    gains = {"": held["tau"] * value, "_capped": held["tau"] * value.clip(upper=cap)}
    out: dict[str, Any] = {}
    for suffix, gain in gains.items():
        for share in SHARES:
            key = f"true_revenue_kept{suffix}_top_{int(share * 100)}pct"
            if column is None:
                out[key] = round(share * float(gain.sum()), 2)
            else:
                out[key] = round(sum(
                    uplift.kept_by_ranking(g[column].fillna(-np.inf), gain[g.index], share)
                    for _, g in held.groupby("assigned")), 2)
    if column is None:
        return out
    measured = held[held["reached"] | held["holdout"]]
    score = measured[column].fillna(-np.inf).to_numpy(float)
    treated = ~measured["holdout"].to_numpy(bool)
    retained = measured["retained"].to_numpy(bool)
    weight = measured["value"].fillna(0).clip(lower=0).to_numpy(float)
    for name, w in (("qini", None), ("qini_revenue_capped", np.minimum(weight, cap)),
                    ("qini_revenue", weight)):
        out[name] = round(uplift.qini_coefficient(score, treated, retained, w), 5)
        out[f"{name}_interval"] = [round(v, 5) for v in uplift.qini_interval(
            score, treated, retained, w, draws=draws)]
    out["value_cap"] = round(cap, 2)
    return out


# --- the loop ----------------------------------------------------------------------------------


def simulate(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="churnlens-loop-"))
    if (work / "params.yaml").exists():
        raise SystemExit(f"{work} already holds a run: give a new or empty --work folder")
    pipeline = new_work_folder(work, args)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    horizon = int(pipeline.params["label"]["horizon_days"])
    print(f"work folder {work}; generating {args.customers} customers (seed {args.seed})",
          flush=True)
    pipeline.run(["generate"])
    raw = RawLogs(work / "data/base")
    last_day = day_number(str(pipeline.params["generate"]["end_date"]))
    first = day_number(args.first)
    list_days = [first + k * int(args.every_days) for k in range(int(args.lists))]
    final_day = min(list_days[-1] + horizon, last_day)
    truth_parts, lists, used_on = [], [], []
    (work / "lists").mkdir(exist_ok=True)
    for k, d in enumerate(list_days):
        list_date = day_text(d)
        raw.write(work / "data/sample")
        pipeline.set(snapshot__as_of=list_date)
        train = k % max(int(args.retrain_every), 1) == 0
        seconds = pipeline.run([s for s in LIST_STAGES if train or s != "train"])
        at_risk = pipeline.at_risk()
        shutil.copyfile(work / "reports/at_risk.csv", work / f"lists/at_risk_{list_date}.csv")
        keep_feature_rows(work, list_date, {str(c) for part in truth_parts
                                            for c in part["customer_id"]})
        arms = pipeline.arms(list_date)
        if float(args.holdout_share) == 0:  # no control group: everyone new on the list
            arms = arms_without_control(at_risk, list_date, truth_parts, horizon)
        report = pipeline.read_json("reports/outreach.json")
        info = report.get("uplift") or {}
        if info.get("used"):
            used_on.append(list_date)
        rng = np.random.default_rng([int(args.seed), int(args.holdout_share * 1000), k])
        truth = contact_list(raw, arms, at_risk, list_date, horizon=horizon, reach=args.reach,
                             rng=rng, last_day=last_day)
        truth_parts.append(truth)
        lists.append({"list_date": list_date, "listed": len(at_risk),
                      "fresh": len(truth), "control": int(truth["holdout"].sum()),
                      "contacted": int(truth["reached"].sum()),
                      "ranked_by": "revenue_saved" if info.get("used") else "revenue_at_risk",
                      "uplift_reason": info.get("reason"), "trained": train,
                      "seconds": round(sum(seconds.values()), 1)})
        print(f"list {list_date}: {len(at_risk)} listed, {len(truth)} fresh "
              f"({int(truth['holdout'].sum())} control, {int(truth['reached'].sum())} contacted)"
              f", ranked by {lists[-1]['ranked_by']}, {lists[-1]['seconds']} s", flush=True)
    truth = pd.concat(truth_parts, ignore_index=True)
    raw.write(work / "data/sample")
    pipeline.set(snapshot__as_of=day_text(final_day))
    pipeline.run(FINAL_STAGES)
    truth.to_csv(work / "truth.csv", index=False)
    settings = {"customers": args.customers, "seed": args.seed, "lists": args.lists,
                "every_days": args.every_days, "first": args.first,
                "holdout_share": args.holdout_share, "top_n": args.top_n, "reach": args.reach,
                "rank_by": args.rank_by, "retrain_every": args.retrain_every,
                "horizon_days": horizon, "measured_on": day_text(final_day)}
    (work / "loop_state.json").write_text(json.dumps(
        {"settings": settings, "lists": lists, "used_on": used_on}, indent=2), encoding="utf-8")
    result = evaluate(work)
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.truth_csv:
        truth.to_csv(args.truth_csv, index=False)
    return result


def evaluate(work: Path) -> dict[str, Any]:
    """The figures of a finished loop, from its work folder: `truth.csv`, `loop_state.json`,
    `data/sample/interventions.csv`, the final run's `reports/` and `data/interim/`."""
    state = json.loads((work / "loop_state.json").read_text(encoding="utf-8"))
    settings, horizon = state["settings"], int(state["settings"]["horizon_days"])
    truth = pd.read_csv(work / "truth.csv", dtype={"customer_id": str, "list_date": str})
    pipeline = Pipeline(work, {})
    report = pipeline.read_json("reports/outreach.json")
    # the assignments the final run measures: the history drops lists older than the horizon +
    # 182 days, keeping only their customers re-recorded on later lists (sticky arms)
    history = pipeline.read_json("reports/at_risk_history.json")
    runs = next(s["runs"] for s in history["sources"] if s["id"] == history["current"]["source"])
    kept = {(a["assigned"], str(a["customer_id"])) for r in runs for a in (r.get("arms") or [])}
    pairs = list(zip(truth["list_date"], truth["customer_id"], strict=True))
    measured = truth[[p in kept for p in pairs]].reset_index(drop=True)
    final_activity = _validated_activity(work, truth["customer_id"].unique().tolist())
    compared = measured_vs_simulated(measured, report, final_activity, horizon)
    contacts = pd.read_csv(work / "data/sample/interventions.csv", dtype={"customer_id": str}) \
        if (work / "data/sample/interventions.csv").exists() else pd.DataFrame(
            columns=["customer_id", "timestamp"])
    from churnlens import outreach

    control = truth[truth["holdout"]].rename(columns={"list_date": "assigned"})
    window = outreach.contacts_in_window(control, contacts, horizon)
    return {
        "settings": settings,
        "true_effects": [{"action": a, "subgroup": s, "kind": k, "rate": r}
                         for (a, s), (k, r) in TRUE_EFFECTS.items()],
        "lists": state["lists"],
        "assignments": len(truth), "control": int(truth["holdout"].sum()),
        "contacted": int(truth["reached"].sum()),
        "measured_assignments": len(measured),
        "control_in_interventions": int(window["contacted"].sum()),
        "control_ever_contacted_later": int(
            control["customer_id"].isin(contacts["customer_id"]).sum()),
        "pipeline_treatment": report.get("treatment"),
        "lists_measured": sum(bool(x.get("measured")) for x in report.get("lists") or []),
        "pipeline_assignments": report.get("assignments"),
        "unmeasured": report.get("unmeasured"),
        "effects": compared["rows"],
        "coverage": [coverage(compared["rows"], level, m)
                     for level in ("action", "subgroup", "list") for m in (10, 30)],
        "uplift_held_out": uplift_on_held_out(truth, state["used_on"], final_activity, horizon),
        "uplift_walk_forward": walk_forward(work, truth, final_activity, horizon),
        "uplift_in_outreach_json": report.get("uplift"),
        "work": str(work),
    }


def _validated_activity(work: Path, ids: list[str]) -> pd.DataFrame:
    """`customer_id`, `timestamp` of the validated events and transactions (the final run's)."""
    parts = [pd.read_parquet(work / f"data/interim/{t}.parquet",
                             columns=["customer_id", "timestamp"],
                             filters=[("customer_id", "in", ids)])
             for t in ("events", "transactions")]
    return pd.concat(parts, ignore_index=True)


def print_table(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(f"\n{s['customers']} customers, seed {s['seed']}, {s['lists']} lists every "
          f"{s['every_days']} days from {s['first']}, holdout share {s['holdout_share']}, "
          f"reach {s['reach']}; measured on {s['measured_on']}: {result['assignments']} fresh "
          f"assignments ({result['measured_assignments']} still in the final run's history), "
          f"{result['control']} control, {result['contacted']} contacted; control customers "
          f"contacted within their window: {result['control_in_interventions']}")
    print(f"\n{'action / subgroup':58} {'simulated':>9} {'measured [95 % interval]':>26} "
          f"{'contacted/control':>17} covered")
    rows = [r for r in result["effects"] if r["level"] != "list"]
    for r in sorted(rows, key=lambda r: (r["action"].split(" / ")[0], r["level"] != "action")):
        name = r["action"] if r["level"] == "action" else "  . " + r["action"].split(" / ")[1]
        interval = ("n/a" if r["measured"] is None else
                    f"{r['measured'] * 100:+.1f} [{r['ci_low'] * 100:+.1f}, "
                    f"{r['ci_high'] * 100:+.1f}]")
        print(f"{name[:58]:58} {r['simulated'] * 100:+9.1f} {interval:>26} "
              f"{r['contacted']!s:>8}/{r['control']!s:<8} {r['covered']}")
    for c in result["coverage"]:
        print(f"coverage ({c['level']}, arms >= {c['min_per_arm']}): {c['covered']} of "
              f"{c['intervals']} intervals = {c['rate']}")
    counts = result.get("pipeline_assignments")
    if counts:
        print(f"\noutreach.json assignments: {counts}; unmeasured: "
              + "; ".join(f"{u['list_date']} {u['customers']} ({u['reason']})"
                          for u in result.get("unmeasured") or []))
    walk = result.get("uplift_walk_forward") or {}
    if walk.get("lists"):
        print(f"\nwalk-forward uplift on {len(walk['lists'])} lists ({walk['lists'][0]} to "
              f"{walk['lists'][-1]}), {walk['customers']} fresh assignments; first fit on "
              f"{walk['fitted_per_arm_first']} contacted/control; reproduces the pipeline's "
              f"ranking: {walk.get('reproduces_pipeline')}")
        for name in [k for k in walk
                     if k.startswith("uplift_") or k in ("risk", "random", "oracle")]:
            r = walk[name]
            qini = ("" if "qini" not in r else
                    f"Qini {r['qini']:+.4f} {r['qini_interval']}, revenue capped "
                    f"{r['qini_revenue_capped']:+.2f} {r['qini_revenue_capped_interval']}, "
                    f"uncapped {r['qini_revenue']:+.2f} {r['qini_revenue_interval']}; ")
            kept = ", ".join(f"{k.replace('true_revenue_kept', 'kept')} {v:+,.0f}"
                             for k, v in r.items() if k.startswith("true_revenue_kept"))
            print(f"  {name:10} {qini}{kept}")
    up = result["uplift_held_out"]
    if not up.get("lists"):
        print(f"\nuplift: {up.get('reason')}")
        return
    print(f"\nuplift on {len(up['lists'])} held-out lists ({up['customers']} fresh assignments; "
          f"{up['measured_contacted']} contacted / {up['measured_control']} control measured):")
    for name, r in up["rankings"].items():
        kept = ", ".join(f"{k} {v:+,.0f}" for k, v in r["true_revenue_kept"].items())
        print(f"  {name:34} Qini revenue {r['qini_revenue']:+.2f}, customers "
              f"{r['qini_customers']:+.4f}; true revenue kept: {kept}")
    print("  random: " + ", ".join(f"{k} {v:+,.0f}"
                                   for k, v in up["random_true_revenue_kept"].items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42, help="generate.seed")
    parser.add_argument("--first", default="2025-11-04", help="first list date")
    parser.add_argument("--lists", type=int, default=31)
    parser.add_argument("--every-days", type=int, default=7)
    parser.add_argument("--holdout-share", type=float, default=0.5,
                        help="export.holdout_share (0.5: enough control outcomes for the uplift "
                             "model within the sample's weeks)")
    parser.add_argument("--top-n", type=int, default=400, help="export.top_n")
    parser.add_argument("--reach", type=float, default=0.9,
                        help="chance that a listed, not held-out customer is contacted")
    parser.add_argument("--rank-by", default="revenue_saved",
                        choices=["revenue_saved", "revenue_at_risk"])
    parser.add_argument("--retrain-every", type=int, default=4,
                        help="train on the first list and every N lists after it")
    parser.add_argument("--work", default=None, help="work folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temp work folder")
    parser.add_argument("--out", default=str(REPO / "reports/outreach_loop.json"))
    parser.add_argument("--truth-csv", default=None, help="also write the truth per assignment")
    parser.add_argument("--reevaluate", default=None, metavar="WORK",
                        help="only compute the figures of a finished loop kept in WORK")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reevaluate:
        result = evaluate(Path(args.reevaluate))
        result["seconds"] = None
    else:
        result = simulate(args)
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {out} ({result['seconds']} s)")
    if not args.work and not args.keep and not args.reevaluate:
        shutil.rmtree(result["work"], ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
