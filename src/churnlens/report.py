"""The weekly HTML report: pure functions that turn the stage outputs into a template context.

`build_context` takes the already-read inputs (dicts / DataFrames, None when an optional file is
missing) and returns plain values: formatted strings, lists of rows and charts as `data:` URIs
(PNG drawn with matplotlib's Agg renderer, no pyplot state). `render_report` fills
`templates/weekly_report.html.j2` with jinja2 autoescaping on, so every string from the data is
HTML-escaped. The page loads nothing from outside.

The at-risk rows come from `reports/at_risk.csv` and the win-back rows from
`reports/win_back.csv`, both read WITHOUT their `contact` column: contact data never reaches this
module. Counts of customers at risk and the risk-by-segment table are over the *active* customers
(the scores' `active` column; everyone when it is missing): lapsed customers are counted in the
win-back section instead.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from churnlens.export import REASON_SEPARATOR, active_mask, previous_run
from churnlens.settings import DEFAULTS

TEMPLATE = "weekly_report.html.j2"
DRIFT_PSI_THRESHOLD = 0.2
TIERS = ("high", "medium", "low")
TIER_COLOURS = {"high": "#c0392b", "medium": "#e67e22", "low": "#95a5a6"}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
NA = "n/a"
MAX_CHART_SEGMENTS = 12
WIN_BACK_SHOWN = 10  # win-back customers shown on the page (the rest are in win_back.csv)


# --------------------------------------------------------------------------- formatting helpers


def _number(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric / NaN / inf."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_percent(value: Any, decimals: int = 1) -> str:
    """0.8712 -> "87.1%"; missing -> "n/a"."""
    number = _number(value)
    if number is None:
        return NA
    return f"{number * 100:.{decimals}f}%"


def format_money(value: Any, currency: str = "") -> str:
    """Whole units with thousands separators and an optional currency prefix: 12345.6 ->
    "12,346", -1500 with "€" -> "−€1,500";
    a non-zero amount below 1 -> "<1"; missing -> "n/a".
    (The exact cents are in at_risk.csv.)"""
    number = _number(value)
    if number is None:
        return NA
    if 0 < abs(number) < 0.5:
        return ("−" if number < 0 else "") + f"<{currency}1"
    text = f"{abs(number):,.0f}"
    sign = "−" if number < 0 and text != "0" else ""
    return f"{sign}{currency}{text}"


def format_count(value: Any) -> str:
    """12345 -> "12,345"; missing -> "n/a"."""
    number = _number(value)
    return NA if number is None else f"{number:,.0f}"


def format_score(value: Any, decimals: int = 0) -> str:
    """A signed score such as NPS: 23.4 -> "+23", -5 -> "−5", 0 -> "0"."""
    number = _number(value)
    if number is None:
        return NA
    text = f"{abs(number):.{decimals}f}"
    if float(text) == 0:
        return text
    return ("+" if number > 0 else "−") + text


def format_date(value: Any) -> str:
    """"2026-08-31" / date / timestamp -> "31 Aug 2026"; missing or unparsable -> "n/a"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    try:
        day = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if pd.isna(day):
        return NA
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


@dataclass(frozen=True)
class Delta:
    """A change between two values, ready to show: `arrow` + `text`, coloured by `tone`."""

    text: str  # "+2.1 pts", "−1,234", "no change", "n/a"
    arrow: str  # "▲", "▼" or ""
    tone: str  # "good", "bad" or "neutral"
    word: str  # "better", "worse", "no change", "no earlier value"


