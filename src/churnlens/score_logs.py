"""Score a folder of raw logs with the approved model, without the pipeline (a CRM job, a notebook).

`score_raw_logs(input_dir)` returns one row per customer scored at `as_of`: churn probability,
risk tier, expected revenue (at risk), three reasons in plain words and the suggested action.
`churnlens score --input DIR [--output FILE.csv] [--as-of DATE]` is the same on the command line.

It runs the weekly run's own steps on one folder and one cutoff and writes nothing into the
project but the score stage's local copy of the approved model: validation into a temporary folder
(`validation_run.validate_folder`, as the validate stage: bad rows are quarantined there and
only counted), the feature rows at `as_of` (the features stage's settings and SQL, DuckDB), the
model the score stage scores with (`serving.load_approved_model`: the MLflow registry's champion
for the data source of `params`, kept in `models/serving/`), the score stage's probability, tier
and revenue (`scoring.score_frame`), the explain stage's SHAP reasons (`explain.top_reasons`, for
every customer rather than a sample) and the export stage's action rules (`export.suggest`: the
fact behind an action is among the reasons).

Run it from the project folder: `params` (default `params.yaml`), `models/churn_model`,
`reports/promotion.json` and the MLflow store (`mlflow.db`, or `MLFLOW_TRACKING_URI`) are read
relative to it. With the same params and `as_of`, the probabilities are the pipeline's
(`data/processed/predictions.parquet`). Personal data (`email`, `name`) is never read: the result
has no `contact` column, and customer ids are not pseudonymised (the caller owns the input).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens import export, paths
from churnlens.errors import ChurnlensError
from churnlens.io import read_json
from churnlens.logs import get_logger

log = get_logger("score_logs")

#: Columns of the result (`at_risk.csv`'s, without `rank` and `contact`, plus the split and
#: values behind both CS lists, and the scoring date).
COLUMNS = ("customer_id", "segment", "churn_probability", "expected_revenue_at_risk", "risk_tier",
           "reasons", "suggested_action", "active", "expected_revenue", "win_back_value", "as_of")
MONEY_COLUMNS = ("expected_revenue", "win_back_value")  # 2 decimals in the CSV, like the lists


def score_raw_logs(input_dir: str | Path, params: str | Path | Mapping[str, Any] = "params.yaml",
                   as_of: date | str | None = None) -> pd.DataFrame:
    """Every customer of the raw folder `input_dir` scored at `as_of` by the approved model.

    `params`: a params file or dict (the project's, as the pipeline uses it). `as_of`: the scoring
    date; default `snapshot.as_of`, else the last day the data is complete (as the features stage
    picks it). Columns: `COLUMNS` (plus `holdout` with `export.holdout_share` > 0: in a running
    control group of the weekly list, not to be contacted), highest `expected_revenue_at_risk`
    first. `attrs` holds `as_of`, `model` (which version scored and why) and `validation` (rows in
    and quarantined per table; `summary_line` says it in one line). Raises `ChurnlensError` for
    an unusable folder.
    """
    params = _params(params)
    with tempfile.TemporaryDirectory(prefix="churnlens-score-") as tmp:
        interim = Path(tmp) / "interim"
        validation = _validate(Path(input_dir), interim)
        features, as_of_day = feature_rows(interim, params, as_of, Path(tmp) / "features")
        approved = _approved_model(params, features)
        scores = _scores(approved, features, params)
        scores = _with_actions(scores, params, interim / "tickets.parquet")
        result = _with_control_group(_result(scores, as_of_day), params,
                                     interim / "customers.parquet", as_of_day)
    result.attrs.update(
        as_of=as_of_day.isoformat(),
        model={k: approved.info.get(k) for k in ("scored_by", "version", "reason")}
        | {"registered_model": approved.info.get("registered_model")
           or _registered_name(params)},
        validation={name: {k: report.get(k) for k in ("rows_in", "rows_quarantined", "reasons")}
                    for name, report in validation.items() if report.get("present")},
    )
    return result


def _params(params: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(params, Mapping):
        return dict(params)
    from churnlens.config import load_params

    try:
        return load_params(params)
    except OSError as err:
        raise ChurnlensError(f"cannot read the params file {params} ({err.strerror or err}): "
                             "run from the project folder or pass params") from None


def _validate(raw_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Validate `raw_dir` into `out_dir` (no pseudonymisation); the per-table report."""
    from churnlens.validation_run import REPORT, validate_folder

    validate_folder(raw_dir, out_dir)
    return read_json(out_dir / REPORT)


def feature_rows(interim: Path, params: Mapping[str, Any], as_of: date | str | None,
                 scratch: Path) -> tuple[pd.DataFrame, date]:
    """The feature rows at one cutoff, `as_of` (default: the features stage's as_of), from the
    validated tables in `interim`; read back from Parquet like the stage's `scoring.parquet`."""
    from churnlens.feature_runner import (
        build_feature_rows,
        daily_rows,
        data_day_range,
        interim_paths,
        last_timestamp,
        register_tables,
        scoring_query,
    )
    from churnlens.features import DuckDBEngine, connect
    from churnlens.settings import feature_config, settings_from
    from churnlens.snapshot import plan_snapshot

    cfg = feature_config(settings_from(params))
    scratch.mkdir(parents=True, exist_ok=True)
    target = scratch / "scoring.parquet"
    engine = DuckDBEngine(connect(cfg["memory_limit"], cfg["threads"], scratch / "spill"))
    try:
        register_tables(engine, interim_paths(interim))
        first_day, last_day = data_day_range(engine)
        snap = plan_snapshot(as_of=cfg["as_of"] if as_of is None else as_of,
                             first_day=first_day, last_day=last_day,
                             horizon_days=cfg["horizon_days"], step_days=cfg["step_days"],
                             max_cutoffs=1, min_labelled=0, daily_rows=daily_rows(engine),
                             last_timestamp=last_timestamp(engine))
        columns = build_feature_rows(engine, cutoffs=[snap.as_of], as_of=snap.as_of,
                                     horizon_days=cfg["horizon_days"],
                                     definition=cfg["definition"], windows=cfg["windows"],
                                     inactivity_days=cfg["inactivity_days"])
        engine.write(scoring_query(snap.as_of, columns), target)
    finally:
        engine.close()
    return pd.read_parquet(target), snap.as_of


def _registered_name(params: Mapping[str, Any]) -> str:
    from churnlens.tracking import registered_model_name

    return registered_model_name(dict(params))


def _approved_model(params: Mapping[str, Any], features: pd.DataFrame):
    """The model the score stage scores with (`serving.load_approved_model`: the registry's
    champion for `params`' data source, kept in `models/serving/`), checked against `features`."""
    from churnlens.serving import load_approved_model

    approved = load_approved_model(dict(params), features)
    log.info("scoring with the %s (v%s): %s", approved.info["scored_by"],
             approved.info["version"], approved.info["reason"])
    return approved


def _scores(approved, features: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The score stage's scores plus the explain stage's reasons for every customer."""
    from churnlens.explain import shap_contributions, top_reasons
    from churnlens.packaging import to_model_input
    from churnlens.scoring import score_frame
    from churnlens.settings import settings_from

    frame = to_model_input(features, approved.feature_columns)
    probability = approved.predict(frame)["churn_probability"].to_numpy()
    settings = settings_from(params)
    scores = score_frame(features, probability, tiers=settings.score.tiers,
                         window_days=settings.score.revenue_window_days,
                         horizon_days=settings.label.horizon_days)
    rows = features.set_index("customer_id", drop=False)
    reasons = top_reasons(shap_contributions(approved.model.estimator, rows), rows)
    return scores.merge(reasons.reset_index(names="customer_id"), on="customer_id", how="left")


def _with_actions(scores: pd.DataFrame, params: Mapping[str, Any],
                  tickets: Path) -> pd.DataFrame:
    """`suggested_action` and the reasons that support it, as the export stage gives them: the
    active customers as one population (the at-risk list's), the lapsed ones worth winning back
    valued by `win_back_value` (the win-back list's), and the other lapsed ones."""
    from churnlens.export import open_ticket_ids, suggest, with_reasons
    from churnlens.settings import settings_from

    settings = settings_from(params).export
    open_ids = (open_ticket_ids(pd.read_parquet(tickets, columns=["customer_id", "closed_at"]))
                if tickets.exists() else set())
    active = export.active_mask(scores)
    worth = (export.return_value(scores) > 0).to_numpy(bool)
    lapsed = scores.assign(expected_revenue=scores[export.WIN_BACK_VALUE])
    actions, reasons = [], []
    for population in (scores[active], lapsed[~active & worth], lapsed[~active & ~worth]):
        if len(population):
            action, reason = suggest(population, settings, open_ids)
            actions.append(action)
            reasons.append(reason)
    if not actions:
        return scores.assign(suggested_action=pd.Series(dtype="object"))
    scores = with_reasons(scores, pd.concat(reasons))
    return scores.assign(suggested_action=pd.concat(actions).reindex(scores.index))


def _result(scores: pd.DataFrame, as_of: date) -> pd.DataFrame:
    active = export.active_mask(scores)
    reasons = export.join_reasons(scores)
    lapsed = scores.index[~active]  # reasons as in win_back.csv
    reasons.loc[lapsed] = export.lapse_reasons(scores.loc[lapsed]).to_numpy()
    out = pd.DataFrame({
        "customer_id": scores["customer_id"].astype(str),
        "segment": scores["segment"].astype("string").fillna("").astype("object")
        if "segment" in scores else "",
        "churn_probability": scores["churn_probability"].astype("float64"),
        "expected_revenue_at_risk": scores["expected_revenue_at_risk"].astype("float64"),
        "risk_tier": scores["risk_tier"].astype(str),
        "reasons": reasons.astype("object"),
        "suggested_action": scores["suggested_action"].astype("object").fillna(""),
        "active": active,
        "expected_revenue": scores["expected_revenue"].astype("float64"),
        "win_back_value": scores[export.WIN_BACK_VALUE].astype("float64"),
        "as_of": as_of.isoformat(),
    }, index=scores.index)
    out = out.sort_values(["expected_revenue_at_risk", "churn_probability", "customer_id"],
                          ascending=[False, False, True], kind="mergesort")
    return out.reset_index(drop=True)[list(COLUMNS)]


def _with_control_group(result: pd.DataFrame, params: Mapping[str, Any], customers_path: Path,
                        as_of: date) -> pd.DataFrame:
    """With `export.holdout_share` > 0: customers the weekly at-risk list put in its control
    group, whose window (`label.horizon_days`) is still running at `as_of`, get the control
    action ("Do not contact (control group)") and `holdout` true, as in `at_risk.csv`; nobody
    new is held out here. The assignments come from `reports/at_risk_history.json`, for the data
    source these customers are (`export.data_source`, ids pseudonymised as the pipeline's)."""
    from churnlens.outreach import control_actions
    from churnlens.privacy import pseudonymise, pseudonymise_setting
    from churnlens.settings import settings_from

    settings = settings_from(params)
    if settings.export.holdout_share <= 0:
        return result
    horizon = settings.label.horizon_days
    history = read_json(paths.AT_RISK_HISTORY) if paths.AT_RISK_HISTORY.exists() else None
    customers = pd.read_parquet(customers_path, columns=["customer_id", "signup_date"])
    ids = result["customer_id"]
    salt = pseudonymise_setting(settings.privacy)
    if salt is not None:  # the history holds the pipeline's pseudonyms
        customers = customers.assign(customer_id=pseudonymise(customers["customer_id"], salt))
        ids = pseudonymise(ids, salt)
    _, runs = export.source_runs(history, export.data_source(customers))
    held = {str(arm["customer_id"]) for arm in export.history_arms(runs)
            if arm.get("holdout") and arm.get("assigned")
            and 0 <= (as_of - pd.Timestamp(arm["assigned"]).date()).days < horizon}
    holdout = pd.Series(ids.isin(held).to_numpy(bool), index=result.index)
    if holdout.any():
        log.info("%d customers are in a running control group: not to be contacted",
                 int(holdout.sum()))
    return result.assign(suggested_action=control_actions(result["suggested_action"], holdout),
                         **{export.HOLDOUT: holdout})


def to_csv_text(scores: pd.DataFrame) -> str:
    """The spreadsheet-safe CSV text of `score_raw_logs`' result (the at-risk list's format:
    probability 3 decimals, money 2, formula-like text neutralised; `active` true/false)."""
    table = scores.copy()
    for column in MONEY_COLUMNS:
        if column in table:
            table[column] = [export.format_number(v, 2) for v in table[column]]
    for column in ("active", export.HOLDOUT):
        if column in table:
            table[column] = table[column].map({True: "true", False: "false"})
    return export.to_csv_text(table)


def summary_line(scores: pd.DataFrame) -> str:
    """One line: how many customers at which as_of, by which model, and the quarantined rows
    per table (counts and reasons only, never row contents)."""
    attrs = scores.attrs
    model = attrs.get("model") or {}
    quarantined = []
    for name, report in (attrs.get("validation") or {}).items():
        if report.get("rows_quarantined"):
            top = sorted((report.get("reasons") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
            why = ", ".join(f"{reason}={count}" for reason, count in top[:3])
            quarantined.append(f"{name} {report['rows_quarantined']} of {report['rows_in']}"
                               + (f" ({why})" if why else ""))
    return (f"scored {len(scores)} customers at {attrs.get('as_of', '?')} with the "
            f"{model.get('scored_by', 'model')} v{model.get('version') or '?'} "
            f"({model.get('registered_model', '-')}: {model.get('reason', '-')}); "
            f"quarantined rows: {'; '.join(quarantined) or 'none'}")
