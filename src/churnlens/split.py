"""Time-ordered, purged split of the labelled feature rows into train / valid / calib / test.

A row at cutoff `c` carries knowledge up to `c + horizon` through its label. Each slice
therefore only keeps cutoffs whose label window ends on or before the first cutoff of the
slice after it:

    test   = the latest labelled cutoff
    calib  = the `calib_cutoffs` latest cutoffs with `c + horizon <= test`
    valid  = the `valid_cutoffs` latest cutoffs with `c + horizon <= min(calib)`
    train  = every cutoff with `c + horizon <= min(valid)`

Cutoffs that fall in a purge gap are dropped. Customers are *not* held out: the model is
used to score the very customers it was trained on, at a later date, so a customer-level
holdout would test a situation that does not occur in production. Purging is what removes
the leak (a training label never covers a day after an evaluation cutoff), and features
are relative to the cutoff (tenure, recent windows), not identifier-like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

from churnlens.errors import NotEnoughHistoryError

SLICE_NAMES = ("train", "valid", "calib", "test")


@dataclass(frozen=True)
class TimeSplit:
    """Four row slices and the cutoffs each one holds (ascending)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    calib: pd.DataFrame
    test: pd.DataFrame
    cutoffs: dict[str, list[date]] = field(default_factory=dict)

    @property
    def test_cutoff(self) -> date:
        return self.cutoffs["test"][0]

    def slices(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in SLICE_NAMES}

    def describe(self) -> dict[str, dict]:
        """Per slice: cutoffs (ISO), rows and churn rate."""
        out = {}
        for name, frame in self.slices().items():
            rate = float(frame["label"].mean()) if len(frame) else None
            out[name] = {
                "cutoffs": [c.isoformat() for c in self.cutoffs[name]],
                "rows": int(len(frame)),
                "churn_rate": rate,
            }
        return out


def _as_dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.date


def _eligible(cutoffs: list[date], bound: date, horizon: timedelta) -> list[date]:
    """Cutoffs whose label window `(c, c + horizon]` ends on or before `bound`."""
    return [c for c in cutoffs if c + horizon <= bound]


def required_cutoff_span(horizon_days: int, step_days: int, valid_cutoffs: int,
                         calib_cutoffs: int) -> int:
    """Days between the earliest training cutoff and the test cutoff, at the least."""
    gap = math.ceil(horizon_days / step_days)  # steps a purge needs
    steps = gap + (calib_cutoffs - 1) + gap + (valid_cutoffs - 1) + gap
    return steps * step_days


def _not_enough(cutoffs: list[date], horizon_days: int, step_days: int, valid_cutoffs: int,
                calib_cutoffs: int, missing: str) -> NotEnoughHistoryError:
    span = required_cutoff_span(horizon_days, step_days, valid_cutoffs, calib_cutoffs)
    need = span + horizon_days
    if cutoffs:
        have = (cutoffs[-1] - cutoffs[0]).days + horizon_days
        avail = (f"{len(cutoffs)} labelled cutoffs from {cutoffs[0]} to {cutoffs[-1]} "
                 f"(~{have} days of labelled history)")
    else:
        avail = "no labelled cutoffs"
    return NotEnoughHistoryError(
        f"not enough history for a purged time split: no {missing} cutoff left. "
        f"Need at least {need} days of labelled history ({span} days of cutoffs + the "
        f"{horizon_days}-day label horizon; cutoff step {step_days} days, 1 test, "
        f"{calib_cutoffs} calibration, {valid_cutoffs} validation and >=1 training cutoff, "
        f"each slice separated by the horizon); available: {avail}"
    )


def time_split(rows: pd.DataFrame, horizon_days: int, step_days: int,
               valid_cutoffs: int = 1, calib_cutoffs: int = 2) -> TimeSplit:
    """Split labelled feature rows by cutoff, purging label windows between slices.

    Raises `NotEnoughHistoryError` when any slice would be empty.
    """
    if valid_cutoffs < 1 or calib_cutoffs < 1:
        raise ValueError("valid_cutoffs and calib_cutoffs must be >= 1")
    cut = _as_dates(rows["cutoff"])
    cutoffs = sorted(set(cut))
    horizon = timedelta(days=int(horizon_days))
    args = (cutoffs, horizon_days, step_days, valid_cutoffs, calib_cutoffs)
    if not cutoffs:
        raise _not_enough(*args, missing="test")
    chosen: dict[str, list[date]] = {"test": [cutoffs[-1]]}
    calib = _eligible(cutoffs, cutoffs[-1], horizon)[-calib_cutoffs:]
    if len(calib) < calib_cutoffs:
        raise _not_enough(*args, missing="calibration")
    valid = _eligible(cutoffs, calib[0], horizon)[-valid_cutoffs:]
    if len(valid) < valid_cutoffs:
        raise _not_enough(*args, missing="validation")
    train = _eligible(cutoffs, valid[0], horizon)
    if not train:
        raise _not_enough(*args, missing="training")
    chosen.update(calib=calib, valid=valid, train=train)
    frames = {name: rows.loc[cut.isin(set(cs)).to_numpy()].reset_index(drop=True)
              for name, cs in chosen.items()}
    return TimeSplit(**frames, cutoffs={name: chosen[name] for name in SLICE_NAMES})


def modelling_population(rows: pd.DataFrame, definition: str, horizon_days: int) -> pd.DataFrame:
    """Rows of customers who can still churn: under `inactivity`, drop those already lapsed.

    A customer with no activity for `horizon_days` at the cutoff is already lost by the KPI
    definition; their label is a foregone conclusion and would inflate every metric (any
    recency rule "predicts" them). They are still scored at as_of, just not learned from.
    """
    if definition != "inactivity" or "days_since_last_activity" not in rows.columns:
        return rows
    lapsed = rows["days_since_last_activity"].astype("float64") >= horizon_days
    return rows[~lapsed.to_numpy()]
