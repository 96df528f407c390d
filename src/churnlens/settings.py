"""The run's settings: one typed, frozen object per `params.yaml` section, built once.

`load_settings(path)` reads the file, checks it (`churnlens.params_check`: every rule about a
value lives there, one `ParamsError` naming every bad key) and returns a `Settings`. Every
default lives here and only here: a key absent from `params.yaml` takes the value of its
dataclass field below (`label.horizon_days` 90, `features.windows` (7, 30, 90, 180), ...).
Stages read their sections from it and pass each library function only the values it needs;
library functions whose signature has a default take it from `DEFAULTS`.

`Settings.params` keeps the checked params dict as it was read, for the few consumers that
need the whole file as data (MLflow logs every param, the registry names the data source).
Nothing here reads a file at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TIERS = {"high": 0.5, "medium": 0.25, "low": 0.0}


@dataclass(frozen=True)
class DataSettings:
    raw_dir: str = "data/sample"


@dataclass(frozen=True)
class GenerateSettings:
    """The sample generator. `seed` .. `out_dir` have no default: the stage needs them given."""

    seed: int | None = None
    n_customers: int | None = None
    start_date: str | None = None
    end_date: str | None = None
    out_dir: str | None = None
    chunk_size: int | None = None          # None: the generator's own chunk size
    outreach_weeks: int = 0                # simulated outreach lists (0 = off)
    outreach_horizon_days: int = 90
    outreach_holdout_share: float = 0.2

    REQUIRED = ("seed", "n_customers", "start_date", "end_date", "out_dir")

    def missing(self) -> list[str]:
        return [key for key in self.REQUIRED if getattr(self, key) is None]


@dataclass(frozen=True)
class SnapshotSettings:
    as_of: str | None = None               # ISO date; None = decided from the data


@dataclass(frozen=True)
class LabelSettings:
    definition: str = "inactivity"         # inactivity | cancellation
    horizon_days: int = 90


@dataclass(frozen=True)
class FeatureSettings:
    engine: str = "duckdb"                 # duckdb | spark
    cutoff_step_days: int = 30
    max_cutoffs: int = 24
    windows: tuple[int, ...] = (7, 30, 90, 180)
    inactivity_days: int = 30
    memory_limit: str = "4GB"              # DuckDB's; spills to disk beyond it
    threads: int = 2
    spark_driver_memory: str = "4g"        # engine spark, local mode: the driver JVM's memory


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 7
    cv_folds: int = 4
    early_stopping_rounds: int | None = 50
    calibration: str = "auto"              # auto | sigmoid | isotonic
    register_model: bool = True
    lgbm: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreSettings:
    revenue_window_days: int = 90
    tiers: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIERS))


@dataclass(frozen=True)
class DriftSettings:
    psi_threshold: float = 0.2


@dataclass(frozen=True)
class PrivacySettings:
    pseudonymise_ids: bool = False
    salt_env: str = "CHURNLENS_ID_SALT"    # the environment variable holding the salt


@dataclass(frozen=True)
class ExplainSettings:
    sample_size: int = 500
    seed: int = 11


@dataclass(frozen=True)
class ExportSettings:
    top_n: int = 200
    tiers: tuple[str, ...] = ("high", "medium")
    high_value_quantile: float = 0.9
    inactive_days: float = 30.0
    holdout_share: float = 0.0
    holdout_seed: int = 13
    rank_by: str = "revenue_at_risk"       # revenue_at_risk | revenue_saved
    uplift_learner: str = "rescue_harm"    # rescue_harm | t | x (churnlens.uplift.LEARNERS)
    actions: tuple[Any, ...] | None = None  # None: churnlens.actions.DEFAULT_RULES

    @property
    def rules(self) -> tuple[Any, ...]:
        """The action rules (`churnlens.actions.parse_rules`, checked by params_check)."""
        from churnlens.actions import parse_rules

        return parse_rules(None if self.actions is None else list(self.actions))


@dataclass(frozen=True)
class KpiSettings:
    period_days: int = 30
    crr_target: float | None = None
    revenue_window: str | int = "auto"     # auto | period | a number of days


@dataclass(frozen=True)
class ReportSettings:
    top_n: int = 25
    currency: str = ""


# How a checked params value becomes a field value (everything else is taken as it is).
_CONVERT = {
    ("features", "windows"): lambda v: tuple(int(w) for w in v),
    ("features", "memory_limit"): str,
    ("train", "lgbm"): lambda v: dict(v or {}),
    ("score", "tiers"): dict,
    ("export", "tiers"): lambda v: (v,) if isinstance(v, str) else tuple(v),
    ("export", "high_value_quantile"): float,
    ("export", "inactive_days"): float,
    ("export", "holdout_share"): float,
    ("export", "actions"): lambda v: None if v is None else tuple(v),
    ("drift", "psi_threshold"): float,
    ("report", "currency"): lambda v: str(v or ""),
}


@dataclass(frozen=True)
class Settings:
    """Every section of `params.yaml`, typed, with its defaults."""

    data: DataSettings = field(default_factory=DataSettings)
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    snapshot: SnapshotSettings = field(default_factory=SnapshotSettings)
    label: LabelSettings = field(default_factory=LabelSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    explain: ExplainSettings = field(default_factory=ExplainSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    kpis: KpiSettings = field(default_factory=KpiSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    params: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Settings:
        """Settings from an already checked params dict (`params_check.check_params`)."""
        sections = {}
        for spec in dataclasses.fields(cls):
            if spec.name == "params":
                continue
            section_type = spec.default_factory  # the section's dataclass
            values = params.get(spec.name) or {}
            known = {f.name for f in dataclasses.fields(section_type)}
            given = {key: _CONVERT.get((spec.name, key), _same)(value)
                     for key, value in values.items() if key in known}
            sections[spec.name] = section_type(**given)
        return cls(**sections, params=params)


def _same(value: Any) -> Any:
    return value


DEFAULTS = Settings()


def feature_config(settings: Settings) -> dict[str, Any]:
    """What the feature runners and the snapshot plan take (`plan_for_stage`, `feature_meta`,
    `spark_features.run_stage`): the `snapshot`, `label` and `features` settings, flat."""
    from churnlens.feature_sql import check_windows

    feats, label = settings.features, settings.label
    return {
        "engine": feats.engine,
        "as_of": settings.snapshot.as_of,
        "definition": label.definition,
        "horizon_days": label.horizon_days,
        "step_days": feats.cutoff_step_days,
        "max_cutoffs": feats.max_cutoffs,
        "windows": check_windows(feats.windows),
        "inactivity_days": feats.inactivity_days,
        "memory_limit": feats.memory_limit,
        "threads": feats.threads,
        "spark_driver_memory": feats.spark_driver_memory,
    }


def settings_from(params: Mapping[str, Any] | None, source: str = "params") -> Settings:
    """Check a params dict (`ParamsError` naming every bad key) and build its settings."""
    from churnlens.params_check import check_params

    return Settings.from_params(check_params(params, source=source))


def load_settings(path: str | Path = "params.yaml") -> Settings:
    """Read, check and type `params.yaml` (see `churnlens.config.load_params`)."""
    from churnlens.config import load_params

    return Settings.from_params(load_params(path))
