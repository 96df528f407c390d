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

History (`reports/at_risk_history.json`, written by the export stage, read by the report stage)
is kept per data source, so the "movers" of a list are only ever computed against an earlier list
of the same data (`update_history`, `previous_run`):
`{"version": 2, "current": {"source": ID, "as_of": DATE}, "sources": [{"id": ID, "sketch": [...],
"customers": N, "raw_dir": PATH, "runs": [{"as_of": "YYYY-MM-DD", "customer_ids": [...]}]}]}`.
Runs of a source are sorted by `as_of`, one per scoring date (a rerun for the same date replaces
its entry), at most `HISTORY_KEEP`; at most `HISTORY_SOURCES` sources, the least recently used
dropped first. It holds customer ids (and hashes of ids) only, never contact data. With a control
group (`export.holdout_share` > 0) a run also holds `"arms": [{"customer_id", "holdout",
"assigned", "action", "tier", "value"}]` (`churnlens.outreach.assign_holdout`), and runs with arms
are kept beyond `HISTORY_KEEP` while their effect is measured (`update_history(arms_days=...)`).

What identifies a data source (`data_source`): the *customers in it*, not the folder. A user
expects the history to follow their data when they move or rename the folder (`data.raw_dir`),
and to carry on week after week as the same folder is refreshed with new signups — so neither the
path nor a plain hash of all ids (which changes with every new customer) will do. The source is a
bottom-k sketch (the `SKETCH_SIZE` smallest SHA-256 hashes of `customer_id|signup_date` of the
validated customers table, a MinHash sketch); two tables are the same source when the Jaccard
similarity estimated from their sketches is at least `SAME_SOURCE` (a weekly refresh adds a few
percent of customers; another data set shares none, and the signup date keeps two data sets that
both number their customers 1, 2, 3... apart). The `raw_dir` is kept for people only.

Files written before sources existed (`{"runs": [...]}`) stay readable: `migrate_history` puts
their entries in an `unknown` source, and `update_history` moves an old entry into the current
source when at least `LEGACY_ADOPT` of its listed ids are customers of the current data; the other
old entries stay in `unknown`, which is never compared with.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnlens import actions as act

if TYPE_CHECKING:
    from churnlens.settings import ExportSettings

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
DECIMALS = {"churn_probability": 3, "expected_revenue_at_risk": 2, "expected_revenue_saved": 2}
SAVED = "expected_revenue_saved"  # extra at-risk column with export.rank_by: revenue_saved
REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")
REASON_SEPARATOR = "; "
ACTIVE = "active"
HOLDOUT = "holdout"  # extra at-risk column with export.holdout_share > 0 (true = control group)
WIN_BACK_VALUE = "win_back_value"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

HISTORY_KEEP = 26  # runs kept per data source
HISTORY_SOURCES = 8  # data sources kept in the history
HISTORY_VERSION = 2
SKETCH_SIZE = 128  # hashes in a data source's sketch
SAME_SOURCE = 0.5  # sketch similarity from which two customers tables are one data source
LEGACY_ADOPT = 0.9  # share of an old (source-less) entry's ids that must be current customers
UNKNOWN_SOURCE = "unknown"


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


def rank_at_risk(scores: pd.DataFrame, *, top_n: int, tiers: Iterable[str],
                 saved: pd.Series | None = None) -> pd.DataFrame:
    """Active customers (`active_mask`) in the allowed `tiers`, highest `expected_revenue_at_risk`
    first (ties: higher `churn_probability`, then `customer_id`), cut to `top_n`, with a 1-based
    `rank` column. With `saved` (expected revenue saved by contact, aligned with `scores`) the
    order is highest `saved` first (ties: higher revenue at risk), and it becomes a column.

    All input columns are kept; the index of `scores` is kept too (to align other Series).
    """
    allowed = {str(t).strip().lower() for t in tiers}
    tier = scores["risk_tier"].astype("string").str.strip().str.lower()
    keep = tier.isin(allowed).fillna(False).to_numpy(bool) & active_mask(scores)
    chosen = scores[keep]
    at_risk = pd.to_numeric(chosen["expected_revenue_at_risk"], errors="coerce")
    if saved is not None:
        chosen = chosen.assign(**{SAVED: saved.reindex(chosen.index).astype("float64")})
        return _ranked(chosen, chosen[SAVED], at_risk, top_n)
    return _ranked(chosen, at_risk,
                   pd.to_numeric(chosen["churn_probability"], errors="coerce"), top_n)


