"""Stage `train`: time split, cross-fitted model vs baselines on the test slice, refit, MLflow.

1. Test slice = the latest labelled cutoff; the model (LightGBM + logistic candidate, blended and
   calibrated by cross-fitting, see `churnlens.model`) and the baselines learn from the cutoffs
   whose label window ends by then, and are scored on the test slice, for every customer and for
   the *active* ones -> `reports/metrics.json` with the gate's decision.
2. The shipped model is refitted the same way on *all* labelled cutoffs (the newest labels
   included) -> `models/churn_model/`.

Reads `data/features/training.parquet` (+ `meta.json` when present); also writes
`reports/train_summary.json`, `reports/plots/{calibration,lift,pr_curve}.csv` + `calibration.png`,
`lift.png`, and the MLflow champion decision to `reports/promotion.json`.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlens import io, paths, runlock
from churnlens.baselines import fit_baselines
from churnlens.config import load_params
from churnlens.errors import ChurnlensError
from churnlens.logs import get_logger
from churnlens.metrics import METRIC_KEYS, calibration_curve, evaluate, lift_curve, pr_curve
from churnlens.model import ChurnClassifier, group_folds
from churnlens.scoring import active_customers
from churnlens.split import TimeSplit, time_split

log = get_logger("train")

ID_COLUMNS = ("customer_id", "cutoff", "label")  # = churnlens.features.ID_COLUMNS
REPORTED_BASELINES = ("recency", "logistic", "prior")
SIMPLE = ("recency", "logistic")   # what the gradient-boosted model has to beat
PLOTTED = ("model", "lightgbm", "recency", "logistic")
PROMOTION = paths.REPORTS / "promotion.json"
# The DVC metrics file (`dvc exp show`, `dvc metrics diff`): a handful of test-slice figures.
HEADLINE = paths.REPORTS / "headline_metrics.json"
HEADLINE_SCORERS = ("recency", "logistic")   # baselines shown next to the model
HEADLINE_KEYS = ("roc_auc", "pr_auc", "brier", "ece")
# One train at a time per project folder: two would replace each other's model folder and temp
# folders and register half-written models (the lock is released when the process ends).
LOCK = paths.MODEL_DIR.parent / ".train.lock"
# Fewer churners (or stayers) than this in the test slice make ROC AUC and the gate noise.
MIN_TEST_PER_CLASS = 5


# -- inputs ------------------------------------------------------------------------------------
def load_training_rows(path: Path = paths.TRAINING_ROWS) -> pd.DataFrame:
    if not Path(path).exists():
        raise ChurnlensError(f"{path} not found: run `churnlens features` first")
    rows = pd.read_parquet(path)
    missing = [c for c in ID_COLUMNS if c not in rows.columns]
    if missing:
        raise ChurnlensError(f"{path}: missing columns {missing}")
    if rows["label"].isna().any():
        raise ChurnlensError(f"{path}: {int(rows['label'].isna().sum())} rows without a label")
    rows["label"] = rows["label"].astype(int)
    return rows


def feature_columns(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c not in ID_COLUMNS]


def data_fingerprint() -> str:
    """sha256 of `validation.json` and the interim Parquet files (the training input's input)."""
    from churnlens.tracking import fingerprint_dir

    digest = hashlib.sha256()
    if paths.VALIDATION_REPORT.exists():
        digest.update(paths.VALIDATION_REPORT.read_bytes())
    digest.update(fingerprint_dir(paths.INTERIM).encode())
    return digest.hexdigest()


def data_as_of(split: TimeSplit, horizon_days: int) -> str:
    """`as_of` from features/meta.json, else the end of the test label window."""
    if paths.FEATURES_META.exists():
        as_of = io.read_json(paths.FEATURES_META).get("as_of")
        if as_of:
            return str(as_of)
    return (split.test_cutoff + timedelta(days=horizon_days)).isoformat()


# -- fitting -----------------------------------------------------------------------------------
def fit_model(rows: pd.DataFrame, columns: list[str], cfg: dict[str, Any],
              what: str) -> ChurnClassifier:
    """Cross-fit (customers held out), blend, calibrate and refit on `rows`."""
    model = ChurnClassifier(
        lgbm_params=dict(cfg.get("lgbm") or {}),
        seed=int(cfg.get("seed", 7)),
        early_stopping_rounds=cfg.get("early_stopping_rounds", 50),
        calibration=str(cfg.get("calibration", "auto")),
        cv_folds=int(cfg.get("cv_folds", 4)),
    )
    model.fit(rows[columns], rows["label"], groups=rows["customer_id"].astype(str).to_numpy())
    losses = ", ".join(f"{w:g}: {loss:.5f}" for w, loss in model.blend_losses_.items())
    log.info("%s: %d rows, %d trees, LightGBM weight %g -> %s (out-of-fold log loss by weight "
             "%s), %s calibration", what, len(rows), model.best_iteration_, model.blend_weight_,
             model.scorer_, losses, model.calibration_method_)
    return model


def predict_all(model: ChurnClassifier, baselines: dict, frame: pd.DataFrame,
                columns: list[str]) -> dict[str, np.ndarray]:
    preds = model.evaluation_proba(frame[columns])
    preds.update({name: est.predict_proba(frame)[:, 1] for name, est in baselines.items()})
    return preds


# -- reports -----------------------------------------------------------------------------------
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


def write_plots(tables: dict[str, pd.DataFrame], folder: Path = paths.PLOTS) -> list[Path]:
    written = [io.write_text(t.to_csv(index=False), folder / f"{name}.csv")
               for name, t in tables.items()]
    written.append(_png(folder / "calibration.png", _draw_calibration, tables["calibration"]))
    written.append(_png(folder / "lift.png", _draw_gain, tables["lift"]))
    return written


def _png(target: Path, draw, table: pd.DataFrame) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))
    draw(fig.subplots(), table)
    fig.tight_layout()
    with io.atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return target


