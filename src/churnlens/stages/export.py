"""Stage `export`: scores + open tickets + raw contacts -> `reports/at_risk.csv` (active
customers who may leave) and `reports/win_back.csv` (lapsed customers worth winning back).

Reads `reports/scores.parquet`, `data/interim/tickets.parquet` (optional; tickets with no
`closed_at` are open) and — for the `contact` column only — the raw customers file in
`data.raw_dir` (columns `customer_id`, `email`, `name`, all as strings). The e-mail goes into
the two lists and nowhere else: it is never logged nor written to any other file.

Active vs lapsed comes from the scores' `active` column (or, without it, from
`days_since_last_activity` / `tenure_days` and `label.horizon_days`). Both lists take the
suggested action from the same rule table (`export.actions`), with the conditions computed
within their own population: the high-value quantile of the at-risk list is over the active
customers' `expected_revenue`, that of the win-back list over the `win_back_value` of the
lapsed customers worth winning back. Both lists are `export.top_n` long at most.

With `export.holdout_share` > 0, a seeded share of each new at-risk list, stratified by risk
tier and action, is the control group (`churnlens.outreach_history.with_control_group`):
`holdout` true, the action "Do not contact (control group)" and an empty contact; a customer
keeps their arm for
`label.horizon_days` across lists of the same data source, and the assignment goes into the
history. At 0 (the default) the list and the history are exactly what they were without it.

Writes `reports/outreach.json`: the lists with a control group and, once a list's window has
passed, the measured effect per action; without control groups its lists and effects are empty.
With a (non-empty) `interventions` table, contacted = listed, not held out and contacted in the
window, with costs; without it, intention to treat. With `export.rank_by: revenue_saved` the
list is ranked by an uplift model over the measured lists. The logic is in
`churnlens.outreach_history` (this stage reads the tables it needs and writes the files).

Also updates `reports/at_risk_history.json` (customer ids of each list, by data source and
`as_of`) so the weekly report can show who is new on the list; the data source is identified by
the validated customers table (`data/interim/customers.parquet`), see `churnlens.export`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens import actions as act
from churnlens import export, outreach_history, paths, uplift
from churnlens.catalog import Catalog
from churnlens.catalog import catalog as workdir
from churnlens.errors import InputFileError
from churnlens.io import find_table, write_text
from churnlens.logs import get_logger
from churnlens.privacy import pseudonymise, pseudonymise_setting
from churnlens.scoring import active_customers
from churnlens.settings import ExportSettings, LabelSettings, load_settings

log = get_logger("export")

REQUIRED_SCORE_COLUMNS = (
    "customer_id",
    "churn_probability",
    "risk_tier",
    "expected_revenue_at_risk",
)
CONTACT_COLUMNS = ("customer_id", "email", "name")
WIN_BACK = paths.WIN_BACK
OUTREACH = paths.OUTREACH
EFFECTS_PLOT = paths.OUTREACH_EFFECTS  # `dvc plots`: measured effect per list


def run(params_path: str | Path | None = None, root: str | Path = ".") -> None:
    """The lists of the project folder `root` (default: the working directory; `data.raw_dir`
    is relative to it); `params_path` default `root/params.yaml`."""
    catalog = Catalog(root)
    config = load_settings(catalog.params(params_path))
    settings, horizon = config.export, config.label.horizon_days

    scores = with_segment(read_scores(catalog.require("scores")), catalog.path("customers"))
    scores = with_activity(scores, horizon)
    missing_helpers = [c for c in act.HELPER_COLUMNS if c not in scores]
    if missing_helpers:
        log.warning(
            "scores have no %s: the rules using them never match", ", ".join(missing_helpers)
        )
    active = export.active_mask(scores)
    open_ids = open_ticket_ids(catalog.path("tickets"))
    salt = pseudonymise_setting(config.privacy)
    contacts = read_contacts(catalog.at(config.data.raw_dir))
    real_ids = None
    if salt is not None and contacts is not None:
        real_ids = dict(zip(pseudonymise(contacts["customer_id"], salt), contacts["customer_id"],
                            strict=True))
        contacts = contacts.assign(customer_id=pseudonymise(contacts["customer_id"], salt))

    as_of = resolve_as_of(config.snapshot.as_of, scores, catalog)
    customers = source_customers(catalog.path("customers"), scores)
    source = export.data_source(customers, config.data.raw_dir)
    history = catalog.read_json("at_risk_history", required=False)
    actions, reasons = export.suggest(scores[active], settings, open_ids)
    saved, uplift_info = None, {"rank_by": settings.rank_by}
    if settings.rank_by == "revenue_saved":
        suggested = pd.Series(actions.to_numpy(), index=scores.loc[actions.index, "customer_id"])
        saved, uplift_info = revenue_saved(export.source_runs(history, source)[1], as_of,
                                           config.label, scores, suggested, catalog=catalog,
                                           learner=settings.uplift_learner)
    at_risk = export.build_at_risk(
        export.with_reasons(scores, reasons), actions, top_n=settings.top_n,
        tiers=list(settings.tiers), contacts=contacts, saved=saved,
    )
    arms = None
    if settings.holdout_share > 0:
        source_id, runs = export.source_runs(history, source)
        at_risk, arms, assigned = outreach_history.with_control_group(
            at_risk, scores, share=settings.holdout_share, seed=settings.holdout_seed,
            runs=runs, source_id=source_id, as_of=as_of, horizon=horizon,
            holdout_column=export.HOLDOUT)
        log.info("control group of the list of %s (export.holdout_share %.2f): %d of %d "
                 "customers, %d kept from earlier lists", as_of, settings.holdout_share,
                 int(assigned["holdout"].sum()), len(at_risk), int((~assigned["fresh"]).sum()))
    write_list(at_risk, catalog.path("at_risk"), real_ids)
    log.info(
        "wrote %s: %d of %d active customers (tiers %s); %d with a contact; actions: %s",
        catalog.path("at_risk"), len(at_risk), int(active.sum()), "/".join(settings.tiers),
        int((at_risk["contact"] != "").sum()), action_counts(at_risk),
    )

    lapsed = scores[~active]
    if export.WIN_BACK_VALUE not in lapsed:
        log.warning("scores have no %s: the win-back list stays empty", export.WIN_BACK_VALUE)
    candidates = lapsed[(export.return_value(lapsed) > 0).to_numpy(bool)]
    if export.WIN_BACK_VALUE in candidates:
        candidates = candidates.assign(expected_revenue=candidates[export.WIN_BACK_VALUE])
    actions, reasons = export.suggest(candidates, settings, open_ids)
    win_back = export.build_win_back(
        export.with_reasons(scores, reasons), actions, top_n=settings.top_n, contacts=contacts,
    )
    write_list(win_back, catalog.path("win_back"), real_ids)
    log.info(
        "wrote %s: %d of %d lapsed customers (%d with a value to win back); %d with a contact; "
        "actions: %s",
        catalog.path("win_back"), len(win_back), len(lapsed), len(candidates),
        int((win_back["contact"] != "").sum()), action_counts(win_back),
    )

    updated = export.update_history(history, as_of, at_risk["customer_id"], source=source,
                                    known_ids=customers["customer_id"].astype(str), arms=arms,
                                    arms_days=horizon + outreach_history.MEASURED_KEEP_DAYS)
    current = updated["current"]["source"]
    runs = next(s["runs"] for s in updated["sources"] if s["id"] == current)
    retired = outreach_history.retired_lists(export.source_runs(history, source)[1], runs, as_of)
    updated = outreach_history.with_retired(updated, current, retired)
    catalog.write_json(updated, "at_risk_history")
    log.info("recorded the list of %s in %s (data source %s: %d customers, %d lists)",
             as_of, catalog.path("at_risk_history"), current, source["customers"], len(runs))
    entry = next(s for s in updated["sources"] if s["id"] == current)
    report = measured_outreach(runs, as_of, config.label, settings,
                               known_ids=set(customers["customer_id"].astype(str)),
                               retired=entry.get("retired_lists"), catalog=catalog)
    if settings.rank_by != "revenue_at_risk":
        report["uplift"] = uplift_info  # whether the list was ranked by revenue saved, and why
    catalog.write_json(report, "outreach")
    catalog.write_text(outreach_history.effects_plot_csv(report["effects"]), "outreach_effects")


def measured(runs: list[dict[str, Any]], as_of: str, label: LabelSettings, *,
             catalog: Catalog = workdir) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The history's assignments (with `due`) and the outcomes of the due ones (None when no
    window has passed), read from the validated customers' cancel dates (cancellation) or
    transactions and events (inactivity) of the due customers."""
    horizon = label.horizon_days
    arms = outreach_history.history_assignments(runs, as_of, horizon)
    ids = outreach_history.due_customer_ids(arms)
    if not ids:
        return arms, None
    if label.definition == "cancellation":
        cancellations = read_rows(catalog.path("customers"),
                                  ["customer_id", "cancel_date"], ids)
        return arms, outreach_history.outcomes_of_due(
            arms, horizon=horizon, definition=label.definition, cancellations=cancellations)
    activity = pd.concat([read_rows(catalog.path(t), ["customer_id", "timestamp"], ids)
                          for t in ("transactions", "events")], ignore_index=True)
    return arms, outreach_history.outcomes_of_due(
        arms, horizon=horizon, definition=label.definition, activity=activity)


