"""Training the churn model on feature rows: the checks that stop a train before anything is
fitted (rows, label classes, enough data, the feature horizon), fitting with the `train`
settings, and the checks before the promotion gate. No file I/O: the train stage reads and
writes (`churnlens.stages.train`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnlens.errors import ChurnlensError
from churnlens.logs import get_logger
from churnlens.model import ChurnClassifier, group_folds
from churnlens.settings import TrainSettings
from churnlens.split import TimeSplit

log = get_logger("train")

ID_COLUMNS = ("customer_id", "cutoff", "label")  # = churnlens.features.ID_COLUMNS
# Fewer churners (or stayers) than this in the test slice make ROC AUC and the gate noise.
MIN_TEST_PER_CLASS = 5


def check_training_rows(rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """The training rows with an int label; `ChurnlensError` without the id columns or with
    unlabelled rows."""
    missing = [c for c in ID_COLUMNS if c not in rows.columns]
    if missing:
        raise ChurnlensError(f"{source}: missing columns {missing}")
    if rows["label"].isna().any():
        raise ChurnlensError(f"{source}: {int(rows['label'].isna().sum())} rows without a label")
    rows["label"] = rows["label"].astype(int)
    return rows


def feature_columns(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c not in ID_COLUMNS]


def check_horizon(meta: dict[str, Any] | None, horizon_days: int, source: str) -> None:
    """The feature rows' label horizon (`meta.json` `horizon_days`) must be `label.horizon_days`:
    labels of another horizon would train a model that answers another question."""
    recorded = (meta or {}).get("horizon_days")
    if recorded is not None and int(recorded) != int(horizon_days):
        raise ChurnlensError(
            f"{source} was built with horizon_days={recorded} but label.horizon_days="
            f"{horizon_days}: run `dvc repro features` first")


def fit_model(rows: pd.DataFrame, columns: list[str], train: TrainSettings,
              what: str) -> ChurnClassifier:
    """Cross-fit (customers held out), blend, calibrate and refit on `rows`."""
    model = ChurnClassifier(
        lgbm_params=dict(train.lgbm),
        seed=train.seed,
        early_stopping_rounds=train.early_stopping_rounds,
        calibration=train.calibration,
        cv_folds=train.cv_folds,
    )
    model.fit(rows[columns], rows["label"], groups=rows["customer_id"].astype(str).to_numpy())
    losses = ", ".join(f"{w:g}: {loss:.5f}" for w, loss in model.blend_losses_.items())
    log.info("%s: %d rows, %d trees, LightGBM weight %g -> %s (out-of-fold log loss by weight "
             "%s), %s calibration", what, len(rows), model.best_iteration_, model.blend_weight_,
             model.scorer_, losses, model.calibration_method_)
    return model




def check_both_classes(split: TimeSplit, definition: str, horizon: int) -> None:
    """Refuse to train when the training rows hold a single label class (nothing to learn)."""
    labels = split.train["label"]
    if labels.nunique() >= 2:
        return
    value = int(labels.iloc[0]) if len(labels) else 0
    everywhere = all(set(s["label"].unique()) <= {value} for s in split.slices().values())
    what = "no customer churns" if value == 0 else "every customer churns"
    hint = (" (the cancellation label needs cancel_date values in the customers table)"
            if definition == "cancellation" and value == 0 else "")
    where = "in any labelled cutoff" if everywhere else "in the training cutoffs " + (
        f"({split.cutoffs['train'][0]} .. {split.cutoffs['train'][-1]})")
    raise ChurnlensError(
        f"the label has a single class: {what} {where} under label.definition={definition} "
        f"with horizon_days={horizon}{hint}; a churn model needs both churners and stayers")


def _churners(frame: pd.DataFrame) -> str:
    churners = frame.loc[frame["label"] == 1, "customer_id"].nunique()
    return (f"{frame['customer_id'].nunique()} customers, {churners} of whom churn at some "
            f"cutoff ({int(frame['label'].sum())} of {len(frame)} rows)")


def check_enough_data(split: TimeSplit, rows: pd.DataFrame, cv_folds: int, seed: int) -> None:
    """Stop before any fitting (and long before MLflow) when the data cannot give a model that
    can be judged: the test slice needs churners and stayers (ROC AUC and the promotion gate
    depend on them), and cross-fitting needs both in the training part of every fold of whole
    customers, for the evaluation model and for the shipped one."""
    test = split.test["label"]
    churners, stayers = int((test == 1).sum()), int((test == 0).sum())
    if min(churners, stayers) < MIN_TEST_PER_CLASS:
        raise ChurnlensError(
            f"too little data to judge a model: the test slice (cutoff {split.test_cutoff}) "
            f"holds {churners} churners and {stayers} stayers, and ROC AUC and the promotion "
            f"gate need at least {MIN_TEST_PER_CLASS} of each; nothing was trained or "
            "registered. More customers (or a longer history) are needed")
    for what, frame in (("the training cutoffs", split.train), ("all labelled cutoffs", rows)):
        groups = frame["customer_id"].astype(str).to_numpy()
        labels = frame["label"].to_numpy()
        n_groups = len(pd.unique(groups))
        folds = (group_folds(groups, min(int(cv_folds), n_groups), seed) if n_groups >= 2
                 else [])
        if n_groups < 2 or any(len(np.unique(labels[fit])) < 2 for fit, _ in folds):
            raise ChurnlensError(
                f"too little data to train: {what} hold {_churners(frame)}; cross-fitting in "
                f"{min(int(cv_folds), n_groups)} folds of whole customers (train.cv_folds="
                f"{cv_folds}) leaves a fold with nothing to learn from (no churner or no "
                "stayer); nothing was trained or registered. More customers, with both "
                "churners and stayers, are needed")


def check_gate_inputs(metrics: dict[str, Any]) -> None:
    """The promotion gate compares ROC AUC and Brier: refuse to register without them."""
    missing = [key for key in ("roc_auc", "brier", "log_loss")
               if metrics["model"].get(key) is None or not np.isfinite(metrics["model"][key])]
    if missing:
        raise ChurnlensError(
            f"the model's test figures {', '.join(missing)} could not be computed on the test "
            f"slice ({metrics['n_test']} rows, churn rate {metrics['churn_rate']:.3f}); the "
            "promotion gate needs them, so nothing was registered")


def log_split(split: TimeSplit) -> None:
    if split.kind != "out_of_time":
        log.warning("too little history for an out-of-time test: the test slice is a quarter of "
                    "the customers at %s, held out from training", split.test_cutoff)
    for name, info in split.describe().items():
        cutoffs = info["cutoffs"]
        log.info("%-5s: %7d rows, %6d customers, churn rate %s, %d cutoffs %s..%s", name,
                 info["rows"], info["customers"],
                 "n/a" if info["churn_rate"] is None else f"{info['churn_rate']:.3f}",
                 len(cutoffs), cutoffs[0], cutoffs[-1])