def _ranked(chosen: pd.DataFrame, first: pd.Series, second: pd.Series | float,
            top_n: int) -> pd.DataFrame:
    """`chosen` by `first`, then `second` (both highest first, missing last), then
    `customer_id`; cut to `top_n`, with a 1-based `rank` column (index kept)."""
    order = chosen.assign(_first=first, _second=second,
                          _id=chosen["customer_id"].astype("string"))
    order = order.sort_values(
        ["_first", "_second", "_id"],
        ascending=[False, False, True],
        na_position="last",
        kind="mergesort",
    ).head(max(int(top_n), 0))
    order = order.drop(columns=["_first", "_second", "_id"])
    order.insert(0, "rank", range(1, len(order) + 1))
    return order


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
    value = (pd.to_numeric(chosen[WIN_BACK_VALUE], errors="coerce")
             if WIN_BACK_VALUE in chosen else 0.0)
    return _ranked(chosen, chosen["expected_revenue_at_risk"], value, top_n)


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
    saved: pd.Series | None = None,
) -> pd.DataFrame:
    """The at-risk table with exactly `AT_RISK_COLUMNS` (numbers unrounded); with `saved`
    (`rank_at_risk`) ranked by it, with an extra `expected_revenue_saved` column.

    `actions` is aligned with `scores`' index (from `churnlens.actions.suggest_actions`; only
    the listed customers need one); `contacts` has `customer_id`, `contact` (from
    `contacts_from_raw`), or is None (contact "").
    """
    ranked = rank_at_risk(scores, top_n=top_n, tiers=tiers, saved=saved)
    table = _list_table(ranked, join_reasons(ranked), actions, contacts)
    if saved is not None:
        table[SAVED] = ranked[SAVED].to_numpy(float)
    return table


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
    if column == HOLDOUT:
        return "" if _is_missing(value) else ("true" if bool(value) else "false")
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


def data_source(customers: pd.DataFrame, raw_dir: str | Path | None = None) -> dict[str, Any]:
    """The identity of a data source from its validated customers table (`customer_id`, and
    `signup_date` when present): `{"sketch": [...], "customers": N, "raw_dir": ...}`.
    See the module docstring for why it is a sketch of the customers and not the path."""
    ids = customers["customer_id"].astype("string")
    if "signup_date" in customers:
        days = pd.to_datetime(customers["signup_date"], errors="coerce").dt.strftime("%Y-%m-%d")
        days = days.astype("string").fillna("")
    else:
        days = pd.Series("", index=customers.index, dtype="string")
    keys = {f"{cid}|{day}" for cid, day in zip(ids, days, strict=True) if not pd.isna(cid)}
    hashes = sorted(hashlib.sha256(k.encode("utf-8")).hexdigest()[:16] for k in keys)
    return {"sketch": hashes[:SKETCH_SIZE], "customers": len(keys),
            "raw_dir": None if raw_dir is None else str(raw_dir)}