def revenue_saved(runs: list[dict[str, Any]], as_of: str, label: LabelSettings,
                  scores: pd.DataFrame, actions: pd.Series | None = None, *,
                  catalog: Catalog = workdir, learner: str = uplift.DEFAULT_LEARNER
                  ) -> tuple[pd.Series | None, dict[str, Any]]:
    """`expected_revenue_saved` per scored customer from an uplift model over the measured
    lists (`churnlens.outreach_history.revenue_saved`): feature rows from
    `data/features/training.parquet` (columns from `meta.json`), scored on
    `data/features/scoring.parquet`; treated = contacted per the `interventions` table when it
    is given, else listed and not held out. `actions`: customer id -> the action suggested
    now; `learner`: `export.uplift_learner`. None (risk ranking) with the reason, logged."""
    info: dict[str, Any] = {"rank_by": "revenue_saved", "used": False}
    saved = None
    arms, outcomes = measured(runs, as_of, label, catalog=catalog)
    if outcomes is None:
        info["reason"] = "no list with a control group has been measured yet"
    elif not all(catalog.exists(n) for n in ("training_rows", "scoring_rows", "features_meta")):
        info["reason"] = "no feature rows (data/features) to fit an uplift model on"
    else:
        meta = catalog.read_json("features_meta")
        columns = [c for c in meta.get("feature_columns") or [] if c != "customer_id"]
        ids = outreach_history.due_customer_ids(arms)
        due, _, _ = outreach_history.recorded_outreach(
            arms[arms["due"]], read_interventions(ids, catalog), label.horizon_days)
        rows = pd.read_parquet(catalog.path("training_rows"),
                               columns=["customer_id", "cutoff", *columns],
                               filters=[("customer_id", "in", ids)])
        data = outreach_history.uplift_rows(due, outcomes, rows)
        scoring = (catalog.read_parquet("scoring_rows", columns=["customer_id", *columns])
                   if outreach_history.enough_uplift_evidence(data) else None)
        saved, info = outreach_history.revenue_saved(data, columns, scoring, scores, actions,
                                                     learner=learner)
    if info.get("comparison"):
        track_uplift(info, catalog)
    if saved is None:
        log.warning("export.rank_by revenue_saved: %s; the list stays ranked by revenue at risk",
                    info["reason"])
    else:
        log.info("export.rank_by revenue_saved: uplift model on %s; ranked by expected revenue "
                 "saved", info["reason"])
    return saved, info


