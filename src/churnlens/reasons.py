"""Plain-English sentences for the features that raise a customer's churn risk.

One small template per feature (or per feature family `name_{W}d`). A template gets the
customer's feature row and returns a sentence, or None when the value does not tell a story
(e.g. "usage down" when usage actually went up); the next reason is used instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

Row = Mapping[str, Any]
Template = Callable[[float, Row], str | None]
WINDOWED = re.compile(r"^(?P<name>[a-z_]+)_(?P<days>\d+)d$")


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _plural(count: float, word: str) -> str:
    return f"{count:.0f} {word}" + ("" if round(count) == 1 else "s")


def _change(what: str, days: int) -> Template:
    def sentence(value: float, row: Row) -> str | None:
        if value >= -0.05:
            return None
        return f"{what} down {min(-value, 1.0) * 100:.0f}% vs previous {days} days"
    return sentence


def _days_since(what: str) -> Template:
    def sentence(value: float, row: Row) -> str:
        return f"no {what} for {value:.0f} days"
    return sentence


def _open_tickets(value: float, row: Row) -> str | None:
    if value < 1:
        return None
    age = _num(row.get("oldest_open_ticket_days"))
    tail = f" for {age:.0f}+ days" if age is not None and age >= 1 else ""
    return f"{_plural(value, 'support ticket')} open{tail}"


def _oldest_ticket(value: float, row: Row) -> str | None:
    if value < 1:
        return None
    return f"support ticket open for {value:.0f} days"


def _trial(value: float, row: Row) -> str | None:
    if value < 1:
        return None
    if (_num(row.get("events_first_14d")) or 0) == 0:
        return "trial user with no key action yet"
    return "still on a trial plan"


def _first_weeks(value: float, row: Row) -> str | None:
    if value == 0:
        return "no product use in the first 14 days (not onboarded)"
    return f"only {_plural(value, 'action')} in the first 14 days" if value < 5 else None


def _nps(value: float, row: Row) -> str | None:
    if value > 8:
        return None
    kind = "detractor" if value <= 6 else "passive"
    return f"last NPS answer {value:.0f}/10 ({kind})"


def _total(what: str, few: int) -> Template:
    def sentence(value: float, row: Row) -> str | None:
        if value == 0:
            return f"no {what}s ever"
        return f"only {_plural(value, what)} in their whole history" if value < few else None
    return sentence


def _gap(value: float, row: Row) -> str | None:
    since = _num(row.get("days_since_last_purchase"))
    if since is not None and since > 1.5 * value:
        return f"no purchase for {since:.0f} days, usually buys every {value:.0f} days"
    return f"buys only every {value:.0f} days on average" if value >= 60 else None


def _tenure(value: float, row: Row) -> str | None:
    return f"customer for only {value:.0f} days" if value < 180 else None


FIXED: dict[str, Template] = {
    "days_since_last_activity": _days_since("activity"),
    "days_since_last_event": _days_since("product usage"),
    "days_since_last_purchase": _days_since("purchase"),
    "events_change_30d": _change("usage", 30),
    "revenue_change_90d": _change("revenue", 90),
    "open_tickets": _open_tickets,
    "oldest_open_ticket_days": _oldest_ticket,
    "is_trial": _trial,
    "events_first_14d": _first_weeks,
    "last_nps": _nps,
    "tenure_days": _tenure,
    "inactive_flag": lambda v, row: "inactive for 30+ days" if v >= 1 else None,
    "purchases_total": _total("purchase", 3),
    "purchase_days_total": _total("purchase day", 3),
    "active_days_total": _total("active day", 5),
    "events_total": _total("usage event", 10),
    "revenue_total": lambda v, row: ("no net revenue in their whole history" if v <= 0
                                     else None),
    "avg_days_between_purchases": _gap,
    "days_since_first_purchase": lambda v, row: (f"first purchase only {v:.0f} days ago"
                                                 if v < 90 else None),
    "days_to_first_event": lambda v, row: (f"took {v:.0f} days to first use the product"
                                           if v >= 7 else None),
}

WINDOWED_TEMPLATES: dict[str, Callable[[float, int], str | None]] = {
    "events": lambda v, d: (f"no product usage in the last {d} days" if v == 0
                            else f"only {_plural(v, 'usage event')} in the last {d} days"),
    "active_days": lambda v, d: (f"not active on any of the last {d} days" if v == 0
                                 else f"active on only {v:.0f} of the last {d} days"),
    "event_types": lambda v, d: f"used only {_plural(v, 'feature')} in the last {d} days",
    "purchases": lambda v, d: (f"no purchase in the last {d} days" if v == 0
                               else f"only {_plural(v, 'purchase')} in the last {d} days"),
    "revenue": lambda v, d: f"no net revenue in the last {d} days" if v <= 0 else None,
    "refunds": lambda v, d: f"{_plural(v, 'refund')} in the last {d} days",
    "tickets": lambda v, d: f"{_plural(v, 'support ticket')} in the last {d} days",
}


# Features that tell the same story; a customer's reasons use each story once.
FAMILIES = {
    "activity": ("days_since_last_activity", "days_since_last_event", "inactive_flag",
                 "events", "active_days", "event_types", "active_days_total", "events_total"),
    "usage_trend": ("events_change_30d",),
    "purchases": ("days_since_last_purchase", "purchases", "revenue", "revenue_change_90d",
                  "refunds", "purchases_total", "purchase_days_total", "revenue_total",
                  "avg_days_between_purchases", "days_since_first_purchase"),
    "support": ("open_tickets", "oldest_open_ticket_days", "tickets"),
    "satisfaction": ("last_nps",),
    "plan": ("is_trial", "segment"),
    "onboarding": ("events_first_14d", "days_to_first_event"),
    "lifecycle": ("tenure_days",),
}
_FAMILY_OF = {name: family for family, names in FAMILIES.items() for name in names}


def family(feature: str) -> str:
    """The story a feature belongs to (`name_{W}d` features by their base name)."""
    match = WINDOWED.match(feature)
    base = match["name"] if match and feature not in _FAMILY_OF else feature
    return _FAMILY_OF.get(base, feature)


# Sentences that say "nothing for the last N days": when the customer has had no activity at
# all for N days or more, they repeat the activity story ("no activity for 46 days" and "no
# purchase for 46 days" are one fact), and a 100 % usage drop is "no usage lately" (activity).
_ABSENCE = re.compile(
    r"^no purchase for (?P<a>\d+) days|^no purchase in the last (?P<b>\d+) days"
    r"|^no net revenue in the last (?P<c>\d+) days|^revenue down 100% vs previous (?P<d>\d+) days"
)
_USAGE_GONE = re.compile(r"^usage down 100% ")

# Story of a sentence from its text (the export stage sees sentences, not features). First
# match wins; `tests/test_reasons.py` checks these agree with `FAMILIES` for every template.
SENTENCE_STORIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (story, re.compile(pattern)) for story, pattern in (
        ("support", r"support ticket"),
        ("plan", r"trial|^on the '.*' plan$"),
        ("onboarding", r"first 14 days|to first use the product"),
        ("activity", r"^no activity for|^no product usage|active on|^used only|^inactive for"
                     r"|^has never used the product|usage events?\b|active days?\b"),
        ("usage_trend", r"^usage down"),
        ("satisfaction", r"\bNPS\b"),
        ("lifecycle", r"^customer for only"),
        ("value", r"by expected revenue"),
        ("purchases", r"purchase|revenue|refund|^buys "),
    )
)


def _refined(story: str, sentence: str, row: Row) -> str:
    """`story`, or "activity" when the sentence only restates the customer's inactivity."""
    if _USAGE_GONE.match(sentence):
        return "activity"
    absence = _ABSENCE.match(sentence)
    idle = _num(row.get("days_since_last_activity"))
    if absence and idle is not None:
        span = next(int(v) for v in absence.groupdict().values() if v is not None)
        if idle >= span:
            return "activity"
    return story


