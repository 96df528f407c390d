"""How the train stage judges a model: test-slice metrics of the model and the baselines, the
promotion gate's comparison with the simple models, the headline figures `dvc exp show` prints,
the curve tables behind the plots and `train_summary.json`. Pure functions over arrays and
DataFrames (the stage writes the results, `churnlens.stages.train`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnlens.logs import get_logger
from churnlens.metrics import METRIC_KEYS, calibration_curve, evaluate, lift_curve, pr_curve
from churnlens.model import ChurnClassifier
from churnlens.scoring import active_customers
from churnlens.split import TimeSplit

log = get_logger("train")

REPORTED_BASELINES = ("recency", "logistic", "prior")
SIMPLE = ("recency", "logistic")   # what the gradient-boosted model has to beat
PLOTTED = ("model", "lightgbm", "recency", "logistic")
HEADLINE_SCORERS = ("recency", "logistic")   # baselines shown next to the model
HEADLINE_KEYS = ("roc_auc", "pr_auc", "brier", "ece")


def predict_all(model: ChurnClassifier, baselines: dict, frame: pd.DataFrame,
                columns: list[str]) -> dict[str, np.ndarray]:
    preds = model.evaluation_proba(frame[columns])
    preds.update({name: est.predict_proba(frame)[:, 1] for name, est in baselines.items()})
    return preds


def population_metrics(y: np.ndarray, preds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Model, LightGBM alone and baselines on one population of the test slice."""
    if not len(y):
        return {"n": 0, "churn_rate": None, "model": None, "lightgbm": None, "baselines": None}
    return {
        "n": int(len(y)),
        "churn_rate": float(y.mean()),
        "model": evaluate(y, preds["model"]),
        "lightgbm": evaluate(y, preds["lightgbm"]),
        "baselines": {name: evaluate(y, preds[name]) for name in REPORTED_BASELINES},
    }


def build_metrics(split: TimeSplit, preds: dict[str, np.ndarray], model: ChurnClassifier,
                  horizon_days: int) -> dict[str, Any]:
    """metrics.json: the whole test population at the top (DESIGN shape), then by population."""
    y = split.test["label"].to_numpy()
    active = active_customers(split.test, horizon_days).to_numpy()
    return {
        "test_cutoff": split.test_cutoff.isoformat(),
        "n_test": int(len(y)),
        "churn_rate": float(y.mean()),
        "model": evaluate(y, preds["model"]),
        "baselines": {name: evaluate(y, preds[name]) for name in REPORTED_BASELINES},
        "lightgbm": evaluate(y, preds["lightgbm"]),
        "uncalibrated": evaluate(y, preds["uncalibrated"]),
        "populations": {
            "all": population_metrics(y, preds),
            "active": population_metrics(y[active], {k: v[active] for k, v in preds.items()}),
        },
        "calibration_method": model.calibration_method_,
        "calibration_comparison": model.calibration_scores_,
        "best_iteration": model.best_iteration_,
        "split": split.kind,
        "slices": split.describe(),
    }


def _best_simple(metrics: dict[str, Any], key: str, lower: bool) -> tuple[str, float]:
    values = {name: metrics["baselines"][name][key] for name in SIMPLE
              if metrics["baselines"][name][key] is not None}
    if not values:
        return "recency", float("nan")
    name = (min if lower else max)(values, key=values.get)
    return name, float(values[name])


def beats(block: dict[str, Any], auc: float, loss: float) -> bool:
    """At least the best simple AUC and at most the best simple log loss."""
    return bool(block["roc_auc"] is not None and block["roc_auc"] >= auc
                and block["log_loss"] <= loss)


def gate_summary(metrics: dict[str, Any], evaluated: ChurnClassifier,
                 shipped: ChurnClassifier) -> dict[str, Any]:
    """Which scorer ships and why, and how LightGBM fared against the simple models on test."""
    auc_name, auc = _best_simple(metrics, "roc_auc", lower=False)
    loss_name, loss = _best_simple(metrics, "log_loss", lower=True)
    lightgbm_wins = beats(metrics["lightgbm"], auc, loss)
    model_wins = beats(metrics["model"], auc, loss)
    model_auc = metrics["model"]["roc_auc"]
    return {
        "shipped": shipped.scorer_,
        "lightgbm_weight": float(shipped.blend_weight_),
        "chosen_by": ("lowest out-of-fold log loss over LightGBM weights "
                      f"{list(shipped.blend_weights)}, whole customers held out "
                      f"({shipped.cv_folds} folds), on all labelled cutoffs"),
        "out_of_fold": shipped.out_of_fold_,
        "evaluated": {"scorer": evaluated.scorer_,
                      "lightgbm_weight": float(evaluated.blend_weight_),
                      "out_of_fold": evaluated.out_of_fold_},
        "test": {
            "best_simple_auc": {"name": auc_name, "roc_auc": auc},
            "best_simple_log_loss": {"name": loss_name, "log_loss": loss},
            "lightgbm_beats_simple": lightgbm_wins,
            "model_beats_simple": model_wins,
            "model_minus_best_simple": {
                "roc_auc": None if model_auc is None else model_auc - auc,
                "log_loss": metrics["model"]["log_loss"] - loss},
        },
        "summary": gate_sentence(shipped.scorer_, lightgbm_wins, model_wins, auc_name, metrics),
    }


