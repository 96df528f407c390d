"""Stage `kpis`: retention KPIs for the last period and the one before, cohorts and a trend.

Reads the validated tables in `data/interim/`, writes `reports/kpis.json` and
`reports/plots/kpi_trend.csv`. The event and transaction logs are streamed from Parquet by
DuckDB (pyarrow datasets), never loaded whole into pandas. NDR/GRR use `kpis.revenue_window`
(optional; default "auto": the label horizon on purchase-only or lumpy logs, see
`churnlens.kpis.choose_revenue_window`). A null `snapshot.as_of` resolves as in the features
stage (`churnlens.snapshot.default_as_of` over the daily row counts): a thin tail of late rows
stays after it, and kpis.json records it (`as_of_rule`, `tail_rows`, `tail_days`,
`last_data_day`, as data/features/meta.json) for the weekly report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens import paths
from churnlens.catalog import Catalog
from churnlens.kpis import compute_kpis, daily_activity_rows
from churnlens.logs import get_logger
from churnlens.settings import load_settings
from churnlens.snapshot import AsOfDecision, default_as_of

log = get_logger("kpis")

TREND_CSV = paths.KPI_TREND
TREND_PERIODS = 12
MAX_COHORTS = 12
CUSTOMER_COLUMNS = ("customer_id", "signup_date", "segment", "cancel_date")


def read_customers(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    present = set(pq.read_schema(path).names)
    return pd.read_parquet(path, columns=[c for c in CUSTOMER_COLUMNS if c in present])


def open_log(path: Path) -> Any:
    """A lazily scanned Parquet table (pyarrow dataset) that DuckDB streams from."""
    import pyarrow.dataset as ds

    return ds.dataset(str(path), format="parquet")


def read_nps(path: Path) -> pd.DataFrame | None:
    """The nps answers, or None when the table is absent or empty (-> "no nps table")."""
    if not path.exists():
        return None
    nps = pd.read_parquet(path, columns=["customer_id", "timestamp", "score"])
    return nps if len(nps) else None


def as_of_fields(decision: AsOfDecision) -> dict[str, Any]:
    """How as_of was chosen, for kpis.json (the report says when a thin tail was left out);
    the keys of data/features/meta.json."""
    default = decision.rule != "snapshot.as_of"
    return {
        "as_of_rule": decision.rule,
        "tail_rows": int(decision.tail_rows),
        "tail_days": int(decision.tail_days),
        "last_data_day": decision.last_day.isoformat() if decision.last_day and default else None,
    }


def run(params_path: str | Path | None = None, root: str | Path = ".") -> None:
    """KPIs of the project folder `root` (default: the working directory); `params_path`
    default `root/params.yaml`."""
    catalog = Catalog(root)
    settings = load_settings(catalog.params(params_path))
    kpi, label = settings.kpis, settings.label

    started = time.perf_counter()
    customers = read_customers(catalog.require("customers"))
    transactions = open_log(catalog.require("transactions"))
    events = open_log(catalog.path("events")) if catalog.exists("events") else None
    if events is not None and events.count_rows() == 0:
        events = None  # a purchase-only log: validate writes an empty events table
    nps = read_nps(catalog.path("nps"))
    # the as_of of the features stage (same rule, same counts): a thin tail stays after it
    decision = default_as_of(settings.snapshot.as_of, daily_activity_rows(transactions, events))
    as_of = decision.as_of

    report, trend = compute_kpis(
        customers,
        transactions,
        events,
        nps,
        as_of=as_of,
        period_days=kpi.period_days,
        definition=label.definition,
        horizon_days=label.horizon_days,
        crr_target=kpi.crr_target,
        trend_periods=TREND_PERIODS,
        max_cohorts=MAX_COHORTS,
        revenue_window=kpi.revenue_window,
    )
    report.update(as_of_fields(decision))
    catalog.write_json(report, "kpis")
    catalog.write_text(trend.to_csv(index=False), "kpi_trend")

    current = report["current"]
    log.info(
        "as_of %s, period %s..%s: customers %s -> %s, CRR %s, churn %s, NDR %s (%.1fs)",
        report["as_of"], report["period"]["start"], report["period"]["end"],
        current["customers_start"], current["customers_end"], current["crr"],
        current["churn_rate"], current["ndr"], time.perf_counter() - started,
    )
    if decision.tail_rows:
        log.info("thin tail after as_of %s: %d rows on %d days up to %s are left out "
                 "(as in features)", as_of, decision.tail_rows, decision.tail_days,
                 decision.last_day)
    window = report["revenue_window"]
    if window["reason"]:
        log.info("NDR/GRR over %s days (not %s): %s", window["days"], window["period_days"],
                 window["reason"])
    for key, reason in report["notes"].items():
        if key.startswith(("current.", "previous.")):
            log.info("%s is null: %s", key, reason)