def format_delta(
    current: Any, previous: Any, *, kind: str, higher_is_better: bool, currency: str = ""
) -> Delta:
    """Change from `previous` to `current`.

    kind: "rate" (fractions; shown in percentage points), "money", "score" (points, e.g. NPS)
    or "count". The tone is good when the value moved in the better direction for this KPI
    (`higher_is_better`), bad in the other direction, neutral without change or data.
    """
    cur, prev = _number(current), _number(previous)
    if cur is None or prev is None:
        return Delta(NA, "", "neutral", "no earlier value")
    change = cur - prev
    if kind == "rate":
        shown = f"{abs(change) * 100:.1f}"
        text = f"{shown} pts"
    elif kind == "money":
        text = format_money(abs(change), currency)
        shown = text
    elif kind == "score":
        shown = f"{abs(change):.1f}"
        text = f"{shown} pts"
    else:
        shown = f"{abs(change):,.0f}"
        text = shown
    if not any(ch.isdigit() and ch != "0" for ch in shown):
        return Delta("no change", "", "neutral", "no change")
    up = change > 0
    better = up == higher_is_better
    return Delta(
        ("+" if up else "−") + text,
        "▲" if up else "▼",
        "good" if better else "bad",
        "better" if better else "worse",
    )


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def display_text(value: Any) -> str:
    """A text cell read back from at_risk.csv: undo the CSV-injection `'` prefix for display."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value)
    if len(text) > 1 and text[0] == "'" and text[1] in "=+-@\t":
        return text[1:]
    return text


# --------------------------------------------------------------------------- KPI tiles


@dataclass(frozen=True)
class KpiSpec:
    key: str
    title: str
    kind: str  # rate | money | score
    higher_is_better: bool
    explain: str
    par: float | None = None  # below this a rise is not "better" (NDR < 100 % = revenue fell)


REVENUE_KPIS = ("ndr", "grr")  # measured over kpis.json `revenue_window` (may exceed the period)

KPI_TILES = (
    KpiSpec("crr", "Customer retention", "rate", True,
            "Customers we had at the start of the period who are still with us at its end "
            "(new customers not counted)."),
    KpiSpec("churn_rate", "Churn rate", "rate", False,
            "Customers we had at the start of the period who left during it. Lower is better."),
    KpiSpec("ndr", "Net revenue retention", "rate", True,
            "This period's revenue from existing customers compared with their revenue in the "
            "period before. Above 100% means they spend more.", 1.0),
    KpiSpec("grr", "Gross revenue retention", "rate", True,
            "Like net revenue retention, but extra spending is not counted: only what was lost "
            "to churn and smaller baskets."),
    KpiSpec("rpr", "Repeat purchase rate", "rate", True,
            "Buying customers who bought at least twice in the period."),
    KpiSpec("clv", "Customer lifetime value", "money", True,
            "Revenue we expect from an average customer over their whole time with us."),
    KpiSpec("nps", "Net Promoter Score", "score", True,
            "Promoters (9–10) minus detractors (0–6), from −100 to +100."),
)


def _format_kpi(spec: KpiSpec, value: Any, currency: str) -> str:
    if spec.kind == "rate":
        return format_percent(value)
    if spec.kind == "money":
        return format_money(value, currency)
    return format_score(value)


def _kpi_note(notes: Any, scope: str, key: str) -> str | None:
    """The reason a KPI is null, from kpis.json `notes` ({"current.nps": "..."} or similar)."""
    if isinstance(notes, Mapping):
        for name in (f"{scope}.{key}", key):
            if notes.get(name):
                return str(notes[name])
    elif isinstance(notes, Sequence) and not isinstance(notes, str):
        for note in notes:
            if isinstance(note, str) and re.search(rf"\b{re.escape(key)}\b", note, re.I):
                return note
    return None


# kpis.json notes in the words of a CS reader (the notes name tables and formulas).
PLAIN_NOTES = {
    "no nps table": "no survey answers in the data, so there is no NPS",
    "no answers in period": "nobody answered the survey in this period",
    "no customers at the start of the period": "there were no customers at the start of the "
                                               "period",
    "no purchases in the period": "nobody bought anything in this period",
}


def plain_note(note: str | None) -> str | None:
    """A KPI note in plain words (`PLAIN_NOTES`; other notes as written, capitalised)."""
    if not note:
        return note
    text = str(note).strip().rstrip(".")
    return capitalise(PLAIN_NOTES.get(text.lower(), text)) + "."


def kpi_tiles(kpis: Mapping[str, Any], crr_target: Any = None, currency: str = "") -> list[dict]:
    """One tile per KPI in `KPI_TILES`: value, delta vs the previous period, target, note."""
    current = kpis.get("current") or {}
    previous = kpis.get("previous") or {}
    notes = kpis.get("notes") or {}
    target = _number(crr_target)
    if target is None:
        target = _number((kpis.get("targets") or {}).get("crr"))
    window = kpis.get("revenue_window") or {}
    window_days = _number(window.get("days"))
    period_days = _number(window.get("period_days"))
    if period_days is None:
        period_days = _number((kpis.get("period") or {}).get("days"))
    longer = window_days is not None and period_days is not None and window_days > period_days
    tiles = []
    for spec in KPI_TILES:
        value = current.get(spec.key)
        tile: dict[str, Any] = {
            "key": spec.key,
            "title": spec.title,
            "value": _format_kpi(spec, value, currency),
            "previous": _format_kpi(spec, previous.get(spec.key), currency),
            "explain": spec.explain,
            "delta": format_delta(
                value, previous.get(spec.key), kind=spec.kind,
                higher_is_better=spec.higher_is_better, currency=currency,
            ),
            "note": None,
            "target": None,
            "caveat": None,
        }
        if spec.key in REVENUE_KPIS and longer:
            days = f"{window_days:.0f}"
            tile["title"] = f"{spec.title} ({days} days)"
            tile["explain"] = spec.explain.replace(
                "This period's revenue", f"Revenue in the last {days} days"
            ).replace("in the period before", f"in the {days} days before")
            if spec.key == "ndr" and window.get("caveat"):
                tile["caveat"] = str(window["caveat"])
        delta = tile["delta"]
        number = _number(value)
        if spec.par is not None and delta.word == "better" and number is not None \
                and number < spec.par:
            # up, yet still a fall: never call a retention below par "better"
            tile["delta"] = Delta(delta.text, delta.arrow, "neutral",
                                  f"up, still below {format_percent(spec.par, 0)}")
        if _number(value) is None:
            tile["note"] = plain_note(_kpi_note(notes, "current", spec.key)
                                      or "Could not be computed.")
        elif _number(previous.get(spec.key)) is None:
            reason = _kpi_note(notes, "previous", spec.key)
            plain = plain_note(reason)
            tile["note"] = f"Previous period: {plain[0].lower()}{plain[1:]}" if reason else None
        if spec.key == "crr" and target is not None:
            number = _number(value)
            met = None if number is None else number >= target
            gap = None if number is None else abs(number - target) * 100
            tile["target"] = {
                "text": format_percent(target, 0 if round(target * 100, 6).is_integer() else 1),
                "met": met,
                "gap": None if gap is None else f"{gap:.1f} pts",
            }
        tiles.append(tile)
    return tiles


# --------------------------------------------------------------------------- at-risk customers


def at_risk_rows(at_risk: pd.DataFrame, currency: str = "") -> list[dict]:
    """Display rows of the at-risk table (already ranked), without any contact data."""
    rows = []
    for record in at_risk.to_dict("records"):
        reasons = [
            capitalise(part.strip())
            for part in display_text(record.get("reasons")).split(REASON_SEPARATOR)
            if part.strip()
        ]
        rows.append(
            {
                "rank": display_text(record.get("rank")),
                "customer_id": display_text(record.get("customer_id")),
                "segment": display_text(record.get("segment")) or "—",
                "probability": format_percent(record.get("churn_probability"), 0),
                "revenue_at_risk": format_money(record.get("expected_revenue_at_risk"), currency),
                "tier": display_text(record.get("risk_tier")),
                "tier_class": _tier_class(record.get("risk_tier")),
                "reasons": reasons,
                "action": display_text(record.get("suggested_action")),
            }
        )
    return rows


def _tier_class(value: Any) -> str:
    tier = display_text(value).strip().lower()
    return tier if tier in TIERS else "other"


def movers(
    at_risk: pd.DataFrame,
    history: Mapping[str, Any] | None,
    as_of: str | None,
    limit: int,
    currency: str = "",
) -> dict[str, Any]:
    """Customers on today's list who were not on the previous list (from the export history)."""
    previous = previous_run(dict(history) if history else None, as_of)
    if previous is None:
        return {"first": True}
    before = {str(c) for c in previous.get("customer_ids", [])}
    ids = at_risk["customer_id"].map(display_text)  # history holds the ids as they are
    new = at_risk[~ids.isin(before).to_numpy(bool)]
    now = set(ids)
    return {
        "first": False,
        "since": format_date(previous.get("as_of")),
        "n_new": len(new),
        "n_left": len(before - now),
        "n_previous": len(before),
        "rows": at_risk_rows(new.head(limit), currency),
        "shown": min(len(new), limit),
    }


