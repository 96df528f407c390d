"""The stages' inputs and outputs by name: where each lives (`churnlens.paths`), which stage
writes it, and one way to read and write it.

A stage asks for an input by name (`catalog.require("training_rows")`, `catalog.read_json(
"promotion", required=False)`); a required input that is missing is one `MissingInput` error,
the same for every stage: "data/features/training.parquet is missing: run `dvc repro features`
first". Outputs are written atomically (`churnlens.io`). Paths are relative to `root` (the
project folder; the working directory by default): a stage's `run(params_path, root=...)`
builds `Catalog(root)`, so a test gives it a temporary project folder instead of changing the
working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens import io, paths
from churnlens.errors import ChurnlensError


class MissingInput(ChurnlensError):
    """An input a stage needs has not been written (its stage has not run)."""


@dataclass(frozen=True)
class Entry:
    path: Path
    stage: str   # the DVC stage that writes it


_TABLES = ("customers", "transactions", "events", "tickets", "nps", "interventions")

ENTRIES: dict[str, Entry] = {
    "privacy_state": Entry(paths.PRIVACY_STATE, "privacy"),
    **{name: Entry(paths.interim_table(name), "validate") for name in _TABLES},
    "validation_report": Entry(paths.VALIDATION_REPORT, "validate"),
    "training_rows": Entry(paths.TRAINING_ROWS, "features"),
    "scoring_rows": Entry(paths.SCORING_ROWS, "features"),
    "features_meta": Entry(paths.FEATURES_META, "features"),
    "model": Entry(paths.MODEL_DIR, "train"),
    "metrics": Entry(paths.METRICS, "train"),
    "headline_metrics": Entry(paths.HEADLINE, "train"),
    "train_summary": Entry(paths.TRAIN_SUMMARY, "train"),
    "promotion": Entry(paths.PROMOTION, "train"),
    "calibration": Entry(paths.CALIBRATION, "train"),
    "predictions": Entry(paths.PREDICTIONS, "score"),
    "serving": Entry(paths.SERVING, "score"),
    "drift": Entry(paths.DRIFT, "drift"),
    "scores": Entry(paths.SCORES, "explain"),
    "at_risk": Entry(paths.AT_RISK, "export"),
    "win_back": Entry(paths.WIN_BACK, "export"),
    "at_risk_history": Entry(paths.AT_RISK_HISTORY, "export"),
    "outreach": Entry(paths.OUTREACH, "export"),
    "outreach_effects": Entry(paths.OUTREACH_EFFECTS, "export"),
    "kpis": Entry(paths.KPIS, "kpis"),
    "kpi_trend": Entry(paths.KPI_TREND, "kpis"),
    "weekly_report": Entry(paths.WEEKLY_REPORT, "report"),
}


def missing_message(path: str | Path, stage: str) -> str:
    """The one "run X first" message."""
    return f"{path} is missing: run `dvc repro {stage}` first"


class Catalog:
    """Named inputs and outputs under `root`."""

    def __init__(self, root: str | Path = ".") -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.at(ENTRIES[name].path)

    def at(self, relative: str | Path) -> Path:
        """A project path (`churnlens.paths`) under `root`; unchanged for the working directory
        (so log lines keep naming `data/features/...`)."""
        relative = Path(relative)
        return relative if self.root == Path(".") else self.root / relative

    def params(self, params_path: str | Path | None = None) -> Path:
        """The params file: `params_path` as given, or `params.yaml` under `root`."""
        return Path(params_path) if params_path is not None else self.at("params.yaml")

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def require(self, name: str) -> Path:
        """The path of an input that must exist; `MissingInput` naming its stage if not."""
        path = self.path(name)
        if not path.exists():
            raise MissingInput(missing_message(path, ENTRIES[name].stage))
        return path

    def read_json(self, name: str, *, required: bool = True) -> Any:
        """The JSON document; None for a missing optional one."""
        if not required and not self.exists(name):
            return None
        return io.read_json(self.require(name))

    def read_parquet(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        return pd.read_parquet(self.require(name), columns=columns)

    def write_json(self, obj: Any, name: str) -> Path:
        return io.write_json(obj, self.path(name))

    def write_parquet(self, frame: pd.DataFrame, name: str) -> Path:
        return io.write_parquet(frame, self.path(name))

    def write_text(self, text: str, name: str, encoding: str = "utf-8") -> Path:
        return io.write_text(text, self.path(name), encoding=encoding)


catalog = Catalog()
