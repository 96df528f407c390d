"""Training the churn model on feature rows: the checks that stop a train before anything is
fitted (rows, label classes, enough data, the feature horizon), fitting with the `train`
settings, and the checks before the promotion gate. No file I/O: the train stage reads and
writes (`churnlens.stages.train`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from churnlens.errors import ChurnlensError
from churnlens.logs import get_logger
from churnlens.model import ChurnClassifier, group_folds, lgbm_threads
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
    """Cross-fit (customers held out), blend, calibrate and refit on `rows`; log the result."""
    return log_fit(_fit(rows, columns, train), what, len(rows))


def _fit(rows: pd.DataFrame, columns: list[str], train: TrainSettings) -> ChurnClassifier:
    model = ChurnClassifier(
        lgbm_params=dict(train.lgbm),
        seed=train.seed,
        early_stopping_rounds=train.early_stopping_rounds,
        calibration=train.calibration,
        cv_folds=train.cv_folds,
    )
    return model.fit(rows[columns], rows["label"],
                     groups=rows["customer_id"].astype(str).to_numpy())


def log_fit(model: ChurnClassifier, what: str, n_rows: int) -> ChurnClassifier:
    losses = ", ".join(f"{w:g}: {loss:.5f}" for w, loss in model.blend_losses_.items())
    log.info("%s: %d rows, %d trees, LightGBM weight %g -> %s (out-of-fold log loss by weight "
             "%s), %s calibration", what, n_rows, model.best_iteration_, model.blend_weight_,
             model.scorer_, losses, model.calibration_method_)
    return model


class BackgroundFit:
    """`fit_model` in a daemon thread; `result()` waits, logs and returns the model (or raises
    the fit's error). Two fits on one LightGBM thread each (`lgbm_threads`) then use the two
    cores without OpenMP's per-round synchronisation; each fit is the same computation as
    alone (its own data, seeds and estimators), so the models are the same."""

    def __init__(self, rows: pd.DataFrame, columns: list[str], train: TrainSettings,
                 what: str) -> None:
        import threading

        self.what, self.n_rows = what, len(rows)
        self._model: ChurnClassifier | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(rows, columns, train),
                                         name="churnlens-fit", daemon=True)
        self._thread.start()

    def _work(self, rows: pd.DataFrame, columns: list[str], train: TrainSettings) -> None:
        try:
            self._model = _fit(rows, columns, train)
        except BaseException as err:  # noqa: BLE001 - handed to the caller by result()
            self._error = err

    def result(self) -> ChurnClassifier:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return log_fit(self._model, self.what, self.n_rows)


def start_fit(rows: pd.DataFrame, columns: list[str], train: TrainSettings,
              what: str) -> Callable[[], ChurnClassifier]:
    """`fit_model` started now in the background when `fits_in_parallel`, else deferred: call
    the returned function where the model is needed, either way."""
    if fits_in_parallel(len(rows)):
        return BackgroundFit(rows, columns, train, what).result
    return lambda: fit_model(rows, columns, train, what)


def fits_in_parallel(n_rows: int) -> bool:
    """Whether the shipped model (`n_rows` rows, the larger fit) is fitted alongside the
    evaluation model: when both fits use one LightGBM thread (`lgbm_threads`). Larger fits use
    the cores themselves and stay one after the other."""
    return lgbm_threads(n_rows) == 1




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
