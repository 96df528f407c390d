"""Stage `train`: time split, cross-fitted model vs baselines on the test slice, refit, MLflow.

1. Test slice = the latest labelled cutoff; the model (LightGBM + logistic candidate, blended and
   calibrated by cross-fitting, see `churnlens.model`) and the baselines learn from the cutoffs
   whose label window ends by then, and are scored on the test slice, for every customer and for
   the *active* ones -> `reports/metrics.json` with the gate's decision.
2. The shipped model is refitted the same way on *all* labelled cutoffs (the newest labels
   included) -> `models/churn_model/`.

Reads `data/features/training.parquet` (+ `meta.json` when present: its `horizon_days` must be
`label.horizon_days`); also writes
`reports/train_summary.json`, `reports/plots/{calibration,lift,pr_curve}.csv` + `calibration.png`,
`lift.png`, and the MLflow champion decision to `reports/promotion.json`.

The checks and fitting live in `churnlens.training`, the metrics, gate and tables in
`churnlens.evaluation`, the figures in `churnlens.plots`; this module reads, calls and writes.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens import io, paths, runlock
from churnlens.baselines import fit_baselines
from churnlens.catalog import Catalog
from churnlens.catalog import catalog as workdir
from churnlens.evaluation import (
    build_metrics,
    build_summary,
    curve_tables,
    gate_summary,
    headline_metrics,
    log_metrics_table,
    population_note,
    predict_all,
)
from churnlens.logs import get_logger
from churnlens.model import ChurnClassifier
from churnlens.plots import calibration_figure, gain_figure
from churnlens.settings import Settings, load_settings
from churnlens.split import TimeSplit, time_split
from churnlens.training import (
    check_both_classes,
    check_enough_data,
    check_gate_inputs,
    check_horizon,
    check_training_rows,
    feature_columns,
    fit_model,
    log_split,
)

log = get_logger("train")

PROMOTION = paths.PROMOTION
HEADLINE = paths.HEADLINE
# One train at a time per project folder: two would replace each other's model folder and temp
# folders and register half-written models (the lock is released when the process ends).
LOCK = paths.TRAIN_LOCK


# What saving, plotting and tracking import after the fits (MLflow with its SQL store and
# registry, matplotlib): 3-5 s on the sample, imported in a background thread while the models
# are fitted (`import_in_background`).
LATE_IMPORTS = ("mlflow", "mlflow.pyfunc", "mlflow.models", "mlflow.data",
                "mlflow.store.tracking.sqlalchemy_store",
                "mlflow.store.model_registry.sqlalchemy_store",
                "matplotlib.figure", "matplotlib.backends.backend_agg")


def import_in_background(modules: tuple[str, ...] = LATE_IMPORTS) -> threading.Thread:
    """Import `modules` in a daemon thread and return it (started).

    The fits spend most of their time in LightGBM's C code, which releases the GIL, on one core
    (`churnlens.model.lgbm_threads`), so where a second core is free the imports of the later
    steps overlap the fits instead of following them. Nothing else changes: the same modules are
    imported, earlier; the main thread's own import of a module still being imported here waits
    for it, and an import that fails here fails again, with its error, where it is needed.
    Under `python -X importtime` (the benchmark's import table) the thread imports nothing: two
    threads' lines would interleave into one meaningless tree."""

    def work() -> None:
        if "importtime" in sys._xoptions:
            return
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - retried (and reported) by the main thread
                continue

    thread = threading.Thread(target=work, name="churnlens-late-imports", daemon=True)
    thread.start()
    return thread


# -- inputs ------------------------------------------------------------------------------------
def load_training_rows(catalog: Catalog = workdir) -> pd.DataFrame:
    path = catalog.require("training_rows")
    return check_training_rows(pd.read_parquet(path), str(path))


def data_fingerprint(catalog: Catalog = workdir) -> str:
    """sha256 of `validation.json` and the interim Parquet files (the training input's input)."""
    from churnlens.fingerprint import fingerprint_dir

    digest = hashlib.sha256()
    if catalog.exists("validation_report"):
        digest.update(catalog.path("validation_report").read_bytes())
    digest.update(fingerprint_dir(catalog.at(paths.INTERIM)).encode())
    return digest.hexdigest()


def data_as_of(split: TimeSplit, horizon_days: int, catalog: Catalog = workdir) -> str:
    """`as_of` from features/meta.json, else the end of the test label window."""
    meta = catalog.read_json("features_meta", required=False)
    if meta and meta.get("as_of"):
        return str(meta["as_of"])
    return (split.test_cutoff + timedelta(days=horizon_days)).isoformat()


# -- outputs -----------------------------------------------------------------------------------
def write_plots(tables: dict[str, pd.DataFrame], folder: Path = paths.PLOTS) -> list[Path]:
    written = [io.write_text(t.to_csv(index=False), folder / f"{name}.csv")
               for name, t in tables.items()]
    written.append(_png(folder / "calibration.png", calibration_figure(tables["calibration"])))
    written.append(_png(folder / "lift.png", gain_figure(tables["lift"])))
    return written


def _png(target: Path, fig: Any) -> Path:
    with io.atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return target


def save_model(model: ChurnClassifier, columns: list[str], example: pd.DataFrame,
               model_dir: Path = paths.MODEL_DIR) -> None:
    from churnlens import packaging

    with io.atomic_path(model_dir) as tmp:
        packaging.save_model(model, columns, tmp, input_example=example[columns].head(5))
    log.info("model saved to %s", model_dir)


# -- stage -------------------------------------------------------------------------------------
def run(params_path: str | Path | None = None, root: str | Path = ".") -> dict[str, Any]:
    """Evaluate on the test slice, refit on every labelled cutoff, save and track, in the
    project folder `root` (default: the working directory; its MLflow store and `models/`);
    `params_path` default `root/params.yaml`.

    Holds `LOCK` (under `root`) throughout: a second `churnlens train` in the same folder stops
    at once."""
    catalog = Catalog(root)
    settings = load_settings(catalog.params(params_path))
    with runlock.exclusive(catalog.at(LOCK), "churnlens train"):
        return _run(settings, catalog)


def _run(settings: Settings, catalog: Catalog = workdir) -> dict[str, Any]:
    train, label = settings.train, settings.label
    horizon, definition = label.horizon_days, label.definition
    rows = load_training_rows(catalog)
    check_horizon(catalog.read_json("features_meta", required=False), horizon,
                  str(catalog.path("features_meta")))
    split = time_split(rows, horizon, seed=train.seed)
    log_split(split)
    check_both_classes(split, definition, horizon)
    check_enough_data(split, rows, train.cv_folds, train.seed)
    columns = feature_columns(rows)
    import_in_background()
    evaluated = fit_model(split.train, columns, train, "evaluation model")
    # the evaluation model's logistic side is the logistic baseline fitted on the same rows
    baselines = fit_baselines(split.train, seed=train.seed, logistic=evaluated.linear_)
    preds = predict_all(evaluated, baselines, split.test, columns)
    metrics = build_metrics(split, preds, evaluated, horizon)
    metrics["population"] = population_note(definition, horizon)
    log_metrics_table(metrics)
    shipped = fit_model(rows, columns, train, "shipped model (all labelled cutoffs)")
    metrics["gate"] = gate_summary(metrics, evaluated, shipped)
    log.info("gate: %s", metrics["gate"]["summary"])
    check_gate_inputs(metrics)
    catalog.write_json(metrics, "metrics")
    catalog.write_json(headline_metrics(metrics), "headline_metrics")
    plot_files = write_plots(curve_tables(split.test["label"].to_numpy(), preds),
                             catalog.at(paths.PLOTS))
    fingerprint = data_fingerprint(catalog)
    as_of = data_as_of(split, horizon, catalog)
    summary = build_summary(split, shipped, rows, columns, as_of, fingerprint,
                            horizon_days=horizon, definition=definition,
                            model_dir=str(paths.MODEL_DIR))
    catalog.write_json(summary, "train_summary")
    save_model(shipped, columns, split.test, catalog.path("model"))
    decision = _track(settings, metrics, fingerprint, split, columns, as_of,
                      [catalog.path("metrics"), catalog.path("train_summary"), *plot_files],
                      catalog)
    catalog.write_json(decision, "promotion")
    return {"metrics": metrics, "summary": summary, "decision": decision}


def _track(settings, metrics, fingerprint, split, columns, as_of, artifacts,
           catalog: Catalog = workdir) -> dict:
    from churnlens import tracking

    return tracking.log_training_run(
        params=dict(settings.params), metrics=metrics, model_dir=catalog.path("model"),
        artifact_paths=artifacts, fingerprint=fingerprint, test_features=split.test[columns],
        test_labels=split.test["label"], as_of=as_of, interim_dir=catalog.at(paths.INTERIM),
        validation=catalog.read_json("validation_report", required=False), root=catalog.root,
    )
