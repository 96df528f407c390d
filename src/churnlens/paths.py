"""Where each stage reads and writes: every project path, once (`dvc.yaml` lists the same).

Relative to the project folder (the working directory of `dvc repro`); `churnlens.catalog`
names them and knows which stage writes each.
"""

from pathlib import Path

INTERIM = Path("data/interim")                        # validate's OUT_DIR (TABLE.parquet)
PRIVACY_STATE = Path("data/privacy.json")             # pseudonymisation on/off + salt fingerprint
VALIDATION_REPORT = INTERIM / "validation.json"

FEATURES_DIR = Path("data/features")
TRAINING_ROWS = FEATURES_DIR / "training.parquet"   # all labelled cutoffs
SCORING_ROWS = FEATURES_DIR / "scoring.parquet"     # one row per customer at as_of
FEATURES_META = FEATURES_DIR / "meta.json"

MODEL_DIR = Path("models/churn_model")              # MLflow pyfunc model
SERVING_MODEL_DIR = Path("models/serving")           # the champion, when it is not MODEL_DIR
TRAIN_LOCK = MODEL_DIR.parent / ".train.lock"        # one train at a time per project folder
PREDICTIONS = Path("data/processed/predictions.parquet")

REPORTS = Path("reports")
PLOTS = REPORTS / "plots"
METRICS = REPORTS / "metrics.json"
HEADLINE = REPORTS / "headline_metrics.json"         # the DVC metrics file (`dvc exp show`)
SCORES = REPORTS / "scores.parquet"
AT_RISK = REPORTS / "at_risk.csv"
WIN_BACK = REPORTS / "win_back.csv"
OUTREACH = REPORTS / "outreach.json"
KPIS = REPORTS / "kpis.json"
DRIFT = REPORTS / "drift.json"
WEEKLY_REPORT = REPORTS / "weekly_report.html"
TRAIN_SUMMARY = REPORTS / "train_summary.json"
PROMOTION = REPORTS / "promotion.json"
SERVING = REPORTS / "serving.json"                    # which model scored, and why
AT_RISK_HISTORY = REPORTS / "at_risk_history.json"   # ids of past lists, for "movers"
CALIBRATION = PLOTS / "calibration.csv"
KPI_TREND = PLOTS / "kpi_trend.csv"
OUTREACH_EFFECTS = PLOTS / "outreach_effects.csv"    # measured effect per list and action


def interim_table(name: str) -> Path:
    """A validated table, `data/interim/NAME.parquet`."""
    return INTERIM / f"{name}.parquet"
