"""Stage `train`: purged time split, LightGBM + calibration, baselines, metrics, MLflow.

Reads `data/features/training.parquet` (+ `meta.json` when present); writes
`models/churn_model/`, `reports/metrics.json`, `reports/train_summary.json` and
`reports/plots/{calibration,lift,pr_curve}.csv` + `calibration.png`, `lift.png`, and the
MLflow champion decision to `reports/promotion.json`.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlens import io, paths
from churnlens.baselines import fit_baselines
from churnlens.config import load_params
from churnlens.errors import ChurnlensError
from churnlens.logs import get_logger
from churnlens.metrics import METRIC_KEYS, calibration_curve, evaluate, lift_curve, pr_curve
from churnlens.model import ChurnClassifier
from churnlens.split import TimeSplit, modelling_population, time_split

log = get_logger("train")

ID_COLUMNS = ("customer_id", "cutoff", "label")  # = churnlens.features.ID_COLUMNS
REPORTED_BASELINES = ("recency", "logistic", "prior")
PLOTTED = ("model", "uncalibrated", "recency", "logistic")
PROMOTION = paths.REPORTS / "promotion.json"


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
def fit_model(split: TimeSplit, columns: list[str], cfg: dict[str, Any]) -> ChurnClassifier:
    model = ChurnClassifier(
        lgbm_params=dict(cfg.get("lgbm") or {}),
        seed=int(cfg.get("seed", 7)),
        early_stopping_rounds=cfg.get("early_stopping_rounds", 50),
        calibration=str(cfg.get("calibration", "auto")),
    )
    model.fit(split.train[columns], split.train["label"],
              X_valid=split.valid[columns], y_valid=split.valid["label"],
              X_calib=split.calib[columns], y_calib=split.calib["label"],
              calib_groups=split.calib["customer_id"].astype(str).to_numpy())
    log.info("LightGBM: best iteration %d of %s (early stopping on %d validation rows)",
             model.best_iteration_, model.lgbm_.n_estimators, len(split.valid))
    c = model.calibration_scores_
    detail = (f"out-of-fold Brier sigmoid {c['sigmoid']:.5f}, isotonic {c['isotonic']:.5f}; "
              f"isotonic gain {c['isotonic_gain']:.5f} +/- {c['isotonic_gain_se']:.5f} (1 SE)"
              if c else "not compared")
    log.info("calibration: %s (%s)", model.calibration_method_, detail)
    return model


def predict_all(model: ChurnClassifier, baselines: dict, frame: pd.DataFrame,
                columns: list[str]) -> dict[str, np.ndarray]:
    preds = {"model": model.predict_proba(frame[columns])[:, 1],
             "uncalibrated": model.predict_proba_uncalibrated(frame[columns])[:, 1]}
    preds.update({name: est.predict_proba(frame)[:, 1] for name, est in baselines.items()})
    return preds


# -- reports -----------------------------------------------------------------------------------
def build_metrics(split: TimeSplit, preds: dict[str, np.ndarray],
                  model: ChurnClassifier) -> dict[str, Any]:
    y = split.test["label"].to_numpy()
    return {
        "test_cutoff": split.test_cutoff.isoformat(),
        "n_test": int(len(y)),
        "churn_rate": float(y.mean()),
        "model": evaluate(y, preds["model"]),
        "baselines": {name: evaluate(y, preds[name]) for name in REPORTED_BASELINES},
        "uncalibrated": evaluate(y, preds["uncalibrated"]),
        "calibration_method": model.calibration_method_,
        "calibration_comparison": model.calibration_scores_,
        "best_iteration": model.best_iteration_,
        "slices": split.describe(),
    }


def population_note(definition: str, horizon_days: int) -> str:
    if definition == "inactivity":
        return (f"customers active in the {horizon_days} days before the cutoff "
                "(already lapsed customers are lost, not at risk)")
    return "customers signed up and not cancelled at the cutoff"


def log_metrics_table(metrics: dict[str, Any]) -> None:
    rows = {"model": metrics["model"], "uncalibrated": metrics["uncalibrated"],
            **metrics["baselines"]}
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


def build_summary(split: TimeSplit, model: ChurnClassifier, columns: list[str],
                  as_of: str, fingerprint: str, label: dict[str, Any]) -> dict[str, Any]:
    train_cutoffs = split.cutoffs["train"]
    return {
        "horizon_days": int(label["horizon_days"]),
        "definition": label.get("definition"),
        "trained_at": as_of,  # the data date, not the wall clock: reruns give the same file
        "data_as_of": as_of,
        "data_fingerprint": fingerprint,
        "train_window": {"start": train_cutoffs[0].isoformat(),
                         "end": train_cutoffs[-1].isoformat()},
        "slices": split.describe(),
        "feature_columns": columns,
        "n_features": len(columns),
        "calibration_method": model.calibration_method_,
        "calibration_comparison": model.calibration_scores_,
        "best_iteration": model.best_iteration_,
        "model_dir": str(paths.MODEL_DIR),
    }


def save_model(model: ChurnClassifier, columns: list[str], example: pd.DataFrame) -> None:
    from churnlens import packaging

    with io.atomic_path(paths.MODEL_DIR) as tmp:
        packaging.save_model(model, columns, tmp, input_example=example[columns].head(5))
    log.info("model saved to %s", paths.MODEL_DIR)


def check_both_classes(split: TimeSplit, definition: str, horizon: int) -> None:
    """Refuse to train when the training slice holds a single label class (nothing to learn)."""
    labels = split.train["label"]
    if labels.nunique() >= 2:
        return
    value = int(labels.iloc[0]) if len(labels) else 0
    everywhere = all(set(s["label"].unique()) <= {value} for s in split.slices().values())
    what = "no customer churns" if value == 0 else "every customer churns"
    hint = (" (the cancellation label needs cancel_date values in the customers table)"
            if definition == "cancellation" and value == 0 else "")
    where = "in any labelled cutoff" if everywhere else "in the training slice " + (
        f"({split.cutoffs['train'][0]} .. {split.cutoffs['train'][-1]})")
    raise ChurnlensError(
        f"the label has a single class: {what} {where} under label.definition={definition} "
        f"with horizon_days={horizon}{hint}; a churn model needs both churners and stayers")


def log_split(split: TimeSplit) -> None:
    for name, info in split.describe().items():
        cutoffs = info["cutoffs"]
        log.info("%-5s slice: %7d rows, churn rate %s, %d cutoffs %s..%s", name, info["rows"],
                 "n/a" if info["churn_rate"] is None else f"{info['churn_rate']:.3f}",
                 len(cutoffs), cutoffs[0], cutoffs[-1])


# -- stage -------------------------------------------------------------------------------------
def run(params_path: str | Path = "params.yaml") -> dict[str, Any]:
    """Train, calibrate, evaluate, save and track; returns metrics and the MLflow decision."""
    params = load_params(params_path)
    cfg, horizon = params.get("train", {}), int(params["label"]["horizon_days"])
    all_rows = load_training_rows()
    rows = modelling_population(all_rows, params["label"]["definition"], horizon)
    log.info("population: %d of %d rows (%d customers already lapsed %d+ days left out)",
             len(rows), len(all_rows), len(all_rows) - len(rows), horizon)
    split = time_split(rows, horizon, int(params["features"]["cutoff_step_days"]),
                       int(cfg.get("valid_cutoffs", 1)), int(cfg.get("calib_cutoffs", 2)))
    log_split(split)
    check_both_classes(split, params["label"].get("definition", "inactivity"), horizon)
    columns = feature_columns(rows)
    model = fit_model(split, columns, cfg)
    baselines = fit_baselines(split.train, split.calib, seed=int(cfg.get("seed", 7)))
    preds = predict_all(model, baselines, split.test, columns)
    metrics = build_metrics(split, preds, model)
    metrics["population"] = population_note(params["label"]["definition"], horizon)
    log_metrics_table(metrics)
    io.write_json(metrics, paths.METRICS)
    plot_files = write_plots(curve_tables(split.test["label"].to_numpy(), preds))
    fingerprint = data_fingerprint()
    summary = build_summary(split, model, columns, data_as_of(split, horizon), fingerprint,
                            params["label"])
    io.write_json(summary, paths.TRAIN_SUMMARY)
    save_model(model, columns, split.test)
    decision = _track(params, metrics, fingerprint, split, columns,
                      [paths.METRICS, paths.TRAIN_SUMMARY, *plot_files])
    io.write_json(decision, PROMOTION)
    return {"metrics": metrics, "summary": summary, "decision": decision}


def _track(params, metrics, fingerprint, split, columns, artifacts) -> dict:
    from churnlens import tracking

    return tracking.log_training_run(
        params=params, metrics=metrics, model_dir=paths.MODEL_DIR, artifact_paths=artifacts,
        fingerprint=fingerprint, test_features=split.test[columns],
        test_labels=split.test["label"],
    )
