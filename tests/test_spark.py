"""The Spark path: the same feature rows as DuckDB, and spark_udf batch scoring == pyfunc predict.

One local SparkSession for the whole run (`conftest.spark`: the JVM start is most of the cost).
The tables are the hand-made ones of `feature_tables`, the model the one of `model_fixtures`.
"""

from __future__ import annotations

import random
import shutil
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

# `spark` is marked on each test that uses the session (conftest); the first test needs no JVM.
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")

pytest.importorskip("pyspark")
if shutil.which("java") is None:  # pragma: no cover
    pytest.skip("Spark needs Java", allow_module_level=True)

from churnlens import spark_features as sf  # noqa: E402
from churnlens.feature_runner import compute_features  # noqa: E402
from feature_tables import (  # noqa: E402
    AS_OF,
    CUSTOMERS,
    EVENTS,
    NPS,
    T1,
    T2,
    TICKETS,
    TRANSACTIONS,
    TS,
    D,
    random_tables,
    write_interim,
)
from model_fixtures import FEATURES, churn_rows, fitted_model  # noqa: E402


def test_memory_limit_and_write_batches_without_a_jvm():
    assert sf._spark_memory("4GB") == "4g" and sf._spark_memory("512 mb") == "512m"
    assert sf._spark_memory("lots") is None and sf._spark_memory(None) is None
    counts = {D("2025-01-01"): (5, 0.2), D("2025-02-01"): (4, 0.0), D("2025-03-01"): (9, 0.5),
              D("2025-04-01"): (1, None)}
    assert sf._batches(counts, 10) == [[D("2025-01-01"), D("2025-02-01")], [D("2025-03-01"),
                                                                           D("2025-04-01")]]
    assert sf._batches(counts, 1) == [[c] for c in sorted(counts)]   # one cutoff at least
    assert sf.interim_paths("s3a://b/interim/")["events"] == "s3a://b/interim/events.parquet"


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Every column, every row, same dtypes; floats within 1e-9."""
    assert len(want) > 0
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-9)


@pytest.fixture
def mixed_paths(tmp_path):
    """The hand-made customers c1..c4 plus 10 random ones (ids 000..009), some rows after as_of;
    customer 000 also uses 80 event types."""
    tables = random_tables(random.Random(3), n_customers=10, n_rows=150)
    many_types = [("000", TS("2025-03-01") + timedelta(days=i), f"kind_{i:02d}", 1.0)
                  for i in range(80)]  # more types than one 62-bit mask holds
    hand = dict(customers=CUSTOMERS, events=EVENTS + many_types, transactions=TRANSACTIONS,
                tickets=TICKETS, nps=NPS)
    return write_interim(tmp_path / "interim", **{t: hand[t] + rows for t, rows in tables.items()})


@pytest.mark.parametrize("definition, windows", [("inactivity", (7, 30, 90, 180)),
                                                 ("cancellation", (7, 14, 30, 90, 180))])
def test_same_features_as_duckdb(spark, mixed_paths, definition, windows):
    # c4 cancels 2024-12-31..2025-03-31, c2 is last active on T1; monthly cutoffs back from as_of
    cutoffs = sorted({D("2024-12-30"), D("2024-12-31"), D("2025-03-30"), T1, T2,
                      *(AS_OF - timedelta(days=30 * k) for k in range(7))})
    kwargs = dict(cutoffs=cutoffs, as_of=AS_OF, definition=definition, windows=windows,
                  inactivity_days=21)
    want = compute_features(mixed_paths, **kwargs)
    got = compute_features(mixed_paths, engine=sf.SparkEngine(spark), **kwargs)
    assert_same_rows(got, want)
    assert want["label"].isna().any() and (want["label"] == 1).any() and (want["label"] == 0).any()
    assert want["customer_id"].isin(["c1", "000"]).any() and want["last_nps"].notna().any()
    assert (want["events_30d"] > 0).any() and (want["open_tickets"] > 0).any()
    assert want["event_types_180d"].max() > 62


def test_purchase_only_log(spark, tmp_path):
    """No events or tickets file at all, an nps file with 0 rows: Spark's typed empty sources
    give the rows DuckDB gives (same columns, dtypes and values)."""
    customers = [("a", D("2025-01-01"), None, None, None), ("b", D("2025-02-01"), "pro", None,
                                                            None)]
    transactions = [("a", TS("2025-01-02"), 10.0, 1), ("b", TS("2025-03-01"), 5.0, None),
                    ("a", TS("2025-05-01"), -7.0, 1)]
    paths = write_interim(tmp_path, skip=("events", "tickets"), customers=customers,
                          transactions=transactions)
    assert not paths["events"].exists() and not paths["tickets"].exists()
    assert paths["nps"].exists()
    kwargs = dict(cutoffs=[D("2025-03-31"), D("2025-04-30"), D("2025-07-29")],
                  as_of=D("2025-07-29"))
    want = compute_features(paths, **kwargs)
    got = compute_features(paths, engine=sf.SparkEngine(spark), **kwargs)
    assert_same_rows(got, want)
    assert got["days_since_last_event"].isna().all() and (got["open_tickets"] == 0).all()
    assert got["last_nps"].isna().all() and (got["events_30d"] == 0).all()
    assert spark.catalog.listTables() == []   # every temp view released


STAGE_PARAMS = """
snapshot: {{as_of: null}}
label: {{definition: {definition}, horizon_days: 90}}
features: {{engine: {engine}, cutoff_step_days: 30, max_cutoffs: 24, windows: [7, 30, 90, 180],
           inactivity_days: 30, memory_limit: 1GB, threads: 1}}
