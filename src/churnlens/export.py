"""The lists the customer-success team works from (pure functions; I/O in stages/export.py).

Two lists with the same columns (`AT_RISK_COLUMNS`), split by the `active` column of the scores
(`churnlens.scoring.active_customers`: activity within `label.horizon_days` before as_of):

* `build_at_risk`: active customers in the allowed tiers who may leave, highest
  `expected_revenue_at_risk` (churn probability x expected revenue) first;
* `build_win_back`: lapsed customers worth winning back, highest chance of return
  (1 - churn_probability) x `win_back_value` first; that product is what their
  `expected_revenue_at_risk` column holds. Customers with no visible value are left out.

`to_csv_text` makes the spreadsheet-safe CSV text of either list, and the small history helpers
keep the ids of earlier at-risk lists so the weekly report can show "movers".

Spreadsheet safety (`to_csv_text`): numbers have fixed decimals (probability 3, money 2), dates
are ISO, newlines inside text become spaces, and a text cell that starts with `=`, `+`, `-`, `@`,
a tab or a carriage return gets a leading `'` so spreadsheets do not run it as a formula (OWASP
CSV injection). The caller writes the text with the `utf-8-sig` encoding (BOM for Excel).

History (`reports/at_risk_history.json`, written by the export stage, read by the report stage):
`{"runs": [{"as_of": "YYYY-MM-DD", "customer_ids": [...]}, ...]}` sorted by `as_of`, one entry
per scoring date (a rerun for the same date replaces its entry), at most `HISTORY_KEEP` entries.
It holds customer ids only, never contact data.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

AT_RISK_COLUMNS = (
    "rank",
    "customer_id",
    "segment",
    "churn_probability",
    "expected_revenue_at_risk",
    "risk_tier",
    "reasons",
    "suggested_action",
    "contact",
)
TEXT_COLUMNS = ("customer_id", "segment", "risk_tier", "reasons", "suggested_action", "contact")
DECIMALS = {"churn_probability": 3, "expected_revenue_at_risk": 2}
REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")
REASON_SEPARATOR = "; "
ACTIVE = "active"
WIN_BACK_VALUE = "win_back_value"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

HISTORY_KEEP = 26


def join_reasons(scores: pd.DataFrame) -> pd.Series:
    """`reason_1..3` joined with "; ", skipping missing or blank ones ("" when none)."""
    present = [c for c in REASON_COLUMNS if c in scores]

    def _join(row: Sequence[Any]) -> str:
        return REASON_SEPARATOR.join(
            str(v).strip() for v in row if not _is_missing(v) and str(v).strip()
        )

    if not present:
        return pd.Series("", index=scores.index, dtype="object")
    return pd.Series(
        [_join(row) for row in scores[present].itertuples(index=False, name=None)],
        index=scores.index,
        dtype="object",
    )


def active_mask(scores: pd.DataFrame) -> np.ndarray:
    """The `active` column as booleans (missing values count as lapsed); all True without it."""
    if ACTIVE not in scores:
        return np.ones(len(scores), bool)
    values = scores[ACTIVE]
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return (pd.to_numeric(values, errors="coerce").fillna(0) != 0).to_numpy(bool)
    text = values.astype("string").str.strip().str.lower()
    return text.isin(["1", "true", "yes", "y", "t"]).fillna(False).to_numpy(bool)


def rank_at_risk(scores: pd.DataFrame, *, top_n: int, tiers: Iterable[str]) -> pd.DataFrame:
    """Active customers (`active_mask`) in the allowed `tiers`, highest `expected_revenue_at_risk`
    first (ties: higher `churn_probability`, then `customer_id`), cut to `top_n`, with a 1-based
    `rank` column.

    All input columns are kept; the index of `scores` is kept too (to align other Series).
    """
    allowed = {str(t).strip().lower() for t in tiers}
    tier = scores["risk_tier"].astype("string").str.strip().str.lower()
    keep = tier.isin(allowed).fillna(False).to_numpy(bool) & active_mask(scores)
    chosen = scores[keep].copy()
    chosen["_erar"] = pd.to_numeric(chosen["expected_revenue_at_risk"], errors="coerce")
    chosen["_prob"] = pd.to_numeric(chosen["churn_probability"], errors="coerce")
    chosen["_id"] = chosen["customer_id"].astype("string")
    chosen = chosen.sort_values(
        ["_erar", "_prob", "_id"],
        ascending=[False, False, True],
        na_position="last",
        kind="mergesort",
    ).head(max(int(top_n), 0))
    chosen = chosen.drop(columns=["_erar", "_prob", "_id"])
    chosen.insert(0, "rank", range(1, len(chosen) + 1))
    return chosen


def return_value(scores: pd.DataFrame) -> pd.Series:
    """Chance of return x value: (1 - `churn_probability`) x `win_back_value` (missing -> 0),
    rounded to 1e-6 so that float noise does not decide ties."""
    if WIN_BACK_VALUE not in scores:
        return pd.Series(0.0, index=scores.index, dtype="float64")
    chance = (1.0 - pd.to_numeric(scores["churn_probability"], errors="coerce")).clip(0.0, 1.0)
    value = pd.to_numeric(scores[WIN_BACK_VALUE], errors="coerce").clip(lower=0.0)
    return (chance * value).fillna(0.0).round(6).astype("float64")


def rank_win_back(scores: pd.DataFrame, *, top_n: int) -> pd.DataFrame:
    """Lapsed customers (not `active_mask`) with a positive `return_value`, highest first (ties:
    higher `win_back_value`, then `customer_id`), cut to `top_n`, with a 1-based `rank` column.

    `expected_revenue_at_risk` is replaced by the ranking value (chance of return x value); the
    other input columns and the index of `scores` are kept.
    """
    ranking = return_value(scores)
    chosen = scores[~active_mask(scores) & (ranking > 0).to_numpy(bool)].copy()
    chosen["expected_revenue_at_risk"] = ranking[chosen.index]
    chosen["_value"] = (pd.to_numeric(chosen[WIN_BACK_VALUE], errors="coerce")
                        if WIN_BACK_VALUE in chosen else 0.0)
    chosen["_id"] = chosen["customer_id"].astype("string")
    chosen = chosen.sort_values(
        ["expected_revenue_at_risk", "_value", "_id"],
        ascending=[False, False, True],
        na_position="last",
        kind="mergesort",
    ).head(max(int(top_n), 0))
    chosen = chosen.drop(columns=["_value", "_id"])
    chosen.insert(0, "rank", range(1, len(chosen) + 1))
    return chosen


def lapse_reasons(ranked: pd.DataFrame) -> pd.Series:
    """`reason_1..3` joined, or "no activity for N days" for a customer the explain stage did
    not explain (it explains the at-risk list and a sample only)."""
    reasons = join_reasons(ranked)
    if "days_since_last_activity" not in ranked:
        return reasons
    days = pd.to_numeric(ranked["days_since_last_activity"], errors="coerce")
    fallback = days.map(lambda d: "" if pd.isna(d) else f"no activity for {d:.0f} days")
    return reasons.where(reasons != "", fallback.fillna("")).astype("object")


def contacts_from_raw(raw: pd.DataFrame) -> pd.DataFrame:
    """`customer_id`, `contact` from the raw customers table (strings).

    contact = `Name <email>` when both are given, the e-mail alone otherwise, "" without an
    e-mail (or without an `email` column). The first row of a duplicated id wins.
    """
    ids = raw["customer_id"].astype("string").str.strip()
    if "email" not in raw:
        contact = pd.Series("", index=raw.index, dtype="object")
    else:
        email = raw["email"].astype("string").str.strip().fillna("")
        name = (
            raw["name"].astype("string").str.strip().fillna("")
            if "name" in raw
            else pd.Series("", index=raw.index, dtype="string")
        )
        with_name = (email != "") & (name != "")
        contact = email.where(~with_name, name + " <" + email + ">").astype("object")
    out = pd.DataFrame({"customer_id": ids.astype("object"), "contact": contact})
    out = out[ids.notna().to_numpy(bool)]
    return out.drop_duplicates("customer_id", keep="first").reset_index(drop=True)


def build_at_risk(
    scores: pd.DataFrame,
    actions: pd.Series,
    *,
    top_n: int,
    tiers: Iterable[str],
    contacts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The at-risk table with exactly `AT_RISK_COLUMNS` (numbers unrounded).

    `actions` is aligned with `scores`' index (from `churnlens.actions.suggest_actions`; only
    the listed customers need one); `contacts` has `customer_id`, `contact` (from
    `contacts_from_raw`), or is None (contact "").
    """
    ranked = rank_at_risk(scores, top_n=top_n, tiers=tiers)
    return _list_table(ranked, join_reasons(ranked), actions, contacts)


