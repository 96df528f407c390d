# Two commands for a newcomer:  `make run`  (set up + whole pipeline on the sample)  and  `make test`.
# Every target creates the virtual environment itself from uv.lock when it is missing or stale.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export MLFLOW_DISABLE_TELEMETRY := true
# Install compiled bytecode: where PYTHONDONTWRITEBYTECODE is set (as on CI here) Python never
# writes .pyc files, so without this every stage process compiles pandas, MLflow, sklearn... from
# source again (imports 12.5 CPU-s instead of 4.0 per process, README Benchmark).
export UV_COMPILE_BYTECODE := 1

.PHONY: setup run test test-fast test-spark test-bench test-slow test-all lint bench bench-quick benchmark-real exp-show report-png mlflow-ui clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --quiet
	touch $@

setup: $(STAMP)  ## create .venv from uv.lock (idempotent)

run: setup  ## run the whole pipeline (dvc repro) on params.yaml's data
	dvc repro

# `make test` (what CI runs) = lint + the default run + the spark and bench tests, on
# PYTEST_WORKERS pytest-xdist workers (default 2, the cores CI has), whole test files per worker
# (--dist loadfile: a module's fixtures are built once). Each worker pays the imports and the
# session fixtures (the sample pipeline run, the JVM) once. The default `pytest -q`
# (= make test-fast) is one process and leaves spark and bench out.
PYTEST_WORKERS ?= 2
test: setup lint  ## lint, then every test but the slow ones (fast suite + spark + bench), 2 workers
	pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

test-fast: setup  ## the default run, plain `pytest -q`: no JVM, no benchmark, no slow tests
	pytest -q

test-spark: setup  ## the tests that start a local Spark session (one JVM for the run)
	pytest -q -m "spark and not slow"

test-bench: setup  ## the quick benchmark end to end (scripts/bench.py --quick)
	pytest -q -m "bench and not slow"

test-slow: setup  ## slow tests only
	pytest -q -m slow

test-all: setup
	pytest -q -m ""

lint: setup  ## ruff (pyproject.toml's rules) over the code, tests and scripts
	ruff check src tests scripts

bench: setup  ## scale benchmark (1M customers) + issue 14's table (targets, met / not met); writes reports/bench.json
	python scripts/bench.py

bench-quick: setup  ## the same benchmark at a tiny size (CI), with the sample loop (dvc repro -f, dvc exp run)
	python scripts/bench.py --quick

bench-sample: setup  ## only dvc repro -f / dvc exp run on the bundled sample (temp clone) + imports per stage
	python scripts/bench.py --quick --only sample-loop

benchmark-real: setup  ## model vs recency, logistic-RFM, BG/NBD on the real CDNOW log (downloads ~0.6 MB once)
	python scripts/benchmark_real.py

simulate-outreach: setup  ## closed loop: the pipeline's own lists + control groups vs a known effect (~30 min); reports/outreach_loop.json
	python scripts/simulate_outreach_loop.py

exp-show: setup  ## dvc exp show with the headline metrics and only the params that differ (< 30 columns)
	dvc exp show --only-changed --drop '.*/' --keep '^(rows|churn_rate|model\.|recency\.|logistic\.)'

report-png: setup  ## render the weekly report headless to reports/weekly_report.png
	bash scripts/render_report_png.sh reports/weekly_report.html reports/weekly_report.png

# One worker, no job runner (GenAI scorers, trace rollups) and no AI gateway: the runs, models and
# datasets views need none of them. Measured: ~6 s and ~0.5 GB RSS instead of ~15 s and ~3.4 GB.
mlflow-ui: setup  ## MLflow UI on http://127.0.0.1:5000 (MLFLOW_TRACKING_URI, else ./mlflow.db; MLFLOW_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_ENABLE_AI_GATEWAY=false \
	  mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
	  --host 127.0.0.1 --port "$${MLFLOW_PORT:-5000}" --workers 1

clean:  ## remove pipeline outputs (not the environment)
	rm -rf data/sample data/interim data/features data/processed models reports