def gate_sentence(scorer: str, lightgbm_wins: bool, model_wins: bool, simple: str,
                  metrics: dict[str, Any]) -> str:
    """One plain sentence (or three) for the model card."""
    what = {"lightgbm": "the gradient-boosted model (LightGBM)",
            "logistic": "the simple logistic model on recency, frequency, spend and tenure",
            "blend": "a blend of the gradient-boosted model and the simple logistic model"}[scorer]
    sentence = f"Scores come from {what}."
    if not lightgbm_wins:
        sentence += (" On the test month the gradient-boosted model alone did not beat the "
                     f"simple {simple} model.")
    if not model_wins:
        auc, simple_auc = metrics["model"]["roc_auc"], metrics["baselines"][simple]["roc_auc"]
        sentence += (f" The shipped scores did not beat the simple {simple} model on the test "
                     f"month either (ranking AUC {auc:.3f} vs {simple_auc:.3f}): treat them as "
                     "no better than sorting by it.")
    return sentence


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few figures to compare experiments by: test rows, churn rate, model vs baselines."""
    def pick(block: dict[str, Any]) -> dict[str, Any]:
        return {k: None if block[k] is None else round(float(block[k]), 6) for k in HEADLINE_KEYS}

    return {"rows": int(metrics["n_test"]), "churn_rate": round(float(metrics["churn_rate"]), 6),
            "model": pick(metrics["model"]),
            **{name: pick(metrics["baselines"][name]) for name in HEADLINE_SCORERS}}


def population_note(definition: str, horizon_days: int) -> str:
    if definition == "inactivity":
        return ("every customer signed up by the cutoff, lapsed ones included (they can come "
                f"back); 'active' = some activity in the {horizon_days} days before the cutoff")
    return "customers signed up and not cancelled at the cutoff"


def log_metrics_table(metrics: dict[str, Any]) -> None:
    rows = {"model": metrics["model"], "lightgbm": metrics["lightgbm"],
            "uncalibrated": metrics["uncalibrated"], **metrics["baselines"]}
    log.info("test slice %s: %d rows, churn rate %.3f", metrics["test_cutoff"],
             metrics["n_test"], metrics["churn_rate"])
    log.info("%-13s %s", "", " ".join(f"{k[:12]:>12}" for k in METRIC_KEYS))
    for name, values in rows.items():
        cells = " ".join(f"{'-' if values[k] is None else format(values[k], '.4f'):>12}"
                         for k in METRIC_KEYS)
        log.info("%-13s %s", name, cells)


def curve_tables(y: np.ndarray, preds: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    def stack(fn) -> pd.DataFrame:
        return pd.concat([fn(y, preds[name]).assign(model=name) for name in PLOTTED],
                         ignore_index=True)

    return {"calibration": stack(calibration_curve), "lift": stack(lift_curve),
            "pr_curve": stack(pr_curve)}


def build_summary(split: TimeSplit, model: ChurnClassifier, rows: pd.DataFrame,
                  columns: list[str], as_of: str, fingerprint: str, *, horizon_days: int,
                  definition: str, model_dir: str) -> dict[str, Any]:
    """train_summary.json: what the *shipped* model learnt from (all labelled cutoffs)."""
    cutoffs = sorted(set(pd.to_datetime(rows["cutoff"]).dt.date))
    return {
        "horizon_days": int(horizon_days),
        "definition": definition,
        "trained_at": as_of,  # the data date, not the wall clock: reruns give the same file
        "data_as_of": as_of,
        "data_fingerprint": fingerprint,
        "train_window": {"start": cutoffs[0].isoformat(), "end": cutoffs[-1].isoformat()},
        "shipped_rows": int(len(rows)),
        "shipped_cutoffs": len(cutoffs),
        "scorer": model.scorer_,
        "lightgbm_weight": float(model.blend_weight_),
        "evaluation_split": split.kind,
        "slices": split.describe(),
        "feature_columns": columns,
        "n_features": len(columns),
        "calibration_method": model.calibration_method_,
        "calibration_comparison": model.calibration_scores_,
        "best_iteration": model.best_iteration_,
        "out_of_fold": model.out_of_fold_,
        "model_dir": model_dir,
    }
