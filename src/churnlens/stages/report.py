"""Stage `report`: the files in `reports/` -> `reports/weekly_report.html` (self-contained).

Required: `reports/at_risk.csv` (read WITHOUT its `contact` column), `reports/scores.parquet`,
`reports/kpis.json`, `reports/metrics.json`. Optional (a section says so when missing):
`reports/win_back.csv` (also read without `contact`), `reports/train_summary.json`,
`reports/plots/calibration.csv`, `reports/drift.json`, `reports/promotion.json`,
`reports/at_risk_history.json` (the last and win_back.csv are written by the export stage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from churnlens import outreach, report
from churnlens.catalog import Catalog
from churnlens.errors import ChurnlensError
from churnlens.io import read_json
from churnlens.logs import get_logger
from churnlens.privacy import pseudonymise, pseudonymise_setting
from churnlens.settings import load_settings

log = get_logger("report")

SCORE_COLUMNS = ("customer_id", "risk_tier", "expected_revenue_at_risk", "segment", "active")


def run(params_path: str | Path | None = None, root: str | Path = ".") -> None:
    """The weekly report of the project folder `root` (default: the working directory);
    `params_path` default `root/params.yaml`."""
    catalog = Catalog(root)
    settings = load_settings(catalog.params(params_path))
    salt = pseudonymise_setting(settings.privacy)
    win_back = read_at_risk(catalog.path("win_back")) if catalog.exists("win_back") else None
    if win_back is None:
        log.info("no %s: the win-back section says so", catalog.path("win_back"))
    context = report.build_context(
        kpis=catalog.read_json("kpis"),
        metrics=catalog.read_json("metrics"),
        at_risk=pseudonymous_ids(read_at_risk(catalog.require("at_risk")), salt),
        win_back=None if win_back is None else pseudonymous_ids(win_back, salt),
        scores=read_scores(catalog.require("scores")),
        top_n=settings.report.top_n,
        currency=settings.report.currency,
        horizon_days=settings.label.horizon_days,
        definition=settings.label.definition,
        period_days=settings.kpis.period_days,
        crr_target=settings.kpis.crr_target,
        train_summary=_optional_json(catalog.path("train_summary")),
        calibration=_optional_csv(catalog.path("calibration")),
        drift=read_drift(catalog.path("drift")),
        promotion=with_serving(_optional_json(catalog.path("promotion")),
                               _optional_json(catalog.path("serving"))),
        history=_optional_json(catalog.path("at_risk_history")),
    )
    context["outreach"] = outreach.report_section(_optional_json(catalog.path("outreach")))
    catalog.write_text(report.render_report(context), "weekly_report")
    log.info(
        "wrote %s (%d customers listed, %d to win back, %s; %d drift alerts%s)",
        catalog.path("weekly_report"),
        len(context["top"]),
        len(context["win_back"]["rows"]),
        "first report" if context["movers"]["first"] else f"{context['movers']['n_new']} new",
        len(context["drift"]),
        "; model is not the champion" if context["model"]["not_champion"] else "",
    )


def pseudonymous_ids(at_risk: pd.DataFrame, salt: bytes | None) -> pd.DataFrame:
    """With pseudonymisation on, show the same keyed hashes as every other output, not real ids."""
    if salt is None:
        return at_risk
    real = at_risk["customer_id"].map(report.display_text)
    return at_risk.assign(customer_id=pseudonymise(real, salt))


def read_at_risk(path: Path) -> pd.DataFrame:
    """at_risk.csv (or win_back.csv, same columns) as text, without the `contact` column
    (personal data stays out of the report)."""
    table = pd.read_csv(
        path,
        encoding="utf-8-sig",
        dtype=str,
        keep_default_na=False,
        usecols=lambda c: c != "contact",
    )
    for column in ("churn_probability", "expected_revenue_at_risk"):
        if column not in table:
            raise ChurnlensError(f"{path}: column '{column}' is missing")
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def read_scores(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    available = set(pq.read_schema(path).names)
    missing = [c for c in SCORE_COLUMNS[:3] if c not in available]
    if missing:
        raise ChurnlensError(f"{path}: column '{missing[0]}' is missing")
    return pd.read_parquet(path, columns=[c for c in SCORE_COLUMNS if c in available])


def with_serving(promotion: dict | None, serving: dict | None) -> dict | None:
    """The train stage's promotion decision plus which model the score stage really used."""
    if promotion is None and serving is None:
        return None
    return {**(promotion or {}), "serving": serving}


def _optional_json(path: Path) -> Any:
    if not Path(path).exists():
        log.info("no %s: that part of the report is left out", path)
        return None
    return read_json(path)


def read_drift(path: Path) -> dict[str, Any] | None:
    """drift.json as the drift stage writes it (None without the file); a file of another shape
    stops the report with a clear error instead of showing no alerts."""
    drift = _optional_json(path)
    try:
        report.drift_features(drift)
    except ValueError as exc:
        raise ChurnlensError(f"{path}: {exc}; rerun `churnlens drift`") from exc
    return drift


def _optional_csv(path: Path) -> pd.DataFrame | None:
    if not Path(path).exists():
        log.info("no %s: the calibration plot is left out", path)
        return None
    return pd.read_csv(path)