# --------------------------------------------------------------------------- win back


def win_back_section(
    win_back: pd.DataFrame | None,
    scores: pd.DataFrame,
    limit: int = WIN_BACK_SHOWN,
    currency: str = "",
) -> dict[str, Any]:
    """The win-back summary: lapsed customers (from the scores' `active` column), how many are on
    `win_back.csv` and their total expected value, and the top `limit` rows (with the chance of
    return, 1 - churn probability). `win_back` None = the file is missing."""
    lapsed = int((~active_mask(scores)).sum()) if "active" in scores else None
    if win_back is None:
        return {"available": False, "n_lapsed": format_count(lapsed), "rows": []}
    rows = at_risk_rows(win_back.head(max(int(limit), 0)), currency)
    chances = pd.to_numeric(win_back["churn_probability"], errors="coerce").head(len(rows))
    for row, probability in zip(rows, chances, strict=True):
        row["return_chance"] = format_percent(None if pd.isna(probability) else 1 - probability, 0)
    value = pd.to_numeric(win_back["expected_revenue_at_risk"], errors="coerce").sum()
    return {
        "available": True,
        "n_lapsed": format_count(lapsed),
        "n_listed": len(win_back),
        "listed": format_count(len(win_back)),
        "value": format_money(value, currency),
        "rows": rows,
        "shown": len(rows),
    }