def track_uplift(info: dict[str, Any], catalog: Catalog = workdir) -> None:
    """Log the uplift's held-out evaluation (Qini of the uplift and the risk ranking with their
    intervals; the curves as a CSV artifact) to the MLflow run that trained the model, at the
    step of the latest held-out list, as the explain stage adds its plots. Without the store or
    the run a warning says so: the export never depends on MLflow."""
    run_id = (catalog.read_json("promotion", required=False) or {}).get("run_id")
    if not run_id:
        log.info("no MLflow run recorded in %s: the uplift evaluation is not tracked",
                 catalog.path("promotion"))
        return
    from churnlens.errors import ChurnlensError
    from churnlens.tracking import log_texts_to_run

    comparison, day = info["comparison"], info["held_out_list"]
    step = (pd.Timestamp(day) - pd.Timestamp("1970-01-01")).days
    try:
        log_texts_to_run(run_id, {f"qini_curve_{day}.csv":
                                  outreach_history.qini_curve_csv(comparison)},
                         outreach_history.uplift_metrics(comparison), step=step,
                         root=catalog.root)
    except ChurnlensError as err:
        log.warning("uplift evaluation not added to MLflow: %s", err)


def measured_outreach(runs: list[dict[str, Any]], as_of: str, label: LabelSettings,
                      settings: ExportSettings, *, known_ids: set[str] | None = None,
                      retired: list[dict[str, Any]] | None = None,
                      catalog: Catalog = workdir) -> dict[str, Any]:
    """The content of `reports/outreach.json` (`churnlens.outreach_history.outreach_report`)
    from the history's runs, the outcomes and the validated `interventions` table."""
    horizon = label.horizon_days
    arms, outcomes = measured(runs, as_of, label, catalog=catalog)
    interventions = None
    if outcomes is not None:
        interventions = read_interventions(outreach_history.due_customer_ids(arms), catalog)
    report = outreach_history.outreach_report(
        arms, outcomes, as_of=as_of, horizon=horizon, definition=label.definition,
        holdout_share=settings.holdout_share, interventions=interventions, known_ids=known_ids,
        retired=retired)
    recorded = report.get("treatment")
    if recorded and recorded["control_contacted"]:
        log.warning("outreach: control group contacted: %d of %d control customers have a "
                    "contact in the interventions table within their window (they stay in the "
                    "control group; the measured effects are diluted)",
                    recorded["control_contacted"], recorded["control"])
    if recorded:
        log.info("outreach: treated = contacted per the interventions table: %d listed customers "
                 "contacted, %d not contacted (left out)", recorded["listed_contacted"],
                 recorded["listed_not_contacted"])
    counts = report.get("assignments")
    if counts and counts["unmeasured"]:
        log.warning("outreach: %d of %d due assignments not measured: %s", counts["unmeasured"],
                    counts["due"], "; ".join(sorted({u["reason"] for u in report["unmeasured"]})))
    lists = report["lists"]
    if lists:
        log.info("outreach: %d lists with a control group, %d measured; %s", len(lists),
                 sum(x["measured"] for x in lists),
                 " | ".join(e["sentence"] for e in report["by_action"])
                 or "no list measurable yet")
    return report


