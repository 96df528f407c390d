"""Suggested next action per customer: a first-match-wins rule table over named conditions.

A rule is a `(when, action)` row. `when` names one condition or a list of conditions that must
all hold; the first rule whose conditions hold gives the action. Conditions are computed per
customer by `customer_flags` from the scored table:

* `open_ticket`: an open support ticket (`open_tickets > 0` in the scores, or the id is in
  `open_ticket_ids`, i.e. a ticket without `closed_at` in the validated tickets table);
* `trial_not_activated`: a trial user (`is_trial`, or segment `trial` without that column)
  with no product event in the first 14 days (`events_first_14d` 0 or missing), or with
  `activated == False` when the scores carry such a column;
* `inactive`: `days_since_last_activity >= inactive_days`;
* `high_value`: `expected_revenue` above the `high_value_quantile` of the customers passed in
  (the export stage passes one list's population: the active customers for the at-risk list,
  the lapsed ones worth winning back, valued by `win_back_value`, for the win-back list);
* `always`: every customer (the fall-back row; must be the last rule).

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

OPEN_TICKET = "open_ticket"
TRIAL_NOT_ACTIVATED = "trial_not_activated"
INACTIVE = "inactive"
HIGH_VALUE = "high_value"
ALWAYS = "always"

CONDITIONS: dict[str, str] = {
    OPEN_TICKET: "has an open support ticket",
    TRIAL_NOT_ACTIVATED: "trial user without product use in the first 14 days",
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
    trial_not_activated = is_trial & no_early_use

    if "days_since_last_activity" in scores:
        days = _numeric(scores["days_since_last_activity"])
        inactive = (days >= float(inactive_days)).fillna(False).to_numpy(bool)
    else:
        inactive = np.zeros(len(scores), bool)

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


def _numeric(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _truthy(values: pd.Series) -> np.ndarray:
    """Booleans from bool / 0-1 / 'true'-'false' columns; missing is False."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return (_numeric(values).fillna(0) != 0).to_numpy(bool)
    text = values.astype("string").str.strip().str.lower()
    return text.isin(["1", "true", "yes", "y", "t"]).fillna(False).to_numpy(bool)