# --------------------------------------------------------------------------- risk by segment


def risk_by_segment(scores: pd.DataFrame) -> pd.DataFrame:
    """Per segment: customers, count per tier, revenue at risk (total and per tier); biggest
    revenue at risk first. Missing segment -> "unknown"."""
    segment = (
        scores["segment"].astype("string").fillna("unknown").str.strip().replace("", "unknown")
        if "segment" in scores
        else pd.Series("unknown", index=scores.index, dtype="string")
    )
    frame = pd.DataFrame(
        {
            "segment": segment.astype(str),
            "tier": scores["risk_tier"].astype("string").str.strip().str.lower().fillna("unknown"),
            "revenue": pd.to_numeric(
                scores["expected_revenue_at_risk"], errors="coerce"
            ).fillna(0.0),
        }
    )
    counts = frame.pivot_table(index="segment", columns="tier", values="revenue", aggfunc="size",
                               fill_value=0)
    money = frame.pivot_table(index="segment", columns="tier", values="revenue", aggfunc="sum",
                              fill_value=0.0)
    out = pd.DataFrame(index=counts.index)
    out["customers"] = counts.sum(axis=1).astype(int)
    for tier in TIERS:
        out[tier] = counts[tier].astype(int) if tier in counts else 0
        out[f"revenue_{tier}"] = money[tier].astype(float) if tier in money else 0.0
    out["revenue_at_risk"] = money.sum(axis=1).astype(float)
    out = out.reset_index().sort_values(["revenue_at_risk", "segment"], ascending=[False, True])
    return out.reset_index(drop=True)


def segment_chart(by_segment: pd.DataFrame, currency: str = "") -> str | None:
    """Stacked horizontal bars of revenue at risk per segment and tier, as a PNG data URI."""
    if by_segment.empty or not (by_segment["revenue_at_risk"] > 0).any():
        return None
    data = by_segment.head(MAX_CHART_SEGMENTS).iloc[::-1]
    fig, ax = _figure(5.2, 0.45 * len(data) + 1.2)
    left = pd.Series(0.0, index=data.index)
    for tier in TIERS:
        values = data[f"revenue_{tier}"].clip(lower=0)
        ax.barh([_label(s) for s in data["segment"]], values, left=left,
                color=TIER_COLOURS[tier], label=f"{tier} risk", height=0.6)
        left = left + values
    ax.xaxis.set_major_formatter(_money_ticks(currency))
    ax.set_xlabel("Revenue at risk", fontsize=10)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(TIERS), fontsize=9,
              frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png_data_uri(fig)


# --------------------------------------------------------------------------- cohorts


