"""Suggested next action per customer: a first-match-wins rule table over named conditions.

A rule is a `(when, action)` row. `when` names one condition or a list of conditions that must
all hold; the first rule whose conditions hold gives the action. Conditions are computed per
customer by `customer_flags` from the scored table:

* `open_ticket`: an open support ticket (`open_tickets > 0` in the scores, or the id is in
  `open_ticket_ids`, i.e. a ticket without `closed_at` in the validated tickets table);
* `trial_not_activated`: a trial user (`is_trial`, or segment `trial` without that column)
  who has not taken to the product: no product event in the first 14 days (`events_first_14d`
  0 or missing), or `activated == False` when the scores carry such a column, or going quiet
  (no activity for `ONBOARDING_DAYS` days or more, but fewer than `inactive_days`: a trial idle
  for 27 days gets onboarding, not "Nurture");
* `inactive`: `days_since_last_activity >= inactive_days`;
* `high_value`: `expected_revenue` above the `high_value_quantile` of the customers passed in
  (the export stage passes one list's population: the active customers for the at-risk list,
  the lapsed ones worth winning back, valued by `win_back_value`, for the win-back list);
* `always`: every customer (the fall-back row; must be the last rule).

The reasons shown next to an action must support it: `supporting_reasons` puts the fact of
each condition that chose the action (`matched_conditions`) among a customer's three reasons
("2 support tickets open for 40+ days", "trial user with no key action yet", "no activity for
35 days", ...), replacing a reason that tells the same story, else the weakest one.

Safety rule (checked by `parse_rules`): a customer with an open support ticket must never get a
promotional action, so every rule up to and including the first plain `open_ticket` rule must
require `open_ticket`; a configured table that could send a promotion to such a customer is
rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnlens.errors import ChurnlensError
from churnlens.reasons import describe, sentence_story

OPEN_TICKET = "open_ticket"
TRIAL_NOT_ACTIVATED = "trial_not_activated"
INACTIVE = "inactive"
HIGH_VALUE = "high_value"
ALWAYS = "always"
ONBOARDING_DAYS = 14  # the trial's activation window (`events_first_14d`), also "going quiet"

CONDITIONS: dict[str, str] = {
    OPEN_TICKET: "has an open support ticket",
    TRIAL_NOT_ACTIVATED: "trial user without product use in the first 14 days, or idle for 14 "
                         "days or more but not yet `inactive`",
    INACTIVE: "no activity for `inactive_days` days or more",
    HIGH_VALUE: "expected revenue above the `high_value_quantile` of the list's population",
    ALWAYS: "every customer (fall-back)",
}

# The default rule table, first match wins. `export.actions` in params.yaml replaces it.
DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    (OPEN_TICKET, "Resolve the open support ticket first; no promotion"),
    (TRIAL_NOT_ACTIVATED, "Onboarding call"),
    (INACTIVE, "Reactivation campaign"),
    (HIGH_VALUE, "Personal outreach by the CSM"),
    (ALWAYS, "Nurture"),
)

# Columns of the scored table `customer_flags` uses when present (each only feeds one condition).
HELPER_COLUMNS = (
    "open_tickets",
    "is_trial",
    "events_first_14d",
    "days_since_last_activity",
    "expected_revenue",
)


@dataclass(frozen=True)
class Rule:
    """One row of the rule table: all conditions in `when` must hold."""

    when: tuple[str, ...]
    action: str


def parse_rules(spec: Iterable[Any] | None = None) -> tuple[Rule, ...]:
    """Turn a rule table into `Rule`s and check it; `None` gives `DEFAULT_RULES`.

    Accepted rows: `(when, action)` pairs or mappings `{"when": ..., "action": ...}` (the
    params.yaml form), where `when` is a condition name or a list of names (all must hold).
    Raises `ChurnlensError` for unknown conditions, empty actions, a missing final `always`
    row, or a table that lets a customer with an open ticket reach a rule without
    `open_ticket` (such a customer could get a promotion).
    """
    rows = DEFAULT_RULES if spec is None else spec
    rules: list[Rule] = []
    for i, row in enumerate(rows, start=1):
        if isinstance(row, Mapping):
            unknown_keys = set(row) - {"when", "action"}
            if unknown_keys or "when" not in row or "action" not in row:
                raise ChurnlensError(
                    f"export.actions rule {i}: expected keys 'when' and 'action', got {sorted(row)}"
                )
            when, action = row["when"], row["action"]
        elif isinstance(row, Sequence) and not isinstance(row, str) and len(row) == 2:
            when, action = row
        else:
            raise ChurnlensError(
                f"export.actions rule {i}: expected {{when: CONDITION, action: TEXT}}, got {row!r}"
            )
        names = (when,) if isinstance(when, str) else tuple(when or ())
        if not names:
            raise ChurnlensError(f"export.actions rule {i}: 'when' is empty")
        for name in names:
            if name not in CONDITIONS:
                raise ChurnlensError(
                    f"export.actions rule {i}: unknown condition {name!r}; "
                    f"expected one of {', '.join(CONDITIONS)}"
                )
        if not isinstance(action, str) or not action.strip():
            raise ChurnlensError(f"export.actions rule {i}: 'action' must be non-empty text")
        rules.append(Rule(when=names, action=action.strip()))
    if not rules:
        raise ChurnlensError("export.actions: the rule table is empty")
    if rules[-1].when != (ALWAYS,):
        raise ChurnlensError(
            "export.actions: the last rule must be `when: always` so every customer gets an action"
        )
    _check_open_ticket_guard(rules)
    return tuple(rules)


def _check_open_ticket_guard(rules: Sequence[Rule]) -> None:
    """Rules up to the first plain `open_ticket` rule must all require an open ticket."""
    for i, rule in enumerate(rules, start=1):
        if OPEN_TICKET not in rule.when:
            raise ChurnlensError(
                f"export.actions rule {i} ({rule.action!r}) can match a customer with an open "
                "support ticket; put a `when: open_ticket` rule before it (customers with an open "
                "ticket must never get a promotion)"
            )
        if set(rule.when) == {OPEN_TICKET}:
            return


def customer_flags(
    scores: pd.DataFrame,
    *,
    inactive_days: float,
    high_value_quantile: float,
    open_ticket_ids: Iterable[str] = (),
) -> pd.DataFrame:
    """One boolean column per condition in `CONDITIONS`, aligned with `scores`' index.

    `scores` is the population of one list (the high-value threshold is a quantile over all of
    it). Missing helper columns make their condition false (except `is_trial`, which falls back
    to `segment == "trial"`); `open_ticket_ids` adds customers known to have an open ticket.
    """
    index = scores.index
    ids = scores["customer_id"].astype("string")

    open_ticket = ids.isin(set(map(str, open_ticket_ids))).fillna(False).to_numpy(bool)
    if "open_tickets" in scores:
        open_ticket = open_ticket | (_numeric(scores["open_tickets"]).fillna(0).to_numpy() > 0)

    if "is_trial" in scores:
        is_trial = _truthy(scores["is_trial"])
    elif "segment" in scores:
        segment = scores["segment"].astype("string").str.strip().str.lower()
        is_trial = (segment == "trial").fillna(False).to_numpy(bool)
    else:
        is_trial = np.zeros(len(scores), bool)
    if "events_first_14d" in scores:
        no_early_use = _numeric(scores["events_first_14d"]).fillna(0).to_numpy() <= 0
    else:
        no_early_use = np.zeros(len(scores), bool)
    if "activated" in scores:
        activated = scores["activated"]
        no_early_use = no_early_use | (activated.notna().to_numpy(bool) & ~_truthy(activated))
    if "days_since_last_activity" in scores:
        days = _numeric(scores["days_since_last_activity"])
        inactive = (days >= float(inactive_days)).fillna(False).to_numpy(bool)
        quiet = (days >= ONBOARDING_DAYS).fillna(False).to_numpy(bool) & ~inactive
    else:
        inactive = quiet = np.zeros(len(scores), bool)
    trial_not_activated = is_trial & (no_early_use | quiet)

    if "expected_revenue" in scores and len(scores):
        revenue = _numeric(scores["expected_revenue"])
        threshold = revenue.quantile(float(high_value_quantile))
        high_value = (revenue > threshold).fillna(False).to_numpy(bool)
    else:
        high_value = np.zeros(len(scores), bool)

    return pd.DataFrame(
        {
            OPEN_TICKET: open_ticket,
            TRIAL_NOT_ACTIVATED: trial_not_activated,
            INACTIVE: inactive,
            HIGH_VALUE: high_value,
            ALWAYS: np.ones(len(scores), bool),
        },
        index=index,
    )


def assign_actions(flags: pd.DataFrame, rules: Sequence[Rule] | None = None) -> pd.Series:
    """The action of the first matching rule for every row of `flags` (from `customer_flags`)."""
    rules = parse_rules(None) if rules is None else rules
    actions = pd.Series(pd.NA, index=flags.index, dtype="string")
    for rule in rules:
        match = np.logical_and.reduce([flags[name].to_numpy(bool) for name in rule.when])
        actions = actions.mask(actions.isna() & match, rule.action)
    return actions


def matched_conditions(flags: pd.DataFrame, rules: Sequence[Rule] | None = None) -> pd.Series:
    """The conditions of the rule that chose each row's action (`assign_actions`), without
    `always`: the facts the action rests on (an empty tuple for the fall-back action)."""
    rules = parse_rules(None) if rules is None else rules
    chosen = pd.Series([None] * len(flags), index=flags.index, dtype="object")
    for rule in rules:
        match = np.logical_and.reduce([flags[name].to_numpy(bool) for name in rule.when])
        free = chosen.isna().to_numpy(bool) & match
        facts = tuple(name for name in rule.when if name != ALWAYS)
        chosen[free] = [facts] * int(free.sum())
    return chosen.map(lambda facts: facts if isinstance(facts, tuple) else ())


def fact_reason(condition: str, row: Mapping[str, Any], *, inactive_days: float,
                high_value_quantile: float) -> tuple[str, set[str]] | None:
    """The reason sentence stating `condition` for this customer, with the stories it tells."""
    idle = _number(row.get("days_since_last_activity"))
    if condition == OPEN_TICKET:
        sentence = (describe("open_tickets", row) or describe("oldest_open_ticket_days", row)
                    if (_number(row.get("open_tickets")) or 0) >= 1
                    else describe("oldest_open_ticket_days", row)
                    if (_number(row.get("oldest_open_ticket_days")) or 0) >= 1
                    else None)
        return (sentence or "has an open support ticket"), {"support"}
    if condition == TRIAL_NOT_ACTIVATED:
        if idle is not None and ONBOARDING_DAYS <= idle < inactive_days and not _not_onboarded(row):
            return f"trial user with no activity for {idle:.0f} days", {"plan", "activity"}
        return "trial user with no key action yet", {"plan", "onboarding"}
    if condition == INACTIVE:
        sentence = describe("days_since_last_activity", row) if idle is not None else None
        return (sentence or "inactive for a long time"), {"activity"}
    if condition == HIGH_VALUE:
        top = round(100 * (1 - high_value_quantile))
        return (f"among the top {top}% of customers by expected revenue"), {"value"}
    return None


def _not_onboarded(row: Mapping[str, Any]) -> bool:
    early = _number(row.get("events_first_14d"))
    activated = row.get("activated")
    if early is None or early <= 0:
        return True
    if activated is None or pd.isna(activated):
        return False
    return not bool(_truthy(pd.Series([activated]))[0])


def _supported(condition: str, reasons: Sequence[str], row: Mapping[str, Any],
               fact: str, *, inactive_days: float) -> bool:
    """Whether the shown `reasons` already state the fact of `condition`."""
    if fact in reasons:
        return True
    stories = [sentence_story(r, row) for r in reasons]
    if condition == OPEN_TICKET:
        return any(s == "support" and " open" in f" {r}" for r, s in zip(reasons, stories,
                                                                          strict=True))
    if condition == TRIAL_NOT_ACTIVATED:
        trial = any("trial" in r for r in reasons)
        if fact.startswith("trial user with no activity"):
            idle = ("no activity for", "no product usage", "not active on any", "inactive for")
            return trial and any(r.startswith(idle) for r in reasons)
        return any("not onboarded" in r for r in reasons) or (
            trial and any(r.startswith("no product use in the first") for r in reasons))
    if condition == INACTIVE:
        return any(r.startswith(("inactive for", "no activity for")) for r in reasons)
    return False


def supporting_reasons(reasons: Sequence[Any], conditions: Sequence[str],
                       row: Mapping[str, Any], *, inactive_days: float,
                       high_value_quantile: float, k: int = 3) -> list[str]:
    """`reasons` (strongest first; blanks dropped) so that the fact of every condition in
    `conditions` is among them: a missing fact replaces the reasons that tell its story (at the
    first one's place), else goes first and the weakest reason is dropped. A reason repeating
    the story of a stronger one is dropped too. At most `k`."""
    shown: list[str] = []
    told: set[str] = set()
    for reason in reasons:  # each story once (older explain outputs may repeat one)
        text = "" if reason is None or pd.isna(reason) else str(reason).strip()
        told_by = sentence_story(text, row)
        if text and (told_by not in told or told_by == "other"):
            shown.append(text)
            told.add(told_by)
    for condition in reversed(list(conditions)):
        found = fact_reason(condition, row, inactive_days=inactive_days,
                            high_value_quantile=high_value_quantile)
        if found is None:
            continue
        fact, stories = found
        if _supported(condition, shown, row, fact, inactive_days=inactive_days):
            continue
        same = [i for i, r in enumerate(shown) if sentence_story(r, row) in stories]
        at = same[0] if same else 0
        shown = [r for i, r in enumerate(shown) if i not in same]
        shown.insert(min(at, len(shown)), fact)
    return shown[:k]


def suggest_actions(
    scores: pd.DataFrame,
    *,
    inactive_days: float,
    high_value_quantile: float,
    open_ticket_ids: Iterable[str] = (),
    rules: Sequence[Rule] | None = None,
) -> pd.Series:
    """`customer_flags` then `assign_actions`: the suggested action for every scored customer."""
    flags = customer_flags(
        scores,
        inactive_days=inactive_days,
        high_value_quantile=high_value_quantile,
        open_ticket_ids=open_ticket_ids,
    )
    return assign_actions(flags, rules)


def _number(value: Any) -> float | None:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(number) else float(number)


def _numeric(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _truthy(values: pd.Series) -> np.ndarray:
    """Booleans from bool / 0-1 / 'true'-'false' columns; missing is False."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return (_numeric(values).fillna(0) != 0).to_numpy(bool)
    text = values.astype("string").str.strip().str.lower()
    return text.isin(["1", "true", "yes", "y", "t"]).fillna(False).to_numpy(bool)