def sketch_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Jaccard similarity of two sets estimated from their bottom-k sketches (0 when either is
    empty): the share of the k smallest hashes of the union that both sketches hold."""
    if not a or not b:
        return 0.0
    k = min(len(a), len(b))
    both = set(a) & set(b)
    return sum(h in both for h in sorted(set(a) | set(b))[:k]) / k


def migrate_history(history: Mapping[str, Any] | None) -> dict[str, Any]:
    """The history in the current shape (a copy): None -> empty; a file from before sources
    (`{"runs": [...]}`) -> its entries in the `unknown` source."""
    if not history:
        return {"version": HISTORY_VERSION, "current": None, "sources": []}
    if "sources" in history:
        sources = [dict(s, runs=list(s.get("runs") or [])) for s in history.get("sources") or []
                   if isinstance(s, Mapping) and s.get("id")]
        current = history.get("current")
        return {"version": HISTORY_VERSION, "current": dict(current) if current else None,
                "sources": sources}
    runs = _valid_runs(history.get("runs"))
    sources = [{"id": UNKNOWN_SOURCE, "sketch": [], "customers": None, "raw_dir": None,
                "runs": runs}] if runs else []
    return {"version": HISTORY_VERSION, "current": None, "sources": sources}


def update_history(
    history: Mapping[str, Any] | None,
    as_of: str,
    customer_ids: Iterable[str],
    *,
    source: Mapping[str, Any],
    known_ids: Iterable[str] | None = None,
    keep: int = HISTORY_KEEP,
    arms: Iterable[Mapping[str, Any]] | None = None,
    arms_days: int | None = None,
) -> dict[str, Any]:
    """A new history with this run's list under `as_of` in the data source `source` (from
    `data_source`), replacing an entry of the same date and source; it becomes `current`.

    `known_ids`: every customer id of the current data, to adopt old source-less entries.
    `arms`: the control-group assignment of this list (`churnlens.outreach.assign_holdout`
    records), stored as the run's `arms`; runs with arms younger than `arms_days` days are kept
    beyond the `keep` latest, so that their effect can still be measured.
    """
    state = migrate_history(history)
    sources = state["sources"]
    sketch = list(source.get("sketch") or [])
    best = _matching_source(sources, sketch)
    if best >= 0:
        entry = sources.pop(best)
    else:
        entry = {"id": _new_source_id(sketch), "runs": []}
    entry.update(sketch=sketch, customers=source.get("customers"), raw_dir=source.get("raw_dir"))

    legacy = next((s for s in sources if s["id"] == UNKNOWN_SOURCE), None)
    if legacy is not None and known_ids is not None:
        known = {str(c) for c in known_ids}
        adopted = [r for r in legacy["runs"] if _share_known(r, known) >= LEGACY_ADOPT]
        legacy["runs"] = [r for r in legacy["runs"] if r not in adopted]
        entry["runs"] = _valid_runs(entry["runs"]) + adopted
        if not legacy["runs"]:
            sources.remove(legacy)

    runs = [r for r in _valid_runs(entry["runs"]) if str(r["as_of"]) != str(as_of)]
    run = {"as_of": str(as_of), "customer_ids": [str(c) for c in customer_ids]}
    if arms is not None:
        run["arms"] = [dict(a) for a in arms]
    runs.append(run)
    runs.sort(key=lambda r: str(r["as_of"]))
    entry["runs"] = _kept_runs(runs, keep, arms_days)
    sources.append(entry)  # most recently used last
    return {"version": HISTORY_VERSION, "current": {"source": entry["id"], "as_of": str(as_of)},
            "sources": sources[-HISTORY_SOURCES:]}


def _matching_source(sources: Sequence[Mapping[str, Any]], sketch: Sequence[str]) -> int:
    """Index of the known source most similar to `sketch` (at least `SAME_SOURCE`), else -1."""
    scored = [(sketch_similarity(sketch, s.get("sketch") or []), i) for i, s in enumerate(sources)
              if s.get("id") != UNKNOWN_SOURCE]
    best = max(scored, default=(0.0, -1))
    return best[1] if best[0] >= SAME_SOURCE else -1


def _new_source_id(sketch: Sequence[str]) -> str:
    return "src-" + hashlib.sha256("".join(sketch).encode("ascii")).hexdigest()[:12]


def _kept_runs(runs: list[dict[str, Any]], keep: int, arms_days: int | None) -> list[dict]:
    """The `keep` latest runs (all when keep <= 0), plus runs with arms within `arms_days`."""
    latest = runs[-keep:] if keep > 0 else runs
    if not arms_days or not runs:
        return latest
    newest = pd.Timestamp(runs[-1]["as_of"])
    return [r for r in runs if r in latest or (
        r.get("arms") and (newest - pd.Timestamp(r["as_of"])).days <= int(arms_days))]


def source_runs(history: Mapping[str, Any] | None,
                source: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The id `update_history` will give the data source `source` (from `data_source`) and the
    runs the history already holds for it (empty for a new source)."""
    sources = migrate_history(history)["sources"]
    sketch = list(source.get("sketch") or [])
    best = _matching_source(sources, sketch)
    if best < 0:
        return _new_source_id(sketch), []
    return sources[best]["id"], _valid_runs(sources[best]["runs"])