def cohort_table(cohorts: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    """Heat-map rows: one per signup month, cells with the share still a customer."""
    if not cohorts:
        return None
    width = max((len(c.get("retention") or []) for c in cohorts), default=0)
    rows = []
    for cohort in cohorts:
        retention = list(cohort.get("retention") or [])
        cells = []
        for k in range(width):
            value = _number(retention[k]) if k < len(retention) else None
            cells.append({"text": "" if value is None else format_percent(value, 0),
                          "style": _heat_style(value)})
        rows.append({"cohort": _month_label(cohort.get("cohort")),
                     "size": format_count(cohort.get("size")), "cells": cells})
    return {"months": list(range(width)), "rows": rows}


def _heat_style(value: float | None) -> str:
    if value is None:
        return "background:#f4f6f8"
    v = min(max(value, 0.0), 1.0)
    # white (0%) -> deep teal (100%)
    r, g, b = (round(255 + (t - 255) * v) for t in (17, 110, 120))
    text = "#ffffff" if v > 0.55 else "#1d2a33"
    return f"background:rgb({r},{g},{b});color:{text}"


def _month_label(value: Any) -> str:
    try:
        day = pd.Timestamp(str(value) + "-01") if re.fullmatch(r"\d{4}-\d{2}", str(value)) else None
    except ValueError:
        day = None
    return f"{MONTHS[day.month - 1]} {day.year}" if day is not None else str(value)


# --------------------------------------------------------------------------- model card

MODEL_NAMES = {
    "model": "Churn model (used in this report)",
    "lightgbm": "Gradient-boosted model alone (LightGBM)",
    "uncalibrated": "Churn model before calibration",
    "recency": "Simple rule: days since last activity",
    "logistic": "Simple statistical model (logistic regression)",
    "prior": "Guessing the average churn rate",
}
CHART_NAMES = {
    "model": "churn model",
    "lightgbm": "gradient-boosted alone",
    "uncalibrated": "before calibration",
    "recency": "days-since-activity rule",
    "logistic": "logistic regression",
    "prior": "average churn rate",
}
CALIBRATION_WORDS = {
    "sigmoid": "sigmoid (Platt) scaling",
    "isotonic": "isotonic regression",
    "none": "none",
}
DEFINITION_WORDS = {
    "inactivity": "stops buying and using the product (no purchase and no product use at all)",
    "cancellation": "cancels their contract",
}


def model_card(
    metrics: Mapping[str, Any],
    train_summary: Mapping[str, Any] | None,
    promotion: Mapping[str, Any] | None,
    horizon_days: Any,
    definition: str | None,
) -> dict[str, Any]:
    """What the model predicts, when it was trained, how it did on the test slice vs baselines."""
    summary = train_summary or {}
    window = summary.get("train_window") or {}
    if not isinstance(window, Mapping):
        window = {}
    horizon = _number(summary.get("horizon_days")) or _number(horizon_days)
    rows = []
    model_metrics = metrics.get("model") or {}
    candidates = [("model", model_metrics)]
    if metrics.get("lightgbm") and (metrics.get("gate") or {}).get("shipped") != "lightgbm":
        candidates.append(("lightgbm", metrics["lightgbm"]))
    candidates += list((metrics.get("baselines") or {}).items())
    for name, values in candidates:
        values = values or {}
        rows.append(
            {
                "name": MODEL_NAMES.get(name, str(name)),
                "is_model": name == "model",
                "auc": _fixed(values.get("roc_auc"), 3),
                "brier": _fixed(values.get("brier"), 3),
                "top_decile": format_percent(values.get("top_decile_precision"), 0),
            }
        )
    auc = _number(model_metrics.get("roc_auc"))
    beaten_by = [
        MODEL_NAMES.get(name, str(name))
        for name, values in (metrics.get("baselines") or {}).items()
        if auc is not None and _number((values or {}).get("roc_auc")) is not None
        and _number(values["roc_auc"]) >= auc
    ]
    method = metrics.get("calibration_method") or summary.get("calibration_method")
    gate = metrics.get("gate") or {}
    gate_test = gate.get("test") or {}
    return {
        "gate_summary": gate.get("summary"),
        "gate_alert": bool(gate) and not (gate_test.get("lightgbm_beats_simple")
                                          and gate_test.get("model_beats_simple")),
        "active": _active_line(metrics),
        "trained_at": format_date(summary.get("trained_at")),
        "window_start": format_date(window.get("start") or summary.get("train_start")),
        "window_end": format_date(window.get("end") or summary.get("train_end")),
        "has_window": bool(window.get("start") or summary.get("train_start")),
        "horizon": None if horizon is None else f"{horizon:.0f} days",
        "definition": DEFINITION_WORDS.get(str(definition), "leaves"),
        "test_cutoff": format_date(metrics.get("test_cutoff")),
        "n_test": format_count(metrics.get("n_test")),
        "test_churn_rate": format_percent(metrics.get("churn_rate")),
        "rows": rows,
        "beaten_by": beaten_by,
        "calibration": None if not method else CALIBRATION_WORDS.get(str(method), str(method)),
        "not_champion": _not_champion(promotion),
    }


def _active_line(metrics: Mapping[str, Any]) -> dict[str, str] | None:
    """The model vs the simple rule on *active* test customers (the at-risk list's population)."""
    active = (metrics.get("populations") or {}).get("active") or {}
    model = active.get("model") or {}
    recency = (active.get("baselines") or {}).get("recency") or {}
    if not active.get("n") or model.get("roc_auc") is None:
        return None
    return {"n": format_count(active.get("n")), "churn_rate": format_percent(active["churn_rate"]),
            "auc": _fixed(model.get("roc_auc"), 3),
            "recency_auc": _fixed(recency.get("roc_auc"), 3)}


def _not_champion(promotion: Mapping[str, Any] | None) -> dict[str, str] | None:
    """A banner when a new model waits for approval (the approved one scored), or when the
    scores come from a model that is not approved (the approved one could not score)."""
    if not promotion:
        return None
    serving = promotion.get("serving") or {}
    if serving.get("approved") is False:  # the registry could not be read: nobody approved it
        return {"reason": str(serving.get("reason") or "no reason given"),
                "version": str(serving.get("version") or ""), "kind": "unapproved",
                "champion_version": ""}
    if promotion.get("is_champion") is not False:
        return None
    waiting = bool(serving.get("waiting_for_approval"))
    return {"reason": str(promotion.get("reason") or "no reason given"),
            "version": str(promotion.get("version") or ""),
            "kind": "waiting" if waiting else "unapproved",
            "champion_version": str(serving.get("champion_version") or "")}


def _fixed(value: Any, decimals: int) -> str:
    number = _number(value)
    return NA if number is None else f"{number:.{decimals}f}"


def calibration_chart(calibration: pd.DataFrame | None) -> str | None:
    """Predicted vs observed churn per model (from reports/plots/calibration.csv), PNG data URI."""
    if calibration is None or calibration.empty:
        return None
    needed = {"mean_predicted", "observed_rate"}
    if not needed <= set(calibration.columns):
        return None
    data = calibration.copy()
    if "model" not in data:
        data["model"] = "model"
    fig, ax = _figure(4.8, 4.2)
    ax.plot([0, 1], [0, 1], linestyle="--", color="#888888", linewidth=1, label="perfect match")
    for name, part in data.groupby("model", sort=False):
        main = str(name) == "model"
        part = part.sort_values("mean_predicted")
        ax.plot(part["mean_predicted"], part["observed_rate"], marker="o",
                markersize=4 if main else 3, linewidth=2.2 if main else 1,
                alpha=1 if main else 0.6, label=_label(CHART_NAMES.get(str(name), str(name))))
    top = max(float(data[["mean_predicted", "observed_rate"]].max().max()), 0.05)
    limit = min(1.0, top * 1.1)
    ax.set_xlim(0, limit)
    ax.set_ylim(0, limit)
    ax.xaxis.set_major_formatter(_percent_ticks())
    ax.yaxis.set_major_formatter(_percent_ticks())
    ax.set_xlabel("Predicted chance of leaving", fontsize=10)
    ax.set_ylabel("Share that actually left", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png_data_uri(fig)


# --------------------------------------------------------------------------- drift

FEATURE_WORDS = {
    "events": "product events",
    "active_days": "active days",
    "event_types": "different features used",
    "purchases": "purchases",
    "revenue": "revenue",
    "refunds": "refunds",
    "tickets": "support tickets",
}
FIXED_FEATURE_WORDS = {
    "events_change_30d": "change in product use (last 30 days)",
    "revenue_change_90d": "change in revenue (last 90 days)",
    "days_since_last_event": "days since last product use",
    "days_since_last_purchase": "days since last purchase",
    "days_since_last_activity": "days since last activity",
    "inactive_flag": "inactive customers",
    "tenure_days": "time as a customer",
    "is_trial": "trial users",
    "segment": "plan / segment",
    "days_to_first_event": "days to first product use",
    "events_first_14d": "product use in the first 14 days",
    "open_tickets": "open support tickets",
    "oldest_open_ticket_days": "age of the oldest open ticket",
    "last_nps": "latest NPS answer",
}


def feature_label(name: str) -> str:
    """Plain words for a feature name: "events_30d" -> "product events (last 30 days)"."""
    if name in FIXED_FEATURE_WORDS:
        return FIXED_FEATURE_WORDS[name]
    match = re.fullmatch(r"([a-z_]+)_(\d+)d", name)
    if match and match.group(1) in FEATURE_WORDS:
        return f"{FEATURE_WORDS[match.group(1)]} (last {match.group(2)} days)"
    return name.replace("_", " ")


def drift_features(drift: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The per-feature part of `reports/drift.json` (`{feature: {"psi", "flag"}}`).

    `drift` is the document the drift stage writes, `{"threshold": t, "flagged": [...],
    "features": {...}}`, or None (no file: no alerts). Any other shape is a ValueError: reading
    the whole document as if it were the per-feature mapping once dropped every alert silently.
    """
    if drift is None:
        return {}
    features = drift.get("features") if isinstance(drift, Mapping) else None
    if not isinstance(features, Mapping):
        raise ValueError("expected an object with a 'features' object "
                         "(as written by `churnlens drift`)")
    return features


def drift_threshold(drift: Mapping[str, Any] | None) -> float:
    """The PSI threshold the drift stage flagged with (`threshold` in drift.json), else the
    default `DRIFT_PSI_THRESHOLD`."""
    value = _number(drift.get("threshold")) if isinstance(drift, Mapping) else None
    return DRIFT_PSI_THRESHOLD if value is None else value


def drift_alerts(drift: Mapping[str, Any] | None) -> list[dict]:
    """Features whose distribution moved, biggest PSI first, from the drift.json document (see
    `drift_features`): `flag` true, or PSI above the file's own threshold (`drift_threshold`)."""
    threshold = drift_threshold(drift)
    alerts = []
    for feature, info in drift_features(drift).items():
        if not isinstance(info, Mapping):
            continue
        psi = _number(info.get("psi"))
        if info.get("flag") is True or (psi is not None and psi > threshold):
            alerts.append({"feature": str(feature), "label": feature_label(str(feature)),
                           "psi": _fixed(psi, 2), "_psi": psi if psi is not None else math.inf})
    alerts.sort(key=lambda a: (-a["_psi"], a["feature"]))
    return [{k: v for k, v in a.items() if k != "_psi"} for a in alerts]


def tail_note(kpis: Mapping[str, Any]) -> str | None:
    """One plain line when stray rows after a long silence were left out of this report
    (kpis.json `tail_rows` / `tail_days` / `last_data_day`, set by the default as_of)."""
    rows = _number(kpis.get("tail_rows"))
    if not rows or rows <= 0:
        return None
    days = int(_number(kpis.get("tail_days")) or 0)
    rows_text = "1 late row" if rows == 1 else f"{format_count(rows)} late rows"
    on_days = "" if days <= 1 else f" on {days} days"
    until = kpis.get("last_data_day")
    upto = f" up to {format_date(until)}" if until else ""
    as_of = format_date(kpis.get("as_of") or (kpis.get("period") or {}).get("end"))
    return (f"{capitalise(rows_text)}{on_days}{upto} came in after a long silence in the data "
            f"and {'is' if rows == 1 else 'are'} left out: this report covers the data up to "
            f"{as_of}.")


# --------------------------------------------------------------------------- context + render


def build_context(
    *,
    kpis: Mapping[str, Any],
    metrics: Mapping[str, Any],
    at_risk: pd.DataFrame,
    scores: pd.DataFrame,
    top_n: int = DEFAULTS.report.top_n,
    currency: str = DEFAULTS.report.currency,
    horizon_days: int | None = None,
    definition: str | None = None,
    period_days: int | None = None,
    crr_target: float | None = None,
    train_summary: Mapping[str, Any] | None = None,
    calibration: pd.DataFrame | None = None,
    drift: Mapping[str, Any] | None = None,
    promotion: Mapping[str, Any] | None = None,
    history: Mapping[str, Any] | None = None,
    generated_on: dt.date | None = None,
    win_back: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Everything the template shows. `at_risk` and `win_back` (None: no win-back list) must
    not hold a `contact` column. The JSON inputs are the documents as their stages write them
    (`drift`: the whole drift.json, `history`: the whole at_risk_history.json). The settings:
    `top_n`, `currency` (`report`), `horizon_days`, `definition` (`label`; None: as kpis.json
    records them), `period_days` (None: kpis.json's period), `crr_target` (`kpis`)."""
    if "contact" in at_risk.columns or (win_back is not None and "contact" in win_back.columns):
        raise ValueError("the report never shows contact data: drop `contact` before calling")
    currency = str(currency or "")
    top_n = int(top_n)
    recorded = kpis.get("label") or {}
    horizon = horizon_days if horizon_days is not None else recorded.get("horizon_days")
    definition = definition if definition is not None else recorded.get("definition")

    period = kpis.get("period") or {}
    as_of = kpis.get("as_of") or period.get("end")
    period_days = period.get("days") or period_days
    active = scores[active_mask(scores)]
    by_segment = risk_by_segment(active)
    current = kpis.get("current") or {}
    total_risk = pd.to_numeric(active["expected_revenue_at_risk"], errors="coerce").sum()
    list_risk = pd.to_numeric(at_risk["expected_revenue_at_risk"], errors="coerce").sum()
    tiers = active["risk_tier"].astype("string").str.lower().value_counts()

    return {
        "as_of": format_date(as_of),
        "period_start": format_date(period.get("start")),
        "period_end": format_date(period.get("end")),
        "period_days": None if period_days is None else f"{int(period_days)}",
        "horizon": None if _number(horizon) is None else f"{_number(horizon):.0f}",
        "definition": DEFINITION_WORDS.get(str(definition), "leaves"),
        "generated_on": format_date(generated_on) if generated_on else None,
        "tail_note": tail_note(kpis),
        "currency_note": (
            f"Amounts in {currency}."
            if currency
            else "Amounts are in the currency of the sales data."
        ),
        "customers": {
            "end": format_count(current.get("customers_end")),
            "start": format_count(current.get("customers_start")),
            "new": format_count(current.get("new")),
            "lost": format_count(current.get("lost")),
        },
        "tiles": kpi_tiles(kpis, crr_target, currency),
        "summary": {
            "scored": format_count(len(active)),
            "population": "active customers" if "active" in scores else "customers scored",
            "high": format_count(int(tiers.get("high", 0))),
            "medium": format_count(int(tiers.get("medium", 0))),
            "total_risk": format_money(total_risk, currency),
            "list_size": format_count(len(at_risk)),
            "list_risk": format_money(list_risk, currency),
        },
        "top": at_risk_rows(at_risk.head(top_n), currency),
        "top_n": top_n,
        "movers": movers(at_risk, history, as_of, top_n, currency),
        "win_back": win_back_section(win_back, scores, WIN_BACK_SHOWN, currency),
        "segments": [
            {
                "segment": row["segment"],
                "customers": format_count(row["customers"]),
                "high": format_count(row["high"]),
                "medium": format_count(row["medium"]),
                "low": format_count(row["low"]),
                "revenue_at_risk": format_money(row["revenue_at_risk"], currency),
            }
            for row in by_segment.to_dict("records")
        ],
        "segment_chart": segment_chart(by_segment, currency),
        "cohorts": cohort_table(kpis.get("cohorts")),
        "model": model_card(metrics, train_summary, promotion, horizon, definition),
        "calibration_chart": calibration_chart(calibration),
        "drift": drift_alerts(drift),
        "drift_threshold": f"{drift_threshold(drift):g}",
    }


def render_report(context: Mapping[str, Any]) -> str:
    """The HTML page for `context` (autoescaped: data can never inject markup)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("churnlens", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(**context)


# --------------------------------------------------------------------------- chart plumbing


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    ax = fig.add_subplot()
    ax.tick_params(labelsize=9)
    return fig, ax


def _png_data_uri(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _label(text: Any, width: int = 28) -> str:
    """Chart label: plain text (no mathtext), shortened."""
    text = str(text).replace("\n", " ")
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.replace("$", r"\$")


def _money_ticks(currency: str):
    from matplotlib.ticker import FuncFormatter

    unit = currency.replace("$", r"\$")

    def fmt(value: float, _pos: int) -> str:
        if abs(value) >= 1e6:
            return f"{unit}{value / 1e6:,.1f}M"
        if abs(value) >= 1e3:
            return f"{unit}{value / 1e3:,.0f}k"
        return f"{unit}{value:,.0f}"

    return FuncFormatter(fmt)


def _percent_ticks():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: f"{value * 100:.0f}%")
