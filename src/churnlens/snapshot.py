"""Snapshot semantics: the scoring date, the cutoffs and which of them can carry a label.

`as_of` is `snapshot.as_of` when given, else the last day the data is complete
(`complete_as_of`: a thin tail of stray rows after a long silence stays after it).
At cutoff `t` every row with `date(timestamp) <= t` is visible and nothing after it. Cutoffs are
`as_of - k * step` for `k = 0 .. max_cutoffs - 1`, keeping those on or after the first data day.
A cutoff is labelled when its whole label window `(t, t + horizon]` ends on or before `as_of`
(`churnlens.labels.is_labelled`, the rule the feature SQL applies too).
Pure date arithmetic; the SQL that applies it lives in `feature_sql.py`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from churnlens import labels
from churnlens.errors import ChurnlensError, NotEnoughHistoryError

EPOCH = date(1970, 1, 1)


def to_epoch_day(day: date) -> int:
    """Days since 1970-01-01 (the integer day number the feature SQL works with)."""
    return (as_date(day) - EPOCH).days


def from_epoch_day(n: int) -> date:
    return EPOCH + timedelta(days=int(n))


def as_date(value: date | datetime | str) -> date:
    """A `date` from a date, datetime/Timestamp (its day) or ISO string."""
    if isinstance(value, datetime):  # pandas.Timestamp is a datetime
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise ChurnlensError(f"expected an ISO date (YYYY-MM-DD), got {value!r}") from None


def resolve_as_of(as_of: date | datetime | str | None, last_data_day: date | None) -> date:
    """`snapshot.as_of` if given, else the day of the last event/transaction timestamp."""
    if as_of is not None and str(as_of).strip() not in ("", "null", "None"):
        return as_date(as_of)
    if last_data_day is None:
        raise ChurnlensError(
            "snapshot.as_of is null and there are no events or transactions to take it from"
        )
    return as_date(last_data_day)


#: Share of the event/transaction rows the default as_of always covers (see `complete_as_of`).
COMPLETE_SHARE = 0.995
#: Shortest silence (days without any row) that can cut off a tail; longer silences seen in the
#: year before count as normal too (weekends, holidays).
MIN_TAIL_GAP_DAYS = 7
#: Fewer distinct data days than this in the body: too little to tell a tail; nothing is cut.
MIN_BODY_DAYS = 28
AS_OF_RULE = (f"last day reached from the day by which {COMPLETE_SHARE:.1%} of the rows have "
              "arrived without a silence longer than both "
              f"{MIN_TAIL_GAP_DAYS} days and the longest silence of the year before")


@dataclass(frozen=True)
class AsOfChoice:
    """The default as_of and the thin tail after it (rows after as_of: seen at no cutoff)."""

    as_of: date
    tail_rows: int
    tail_days: int
    last_day: date


def complete_as_of(daily_rows: Iterable[tuple[date, int]]) -> AsOfChoice:
    """The last day up to which the data is complete, from (day, rows) of events + transactions.

    Rule: start at the day by which `COMPLETE_SHARE` (99.5 %) of the rows have arrived -- the
    day of row number max(1, floor(0.995 * n)) in time order, so the very last row never decides
    on its own -- and walk forward over the days with rows as long as each step between them is
    at most `gap` days, where `gap` = the longest step between data days in the 365 days up to
    the start day, but at least `MIN_TAIL_GAP_DAYS` (7). as_of is the last day reached; the rows
    after it are the tail.

    Why: a stray row (a typo'd year, a clock two months ahead) sits after a silence far longer
    than anything the log shows normally, and is a tiny share of the rows. A log that simply ends
    has no such silence in its last 0.5 %, so as_of stays its last day. Quiet weekends or a
    holiday break the year before make the allowed silence longer, not the tail. At most 0.5 %
    of the rows (plus one) can ever fall into the tail. With fewer than `MIN_BODY_DAYS` (28) data
    days up to the start day nothing is cut (too little to know what a normal silence is).
    """
    days = sorted((as_date(d), int(n)) for d, n in daily_rows if int(n) > 0)
    if not days:
        raise ChurnlensError("no events or transactions to take as_of from")
    last_day = days[-1][0]
    total = sum(n for _, n in days)
    target = max(1, math.floor(COMPLETE_SHARE * total))
    seen, start = 0, 0
    while seen + days[start][1] < target:  # days[start]: the day row number `target` is on
        seen += days[start][1]
        start += 1
    if start + 1 < MIN_BODY_DAYS:
        return AsOfChoice(last_day, 0, 0, last_day)
    year_before = [d for d, _ in days[: start + 1] if d >= days[start][0] - timedelta(days=365)]
    steps = [(b - a).days for a, b in zip(year_before, year_before[1:], strict=False)]
    gap = max([MIN_TAIL_GAP_DAYS, *steps])
    end = start
    while end + 1 < len(days) and (days[end + 1][0] - days[end][0]).days <= gap:
        end += 1
    tail = days[end + 1:]
    return AsOfChoice(days[end][0], sum(n for _, n in tail), len(tail), last_day)


@dataclass(frozen=True)
class AsOfDecision:
    """How `snapshot.as_of` resolves (`default_as_of`), for every stage that needs a date.

    rule: "snapshot.as_of" (given), "complete_data" (`complete_as_of`) or "last_data_day"
    (null and no daily counts). tail_rows / tail_days: the thin tail after a default as_of.
    last_day: the last event/transaction day (None when unknown).
    """

    as_of: date
    rule: str
    tail_rows: int = 0
    tail_days: int = 0
    last_day: date | None = None


def is_explicit(as_of: date | datetime | str | None) -> bool:
    """True when `snapshot.as_of` names a date (null, "" and "None" mean: the default)."""
    return as_of is not None and str(as_of).strip() not in ("", "null", "None")


def default_as_of(as_of: date | datetime | str | None,
                  daily_rows: Iterable[tuple[date, int]] | None,
                  last_day: date | None = None) -> AsOfDecision:
    """THE as_of of a run, the same in every stage (features on either engine, KPIs).

    `as_of` given: obeyed. Null: the last day the data is complete (`complete_as_of` over
    `daily_rows`, the (day, event + transaction rows) counts); without counts, `last_day`.
    """
    if is_explicit(as_of):
        return AsOfDecision(as_date(as_of), "snapshot.as_of", 0, 0,
                            None if last_day is None else as_date(last_day))
    daily = None if daily_rows is None else list(daily_rows)
    if daily:
        choice = complete_as_of(daily)
        return AsOfDecision(choice.as_of, "complete_data", choice.tail_rows, choice.tail_days,
                            choice.last_day)
    resolved = resolve_as_of(None, last_day)
    return AsOfDecision(resolved, "last_data_day", 0, 0, resolved)


def list_cutoffs(as_of: date, step_days: int, max_cutoffs: int,
                 first_day: date | None = None) -> list[date]:
    """`as_of - k * step_days` for k in 0..max_cutoffs-1, not before `first_day`; ascending."""
    if int(step_days) <= 0:
        raise ChurnlensError(f"features.cutoff_step_days must be positive, got {step_days!r}")
    if int(max_cutoffs) <= 0:
        raise ChurnlensError(f"features.max_cutoffs must be positive, got {max_cutoffs!r}")
    as_of = as_date(as_of)
    cutoffs = [as_of - timedelta(days=k * int(step_days)) for k in range(int(max_cutoffs))]
    if first_day is not None:
        cutoffs = [c for c in cutoffs if c >= as_date(first_day)]
    return sorted(cutoffs)


def labelled_cutoffs(cutoffs: list[date], as_of: date, horizon_days: int) -> list[date]:
    """Cutoffs whose label window `(t, t + horizon]` ends on or before `as_of`
    (`churnlens.labels.is_labelled`); ascending."""
    day = to_epoch_day(as_of)
    return sorted(c for c in cutoffs if labels.is_labelled(to_epoch_day(c), day, horizon_days))


def required_history_days(horizon_days: int, step_days: int, n_cutoffs: int) -> int:
    """Days between the first data day and `as_of` needed for `n_cutoffs` labelled cutoffs.

    The latest labelled cutoff is `as_of - ceil(horizon/step) * step`; each further one is a step
    earlier. E.g. horizon 90, step 30: 1 cutoff needs 90 days, 6 cutoffs need 240 days.
    """
    horizon_days, step_days, n_cutoffs = int(horizon_days), int(step_days), int(n_cutoffs)
    if step_days <= 0:
        raise ChurnlensError(f"features.cutoff_step_days must be positive, got {step_days!r}")
    return step_days * (math.ceil(horizon_days / step_days) + max(n_cutoffs, 1) - 1)


def required_max_cutoffs(horizon_days: int, step_days: int, n_cutoffs: int) -> int:
    """Smallest `features.max_cutoffs` that can hold `n_cutoffs` labelled cutoffs."""
    return math.ceil(int(horizon_days) / int(step_days)) + max(int(n_cutoffs), 1)


@dataclass(frozen=True)
class Snapshot:
    as_of: date
    cutoffs: list[date]             # every cutoff, ascending
    labelled: list[date]            # cutoffs with a complete label window, ascending
    horizon_days: int
    step_days: int
    first_day: date | None
    as_of_rule: str = "snapshot.as_of"  # or "complete_data" (`complete_as_of`), "last_data_day"
    tail_rows: int = 0              # default as_of only: rows after as_of (the thin tail)
    tail_days: int = 0              # ... on this many days
    last_day: date | None = None    # last event/transaction day
    last_timestamp: str | None = None  # last event/transaction timestamp (ISO, UTC)

    @property
    def history_days(self) -> int | None:
        return None if self.first_day is None else (self.as_of - self.first_day).days


def plan_snapshot(
    *,
    as_of: date | str | None,
    first_day: date | None,
    last_day: date | None,
    horizon_days: int,
    step_days: int,
    max_cutoffs: int,
    min_labelled: int = 1,
    daily_rows: Iterable[tuple[date, int]] | None = None,
    last_timestamp: str | None = None,
) -> Snapshot:
    """Resolve as_of, list the cutoffs and check there are at least `min_labelled` labelled ones.

    `as_of` given: obeyed. Null: `complete_as_of(daily_rows)` when the (day, event+transaction
    rows) counts are given, else the last data day. Raises `NotEnoughHistoryError` (data too
    short) or `ChurnlensError` (params cannot work).
    """
    if int(horizon_days) <= 0:
        raise ChurnlensError(f"label.horizon_days must be positive, got {horizon_days!r}")
    decision = default_as_of(as_of, None if is_explicit(as_of) else daily_rows, last_day)
    resolved, rule = decision.as_of, decision.rule
    tail_rows, tail_days = decision.tail_rows, decision.tail_days
    if decision.rule == "complete_data":
        last_day = decision.last_day
    cutoffs = list_cutoffs(resolved, step_days, max_cutoffs, first_day)
    labelled = labelled_cutoffs(cutoffs, resolved, horizon_days)
    snap = Snapshot(resolved, cutoffs, labelled, int(horizon_days), int(step_days),
                    as_date(first_day) if first_day is not None else None, rule,
                    tail_rows, tail_days, None if last_day is None else as_date(last_day),
                    last_timestamp)
    if len(labelled) < min_labelled:
        check_enough_history(snap, min_labelled, max_cutoffs)
    return snap


def plan_for_stage(cfg: Mapping[str, Any], first_day: date | None, last_day: date | None,
                   log: logging.Logger, daily_rows: Iterable[tuple[date, int]] | None = None,
                   last_timestamp: str | None = None) -> Snapshot:
    """The features stage's plan from its settings and the data's day range (both engines).

    `cfg`: `as_of`, `horizon_days`, `step_days`, `max_cutoffs`, `definition`. `daily_rows`:
    (day, event+transaction rows) for the default as_of (`complete_as_of`); without it a null
    as_of is the last data day. Logs the plan and how `as_of` relates to the last data day: one
    warning for a thin tail left after a default as_of, one for an explicit as_of after the data.
    """
    snap = plan_snapshot(as_of=cfg["as_of"], first_day=first_day, last_day=last_day,
                         horizon_days=cfg["horizon_days"], step_days=cfg["step_days"],
                         max_cutoffs=cfg["max_cutoffs"], min_labelled=1,
                         daily_rows=daily_rows, last_timestamp=last_timestamp)
    last_day = snap.last_day if snap.last_day is not None else last_day
    if snap.tail_rows:
        log.warning("thin tail after as_of %s: %d rows on %d days up to the last timestamp %s "
                    "are after as_of (seen at no cutoff); set snapshot.as_of to move it",
                    snap.as_of, snap.tail_rows, snap.tail_days, last_timestamp or last_day)
    elif last_day is not None and snap.as_of > last_day:
        log.warning("as_of %s is after the last event/transaction day %s: inactivity labels "
                    "near as_of will count the missing days as inactive", snap.as_of, last_day)
    elif last_day is not None and snap.as_of < last_day:
        log.info("rows after as_of %s (up to %s) are ignored", snap.as_of, last_day)
    log.info("as_of %s; %d cutoffs from %s, %d labelled (%s .. %s); label %s, horizon %d days",
             snap.as_of, len(snap.cutoffs), snap.cutoffs[0], len(snap.labelled),
             snap.labelled[0], snap.labelled[-1], cfg["definition"], cfg["horizon_days"])
    return snap


def feature_meta(snap: Snapshot, cfg: Mapping[str, Any], feature_columns: list[str],
                 per_cutoff: Mapping[date, tuple[int, float]], n_scoring: int, engine: str,
                 seconds: float) -> dict[str, Any]:
    """`data/features/meta.json` of either engine: the plan, the feature columns and the rows.

    `per_cutoff`: labelled cutoff -> (training rows, churn rate), for cutoffs with rows.
    """
    default = snap.as_of_rule != "snapshot.as_of"
    return {
        "as_of": snap.as_of.isoformat(),
        "first_data_day": snap.first_day.isoformat() if snap.first_day else None,
        "cutoffs": [c.isoformat() for c in snap.cutoffs],
        "labelled_cutoffs": [c.isoformat() for c in snap.labelled],
        "horizon_days": cfg["horizon_days"],
        "definition": cfg["definition"],
        "cutoff_step_days": cfg["step_days"],
        "windows": cfg["windows"],
        "feature_columns": list(feature_columns),
        "categorical_columns": ["segment"],
        "n_training_rows": int(sum(n for n, _ in per_cutoff.values())),
        "n_scoring_rows": int(n_scoring),
        "rows_per_cutoff": {c.isoformat(): int(n) for c, (n, _) in per_cutoff.items()},
        "churn_rate": {c.isoformat(): float(rate) for c, (_, rate) in per_cutoff.items()},
        "engine": engine,
        "seconds": round(seconds, 2),
        # how as_of was chosen; the data's end only for a default as_of (rows after an explicit
        # as_of change nothing, not even this file)
        "as_of_rule": snap.as_of_rule,
        "tail_rows": int(snap.tail_rows),
        "tail_days": int(snap.tail_days),
        "last_data_day": snap.last_day.isoformat() if snap.last_day and default else None,
        "last_timestamp": snap.last_timestamp if default else None,
    }


def check_enough_history(snap: Snapshot, min_labelled: int, max_cutoffs: int) -> None:
    """Raise a readable error when `snap` has fewer than `min_labelled` labelled cutoffs."""
    if len(snap.labelled) >= min_labelled:
        return
    need_cutoffs = required_max_cutoffs(snap.horizon_days, snap.step_days, min_labelled)
    if int(max_cutoffs) < need_cutoffs:
        raise ChurnlensError(
            f"features.max_cutoffs={max_cutoffs} is too small: {min_labelled} labelled cutoff(s) "
            f"with horizon_days={snap.horizon_days} and cutoff_step_days={snap.step_days} "
            f"need max_cutoffs >= {need_cutoffs}"
        )
    need = required_history_days(snap.horizon_days, snap.step_days, min_labelled)
    have = snap.history_days
    span = "no data" if have is None else f"{have} days ({snap.first_day} .. {snap.as_of})"
    raise NotEnoughHistoryError(
        f"not enough history for labels: {min_labelled} labelled cutoff(s) need {need} days "
        f"between the first data day and as_of (horizon {snap.horizon_days} days + "
        f"{snap.step_days}-day cutoff steps), the data has {span}; "
        f"found {len(snap.labelled)} labelled cutoff(s)"
    )