def history_arms(runs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every control-group assignment recorded in `runs` (the `arms` of each run)."""
    return [dict(a) for r in runs for a in (r.get("arms") or []) if isinstance(a, Mapping)]


def previous_run(history: Mapping[str, Any] | None, as_of: str | None) -> dict[str, Any] | None:
    """The list before the current one, of the same data source: the latest entry of the
    `current` source strictly before the current `as_of` (the date of the list the export wrote
    last; `as_of` is used only when the history does not say). A file from before sources is
    read as one source; then `as_of` None means the entry before the last."""
    if history and "sources" in history:
        current = history.get("current") or {}
        source = next((s for s in history.get("sources") or []
                       if isinstance(s, Mapping) and s.get("id") == current.get("source")), None)
        if source is None or source.get("id") == UNKNOWN_SOURCE:
            return None
        runs, as_of = _valid_runs(source.get("runs")), current.get("as_of") or as_of
    else:
        runs = _valid_runs((history or {}).get("runs"))
    if as_of is None:
        return runs[-2] if len(runs) >= 2 else None
    earlier = [r for r in runs if str(r["as_of"]) < str(as_of)]
    return earlier[-1] if earlier else None


def _valid_runs(runs: Any) -> list[dict[str, Any]]:
    """History entries with an `as_of`, sorted by it."""
    valid = [dict(r) for r in runs or [] if isinstance(r, Mapping) and r.get("as_of")]
    return sorted(valid, key=lambda r: str(r["as_of"]))


def _share_known(run: Mapping[str, Any], known: set[str]) -> float:
    ids = [str(c) for c in run.get("customer_ids") or []]
    return sum(c in known for c in ids) / len(ids) if ids else 0.0


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value)) or bool(pd.isna(value) is True)
    except (TypeError, ValueError):
        return False


def _is_midnight(value: dt.datetime | pd.Timestamp) -> bool:
    return (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)


def open_ticket_ids(tickets: pd.DataFrame) -> set[str]:
    """Ids of customers with a ticket that has no `closed_at` (the validated tickets table)."""
    open_rows = tickets["closed_at"].isna()
    return set(tickets.loc[open_rows, "customer_id"].astype("string").dropna())


def suggest(scores: pd.DataFrame, settings: ExportSettings,
            open_ids: set[str]) -> tuple[pd.Series, pd.DataFrame]:
    """The suggested action of each customer in `scores` (which is also the population of the
    high-value quantile), and `reason_1..3` that support it: the fact each action rests on
    (open ticket, trial not activated, inactive, high value) is among the reasons
    (`churnlens.actions.supporting_reasons`)."""
    flags = act.customer_flags(
        scores,
        inactive_days=settings.inactive_days,
        high_value_quantile=settings.high_value_quantile,
        open_ticket_ids=open_ids,
    )
    actions = act.assign_actions(flags, settings.rules)
    conditions = act.matched_conditions(flags, settings.rules)
    present = [c for c in REASON_COLUMNS if c in scores]
    rows = scores.to_dict("records")
    fixed = [
        act.supporting_reasons([row.get(c) for c in present], facts, row,
                               inactive_days=settings.inactive_days,
                               high_value_quantile=settings.high_value_quantile,
                               k=len(REASON_COLUMNS))
        for row, facts in zip(rows, conditions, strict=True)
    ]
    reasons = pd.DataFrame([r + [None] * (len(REASON_COLUMNS) - len(r)) for r in fixed],
                           columns=list(REASON_COLUMNS), index=scores.index,
                           dtype="object")
    return actions, reasons


def with_reasons(scores: pd.DataFrame, reasons: pd.DataFrame) -> pd.DataFrame:
    """`scores` whose `reason_1..3` are replaced by `reasons` on `reasons`' rows."""
    out = scores.copy()
    for column in reasons.columns:
        base = out[column].astype("object") if column in out else pd.Series(
            None, index=out.index, dtype="object")
        base.loc[reasons.index] = reasons[column]
        out[column] = base
    return out