def build_win_back(
    scores: pd.DataFrame,
    actions: pd.Series,
    *,
    top_n: int,
    contacts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The win-back table (`rank_win_back`) with exactly `AT_RISK_COLUMNS`, like `build_at_risk`;
    `expected_revenue_at_risk` holds chance of return x value."""
    ranked = rank_win_back(scores, top_n=top_n)
    return _list_table(ranked, lapse_reasons(ranked), actions, contacts)


def _list_table(
    ranked: pd.DataFrame,
    reasons: pd.Series,
    actions: pd.Series,
    contacts: pd.DataFrame | None,
) -> pd.DataFrame:
    out = pd.DataFrame(index=ranked.index)
    out["rank"] = ranked["rank"].astype("int64")
    out["customer_id"] = ranked["customer_id"].astype("string").astype("object")
    out["segment"] = (
        ranked["segment"].astype("string").fillna("").astype("object")
        if "segment" in ranked
        else ""
    )
    out["churn_probability"] = pd.to_numeric(ranked["churn_probability"], errors="coerce")
    out["expected_revenue_at_risk"] = pd.to_numeric(
        ranked["expected_revenue_at_risk"], errors="coerce"
    )
    out["risk_tier"] = ranked["risk_tier"].astype("string").fillna("").astype("object")
    out["reasons"] = reasons
    out["suggested_action"] = actions.reindex(ranked.index).astype("object").fillna("")
    if contacts is None or contacts.empty:
        out["contact"] = ""
    else:
        lookup = dict(zip(contacts["customer_id"], contacts["contact"], strict=True))
        out["contact"] = [lookup.get(cid, "") or "" for cid in out["customer_id"]]
    return out.reset_index(drop=True)[list(AT_RISK_COLUMNS)]


def neutralise_cell(value: Any) -> str:
    """One spreadsheet text cell: formula-like text gets a leading `'`; newlines -> spaces."""
    if _is_missing(value):
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        text = "'" + text
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def format_number(value: Any, decimals: int) -> str:
    """Fixed decimals, no thousands separator; missing -> ""."""
    if _is_missing(value):
        return ""
    number = float(value)
    if not math.isfinite(number):
        return ""
    text = f"{number:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_cell(column: str, value: Any) -> str:
    """The CSV text of one cell of the at-risk table."""
    if column in DECIMALS:
        return format_number(value, DECIMALS[column])
    if column == "rank":
        return "" if _is_missing(value) else str(int(value))
    if isinstance(value, dt.datetime | pd.Timestamp):
        return value.date().isoformat() if _is_midnight(value) else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return neutralise_cell(value)


def to_csv_text(at_risk: pd.DataFrame) -> str:
    """The CSV text (header + rows, `\\n` line ends) of a `build_at_risk` table."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    columns = list(at_risk.columns)
    writer.writerow(columns)
    for row in at_risk.itertuples(index=False, name=None):
        writer.writerow([format_cell(c, v) for c, v in zip(columns, row, strict=True)])
    return buffer.getvalue()


def update_history(
    history: dict[str, Any] | None,
    as_of: str,
    customer_ids: Iterable[str],
    keep: int = HISTORY_KEEP,
) -> dict[str, Any]:
    """A new history with this run's ids under `as_of` (replacing an entry of the same date)."""
    runs = [
        r
        for r in (history or {}).get("runs", [])
        if isinstance(r, dict) and r.get("as_of") and str(r.get("as_of")) != str(as_of)
    ]
    runs.append({"as_of": str(as_of), "customer_ids": [str(c) for c in customer_ids]})
    runs.sort(key=lambda r: str(r["as_of"]))
    return {"runs": runs[-keep:] if keep > 0 else runs}


def previous_run(history: dict[str, Any] | None, as_of: str | None) -> dict[str, Any] | None:
    """The latest history entry strictly before `as_of` (or the one before the last, if None)."""
    runs = sorted(
        (r for r in (history or {}).get("runs", []) if isinstance(r, dict) and r.get("as_of")),
        key=lambda r: str(r["as_of"]),
    )
    if as_of is None:
        return runs[-2] if len(runs) >= 2 else None
    earlier = [r for r in runs if str(r["as_of"]) < str(as_of)]
    return earlier[-1] if earlier else None


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value)) or bool(pd.isna(value) is True)
    except (TypeError, ValueError):
        return False


def _is_midnight(value: dt.datetime | pd.Timestamp) -> bool:
    return (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)
