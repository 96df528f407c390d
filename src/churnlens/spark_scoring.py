"""Batch scoring on Spark: the saved pyfunc model (`models/churn_model`) through `spark_udf`.

The model is the same MLflow pyfunc the `score` stage loads with `packaging.load_model`; here it is
wrapped by `mlflow.pyfunc.spark_udf(spark, model_uri, result_type=RESULT_TYPE)` and applied to a
Spark DataFrame of feature rows, partition by partition on the executors, so the scored customer
base never has to fit on one machine. `predict` gives `churn_probability`; `score` adds the risk
tier and the expected revenue at risk exactly like `churnlens.scoring.score_frame`.

The executors need the model's Python packages (`env_manager="local"`: the executors' own Python;
`"uv"`/`"virtualenv"`: MLflow builds the environment from the model's requirements, which needs a
package index). The model carries the churnlens code (`code_paths`).

    python -m churnlens.spark_scoring --model models/churn_model --interim data/interim \
        --out predictions_dir [--params params.yaml]     # features at as_of + scoring, all on Spark
    python -m churnlens.spark_scoring --model models/churn_model \
        --features data/features/scoring.parquet --out predictions_dir

The session comes from `churnlens.spark_features.spark_session` (`CHURNLENS_SPARK_MASTER`, an
active session, spark-submit's master, else local mode).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnlens.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = get_logger("spark_scoring")

PROBABILITY = "churn_probability"
RESULT_TYPE = f"{PROBABILITY} double"   # a struct: the pyfunc's output column, taken by name
KEEP_COLUMNS = ("customer_id", "cutoff")


def model_feature_columns(model_uri: str | Path) -> list[str]:
    """Feature columns the model expects: from the saved files, else from its MLflow signature."""
    from churnlens.packaging import feature_columns_of

    if Path(str(model_uri)).is_dir():
        return feature_columns_of(model_uri)
    from mlflow.models import get_model_info

    signature = get_model_info(str(model_uri)).signature
    if signature is None:
        raise ValueError(f"{model_uri}: model has no signature; cannot tell its feature columns")
    return list(signature.inputs.input_names())


def _input_columns(frame: DataFrame, feature_columns: Sequence[str]) -> list:
    """Column expressions of `model_input` (numbers and booleans as DOUBLE, the rest as strings)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BooleanType, NumericType

    types = {f.name: f.dataType for f in frame.schema.fields}
    missing = [c for c in feature_columns if c not in types]
    if missing:
        raise ValueError(f"model input lacks feature columns: {missing}")
    columns = []
    for name in feature_columns:
        column = F.col(f"`{name}`")
        if isinstance(types[name], NumericType | BooleanType):
            columns.append(column.cast("double").alias(name))
        else:
            columns.append(F.coalesce(column.cast("string"), F.lit("unknown")).alias(name))
    return columns


def model_input(frame: DataFrame, feature_columns: Sequence[str]) -> DataFrame:
    """Spark twin of `packaging.to_model_input`: feature columns in model order, numbers (and
    booleans) as DOUBLE so the model signature never narrows, other types as strings (null ->
    `unknown`)."""
    return frame.select(*_input_columns(frame, feature_columns))


def churn_udf(spark: SparkSession, model_uri: str | Path, env_manager: str = "local"):
    """The pyfunc model as a Spark pandas UDF returning a struct `churn_probability double`."""
    from mlflow.pyfunc import spark_udf

    return spark_udf(spark, str(model_uri), result_type=RESULT_TYPE, env_manager=env_manager)


def predict(
    spark: SparkSession,
    features: DataFrame,
    model_uri: str | Path,
    *,
    keep: Sequence[str] = KEEP_COLUMNS,
    env_manager: str = "local",
) -> DataFrame:
    """`keep` columns (those present) + `churn_probability` for every row of `features`.

    The same probabilities as `packaging.load_model(model_uri).predict(to_model_input(rows))`.
    """
    from pyspark.sql import functions as F

    columns = model_feature_columns(model_uri)
    kept = [c for c in keep if c in features.columns]
    udf = churn_udf(spark, model_uri, env_manager)
    result = udf(F.struct(*_input_columns(features, columns)))
    return features.select(*kept, result[PROBABILITY].alias(PROBABILITY))


