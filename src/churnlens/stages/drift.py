"""Stage `drift`: PSI of every model feature, training snapshots vs the scoring snapshot."""

from __future__ import annotations

from pathlib import Path

from churnlens.catalog import Catalog
from churnlens.drift import drift_report
from churnlens.logs import get_logger
from churnlens.settings import load_settings

log = get_logger("drift")


def run(params_path: str | Path | None = None, root: str | Path = ".") -> None:
    """Drift of the project folder `root` (default: the working directory); `params_path`
    default `root/params.yaml`."""
    from churnlens.packaging import feature_columns_of

    catalog = Catalog(root)
    threshold = load_settings(catalog.params(params_path)).drift.psi_threshold
    features = feature_columns_of(catalog.require("model"))
    reference = catalog.read_parquet("training_rows", columns=features)
    current = catalog.read_parquet("scoring_rows", columns=features)
    report = drift_report(reference, current, features, threshold)
    flagged = sorted(name for name, item in report.items() if item["flag"])
    catalog.write_json({"threshold": threshold, "flagged": flagged, "features": report}, "drift")
    log.info("%d of %d features drifted (PSI > %.2f)%s", len(flagged), len(features), threshold,
             f": {', '.join(flagged)}" if flagged else "")