def story(feature: str, sentence: str, row: Row) -> str:
    """The story `sentence` (from `describe(feature, row)`) tells: the feature's family, except
    that a sentence restating the customer's inactivity tells the activity story."""
    return _refined(family(feature), sentence, row)


def sentence_story(sentence: str, row: Row | None = None) -> str:
    """The story of a reason sentence from its text (`SENTENCE_STORIES`; "other" if unknown),
    refined like `story` with the customer's `days_since_last_activity` when `row` has it."""
    text = str(sentence).strip()
    base = next((name for name, pattern in SENTENCE_STORIES if pattern.search(text)), "other")
    return _refined(base, text, row or {})


def describe(feature: str, row: Row) -> str | None:
    """Sentence for `feature` of this customer's row, or None if it tells no risk story."""
    raw = row.get(feature)
    if feature == "segment":
        return f"on the '{raw}' plan" if raw not in (None, "") else None
    value = _num(raw)
    if value is None:
        return _missing(feature)
    if feature in FIXED:
        return FIXED[feature](value, row)
    match = WINDOWED.match(feature)
    if match and match["name"] in WINDOWED_TEMPLATES:
        return WINDOWED_TEMPLATES[match["name"]](value, int(match["days"]))
    return f"{feature.replace('_', ' ')} = {value:g}"


def _missing(feature: str) -> str | None:
    return {
        "days_since_last_event": "has never used the product",
        "days_since_last_purchase": "has never made a purchase",
        "days_since_first_purchase": "has never made a purchase",
        "avg_days_between_purchases": None,
        "days_to_first_event": "has never used the product",
        "last_nps": None,
    }.get(feature)
