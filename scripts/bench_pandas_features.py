#!/usr/bin/env python
"""The churnlens feature set written the idiomatic pandas way: the baseline of `scripts/bench.py`.

Same inputs (the validated tables in `data/interim/`), same cutoffs (`data/features/meta.json`:
every labelled cutoff plus `as_of`), same semantics (docs/architecture.md, "Snapshot semantics"
and "Feature rows"), same output columns as `data/features/{training,scoring}.parquet` together:
`customer_id`, `cutoff`, `label` (NULL where the label window is not complete), then every
feature of `churnlens.feature_sql.feature_names(windows)`.

How a competent pandas user writes it, without tricks that pandas users would not reach for:
load the tables, give customers an integer key, pre-aggregate once to one row per
(customer, day) (events, purchases, distinct event types), then loop over the cutoffs and
`groupby` the visible rows of each window. `tests/test_bench.py` checks that the output equals
churnlens's feature rows (float tolerance), so the timing comparison is like for like.

    python scripts/bench_pandas_features.py --interim data/interim \
        --meta data/features/meta.json --params params.yaml --out pandas_features.parquet
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ONBOARDING_DAYS = 14  # events_first_14d: signup day .. signup day + 13
TICKETS_DAYS = 90
CHANGE_EVENTS_DAYS = 30
CHANGE_REVENUE_DAYS = 90


def _day(values: pd.Series) -> pd.Series:
    """Calendar day (midnight, datetime64[s]) of naive-UTC timestamps or Arrow dates."""
    return values.astype("datetime64[s]").dt.floor("D")


def load_tables(interim: str | Path) -> dict[str, pd.DataFrame]:
    """The five validated tables, with an integer customer key `cid` and day columns."""
    interim = Path(interim)
    cust = pd.read_parquet(interim / "customers.parquet",
                           columns=["customer_id", "signup_date", "segment", "cancel_date"])
    cust = cust[cust["customer_id"].notna() & cust["signup_date"].notna()].copy()
    cust["signup"] = _day(cust["signup_date"])
    cust["cancel"] = _day(cust["cancel_date"])
    segment = cust["segment"].astype(object).where(cust["segment"].notna(), "")
    cust["segment"] = segment.astype(str).str.strip().replace("", "unknown")
    cust["customer_id"] = cust["customer_id"].astype(str)
    cust = cust.drop_duplicates("customer_id").reset_index(drop=True)
    key = pd.Index(cust["customer_id"])
    cust["cid"] = np.arange(len(cust), dtype="int32")  # integer key: fast groupby

    def with_key(frame: pd.DataFrame) -> pd.DataFrame:
        frame["cid"] = key.get_indexer(frame.pop("customer_id").astype(str)).astype("int32")
        return frame[frame["cid"] >= 0]  # unknown customers join nothing (as in the SQL)

    ev = pd.read_parquet(interim / "events.parquet",
                         columns=["customer_id", "timestamp", "event_type", "quantity"])
    ev = with_key(ev[ev["customer_id"].notna() & ev["timestamp"].notna()])
    ev["day"] = _day(ev.pop("timestamp"))
    ev["quantity"] = ev["quantity"].fillna(1.0).astype("float64")
    ev["event_type"] = ev["event_type"].astype("category")

    tx = pd.read_parquet(interim / "transactions.parquet",
                         columns=["customer_id", "timestamp", "amount"])
    tx = with_key(tx[tx["customer_id"].notna() & tx["timestamp"].notna()])
    tx["day"] = _day(tx.pop("timestamp"))
    tx["amount"] = tx["amount"].astype("float64")

    tk = pd.read_parquet(interim / "tickets.parquet",
                         columns=["customer_id", "opened_at", "closed_at"])
    tk = with_key(tk[tk["customer_id"].notna() & tk["opened_at"].notna()])
    tk["opened"] = _day(tk.pop("opened_at"))
    tk["closed"] = _day(tk.pop("closed_at"))

    nps = pd.read_parquet(interim / "nps.parquet", columns=["customer_id", "timestamp", "score"])
    nps = with_key(nps[nps["customer_id"].notna() & nps["timestamp"].notna()
                       & nps["score"].notna()])
    nps["day"] = _day(nps["timestamp"])
    nps["score"] = nps["score"].astype("float64")
    return {"customers": cust, "events": ev, "transactions": tx, "tickets": tk, "nps": nps}


def daily_tables(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """One row per (customer, day): events, purchases, activity, distinct event types."""
    cust, ev, tx = tables["customers"], tables["events"], tables["transactions"]
    ev = ev[ev["day"] <= as_of]
    tx = tx[tx["day"] <= as_of]
    signup = ev["cid"].map(cust["signup"]).astype("datetime64[s]")
    onboarding = (ev["day"] >= signup) & (ev["day"] < signup + pd.Timedelta(days=ONBOARDING_DAYS))
    ev_daily = (ev.assign(first14=ev["quantity"].where(onboarding, 0.0))
                  .groupby(["cid", "day"])
                  .agg(ev_qty=("quantity", "sum"), first14=("first14", "sum"))
                  .reset_index())
    tx_daily = (tx.assign(purchase=(tx["amount"] > 0).astype("int64"),
                          refund=(tx["amount"] < 0).astype("int64"))
                  .groupby(["cid", "day"])
                  .agg(purchases=("purchase", "sum"), refunds=("refund", "sum"),
                       revenue=("amount", "sum"))
                  .reset_index())
    act_daily = pd.concat([ev_daily[["cid", "day"]], tx_daily[["cid", "day"]]],
                          ignore_index=True).drop_duplicates()
    types_daily = ev[["cid", "day", "event_type"]].drop_duplicates()
    return {"events": ev_daily, "transactions": tx_daily, "activity": act_daily,
            "types": types_daily}


def _window(frame: pd.DataFrame, t: pd.Timestamp, lo: int, hi: int = 0) -> pd.DataFrame:
    """Rows with day in (t - lo days, t - hi days]."""
    day = frame["day"]
    return frame[(day > t - pd.Timedelta(days=lo)) & (day <= t - pd.Timedelta(days=hi))]


def _days_between(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return (later - earlier).dt.days.astype("float64")


def features_at(t: pd.Timestamp, *, tables: dict[str, pd.DataFrame],
                daily: dict[str, pd.DataFrame], windows: list[int], horizon_days: int,
                definition: str, labelled: bool, inactivity_days: int) -> pd.DataFrame:
    """Feature rows of the population at cutoff `t` (one row per customer)."""
    cust = tables["customers"]
    alive = (cust["signup"] <= t) & (cust["cancel"].isna() | (cust["cancel"] > t))
    pop = cust.loc[alive, ["customer_id", "cid", "signup", "cancel", "segment"]]
    out = pd.DataFrame({"customer_id": pop["customer_id"].astype(str)}, index=pop.index)
    out["cutoff"] = t.date()

    ev, tx, act, types = daily["events"], daily["transactions"], daily["activity"], daily["types"]
    ev_seen, tx_seen, act_seen = ev[ev["day"] <= t], tx[tx["day"] <= t], act[act["day"] <= t]

    def per_customer(series: pd.Series, fill=None) -> pd.Series:
        aligned = series.reindex(pop.index)
        return aligned if fill is None else aligned.fillna(fill)

    if labelled:
        end = t + pd.Timedelta(days=horizon_days)
        if definition == "inactivity":
            later = act[(act["day"] > t) & (act["day"] <= end)]
            active_later = pd.Series(True, index=pd.Index(later["cid"].unique()))
            label = (~per_customer(active_later, False).astype(bool)).astype("int32")
        else:
            label = ((pop["cancel"] > t) & (pop["cancel"] <= end)).astype("int32")
        out["label"] = label.astype("Int32")
    else:
        out["label"] = pd.array([pd.NA] * len(out), dtype="Int32")

    ev_win = {w: _window(ev_seen, t, w).groupby("cid")["ev_qty"].sum()
              for w in windows}
    act_win = {w: _window(act_seen, t, w).groupby("cid").size() for w in windows}
    type_win = {w: _window(types, t, w).groupby("cid")["event_type"].nunique()
                for w in windows}
    tx_win = {w: _window(tx_seen, t, w).groupby("cid")[
        ["purchases", "revenue", "refunds"]].sum() for w in windows}

    for w in windows:
        out[f"events_{w}d"] = per_customer(ev_win[w], 0.0).astype("float64")
    for w in windows:
        out[f"active_days_{w}d"] = per_customer(act_win[w], 0).astype("int64")
    for w in windows:
        out[f"event_types_{w}d"] = per_customer(type_win[w], 0).astype("int64")

    cur = per_customer(_window(ev_seen, t, CHANGE_EVENTS_DAYS)
                       .groupby("cid")["ev_qty"].sum(), 0.0)
    prev = per_customer(_window(ev_seen, t, 2 * CHANGE_EVENTS_DAYS, CHANGE_EVENTS_DAYS)
                        .groupby("cid")["ev_qty"].sum(), 0.0)
    out["events_change_30d"] = (cur - prev) / prev.clip(lower=1.0)

    ev_days = ev_seen.groupby("cid")["day"].agg(["min", "max"])
    last_ev = per_customer(ev_days["max"])
    out["days_since_last_event"] = _days_between(pd.Series(t, index=pop.index), last_ev)
    out["events_total"] = per_customer(ev_seen.groupby("cid")["ev_qty"].sum(), 0.0)
    out["active_days_total"] = per_customer(act_seen.groupby("cid").size(), 0).astype("int64")

    for column, dtype in (("purchases", "int64"), ("revenue", "float64"), ("refunds", "int64")):
        for w in windows:
            out[f"{column}_{w}d"] = per_customer(tx_win[w][column], 0).astype(dtype)
    cur = per_customer(_window(tx_seen, t, CHANGE_REVENUE_DAYS)
                       .groupby("cid")["revenue"].sum(), 0.0)
    prev = per_customer(_window(tx_seen, t, 2 * CHANGE_REVENUE_DAYS, CHANGE_REVENUE_DAYS)
                        .groupby("cid")["revenue"].sum(), 0.0)
    out["revenue_change_90d"] = (cur - prev) / prev.abs().clip(lower=1.0)

    bought = tx_seen[tx_seen["purchases"] > 0]          # one row per (customer, purchase day)
    purchase_days = bought.groupby("cid")["day"].agg(["min", "max", "size"])
    first_purchase, last_purchase = (per_customer(purchase_days["min"]),
                                     per_customer(purchase_days["max"]))
    out["days_since_last_purchase"] = _days_between(pd.Series(t, index=pop.index), last_purchase)
    lifetime = tx_seen.groupby("cid")[["purchases", "revenue"]].sum()
    out["purchases_total"] = per_customer(lifetime["purchases"], 0).astype("int64")
    n_days = per_customer(purchase_days["size"], 0).astype("int64")
    out["purchase_days_total"] = n_days
    out["revenue_total"] = per_customer(lifetime["revenue"], 0.0).astype("float64")
    out["days_since_first_purchase"] = _days_between(pd.Series(t, index=pop.index),
                                                     first_purchase)
    out["avg_days_between_purchases"] = (_days_between(last_purchase, first_purchase)
                                         / (n_days - 1).where(n_days > 1))
    last_act = per_customer(act_seen.groupby("cid")["day"].max())
    since_act = _days_between(pd.Series(t, index=pop.index), last_act.fillna(pop["signup"]))
    out["days_since_last_activity"] = since_act
    out["inactive_flag"] = (since_act >= inactivity_days).astype("int32")
    out["tenure_days"] = _days_between(pd.Series(t, index=pop.index), pop["signup"])
    out["is_trial"] = (pop["segment"].str.lower() == "trial").astype("int32")
    out["segment"] = pop["segment"]
    out["days_to_first_event"] = _days_between(per_customer(ev_days["min"]), pop["signup"])
    out["events_first_14d"] = per_customer(
        ev_seen.groupby("cid")["first14"].sum(), 0.0)

    tk = tables["tickets"]
    tk = tk[tk["opened"] <= t]
    is_open = tk["closed"].isna() | (tk["closed"] > t)
    open_tk = tk[is_open]
    out["open_tickets"] = per_customer(open_tk.groupby("cid").size(), 0)
    out["open_tickets"] = out["open_tickets"].astype("int64")
    out["oldest_open_ticket_days"] = per_customer(
        (t - open_tk["opened"]).dt.days.groupby(open_tk["cid"]).max()
    ).astype("float64")
    recent = tk[tk["opened"] > t - pd.Timedelta(days=TICKETS_DAYS)]
    out["tickets_90d"] = per_customer(recent.groupby("cid").size(), 0)
    out["tickets_90d"] = out["tickets_90d"].astype("int64")

    nps = tables["nps"]
    answered = nps[nps["day"] <= t].sort_values(["timestamp", "score"])
    last = answered.drop_duplicates("cid", keep="last").set_index("cid")["score"]
    out["last_nps"] = per_customer(last).astype("float64")
    return out.reset_index(drop=True)


def compute_features(tables: dict[str, pd.DataFrame], *, cutoffs: list[pd.Timestamp],
                     as_of: pd.Timestamp, horizon_days: int, definition: str,
                     windows: list[int], inactivity_days: int) -> pd.DataFrame:
    """Feature rows at every cutoff, ordered by (cutoff, customer_id)."""
    windows = sorted({int(w) for w in windows})
    daily = daily_tables(tables, as_of)
    parts = []
    for t in sorted(cutoffs):
        labelled = t + pd.Timedelta(days=horizon_days) <= as_of
        parts.append(features_at(t, tables=tables, daily=daily, windows=windows,
                                 horizon_days=horizon_days, definition=definition,
                                 labelled=labelled, inactivity_days=inactivity_days))
    rows = pd.concat(parts, ignore_index=True)
    return rows.sort_values(["cutoff", "customer_id"], kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interim", default="data/interim")
    parser.add_argument("--meta", default="data/features/meta.json",
                        help="churnlens features meta.json: the cutoffs and label settings")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="Parquet file for the feature rows")
    parser.add_argument("--timing", help="write {'seconds': ...} (without imports) to this file")
    parser.add_argument("--last-cutoffs", type=int, default=None,
                        help="only the latest N cutoffs (1: as_of alone, the single-cutoff peak "
                             "memory of scripts/bench.py)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    meta = json.loads(Path(args.meta).read_text())
    params = yaml.safe_load(Path(args.params).read_text()) or {}
    feats = params.get("features") or {}
    as_of = pd.Timestamp(meta["as_of"])
    cutoffs = [pd.Timestamp(c) for c in meta["labelled_cutoffs"]] + [as_of]
    if args.last_cutoffs:
        cutoffs = sorted(cutoffs)[-args.last_cutoffs:]
    tables = load_tables(args.interim)
    loaded = time.perf_counter()
    rows = compute_features(
        tables, cutoffs=cutoffs, as_of=as_of, horizon_days=int(meta["horizon_days"]),
        definition=str(meta["definition"]), windows=list(meta.get("windows")
                                                         or feats.get("windows", [7, 30, 90, 180])),
        inactivity_days=int(feats.get("inactivity_days", 30)))
    computed = time.perf_counter()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(args.out, index=False)
    done = time.perf_counter()
    timing = {"load_s": loaded - started, "compute_s": computed - loaded,
              "write_s": done - computed, "seconds": done - started, "rows": len(rows),
              "cutoffs": len(cutoffs)}
    if args.timing:
        Path(args.timing).write_text(json.dumps(timing))
    print(json.dumps(timing), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
