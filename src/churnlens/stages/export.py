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
tier and action, is the control group (`churnlens.outreach`): `holdout` true, the action "Do not
contact (control group)" and an empty contact; a customer keeps their arm for
`label.horizon_days` across lists of the same data source, and the assignment goes into the
history. At 0 (the default) the list and the history are exactly what they were without it.

Writes `reports/outreach.json`: the lists with a control group and, once a list's window has
passed, the measured effect per action (`measured_outreach`); without control groups its lists
and effects are empty. With a (non-empty) `interventions` table, contacted = listed, not held
out and contacted in the window, with costs (`recorded_outreach`); without it, intention to treat.

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
from churnlens import export, outreach, paths, uplift
from churnlens.catalog import catalog
from churnlens.errors import InputFileError
from churnlens.io import find_table, read_json, write_json, write_text
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
EFFECTS_PLOT_COLUMNS = ("list_date", "action", "contacted_rate", "control_rate", "difference",
                        "ci_low", "ci_high")
MEASURED_KEEP_DAYS = 182  # lists with a control group stay in the history this long after
                          # their measurement window, so their effects keep being pooled


def run(params_path: str | Path = "params.yaml") -> None:
    config = load_settings(params_path)
    settings, horizon = config.export, config.label.horizon_days

    scores = with_segment(read_scores(catalog.require("scores")), paths.interim_table("customers"))
    scores = with_activity(scores, horizon)
    missing_helpers = [c for c in act.HELPER_COLUMNS if c not in scores]
    if missing_helpers:
        log.warning(
            "scores have no %s: the rules using them never match", ", ".join(missing_helpers)
        )
    active = export.active_mask(scores)
    open_ids = open_ticket_ids(paths.interim_table("tickets"))
    salt = pseudonymise_setting(config.privacy)
    contacts = read_contacts(config.data.raw_dir)
    real_ids = None
    if salt is not None and contacts is not None:
        real_ids = dict(zip(pseudonymise(contacts["customer_id"], salt), contacts["customer_id"],
                            strict=True))
        contacts = contacts.assign(customer_id=pseudonymise(contacts["customer_id"], salt))

    as_of = resolve_as_of(config.snapshot.as_of, scores)
    customers = source_customers(paths.interim_table("customers"), scores)
    source = export.data_source(customers, config.data.raw_dir)
    history = read_json(paths.AT_RISK_HISTORY) if paths.AT_RISK_HISTORY.exists() else None
    saved, uplift_info = None, {"rank_by": settings.rank_by}
    if settings.rank_by == "revenue_saved":
        saved, uplift_info = revenue_saved(export.source_runs(history, source)[1], as_of,
                                           config.label, scores)
    actions, reasons = export.suggest(scores[active], settings, open_ids)
    at_risk = export.build_at_risk(
        export.with_reasons(scores, reasons), actions, top_n=settings.top_n,
        tiers=list(settings.tiers), contacts=contacts, saved=saved,
    )
    arms = None
    if settings.holdout_share > 0:
        at_risk, arms = with_control_group(at_risk, scores, settings, history, source, as_of,
                                           horizon)
    write_list(at_risk, paths.AT_RISK, real_ids)
    log.info(
        "wrote %s: %d of %d active customers (tiers %s); %d with a contact; actions: %s",
        paths.AT_RISK, len(at_risk), int(active.sum()), "/".join(settings.tiers),
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
    write_list(win_back, WIN_BACK, real_ids)
    log.info(
        "wrote %s: %d of %d lapsed customers (%d with a value to win back); %d with a contact; "
        "actions: %s",
        WIN_BACK, len(win_back), len(lapsed), len(candidates),
        int((win_back["contact"] != "").sum()), action_counts(win_back),
    )

    updated = export.update_history(history, as_of, at_risk["customer_id"], source=source,
                                    known_ids=customers["customer_id"].astype(str), arms=arms,
                                    arms_days=horizon + MEASURED_KEEP_DAYS)
    write_json(updated, paths.AT_RISK_HISTORY)
    current = updated["current"]["source"]
    runs = next(s["runs"] for s in updated["sources"] if s["id"] == current)
    log.info("recorded the list of %s in %s (data source %s: %d customers, %d lists)",
             as_of, paths.AT_RISK_HISTORY, current, source["customers"], len(runs))
    report = measured_outreach(runs, as_of, config.label, settings)
    if settings.rank_by != "revenue_at_risk":
        report["uplift"] = uplift_info  # whether the list was ranked by revenue saved, and why
    write_json(report, OUTREACH)
    write_text(effects_plot_csv(report["effects"]), EFFECTS_PLOT)


def effects_plot_csv(effects: list[dict[str, Any]]) -> str:
    """`reports/plots/outreach_effects.csv`: one row per measured list and action (and `all
    actions` per list; the pooled rows over lists stay in outreach.json): contacted and control
    retention, the difference and its 95 % interval, as fractions. Only the header while no
    list with a control group has been measured."""
    rows = [{"list_date": e["list_date"], "action": e["action"],
             "contacted_rate": e["retention_treated"], "control_rate": e["retention_control"],
             "difference": e["difference"], "ci_low": e["ci_low"], "ci_high": e["ci_high"]}
            for e in effects if e["list_date"] != outreach.ALL_LISTS]
    return pd.DataFrame(rows, columns=list(EFFECTS_PLOT_COLUMNS)).to_csv(index=False)


def measured_outcomes(runs: list[dict[str, Any]], as_of: str,
                      label: LabelSettings) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The history's assignments (with `due`) and the outcomes of the due ones (None when no
    window has passed)."""
    horizon = label.horizon_days
    arms = pd.DataFrame(export.history_arms(runs), columns=list(outreach.ASSIGNMENT_COLUMNS))
    arms = outreach.due_assignments(arms, horizon, as_of)
    due = arms[arms["due"]]
    if due.empty:
        return arms, None
    ids = sorted(set(due["customer_id"]))
    if label.definition == "cancellation":
        return arms, outreach.window_outcomes(
            due, horizon_days=horizon,
            cancellations=read_rows(paths.interim_table("customers"),
                                    ["customer_id", "cancel_date"], ids))
    activity = pd.concat([read_rows(paths.interim_table(t),
                                    ["customer_id", "timestamp"], ids)
                          for t in ("transactions", "events")], ignore_index=True)
    return arms, outreach.window_outcomes(due, horizon_days=horizon, activity=activity)


def revenue_saved(runs: list[dict[str, Any]], as_of: str, label: LabelSettings,
                  scores: pd.DataFrame) -> tuple[pd.Series | None, dict[str, Any]]:
    """`expected_revenue_saved` per scored customer (aligned with `scores`) from an uplift model
    (`churnlens.uplift`) over the measured lists: each measured customer's feature row at the
    latest labelled cutoff on or before their list date (`data/features/training.parquet`,
    columns from `meta.json`), contacted vs control and retained; scored on
    `data/features/scoring.parquet`. None (risk ranking) with the reason while an arm has fewer
    than `uplift.MIN_PER_ARM` measured customers. The Qini coefficient of the latest measured
    list, predicted by a model of the lists before it, goes into the returned info."""
    info: dict[str, Any] = {"rank_by": "revenue_saved", "used": False}

    def fall_back(reason: str) -> tuple[None, dict[str, Any]]:
        log.warning("export.rank_by revenue_saved: %s; the list stays ranked by revenue at risk",
                    reason)
        return None, dict(info, reason=reason)

    arms, outcomes = measured_outcomes(runs, as_of, label)
    if outcomes is None:
        return fall_back("no list with a control group has been measured yet")
    if not (paths.TRAINING_ROWS.exists() and paths.SCORING_ROWS.exists()
            and paths.FEATURES_META.exists()):
        return fall_back("no feature rows (data/features) to fit an uplift model on")
    meta = read_json(paths.FEATURES_META)
    columns = [c for c in meta.get("feature_columns") or [] if c != "customer_id"]
    due = arms[arms["due"]].merge(outcomes, on=["assigned", "customer_id"])
    rows = pd.read_parquet(paths.TRAINING_ROWS, columns=["customer_id", "cutoff", *columns],
                           filters=[("customer_id", "in", sorted(set(due["customer_id"])))])
    rows = rows.assign(customer_id=rows["customer_id"].astype(str),
                       cutoff=pd.to_datetime(rows["cutoff"])).sort_values("cutoff")
    # merge_asof needs one resolution on both sides (pandas 3 parses these as [s] or [us])
    due = due.assign(_day=pd.to_datetime(due["assigned"]).astype(rows["cutoff"].dtype))
    due = due.sort_values("_day")
    data = pd.merge_asof(due, rows, left_on="_day", right_on="cutoff", by="customer_id",
                         direction="backward").dropna(subset=["cutoff"])
    treated = ~data["holdout"].astype(bool)
    ok, reason = uplift.enough_evidence(treated, ~treated)
    info.update(measured_contacted=int(treated.sum()), measured_control=int((~treated).sum()))
    if not ok:
        return fall_back(reason)
    lists = sorted(data["assigned"].unique())
    if len(lists) > 1:
        fit_part, held = data[data["assigned"] != lists[-1]], data[data["assigned"] == lists[-1]]
        fit_treated = ~fit_part["holdout"].astype(bool)
        if uplift.enough_evidence(fit_treated, ~fit_treated)[0]:
            model = uplift.fit_uplift(fit_part[columns], fit_treated, fit_part["retained"])
            score = model.predict(held[columns])
            value = pd.to_numeric(held["value"], errors="coerce").fillna(0).clip(lower=0)
            info["held_out_list"] = lists[-1]
            info["qini"] = uplift.evaluate(score, ~held["holdout"].astype(bool),
                                           held["retained"])
            info["qini_revenue"] = uplift.evaluate(uplift.expected_revenue_saved(score, value),
                                                   ~held["holdout"].astype(bool),
                                                   held["retained"], value)
    model = uplift.fit_uplift(data[columns], treated, data["retained"])
    scoring = pd.read_parquet(paths.SCORING_ROWS, columns=["customer_id", *columns])
    lift = dict(zip(scoring["customer_id"].astype(str), model.predict(scoring[columns]),
                    strict=True))
    value = list_values(scores, scores)
    saved = pd.Series(uplift.expected_revenue_saved(
        scores["customer_id"].astype(str).map(lift).to_numpy(float), value), index=scores.index)
    log.info("export.rank_by revenue_saved: uplift model on %s; ranked by expected revenue "
             "saved", reason)
    return saved, dict(info, used=True, reason=reason)


def measured_outreach(runs: list[dict[str, Any]], as_of: str, label: LabelSettings,
                      settings: ExportSettings) -> dict[str, Any]:
    """The content of `reports/outreach.json`: each list with a control group (its size and the
    day its effect can be measured) and the measured effects (`churnlens.outreach`) of the
    lists whose `label.horizon_days` window has passed by `as_of`, outcomes from the validated
    transactions and events (inactivity) or the customers' cancel dates (cancellation)."""
    horizon, definition = label.horizon_days, label.definition
    arms, outcomes = measured_outcomes(runs, as_of, label)
    lists = [{"list_date": day, "customers": len(group), "control": int(group["holdout"].sum()),
              "measurable_on": (pd.Timestamp(day) + pd.Timedelta(days=horizon)).date().isoformat(),
              "measured": bool(group["due"].all())}
             for day, group in arms.groupby("assigned", sort=True)]
    due = arms[arms["due"]]
    effects: list[dict[str, Any]] = []
    recorded = None
    if outcomes is not None:
        due, costs, recorded = recorded_outreach(due, horizon)
        effects = [dict(e, sentence=outreach.plain_sentence(e))
                   for e in outreach.measure_effect(due, outcomes, costs=costs)]
    pooled = [e for e in effects if e["list_date"] == outreach.ALL_LISTS
              and e["action"] != outreach.ALL_ACTIONS]
    if lists:
        log.info("outreach: %d lists with a control group, %d measured; %s", len(lists),
                 sum(x["measured"] for x in lists),
                 " | ".join(e["sentence"] for e in pooled) or "no list measurable yet")
    report = {"as_of": as_of, "holdout_share": settings.holdout_share,
              "horizon_days": horizon, "label_definition": definition, "confidence": 0.95,
              "max_half_width": outreach.MAX_HALF_WIDTH, "lists": lists, "by_action": pooled,
              "effects": effects}
    if recorded is not None:
        report["treatment"] = recorded
    return report