def _draw_calibration(ax, table: pd.DataFrame) -> None:
    top = float(max(table["mean_predicted"].max(), table["observed_rate"].max(), 0.05))
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="perfect")
    for name, part in table.groupby("model", sort=False):
        ax.plot(part["mean_predicted"], part["observed_rate"], marker="o", label=name)
    ax.set(xlabel="mean predicted churn probability", ylabel="observed churn rate",
           title="Calibration on the test slice (10 equal-count bins)")
    ax.legend(fontsize=8)


def _draw_gain(ax, table: pd.DataFrame) -> None:
    ax.plot([0, 10], [0, 1], color="grey", linestyle=":", label="random")
    for name, part in table.groupby("model", sort=False):
        ax.plot([0, *part["decile"]], [0, *part["cumulative_gain"]], marker="o", label=name)
    ax.set(xlabel="top deciles contacted", ylabel="share of churners reached",
           title="Cumulative gain on the test slice")
    ax.legend(fontsize=8)


def build_summary(split: TimeSplit, model: ChurnClassifier, rows: pd.DataFrame,
                  columns: list[str], as_of: str, fingerprint: str,
                  label: dict[str, Any]) -> dict[str, Any]:
    """train_summary.json: what the *shipped* model learnt from (all labelled cutoffs)."""
    cutoffs = sorted(set(pd.to_datetime(rows["cutoff"]).dt.date))
    return {
        "horizon_days": int(label["horizon_days"]),
        "definition": label.get("definition"),
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
        "model_dir": str(paths.MODEL_DIR),
    }


def save_model(model: ChurnClassifier, columns: list[str], example: pd.DataFrame) -> None:
    from churnlens import packaging

    with io.atomic_path(paths.MODEL_DIR) as tmp:
        packaging.save_model(model, columns, tmp, input_example=example[columns].head(5))
    log.info("model saved to %s", paths.MODEL_DIR)


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


# -- stage -------------------------------------------------------------------------------------
def run(params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """Evaluate on the test slice, refit on every labelled cutoff, save and track.

    Holds `LOCK` throughout: a second `churnlens train` in the same folder stops at once."""
    params = load_params(params_path)
    with runlock.exclusive(LOCK, "churnlens train"):
        return _run(params)


def _run(params: dict[str, Any]) -> dict[str, Any]:
    cfg, horizon = params.get("train") or {}, int(params["label"]["horizon_days"])
    definition = params["label"].get("definition", "inactivity")
    seed = int(cfg.get("seed", 7))
    rows = load_training_rows()
    split = time_split(rows, horizon, seed=seed)
    log_split(split)
    check_both_classes(split, definition, horizon)
    check_enough_data(split, rows, int(cfg.get("cv_folds", 4)), seed)
    columns = feature_columns(rows)
    evaluated = fit_model(split.train, columns, cfg, "evaluation model")
    baselines = fit_baselines(split.train, seed=seed)
    preds = predict_all(evaluated, baselines, split.test, columns)
    metrics = build_metrics(split, preds, evaluated, horizon)
    metrics["population"] = population_note(definition, horizon)
    log_metrics_table(metrics)
    shipped = fit_model(rows, columns, cfg, "shipped model (all labelled cutoffs)")
    metrics["gate"] = gate_summary(metrics, evaluated, shipped)
    log.info("gate: %s", metrics["gate"]["summary"])
    check_gate_inputs(metrics)
    io.write_json(metrics, paths.METRICS)
    io.write_json(headline_metrics(metrics), HEADLINE)
    plot_files = write_plots(curve_tables(split.test["label"].to_numpy(), preds))
    fingerprint = data_fingerprint()
    summary = build_summary(split, shipped, rows, columns, data_as_of(split, horizon),
                            fingerprint, params["label"])
    io.write_json(summary, paths.TRAIN_SUMMARY)
    save_model(shipped, columns, split.test)
    decision = _track(params, metrics, fingerprint, split, columns,
                      [paths.METRICS, paths.TRAIN_SUMMARY, *plot_files])
    io.write_json(decision, PROMOTION)
    return {"metrics": metrics, "summary": summary, "decision": decision}


def _track(params, metrics, fingerprint, split, columns, artifacts) -> dict:
    from churnlens import tracking

    validation = (io.read_json(paths.VALIDATION_REPORT)
                  if paths.VALIDATION_REPORT.exists() else None)
    return tracking.log_training_run(
        params=params, metrics=metrics, model_dir=paths.MODEL_DIR, artifact_paths=artifacts,
        fingerprint=fingerprint, test_features=split.test[columns],
        test_labels=split.test["label"],
        as_of=data_as_of(split, int(params["label"]["horizon_days"])),
        interim_dir=paths.INTERIM, validation=validation,
    )