def score(
    spark: SparkSession,
    features: DataFrame,
    model_uri: str | Path,
    *,
    tiers: Mapping[str, float],
    window_days: int,
    horizon_days: int,
    env_manager: str = "local",
) -> DataFrame:
    """Spark twin of `churnlens.scoring.score_frame`: probability, tier, expected revenue (at
    risk) and the context columns present, one row per feature row (unordered)."""
    from pyspark.sql import functions as F

    from churnlens.scoring import CONTEXT_COLUMNS

    revenue_column = f"revenue_{int(window_days)}d"
    if revenue_column not in features.columns:
        raise KeyError(f"feature '{revenue_column}' missing: score.revenue_window_days must be one "
                       "of features.windows")
    context = [c for c in CONTEXT_COLUMNS if c in features.columns]
    scored = predict(spark, features, model_uri,
                     keep=("customer_id", revenue_column, *context), env_manager=env_manager)
    probability = F.col(PROBABILITY)
    ordered = sorted(tiers.items(), key=lambda item: item[1], reverse=True)
    tier = None
    for name, bound in ordered:   # first bound reached wins; NaN reaches none (as numpy)
        condition = (~F.isnan(probability)) & (probability >= F.lit(float(bound)))
        tier = F.when(condition, F.lit(name)) if tier is None else tier.when(condition,
                                                                                 F.lit(name))
    tier = tier.otherwise(F.lit(ordered[-1][0]))
    value = F.nanvl(F.col(revenue_column).cast("double"), F.lit(0.0))   # NaN/NULL -> 0 (fillna)
    recent = F.greatest(F.coalesce(value, F.lit(0.0)), F.lit(0.0))
    revenue = recent * F.lit(int(horizon_days) / int(window_days))
    return scored.select(
        F.col("customer_id").cast("string").alias("customer_id"),
        probability,
        tier.alias("risk_tier"),
        revenue.alias("expected_revenue"),
        (probability * revenue).alias("expected_revenue_at_risk"),
        *context,
    )


# --- batch job ---------------------------------------------------------------------------------

def scoring_rows(spark: SparkSession, interim: str | Path, params: Mapping[str, Any]) -> DataFrame:
    """Feature rows of every customer active at as_of, computed on Spark from the validated tables
    (`snapshot.as_of` or the last data day), without the label."""
    from churnlens import feature_runner as runner
    from churnlens.snapshot import resolve_as_of
    from churnlens.spark_features import SparkEngine

    label = params.get("label") or {}
    feats = params.get("features") or {}
    engine = SparkEngine(spark)
    runner.register_tables(engine, runner.interim_paths(interim))
    _, last_day = runner.data_day_range(engine)
    as_of = resolve_as_of((params.get("snapshot") or {}).get("as_of"), last_day)
    runner.build_feature_rows(
        engine, cutoffs=[as_of], as_of=as_of,
        horizon_days=int(label.get("horizon_days", 90)),
        definition=str(label.get("definition", "inactivity")),
        windows=feats.get("windows", [7, 30, 90, 180]),
        inactivity_days=int(feats.get("inactivity_days", 30)),
    )
    rows = spark.table(runner.FEATURE_TABLE)
    return rows.drop("label")


def main(argv: Sequence[str] | None = None) -> None:
    """Batch job: score feature rows (a Parquet file/dataset, or computed from the validated
    tables) with the saved model and write a Parquet dataset of scores to `--out`."""
    from churnlens import spark_features as sf
    from churnlens.config import load_params
    from churnlens.logs import setup_logging

    parser = argparse.ArgumentParser(prog="python -m churnlens.spark_scoring",
                                     description=main.__doc__)
    parser.add_argument("--model", default="models/churn_model", help="model path or MLflow URI")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", help="feature rows (e.g. data/features/scoring.parquet)")
    source.add_argument("--interim", help="folder/URI of the validated TABLE.parquet files")
    parser.add_argument("--out", required=True, help="output folder/URI (Parquet dataset)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--master", default=None, help="Spark master (else see spark_session)")
    parser.add_argument("--env-manager", default="local", choices=["local", "uv", "virtualenv",
                                                                   "conda"])
    args = parser.parse_args(argv)
    setup_logging("spark_scoring")
    params = load_params(args.params)
    spark = sf.spark_session(args.master, threads=int((params.get("features") or {})
                                                      .get("threads", 2)))
    if args.features:
        path = args.features
        features = spark.read.parquet(path if "://" in path else str(Path(path).resolve()))
    else:
        features = scoring_rows(spark, args.interim, params)
    score_params = params.get("score") or {}
    scores = score(spark, features, args.model,
                   tiers=score_params.get("tiers", {"high": 0.5, "medium": 0.25, "low": 0.0}),
                   window_days=int(score_params.get("revenue_window_days", 90)),
                   horizon_days=int((params.get("label") or {}).get("horizon_days", 90)),
                   env_manager=args.env_manager)
    scores.orderBy("customer_id").write.mode("overwrite").parquet(args.out)
    log.info("scores written to %s", args.out)


if __name__ == "__main__":
    main()