def recorded_outreach(due: pd.DataFrame, horizon: int
                      ) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any] | None]:
    """The due assignments with `treated`/`contacted` from the validated `interventions`
    table (`data/interim/interventions.parquet`), the costs spent on the treated in their
    window, and the counts for `outreach.json` (`treatment`). Without the table (absent or
    without rows) the assignments as they are (intention to treat), no costs and None.

    Treated = listed, not held out and contacted in [list date, list date + horizon]; listed
    customers without a contact are left out of the comparison. Control customers contacted
    all the same stay in the control group (they were assigned to it) and are counted:
    `control_contacted`, with a warning, since such contacts shrink the measured effect."""
    import pyarrow.parquet as pq

    path = paths.interim_table("interventions")
    if not path.exists() or pq.ParquetFile(path).metadata.num_rows == 0:
        return due, None, None
    ids = sorted(set(due["customer_id"].astype(str)))
    done = read_rows(path, ["customer_id", "timestamp", "cost"], ids)
    window = outreach.contacts_in_window(due, done, horizon)
    frame = due.astype({"assigned": str, "customer_id": str}).merge(
        window, on=["assigned", "customer_id"], how="left")
    holdout = frame["holdout"].astype(bool)
    contacted = frame["contacted"].fillna(False).astype(bool)
    frame = frame.assign(contacted=contacted, treated=~holdout & contacted)
    spent = frame[frame["treated"] & frame["cost"].notna()]
    costs = spent[["assigned", "customer_id", "cost"]] if len(spent) else None
    info = {"treated_by": "interventions", "listed_contacted": int((~holdout & contacted).sum()),
            "listed_not_contacted": int((~holdout & ~contacted).sum()),
            "control": int(holdout.sum()), "control_contacted": int((holdout & contacted).sum())}
    if info["control_contacted"]:
        log.warning("outreach: control group contacted: %d of %d control customers have a "
                    "contact in the interventions table within their window (they stay in the "
                    "control group; the measured effects are diluted)", info["control_contacted"],
                    info["control"])
    log.info("outreach: treated = contacted per the interventions table: %d listed customers "
             "contacted, %d not contacted (left out)", info["listed_contacted"],
             info["listed_not_contacted"])
    return frame.drop(columns="cost"), costs, info


