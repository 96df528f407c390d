"""Stage `drift`: PSI of every model feature, training snapshots vs the scoring snapshot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churnlens import paths
from churnlens.drift import drift_report
from churnlens.io import write_json
from churnlens.logs import get_logger
from churnlens.settings import load_settings

log = get_logger("drift")


def run(params_path: Path) -> None:
    from churnlens.packaging import feature_columns_of

    threshold = load_settings(params_path).drift.psi_threshold
    features = feature_columns_of(paths.MODEL_DIR)
    reference = pd.read_parquet(paths.TRAINING_ROWS, columns=features)
    current = pd.read_parquet(paths.SCORING_ROWS, columns=features)
    report = drift_report(reference, current, features, threshold)
    flagged = sorted(name for name, item in report.items() if item["flag"])
    write_json({"threshold": threshold, "flagged": flagged, "features": report}, paths.DRIFT)
    log.info("%d of %d features drifted (PSI > %.2f)%s", len(flagged), len(features), threshold,
             f": {', '.join(flagged)}" if flagged else "")