def read_interventions(ids: list[str], catalog: Catalog = workdir) -> pd.DataFrame | None:
    """`customer_id`, `timestamp`, `cost` of the validated `interventions` table for `ids`;
    None when the table is absent or has no rows (intention to treat)."""
    import pyarrow.parquet as pq

    path = catalog.path("interventions")
    if not path.exists() or pq.ParquetFile(path).metadata.num_rows == 0:
        return None
    return read_rows(path, ["customer_id", "timestamp", "cost"], ids)


def read_rows(path: Path, columns: list[str], ids: list[str]) -> pd.DataFrame:
    """`columns` of a validated table for the customers `ids` (empty without the file)."""
    if not Path(path).exists():
        return pd.DataFrame(columns=columns)
    return pd.read_parquet(path, columns=columns, filters=[("customer_id", "in", ids)])


def source_customers(customers_path: Path, scores: pd.DataFrame) -> pd.DataFrame:
    """`customer_id` (+ `signup_date`) of the validated customers table, which identifies the
    data source of the history (`churnlens.export.data_source`); the scores' ids without it."""
    if not Path(customers_path).exists():
        log.warning("no %s: the history's data source comes from the scored ids", customers_path)
        return scores[["customer_id"]]
    import pyarrow.parquet as pq

    names = pq.read_schema(customers_path).names
    return pd.read_parquet(customers_path,
                           columns=[c for c in ("customer_id", "signup_date") if c in names])