def read_rows(path: Path, columns: list[str], ids: list[str]) -> pd.DataFrame:
    """`columns` of a validated table for the customers `ids` (empty without the file)."""
    if not Path(path).exists():
        return pd.DataFrame(columns=columns)
    return pd.read_parquet(path, columns=columns, filters=[("customer_id", "in", ids)])


def with_control_group(at_risk: pd.DataFrame, scores: pd.DataFrame, settings: ExportSettings,
                       history: dict[str, Any] | None, source: dict[str, Any], as_of: str,
                       horizon: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The at-risk list with its control group (`churnlens.outreach.assign_holdout`): a
    `holdout` column, the action "Do not contact (control group)" and no contact for the
    control customers; and the assignment records for the history. Arms stick for `horizon`
    days across the lists of the same data source (the history's earlier runs)."""
    source_id, runs = export.source_runs(history, source)
    previous = export.history_arms(r for r in runs if str(r["as_of"]) < as_of)
    arms = outreach.assign_holdout(
        at_risk.assign(_value=list_values(at_risk, scores)), settings.holdout_share,
        settings.holdout_seed, previous, as_of, horizon, source=source_id,
        value_column="_value")
    holdout = arms["holdout"].astype(bool)
    out = at_risk.assign(
        suggested_action=outreach.control_actions(at_risk["suggested_action"], holdout),
        contact=at_risk["contact"].where(~holdout, ""),
        **{export.HOLDOUT: holdout})
    records = [
        {"customer_id": r["customer_id"], "holdout": bool(r["holdout"]),
         "assigned": r["assigned"], "action": r["action"], "tier": r["tier"],
         "value": None if pd.isna(r["value"]) else round(float(r["value"]), 2)}
        for r in arms.to_dict("records")]
    log.info("control group of the list of %s (export.holdout_share %.2f): %d of %d customers, "
             "%d kept from earlier lists", as_of, settings.holdout_share, int(holdout.sum()),
             len(out), int((~arms["fresh"]).sum()))
    return out, records


def list_values(at_risk: pd.DataFrame, scores: pd.DataFrame) -> pd.Series:
    """Expected revenue over the horizon of each listed customer: the scores'
    `expected_revenue`, else expected revenue at risk / churn probability."""
    if "expected_revenue" in scores:
        lookup = dict(zip(scores["customer_id"].astype(str),
                          pd.to_numeric(scores["expected_revenue"], errors="coerce"), strict=True))
        return at_risk["customer_id"].astype(str).map(lookup).astype("float64")
    probability = pd.to_numeric(at_risk["churn_probability"], errors="coerce")
    return (at_risk["expected_revenue_at_risk"] / probability.where(probability > 0)).astype(
        "float64")


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


def resolve_as_of(configured: str | None, scores: pd.DataFrame) -> str:
    """Scoring date for the history: params snapshot.as_of (`configured`), else
    features/meta.json, a scores `as_of`/`cutoff` column, reports/kpis.json, and today as the
    last resort."""
    if configured:
        return pd.Timestamp(configured).date().isoformat()
    if paths.FEATURES_META.exists():
        meta_as_of = read_json(paths.FEATURES_META).get("as_of")
        if meta_as_of:
            return pd.Timestamp(meta_as_of).date().isoformat()
    for column in ("as_of", "cutoff"):
        if column in scores and scores[column].notna().any():
            return pd.Timestamp(scores[column].dropna().max()).date().isoformat()
    if paths.KPIS.exists():
        kpis_as_of = read_json(paths.KPIS).get("as_of")
        if kpis_as_of:
            return pd.Timestamp(kpis_as_of).date().isoformat()
    today = dt.date.today().isoformat()
    log.warning("as_of unknown (no %s): the history uses today, %s", paths.FEATURES_META, today)
    return today
