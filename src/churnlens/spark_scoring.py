"""Scoring on Spark: the saved model applied to a Spark DataFrame of feature rows, partition by
partition on the executors, so the scored customer base never has to fit on one machine.

Each partition reaches the executor as pandas batches (`mapInPandas`); there the model is read
from its folder with `churnlens.packaging.load_model` (plain data, never unpickled, no MLflow)
and the batch goes through the same code as the local score stage: `packaging.to_model_input`,
the model's `predict` and `churnlens.scoring.score_frame` (tiers, expected revenue at risk,
`active`, `win_back_value`). So the rules are written once, and the probabilities are the local
ones. The executors need churnlens and its runtime packages installed (local mode: this Python)
and the model folder at the same path (local mode, or a shared filesystem).

`churnlens score --engine spark` (`churnlens.stages.score_spark`) builds the feature rows at
as_of on Spark (`churnlens.feature_runner` over `spark_features.SparkEngine`) and scores them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from churnlens.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = get_logger("spark_scoring")

PROBABILITY = "churn_probability"
KEEP_COLUMNS = ("customer_id", "cutoff")


def _model_path(model_dir: str | Path) -> str:
    return str(Path(model_dir).resolve())


def _probabilities(model_dir: str, batches: Iterator[pd.DataFrame]
                   ) -> Iterator[tuple[pd.DataFrame, pd.Series]]:
    """(batch, churn probability) per pandas batch, the model read once per partition."""
    from churnlens.packaging import load_model, to_model_input

    model = load_model(model_dir)
    for batch in batches:
        frame = to_model_input(batch, model.feature_columns)
        yield batch, model.predict(frame)[PROBABILITY].to_numpy()


def predict(spark: SparkSession, features: DataFrame, model_dir: str | Path, *,
            keep: Sequence[str] = KEEP_COLUMNS) -> DataFrame:
    """`keep` columns (those present) + `churn_probability` for every row of `features`: the
    probabilities of `packaging.load_model(model_dir).predict(to_model_input(rows))`."""
    from pyspark.sql.types import DoubleType, StructField, StructType

    kept = [c for c in keep if c in features.columns]
    schema = StructType([features.schema[c] for c in kept]
                        + [StructField(PROBABILITY, DoubleType())])
    path = _model_path(model_dir)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch, probability in _probabilities(path, batches):
            out = batch[kept].copy()
            out[PROBABILITY] = probability
            yield out

    return features.mapInPandas(run, schema)


def score(spark: SparkSession, features: DataFrame, model_dir: str | Path, *,
          tiers: Mapping[str, float], window_days: int, horizon_days: int) -> DataFrame:
    """`churnlens.scoring.score_frame` on Spark: probability, tier, expected revenue (at risk),
    `active`, `win_back_value` and the context columns present, one row per feature row
    (unordered)."""
    from pyspark.sql.types import (
        BooleanType,
        DoubleType,
        StringType,
        StructField,
        StructType,
    )

    from churnlens.scoring import CONTEXT_COLUMNS, score_frame

    revenue_column = f"revenue_{int(window_days)}d"
    if revenue_column not in features.columns:
        raise KeyError(f"feature '{revenue_column}' missing: score.revenue_window_days must be one "
                       "of features.windows")
    context = [c for c in CONTEXT_COLUMNS if c in features.columns]
    schema = StructType(
        [StructField("customer_id", StringType()), StructField(PROBABILITY, DoubleType()),
         StructField("risk_tier", StringType()), StructField("expected_revenue", DoubleType()),
         StructField("expected_revenue_at_risk", DoubleType()),
         StructField("active", BooleanType()), StructField("win_back_value", DoubleType())]
        + [features.schema[c] for c in context])
    path, tiers = _model_path(model_dir), dict(tiers)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch, probability in _probabilities(path, batches):
            yield score_frame(batch, probability, tiers=tiers, window_days=int(window_days),
                              horizon_days=int(horizon_days))[schema.fieldNames()]

    return features.mapInPandas(run, schema)


def scoring_rows(spark: SparkSession, interim: str | Path, *, as_of: str | None,
                 horizon_days: int, definition: str, windows: Sequence[int],
                 inactivity_days: int) -> DataFrame:
    """Feature rows of every customer at as_of (`as_of`, else the last data day), computed on
    Spark from the validated tables in `interim` (a folder or URI), without the label."""
    from churnlens import feature_runner as runner
    from churnlens.snapshot import resolve_as_of
    from churnlens.spark_features import SparkEngine

    engine = SparkEngine(spark)
    runner.register_tables(engine, runner.interim_paths(interim))
    _, last_day = runner.data_day_range(engine)
    day = resolve_as_of(as_of, last_day)
    runner.build_feature_rows(engine, cutoffs=[day], as_of=day, horizon_days=horizon_days,
                              definition=definition, windows=windows,
                              inactivity_days=inactivity_days)
    return spark.table(runner.FEATURE_TABLE).drop("label")
