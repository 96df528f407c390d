"""Time-ordered split of the labelled feature rows into a training part and a test slice.

A row at cutoff `c` carries knowledge up to `c + horizon` through its label, so the test slice
(the latest fully labelled cutoff, untouched until the metrics are computed) only meets training
rows whose whole label window ends on or before it:

    test   = the latest labelled cutoff
    train  = every cutoff with `c + horizon <= test`

Everything else the model needs besides trees (how many of them, the calibration, the weight of
the simple logistic candidate) is chosen by cross-fitting *within* the training rows with whole
customers held out (`churnlens.model`), so no purged time slice is spent on it: one year of data
(horizon + 3 cutoff steps of labelled history at a 90-day horizon and 30-day steps) is enough.

When the history is too short even for that (no cutoff lies a whole horizon before the latest
one), the test slice is a seeded quarter of the *customers* at the latest labelled cutoff and the
rest of the customers train (`kind = "customer_holdout"`): weaker than an out-of-time test, and
said so in `metrics.json`, but a model is still fitted wherever a logistic regression could be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

from churnlens.errors import NotEnoughHistoryError

SLICE_NAMES = ("train", "test")
OUT_OF_TIME = "out_of_time"
CUSTOMER_HOLDOUT = "customer_holdout"
HOLDOUT_SHARE = 0.25


@dataclass(frozen=True)
class TimeSplit:
    """Training rows and the test slice, the cutoffs each one holds (ascending) and the kind."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoffs: dict[str, list[date]] = field(default_factory=dict)
    kind: str = OUT_OF_TIME

    @property
    def test_cutoff(self) -> date:
        return self.cutoffs["test"][-1]

    def slices(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in SLICE_NAMES}

    def describe(self) -> dict[str, dict]:
        """Per slice: cutoffs (ISO), rows, customers and churn rate."""
        out = {}
        for name, frame in self.slices().items():
            rate = float(frame["label"].mean()) if len(frame) else None
            out[name] = {
                "cutoffs": [c.isoformat() for c in self.cutoffs[name]],
                "rows": int(len(frame)),
                "customers": int(frame["customer_id"].nunique()),
                "churn_rate": rate,
            }
        return out


def cutoff_dates(rows: pd.DataFrame) -> pd.Series:
    """The `cutoff` column as `datetime.date` values."""
    return pd.to_datetime(rows["cutoff"]).dt.date


def time_split(rows: pd.DataFrame, horizon_days: int, seed: int = 0) -> TimeSplit:
    """Test = the latest labelled cutoff; train = the cutoffs whose label window ends by then.

    Falls back to a customer holdout at the latest cutoff when no earlier cutoff qualifies.
    Raises `NotEnoughHistoryError` when there are no labelled rows at all.
    """
    cut = cutoff_dates(rows)
    cutoffs = sorted(set(cut))
    if not cutoffs:
        raise NotEnoughHistoryError(
            "no labelled feature rows: no cutoff has a complete label window before as_of "
            f"(label.horizon_days={horizon_days}); more history or a shorter horizon is needed")
    test_cutoff = cutoffs[-1]
    train_cutoffs = [c for c in cutoffs if c + timedelta(days=int(horizon_days)) <= test_cutoff]
    if not train_cutoffs:
        return customer_holdout(rows, cut, test_cutoff, cutoffs, seed)
    in_train = cut.isin(set(train_cutoffs)).to_numpy()
    in_test = (cut == test_cutoff).to_numpy()
    return TimeSplit(train=rows.loc[in_train].reset_index(drop=True),
                     test=rows.loc[in_test].reset_index(drop=True),
                     cutoffs={"train": train_cutoffs, "test": [test_cutoff]})


def customer_holdout(rows: pd.DataFrame, cut: pd.Series, test_cutoff: date,
                     cutoffs: list[date], seed: int) -> TimeSplit:
    """A seeded `HOLDOUT_SHARE` of the customers at `test_cutoff` is the test slice; the other
    customers (all their labelled cutoffs) train."""
    ids = pd.Series(sorted(rows.loc[(cut == test_cutoff).to_numpy(), "customer_id"]
                           .astype(str).unique()))
    n_test = int(round(len(ids) * HOLDOUT_SHARE))
    if len(ids) < 8 or n_test < 2:
        raise NotEnoughHistoryError(
            f"too few customers ({len(ids)}) at the only usable cutoff {test_cutoff} to hold any "
            "out for a test; more customers or more history are needed")
    held = set(ids.sample(n=n_test, random_state=seed))
    is_held = rows["customer_id"].astype(str).isin(held).to_numpy()
    in_test = is_held & (cut == test_cutoff).to_numpy()
    return TimeSplit(train=rows.loc[~is_held].reset_index(drop=True),
                     test=rows.loc[in_test].reset_index(drop=True),
                     cutoffs={"train": cutoffs, "test": [test_cutoff]}, kind=CUSTOMER_HOLDOUT)

