"""What "churned" and "lost" mean: the one definition the feature labels and the KPIs share.

`label.definition` picks one of `DEFINITIONS`; H is `label.horizon_days`. Days are whole days
(epoch-day numbers or dates), and "at day d" means at the end of day d.

* `inactivity`: a customer is **lost at day d** when they signed up on or before `d - H` and
  have no transaction and no event in `(d - H, d]`: lost from `r + H` on after their last
  activity `r` (or signup, if never active). Activity brings them back, so being lost is a
  status at a day, not an event for good. `cancel_date` plays no part.
* `cancellation`: a customer is **lost at day d** when `cancel_date <= d`.

The **label** at cutoff `t` (`churned`, 1/0) is "lost at `t + H`" for a customer of the feature
rows at `t`:

* `inactivity`: no transaction and no event in `(t, t + H]`;
* `cancellation`: `cancel_date` in `(t, t + H]` (the rows at `t` hold no one cancelled by `t`).

A cutoff is labelled when its whole window `(t, t + H]` ends on or before `as_of`
(`is_labelled`; `churnlens.snapshot.labelled_cutoffs` and the feature SQL use it). The KPIs
(`churnlens.kpis`) count "lost" customers with `customers_at`; the feature rows
(`churnlens.feature_sql`) get their label from `label_sql`.

**Active / lapsed** (the split of metrics and of the CS lists, `churnlens.scoring.
active_customers`) is the `inactivity` rule at the cutoff itself, whatever `label.definition`
says: a customer is lapsed at `t` when lost through inactivity at `t` (`lapsed`, read from a
feature row's days since the last activity, or since signup if never active). Under
`cancellation` this is a different thing from the label: it only says who is still using the
product.
"""

from __future__ import annotations

import numpy as np

from churnlens.errors import ChurnlensError

DEFINITIONS = ("inactivity", "cancellation")


def check_definition(definition: str) -> str:
    """`definition` if it is one of `DEFINITIONS`, else a user error naming the choices."""
    if definition not in DEFINITIONS:
        raise ChurnlensError(
            f"label.definition must be one of {', '.join(DEFINITIONS)}, got {definition!r}"
        )
    return definition


def uses_activity(definition: str) -> bool:
    """Does "lost" depend on activity (transactions and events) rather than on `cancel_date`?"""
    return check_definition(definition) == "inactivity"


def is_labelled(cutoff: int, as_of: int, horizon_days: int) -> bool:
    """Does the label window `(cutoff, cutoff + H]` end on or before `as_of` (epoch days)?"""
    return int(cutoff) + int(horizon_days) <= int(as_of)


# --- in SQL: the label of a feature row --------------------------------------------------------

def label_sql(definition: str, horizon_days: int, *, cutoff: str, next_activity_day: str,
              cancel_day: str) -> str:
    """SQL for the 0/1 label at `cutoff` of a customer of the feature rows at that cutoff.

    The arguments name SQL expressions (epoch days): `next_activity_day` is the first day with
    a transaction or event *after* the cutoff (NULL if none); `cancel_day` NULL = not cancelled.
    """
    horizon_days = int(horizon_days)
    if check_definition(definition) == "inactivity":
        return (f"CASE WHEN {next_activity_day} IS NULL OR {next_activity_day} > {cutoff} + "
                f"{horizon_days} THEN 1 ELSE 0 END")
    return (f"CASE WHEN {cancel_day} IS NOT NULL AND {cancel_day} > {cutoff} "
            f"AND {cancel_day} <= {cutoff} + {horizon_days} THEN 1 ELSE 0 END")


# --- in numpy: who is lost, who is a customer at a day -----------------------------------------

def lost_at(definition: str, horizon_days: int, *, days: np.ndarray, signup: np.ndarray,
            cancel: np.ndarray | None = None, active: np.ndarray | None = None) -> np.ndarray:
    """bool [customers, days]: lost at each of `days` (epoch days).

    `signup`, `cancel`: int64 epoch day per customer (a day after every `days` for none);
    `cancel` is needed under `cancellation`. `active` (bool [customers, days]): some
    transaction or event in `(d - H, d]`, needed under `inactivity`.
    """
    days = np.asarray(days)
    if not uses_activity(definition):
        return np.asarray(cancel)[:, None] <= days[None, :]
    old_enough = (days[None, :] - np.asarray(signup)[:, None]) >= int(horizon_days)
    return ~np.asarray(active, dtype=bool) & old_enough


def customers_at(definition: str, horizon_days: int, *, days: np.ndarray, signup: np.ndarray,
                 cancel: np.ndarray | None = None, active: np.ndarray | None = None) -> np.ndarray:
    """bool [customers, days]: a customer at each of `days`: signed up by then and not lost."""
    signed_up = np.asarray(signup)[:, None] <= np.asarray(days)[None, :]
    return signed_up & ~lost_at(definition, horizon_days, days=days, signup=signup,
                                cancel=cancel, active=active)


def lapsed(days_since_last_activity: np.ndarray, horizon_days: int,
           tenure_days: np.ndarray | None = None) -> np.ndarray:
    """bool per feature row: lost through inactivity at its cutoff (`lost_at("inactivity")`).

    `days_since_last_activity`: days from the last transaction or event to the cutoff, or from
    the signup for a customer never active (as the feature rows have it), so "no activity in
    `(t - H, t]` and signed up by `t - H`" is `days >= H`. A missing value (never active, signup
    not counted in) is lapsed unless `tenure_days` is below H (a signup younger than the
    horizon); without `tenure_days` it is lapsed.
    """
    days = np.asarray(days_since_last_activity, dtype="float64")
    horizon = float(horizon_days)
    unknown = np.isnan(days)
    if tenure_days is not None:
        young = np.asarray(tenure_days, dtype="float64") < horizon
        unknown = unknown & ~young
    return (days >= horizon) | unknown
