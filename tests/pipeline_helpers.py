"""Run the whole churnlens pipeline in-process in a temporary directory (for end-to-end tests).

Every stage reads and writes paths relative to the current directory (`churnlens.paths`), so a run
is: a folder with its own `params.yaml`, `chdir` into it, call each stage's `run` in the order of
`dvc.yaml`. MLflow goes to `sqlite:///<folder>/mlflow.db` (artifacts to `<folder>/mlruns`).

In-process is ~10x faster than `dvc repro` here: the imports (MLflow, LightGBM, SHAP) and the
MLflow database migrations are paid once per test session, after which a 400-customer run
takes ~7-15 s.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import importlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("generate", "privacy", "validate", "features", "train", "score", "drift", "explain",
          "export", "kpis", "report")
AFTER_GENERATE = STAGES[1:]
SMALL_N = 400  # customers: 11 training cutoffs, ~50 training churners, ~13 in the test slice
SALT = "test-salt-0123456789abcdef"   # for privacy.pseudonymise_ids (>= 16 characters)
FAST_TRAIN = {"train.lgbm.learning_rate": 0.1, "train.early_stopping_rounds": 10}  # the sample run


@dataclass
class PipelineRun:
    """One pipeline run in `root` (absolute); `log` holds every log message of the run."""

    root: Path
    params: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)   # wall time per stage

    def __truediv__(self, rel: str | Path) -> Path:
        return self.root / rel

    @property
    def raw_dir(self) -> Path:
        return self.root / self.params["data"]["raw_dir"]

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"


def set_dotted(params: dict[str, Any], dotted: str, value: Any) -> None:
    """`set_dotted(p, "train.register_model", True)` sets `p["train"]["register_model"]`."""
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def small_params(n_customers: int = SMALL_N, overrides: dict[str, Any] | None = None) -> dict:
    """The repo's params.yaml with a small sample, model registration on, and `overrides`."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params = copy.deepcopy(params)
    set_dotted(params, "generate.n_customers", int(n_customers))
    set_dotted(params, "train.register_model", True)
    for dotted, value in (overrides or {}).items():
        set_dotted(params, dotted, value)
    return params


def new_run(root: Path, params: dict[str, Any], env: dict[str, str] | None = None) -> PipelineRun:
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "mlflow.db").exists():
        shutil.copyfile(_empty_mlflow_db(), root / "mlflow.db")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return PipelineRun(root=root, params=params, env=dict(env or {}))


_TEMPLATE: list[Path] = []


def _empty_mlflow_db() -> Path:
    """An empty MLflow SQLite store with every migration applied, made once per session.

    Each run gets a copy: creating a store runs ~60 Alembic migrations (3-10 s on a busy machine),
    and copying the result is the same as MLflow doing it again. The template's own artifact root
    (experiment 0) is never used: the `churnlens` experiment is created by each run in its cwd.
    """
    if not _TEMPLATE or not _TEMPLATE[0].exists():
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        folder = Path(tempfile.mkdtemp(prefix="churnlens-mlflow-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        db = folder / "mlflow.db"
        store = SqlAlchemyStore(f"sqlite:///{db}", str(folder / "mlruns"))
        store.engine.dispose()
        _TEMPLATE[:] = [db]
    return _TEMPLATE[0]


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.append(record.getMessage())
        except Exception:  # a broken log call must not break the run under test
            self.sink.append(str(record.msg))


def run_stages(run: PipelineRun, stages: Iterable[str] = STAGES) -> PipelineRun:
    """Run `stages` in order inside `run.root` (chdir + MLflow store + env), collecting logs.

    Exceptions propagate (a `ChurnlensError` is what the CLI would print as one line).
    """
    handler = _Collect(run.log)
    loggers = [logging.getLogger(), logging.getLogger("churnlens"), logging.getLogger("mlflow")]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(run.root)
        mp.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        for key, value in run.env.items():
            mp.setenv(key, value)
        for logger in loggers:
            logger.addHandler(handler)
        old_level = logging.getLogger("churnlens").level
        logging.getLogger("churnlens").setLevel(logging.INFO)
        try:
            for stage in stages:
                started = time.perf_counter()
                run_one(stage, run.params)
                run.seconds[stage] = round(time.perf_counter() - started, 2)
        finally:
            for logger in loggers:
                logger.removeHandler(handler)
            logging.getLogger("churnlens").setLevel(old_level)
    return run


def run_one(stage: str, params: dict[str, Any]) -> None:
    """Call `churnlens.stages.<stage>.run` as `dvc.yaml` does (cwd = the run folder)."""
    module = importlib.import_module(f"churnlens.stages.{stage}")
    if stage == "validate":
        module.run(params["data"]["raw_dir"], "data/interim", "params.yaml")
    else:
        module.run(Path("params.yaml"))


def run_pipeline(root: Path, *, n_customers: int = SMALL_N, overrides: dict | None = None,
                 env: dict[str, str] | None = None, raw_from: Path | None = None,
                 raw_hook: Callable[[Path], None] | None = None,
                 stages: Iterable[str] | None = None) -> PipelineRun:
    """A whole run in `root`: generate (or copy the raw folder `raw_from`), `raw_hook(raw_dir)`
    to edit the raw tables, then the other stages."""
    run = new_run(root, small_params(n_customers, overrides), env)
    if raw_from is not None:
        copy_raw(raw_from, run.raw_dir)
    else:
        run_stages(run, ["generate"])
    if raw_hook is not None:
        raw_hook(run.raw_dir)
    return run_stages(run, AFTER_GENERATE if stages is None else stages)


def copy_raw(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def copy_run(run: PipelineRun, target: Path) -> PipelineRun:
    """A copy of the whole run folder at `target` (its own params, data, models, MLflow store)."""
    shutil.copytree(run.root, target)
    return PipelineRun(root=Path(target).resolve(), params=copy.deepcopy(run.params),
                       env=dict(run.env))


def copy_outputs(run: PipelineRun, target: Path, rels: Iterable[str]) -> PipelineRun:
    """A new run folder at `target` holding copies of `rels` (files or folders) of `run`."""
    new = new_run(target, copy.deepcopy(run.params), run.env)
    for rel in rels:
        src, dst = run.root / rel, new.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    return new


def tree_digest(folder: Path, hidden: bool = True) -> dict[str, str]:
    """sha256 of every file under `folder` by relative path (`hidden=False`: skip every path
    with a part starting with a dot, e.g. the temp folders of `churnlens.io.atomic_path`)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()
            and (hidden or not any(part.startswith(".") for part in p.relative_to(folder).parts))}


def invoke_cli(*args: str) -> tuple[int, str, str]:
    """`churnlens ARGS` through the Typer app (the console-script path) in the current folder:
    (exit code, stdout, stderr); an exception that escapes the CLI fails the test."""
    from typer.testing import CliRunner

    from churnlens.cli import app

    logger = logging.getLogger("churnlens")
    state = (logger.level, logger.propagate)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        logger.handlers.clear()  # they point at CliRunner's closed streams
        logger.setLevel(state[0])
        logger.propagate = state[1]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"exception escaped the CLI: {result.exception!r}") \
            from result.exception
    return result.exit_code, result.stdout, result.stderr


def load_script(path: Path, name: str):
    """Import a script under scripts/ as module `name` (registered in sys.modules, so its
    dataclasses and pickling work)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