"""


def test_stage_writes_the_same_files_on_both_engines(spark, tmp_path):
    from churnlens.io import read_json
    from churnlens.stages import features as stage

    outputs = {}
    for engine in ("duckdb", "spark"):
        root = tmp_path / engine
        write_interim(root / "data" / "interim", customers=CUSTOMERS, events=EVENTS,
                      transactions=TRANSACTIONS, tickets=TICKETS, nps=NPS)
        (root / "params.yaml").write_text(
            STAGE_PARAMS.format(engine=engine, definition="inactivity"))
        stage.run(root=root)
        folder = root / "data" / "features"
        outputs[engine] = {
            "meta": read_json(folder / "meta.json"),
            **{name: pq.read_table(folder / f"{name}.parquet")
               for name in ("training", "scoring")},
        }
        assert sorted(p.name for p in folder.iterdir()) == [
            "meta.json", "scoring.parquet", "training.parquet"]
    duck, spk = outputs["duckdb"], outputs["spark"]
    assert spk["meta"].pop("engine") == "spark" and duck["meta"].pop("engine") == "duckdb"
    spk["meta"].pop("seconds"), duck["meta"].pop("seconds")
    assert spk["meta"] == duck["meta"]
    for name in ("training", "scoring"):
        assert [(f.name, f.type) for f in spk[name].schema] == \
            [(f.name, f.type) for f in duck[name].schema], name
        assert_same_rows(spk[name].to_pandas(), duck[name].to_pandas())
    assert spark.catalog.listTables() == []   # every temp view released


def test_spark_udf_scoring_matches_pyfunc_predict(spark, tmp_path):
    from churnlens import spark_scoring
    from churnlens.packaging import load_model, save_model, to_model_input
    from churnlens.scoring import score_frame

    rows = churn_rows(40, seed=12)
    save_model(fitted_model(), FEATURES, tmp_path / "model", rows)
    rows["days_since_last_activity"] = rows["days_since_last_activity"].astype("int64")
    rows["revenue_90d"] = rows["revenue_180d"] / 2
    rows.loc[3, "revenue_90d"] = -5.0      # refunds: no revenue at risk
    rows.loc[4, "revenue_90d"] = np.nan
    want = load_model(tmp_path / "model").predict(to_model_input(rows, FEATURES))

    frame = spark.createDataFrame(rows.drop(columns="label")).coalesce(1)  # one cold worker
    assert dict(frame.dtypes)["days_since_last_activity"] == "bigint"   # cast inside
    got = (spark_scoring.predict(spark, frame, str(tmp_path / "model"))
           .toPandas().set_index("customer_id").loc[rows["customer_id"]])
    assert list(got.columns) == ["churn_probability"]
    np.testing.assert_allclose(got["churn_probability"].to_numpy(),
                               want["churn_probability"].to_numpy(), rtol=1e-12, atol=1e-12)

    tiers = {"high": 0.5, "medium": 0.25, "low": 0.0}
    scored = (spark_scoring.score(spark, frame, str(tmp_path / "model"), tiers=tiers,
                                  window_days=90, horizon_days=90)
              .toPandas().sort_values("customer_id").reset_index(drop=True))
    expected = score_frame(rows, want["churn_probability"].to_numpy(), tiers=tiers,
                           window_days=90, horizon_days=90)
    pd.testing.assert_frame_equal(scored, expected[scored.columns.tolist()], check_dtype=False,
                                  check_exact=False, rtol=1e-12)
    assert set(scored["risk_tier"]) >= {"high", "low"}


def test_spark_engine_gets_the_driver_memory_not_duckdbs_limit(monkeypatch):
    """features.memory_limit is DuckDB's (default 4GB); a local Spark driver gets
    features.spark_driver_memory (default 4g) instead."""
    from contextlib import contextmanager

    from churnlens import feature_runner
    from churnlens.settings import Settings, feature_config

    seen = {}

    @contextmanager
    def fake_open_spark(*, memory_limit, threads):
        seen.update(memory_limit=memory_limit, threads=threads)
        yield "engine"

    monkeypatch.setattr(sf, "open_spark", fake_open_spark)
    cfg = feature_config(Settings())
    assert cfg["memory_limit"] == "4GB" and cfg["spark_driver_memory"] == "4g"
    with feature_runner.open_engine("spark", memory_limit=cfg["memory_limit"], threads=2,
                                    scratch=".", spark_driver_memory=cfg["spark_driver_memory"]):
        pass
    assert seen == {"memory_limit": "4g", "threads": 2}
