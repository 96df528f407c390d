"""Snapshot semantics: the scoring date, the cutoffs and which of them can carry a label.

At cutoff `t` every row with `date(timestamp) <= t` is visible and nothing after it. Cutoffs are
`as_of - k * step` for `k = 0 .. max_cutoffs - 1`, keeping those on or after the first data day.
A cutoff is labelled when its whole label window `(t, t + horizon]` ends on or before `as_of`.
Pure date arithmetic; the SQL that applies it lives in `feature_sql.py`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

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
    """Cutoffs whose label window `(t, t + horizon]` ends on or before `as_of`; ascending."""
    end = as_date(as_of) - timedelta(days=int(horizon_days))
    return sorted(c for c in cutoffs if c <= end)


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
) -> Snapshot:
    """Resolve as_of, list the cutoffs and check there are at least `min_labelled` labelled ones.

    Raises `NotEnoughHistoryError` (data too short) or `ChurnlensError` (params cannot work).
    """
    if int(horizon_days) <= 0:
        raise ChurnlensError(f"label.horizon_days must be positive, got {horizon_days!r}")
    resolved = resolve_as_of(as_of, last_day)
    cutoffs = list_cutoffs(resolved, step_days, max_cutoffs, first_day)
    labelled = labelled_cutoffs(cutoffs, resolved, horizon_days)
    snap = Snapshot(resolved, cutoffs, labelled, int(horizon_days), int(step_days),
                    as_date(first_day) if first_day is not None else None)
    if len(labelled) < min_labelled:
        check_enough_history(snap, min_labelled, max_cutoffs)
    return snap


def plan_for_stage(cfg: Mapping[str, Any], first_day: date | None, last_day: date | None,
                   log: logging.Logger) -> Snapshot:
    """The features stage's plan from its settings and the data's day range (both engines).

    `cfg`: `as_of`, `horizon_days`, `step_days`, `max_cutoffs`, `definition`. Logs the plan and
    how `as_of` relates to the last event/transaction day.
    """
    snap = plan_snapshot(as_of=cfg["as_of"], first_day=first_day, last_day=last_day,
                         horizon_days=cfg["horizon_days"], step_days=cfg["step_days"],
                         max_cutoffs=cfg["max_cutoffs"], min_labelled=1)
    if last_day is not None and snap.as_of > last_day:
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
