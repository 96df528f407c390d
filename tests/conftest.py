"""Shared fixtures and the test markers.

Fixtures here; helpers stay plain modules imported by name: `feature_tables` (hand-made
validated tables), `model_fixtures` (a tiny learnable churn problem and its fitted model),
`pipeline_helpers` (whole pipeline runs in a temporary folder). Session fixtures are built once
per run and shared by every module that asks: treat them as read-only.

Markers (see the README's test section): `slow` (not in `make test`), `spark` (starts a JVM: any
test that uses the `spark` fixture gets it), `bench` (runs `scripts/bench.py --quick`: every test
of `test_bench.py` gets it). The default `pytest -q` leaves all three out; `make test` runs the
default set plus `spark` and `bench` on two pytest-xdist workers.
"""

from __future__ import annotations

import os

# As the CLI does (cli.py): idle OpenMP / OpenBLAS threads sleep instead of spinning. Set before
# any test module imports LightGBM or numpy; it matters most when `make test` runs two workers
# on two cores, where spinning threads of one worker steal the other's core. Same results.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import shutil  # noqa: E402
from pathlib import Path

import pytest

from feature_tables import CUSTOMERS, EVENTS, NPS, TICKETS, TRANSACTIONS, write_interim

BENCH_MODULES = {"test_bench.py"}

# Tuned for a short-lived JVM on tiny data: C1 compiler only and serial GC (about halves the JVM
# start), interpreted expressions instead of compiled code, no adaptive re-planning. Measured on
# the feature fixtures: about 2x faster per feature run than Spark's defaults.
SPARK_TEST_CONF = {
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`spark` on every test that uses the JVM fixture, `bench` on the quick-benchmark tests, so
    that `-m` selects them however the test module is written."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)
        if Path(str(item.fspath)).name in BENCH_MODULES:
            item.add_marker(pytest.mark.bench)


# --- feature tables -------------------------------------------------------------------------------
@pytest.fixture
def fixture_paths(tmp_path):
    """The hand-made customers c1..c4 written as interim Parquet files; {table: path}."""
    return write_interim(tmp_path / "interim", customers=CUSTOMERS, events=EVENTS,
                         transactions=TRANSACTIONS, tickets=TICKETS, nps=NPS)


@pytest.fixture(scope="module")
def con():
    """One DuckDB connection per module (one thread, the stage's settings)."""
    from churnlens.features import connect

    connection = connect(threads=1)
    yield connection
    connection.close()


# --- Spark ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole run: the JVM start is most of a Spark test's cost.

    Tests must leave it clean (drop their temp views: `spark_features.release`)."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:  # pragma: no cover
        pytest.skip("Spark needs Java")
    from churnlens import spark_features as sf

    session = sf.spark_session(threads=2, shuffle_partitions=2, app_name="churnlens-tests",
                               conf=SPARK_TEST_CONF)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# --- pipeline runs --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """The whole pipeline on a 400-customer generated sample (`pipeline_helpers.run_pipeline`
    with FAST_TRAIN), once per session. Read-only: copy it (`copy_run`) to change anything."""
    from pipeline_helpers import FAST_TRAIN, run_pipeline

    return run_pipeline(tmp_path_factory.mktemp("sample"), overrides=FAST_TRAIN)


# --- model ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sample_model():
    """`model_fixtures.fitted_model()`: a ChurnClassifier fitted once per run (read-only)."""
    from model_fixtures import fitted_model

    return fitted_model()