def with_activity(scores: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """Scores with an `active` column (computed from the activity columns when missing)."""
    if export.ACTIVE in scores:
        return scores
    if "days_since_last_activity" not in scores:
        log.warning("scores have no `active` nor `days_since_last_activity`: every customer "
                    "counts as active and the win-back list stays empty")
    return scores.assign(**{export.ACTIVE: active_customers(scores, horizon_days)})


def write_list(table: pd.DataFrame, path: Path, real_ids: dict[str, str] | None) -> None:
    """The list as spreadsheet-safe CSV with a BOM; with pseudonymisation on, the people who
    work from it get the real ids back (only here)."""
    for_people = table if real_ids is None else table.assign(
        customer_id=table["customer_id"].map(real_ids).fillna(table["customer_id"]))
    write_text(export.to_csv_text(for_people), path, encoding="utf-8-sig")


def action_counts(table: pd.DataFrame) -> str:
    return ", ".join(f"{k} {v}" for k, v in table["suggested_action"].value_counts().items())


def read_scores(path: Path) -> pd.DataFrame:
    scores = pd.read_parquet(path)
    missing = [c for c in REQUIRED_SCORE_COLUMNS if c not in scores]
    if missing:
        raise InputFileError(str(path), missing[0], "column is required for the at-risk list")
    return scores


def with_segment(scores: pd.DataFrame, customers_path: Path) -> pd.DataFrame:
    """Add `segment` from the validated customers table when the scores do not carry it."""
    if "segment" in scores or not Path(customers_path).exists():
        return scores
    customers = pd.read_parquet(customers_path, columns=["customer_id", "segment"])
    segment = dict(zip(customers["customer_id"].astype(str), customers["segment"], strict=True))
    return scores.assign(segment=scores["customer_id"].astype(str).map(segment))


def open_ticket_ids(path: Path) -> set[str]:
    """Ids of customers with a ticket that has no `closed_at` (empty set without the file)."""
    if not Path(path).exists():
        log.info("no %s: open tickets come from the scores only", path)
        return set()
    return export.open_ticket_ids(pd.read_parquet(path, columns=["customer_id", "closed_at"]))


def _read_contact_columns(path: Path) -> pd.DataFrame:
    """The id, e-mail and name columns as text, read by the same reader validation uses (the
    encoding, delimiter and BOM it detected; malformed rows left out, as validation does)."""
    from churnlens.readers import (
        ROW_ERROR_COLUMN,
        ROW_POSITION_COLUMN,
        RowParserNeeded,
        open_table,
        read_table,
    )

    try:
        frame = read_table(path, CONTACT_COLUMNS).frame
    except RowParserNeeded:
        frame = next(open_table(path, CONTACT_COLUMNS, row_parser=True).frames)
    if ROW_ERROR_COLUMN in frame:
        frame = frame[frame[ROW_ERROR_COLUMN].isna()]
    frame = frame.drop(columns=[c for c in (ROW_ERROR_COLUMN, ROW_POSITION_COLUMN)
                                if c in frame])
    return frame.astype("string").fillna("")


def read_contacts(raw_dir: str | Path) -> pd.DataFrame | None:
    """`customer_id`, `contact` from the raw customers file (contact "" without an e-mail column).

    Only the id, e-mail and name columns are read; everything is read as text.
    """
    path = find_table(raw_dir, "customers")
    if path is None:
        log.warning("no customers file in %s: the contact column stays empty", raw_dir)
        return None
    raw = _read_contact_columns(path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if "customer_id" not in raw:
        raise InputFileError(str(path), "customer_id", "column is required")
    if "email" not in raw:
        log.info("%s has no email column: the contact column stays empty", path.name)
    return export.contacts_from_raw(raw)


def resolve_as_of(configured: str | None, scores: pd.DataFrame,
                  catalog: Catalog = workdir) -> str:
    """Scoring date for the history: params snapshot.as_of (`configured`), else
    features/meta.json, a scores `as_of`/`cutoff` column, reports/kpis.json, and today as the
    last resort."""
    if configured:
        return pd.Timestamp(configured).date().isoformat()
    if catalog.exists("features_meta"):
        meta_as_of = catalog.read_json("features_meta").get("as_of")
        if meta_as_of:
            return pd.Timestamp(meta_as_of).date().isoformat()
    for column in ("as_of", "cutoff"):
        if column in scores and scores[column].notna().any():
            return pd.Timestamp(scores[column].dropna().max()).date().isoformat()
    if catalog.exists("kpis"):
        kpis_as_of = catalog.read_json("kpis").get("as_of")
        if kpis_as_of:
            return pd.Timestamp(kpis_as_of).date().isoformat()
    today = dt.date.today().isoformat()
    log.warning("as_of unknown (no %s): the history uses today, %s",
                catalog.path("features_meta"), today)
    return today
