"""Where each stage reads and writes; `dvc.yaml` uses the same paths."""

from pathlib import Path

INTERIM = Path("data/interim")
PRIVACY_STATE = Path("data/privacy.json")             # pseudonymisation on/off + salt fingerprint
VALIDATION_REPORT = INTERIM / "validation.json"

FEATURES_DIR = Path("data/features")
TRAINING_ROWS = FEATURES_DIR / "training.parquet"   # all labelled cutoffs
SCORING_ROWS = FEATURES_DIR / "scoring.parquet"     # one row per customer at as_of
FEATURES_META = FEATURES_DIR / "meta.json"

MODEL_DIR = Path("models/churn_model")              # MLflow pyfunc model
SERVING_MODEL_DIR = Path("models/serving")           # the champion, when it is not MODEL_DIR
PREDICTIONS = Path("data/processed/predictions.parquet")

REPORTS = Path("reports")
PLOTS = REPORTS / "plots"
METRICS = REPORTS / "metrics.json"
SCORES = REPORTS / "scores.parquet"
AT_RISK = REPORTS / "at_risk.csv"
KPIS = REPORTS / "kpis.json"
DRIFT = REPORTS / "drift.json"
WEEKLY_REPORT = REPORTS / "weekly_report.html"
TRAIN_SUMMARY = REPORTS / "train_summary.json"
PROMOTION = REPORTS / "promotion.json"
SERVING = REPORTS / "serving.json"                    # which model scored, and why
CALIBRATION = PLOTS / "calibration.csv"
AT_RISK_HISTORY = REPORTS / "at_risk_history.json"   # ids of past lists, for "movers"
