"""Everything MLflow: the tracking URI, one training run, the registry and the champion alias.

Modelling code never imports this module; the train stage calls `log_training_run` once.

A run is named `as_of <date> · <DVC experiment or git branch> · <data folder>`, tagged with the
DVC experiment and an honest git commit (dirty only when tracked source or params differ from it,
not because the pipeline rewrote `dvc.lock` or its own outputs), and lists its inputs as MLflow
datasets: an ids-free summary of each validated table and the test slice's feature rows. Each
registered version carries a description (data, as_of, test metrics, gate, scorer) and tags.

Consistency after a kill (issue 12 part 9): the model version is registered only after its run
has FINISHED, tagged `churnlens.state=pending` until every registry write is done (`ready`), and
the process that trains records its pid, start time and host on the run and the version. At the
start of every training run `clean_stale_runs` marks this host's RUNNING runs whose process is
gone as KILLED and deletes their pending versions (moving `champion` back where it was). SIGTERM
during the MLflow part is turned into an exception so the same clean-up happens at once.

A project folder that moved keeps working: MLflow stores absolute artifact paths in
`mlflow.db`; when the store is the project's own SQLite file, `relocate_store` repoints paths
under another folder's `mlruns/` at this folder's `mlruns/` (the first MLflow call does it).
Each version carries `model_sha256` (`packaging.model_digest`), checked after a download.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens.config import flatten
from churnlens.errors import ChurnlensError
from churnlens.fingerprint import fingerprint_dir
from churnlens.logs import get_logger

EXPERIMENT = "churnlens"
REGISTERED_MODEL = "churnlens"
# MLflow 3 opens an experiment on its GenAI pages unless this tag says it is classic ML.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Never logged, not even as column names of a dataset (validation already drops them).
PERSONAL_COLUMNS = frozenset({"email", "name", "contact", "phone"})
ID_COLUMNS = frozenset({"customer_id"})
TABLES = ("customers", "transactions", "events", "tickets", "nps")
# Tags that make a kill recoverable (see the module docstring).
STATE_TAG, PID_TAG, STARTED_TAG, HOST_TAG = ("churnlens.state", "churnlens.pid",
                                             "churnlens.pid_started", "churnlens.host")
CHAMPION_BEFORE_TAG = "churnlens.champion_before"
DIGEST_TAG = "model_sha256"
LEGACY_STALE_S = 24 * 3600   # a RUNNING run without our pid tags counts as dead after a day
RESTORE = "run `dvc repro -f -s train` and then `dvc repro` to register the current model anew"
log = get_logger("tracking")


class TrackingStoreMissing(ChurnlensError):
    """The project's MLflow store (`mlflow.db`) is gone: no registry to read."""


def tracking_uri(root: str | Path = ".") -> str:
    """`MLFLOW_TRACKING_URI`, else a SQLite file `mlflow.db` in the project folder `root` (the
    current directory by default)."""
    return (os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{Path.cwd() / root / 'mlflow.db'}")


def sqlite_file(uri: str | None = None, root: str | Path = ".") -> Path | None:
    """The database file of a `sqlite:///` tracking URI (None for other stores)."""
    uri = uri or tracking_uri(root)
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?")[0])


def require_store(root: str | Path = ".") -> None:
    """`TrackingStoreMissing` (one line) when the SQLite store file does not exist: reading the
    registry must not create an empty one and then report "no champion"."""
    db = sqlite_file(root=root)
    if db is not None and not db.exists():
        raise TrackingStoreMissing(
            f"the MLflow store {db} does not exist (deleted or never created), so the registry "
            f"cannot say which model is approved; {RESTORE}")


# Columns of MLflow's SQL schema that hold artifact locations (absolute paths).
ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("model_versions", "storage_location"), ("logged_models", "artifact_location"))
_EXPERIMENT_ROOT = re.compile(r"^(?:file://)?(/.*)/mlruns/\d+/?$")


def relocate_store(db: str | Path, root: str | Path) -> int:
    """Repoint artifact paths in the SQLite store `db` that lie under another folder's `mlruns/`
    at `root/mlruns/` (the project moved or was copied, `mlruns/` with it: only experiments whose
    folder `root/mlruns/<id>` exists count). Returns the number of rows changed."""
    root = str(Path(root).resolve())
    try:
        connection = sqlite3.connect(str(db), timeout=30)
    except sqlite3.Error:
        return 0
    changed = 0
    try:
        with connection:
            try:
                rows = connection.execute(
                    "SELECT experiment_id, artifact_location FROM experiments").fetchall()
            except sqlite3.Error:
                return 0  # not (yet) an MLflow store
            # only where this folder holds the experiment's artifacts (they moved along): a
            # store whose artifacts live elsewhere on purpose is left alone
            old_roots = {m[1] for exp_id, loc in rows if loc
                         and (m := _EXPERIMENT_ROOT.match(loc))
                         and (Path(root) / "mlruns" / str(exp_id)).is_dir()}
            for old in sorted(old_roots - {root}):
                for scheme in ("", "file://"):
                    before, after = f"{scheme}{old}/mlruns/", f"{scheme}{root}/mlruns/"
                    for table, column in ARTIFACT_COLUMNS:
                        try:
                            cursor = connection.execute(
                                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                f"WHERE substr({column}, 1, ?) = ?",
                                (after, len(before) + 1, len(before), before))
                        except sqlite3.OperationalError:
                            continue  # table or column absent in this MLflow version
                        changed += cursor.rowcount
                log.warning("the project moved from %s: artifact paths in %s now point at "
                            "%s/mlruns", old, db, root)
    finally:
        connection.close()
    return changed


def _relocate_if_local(root: str | Path = ".") -> None:
    db, folder = sqlite_file(root=root), Path.cwd() / root
    if db is not None and db.exists() and db.resolve().parent == folder.resolve():
        relocate_store(db, folder)


def pipeline_outputs(root: str | Path = ".") -> list[str]:
    """Paths DVC writes (`outs`, `metrics`, `plots` in dvc.yaml and dvc.lock), relative to root."""
    import yaml

    found: set[str] = set()
    for name in ("dvc.yaml", "dvc.lock"):
        path = Path(root) / name
        if not path.is_file():
            continue
        try:
            stages = (yaml.safe_load(path.read_text()) or {}).get("stages") or {}
        except yaml.YAMLError:
            continue
        for stage in stages.values():
            if not isinstance(stage, dict):
                continue
            for key in ("outs", "metrics", "plots"):
                for entry in stage.get(key) or []:
                    if isinstance(entry, dict):
                        entry = entry.get("path") or next(iter(entry), None)
                    if isinstance(entry, str) and "${" not in entry:
                        found.add(entry.rstrip("/"))
    return sorted(found)


def _git(cwd: str | Path | None, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def git_state(cwd: str | Path | None = None) -> dict[str, Any]:
    """Commit, branch, and whether tracked source or params differ from the commit.

    `dvc.lock` and every DVC output are left out: the pipeline rewrites them itself, so they
    do not make a run `dirty`. Untracked files do not count either. Outside git: `unknown`.
    """
    root = Path(cwd or ".")
    try:
        commit = _git(cwd, "rev-parse", "HEAD").strip()
        branch = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD").strip()
        excluded = [f":(exclude){p}" for p in ("dvc.lock", *pipeline_outputs(root))]
        status = _git(cwd, "status", "--porcelain", "--untracked-files=no", "--", ".",
                      *excluded)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "branch": None, "dirty": None, "changed": []}
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit, "branch": None if branch == "HEAD" else branch,
            "dirty": bool(changed), "changed": changed}


def git_commit(cwd: str | Path | None = None) -> str:
    """Current commit hash, `-dirty` when tracked source or params differ (see `git_state`)."""
    state = git_state(cwd)
    return state["commit"] + ("-dirty" if state["dirty"] else "")


def dvc_context(branch: str | None = None) -> dict[str, str]:
    """What DVC tells a stage: experiment name and baseline (`dvc exp run`), stage, or nothing."""
    exp = os.environ.get("DVC_EXP_NAME")
    origin = "dvc exp run" if exp else ("dvc repro" if os.environ.get("DVC_STAGE") else "direct")
    context = {"experiment": exp or branch or "workspace", "origin": origin}
    if exp:
        context["exp_name"] = exp
    for key, env in (("baseline_rev", "DVC_EXP_BASELINE_REV"), ("stage", "DVC_STAGE")):
        if os.environ.get(env):
            context[key] = os.environ[env]
    return context


def data_source(params: dict) -> str:
    """Name of the raw data folder (`data.raw_dir`), e.g. `sample`."""
    raw = str((params.get("data") or {}).get("raw_dir") or "unknown")
    return Path(raw.rstrip("/")).name or raw


def registered_model_name(params: dict) -> str:
    """One registry entry per data source (`churnlens-<folder>`): models trained on different
    data never compete for the same champion alias."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", data_source(params)).strip("-") or "unknown"
    return f"{REGISTERED_MODEL}-{slug}"


def run_name(as_of: str | None, experiment: str, source: str) -> str:
    return f"as_of {as_of or 'unknown'} · {experiment} · {source}"


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Flatten `metrics.json` to MLflow metric keys (`model.roc_auc`, `baselines.recency.brier`)."""
    return {key: float(value) for key, value in flatten(metrics).items()
            if isinstance(value, int | float) and not isinstance(value, bool) and value == value}


def _mlflow(root: str | Path = "."):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    _relocate_if_local(root)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    mlflow.set_registry_uri(tracking_uri(root))
    return mlflow


def _evaluate(name: str, version: str, features: pd.DataFrame,
              labels: pd.Series, root: str | Path = ".") -> dict[str, float]:
    import tempfile

    from sklearn.metrics import brier_score_loss, roc_auc_score

    from churnlens.packaging import load_model, to_model_input

    frame = to_model_input(features, list(features.columns))
    with tempfile.TemporaryDirectory() as tmp:
        folder = download_model_version(name, version, Path(tmp) / "champion", root)
        proba = load_model(folder).predict(frame)["churn_probability"].to_numpy()
    return {"roc_auc": float(roc_auc_score(labels, proba)),
            "brier": float(brier_score_loss(labels, proba))}


def decide_promotion(new: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, str]:
    """New model becomes champion if there is none, or it is at least as good on AUC *and* Brier."""
    if champion is None:
        return True, "no champion yet"
    better_auc = new["roc_auc"] >= champion["roc_auc"]
    better_brier = new["brier"] <= champion["brier"]
    if better_auc and better_brier:
        return True, "at least as good as the champion on AUC and Brier"
    worse = [name for name, ok in (("AUC", better_auc), ("Brier", better_brier)) if not ok]
    return False, f"worse than the champion on {' and '.join(worse)}"


class ChampionSawTestSlice(Exception):
    """The champion cannot be judged on this test slice (see `saw_test_slice`)."""

    def __init__(self, version: str, as_of: str) -> None:
        super().__init__(version, as_of)
        self.version, self.as_of = version, as_of


def saw_test_slice(champion_as_of: str | None, test_cutoff: str | None) -> bool:
    """True when the champion learnt from labels inside the test slice's label window.

    A shipped model is refitted on every labelled cutoff up to its own `as_of`, so its labels
    reach `as_of`; the test slice's labels start the day after `test_cutoff`. Scoring it on that
    slice would grade it on answers it has seen (ISO dates compare as strings).
    """
    return bool(champion_as_of and test_cutoff and str(champion_as_of) > str(test_cutoff))


def _champion_figures(mlflow, features, labels, name: str, test_cutoff: str | None = None,
                      fingerprint: str | None = None,
                      root: str | Path = ".") -> tuple[dict | None, str | None]:
    """The champion's AUC and Brier on the new test slice, fairly.

    If the champion has not seen the slice, it is scored on it. If it has, but it was evaluated
    on the very same slice of the same data (an experiment on this week's data), its recorded
    test figures are the fair comparison. Otherwise `ChampionSawTestSlice`.
    """
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException:
        return None, None
    tags = version.tags or {}
    if saw_test_slice(tags.get("as_of"), test_cutoff):
        same_slice = (tags.get("test_cutoff") == str(test_cutoff)
                      and tags.get("data_fingerprint") == fingerprint)
        if same_slice and version.run_id:
            recorded = client.get_run(version.run_id).data.metrics
            if "model.roc_auc" in recorded and "model.brier" in recorded:
                return ({"roc_auc": recorded["model.roc_auc"], "brier": recorded["model.brier"]},
                        str(version.version))
        raise ChampionSawTestSlice(str(version.version), tags.get("as_of"))
    try:
        return (_evaluate(name, str(version.version), features, labels, root),
                str(version.version))
    except Exception as err:  # schema change etc.: the old champion cannot judge today's data
        log.warning("champion v%s cannot be evaluated on the current test slice (%s)",
                    version.version, type(err).__name__)
        return None, str(version.version)


_ARROW_TO_MLFLOW = (("bool", "boolean"), ("int", "long"), ("uint", "long"), ("float", "double"),
                   ("double", "double"), ("decimal", "double"), ("timestamp", "datetime"),
                   ("date", "datetime"), ("string", "string"), ("large_string", "string"),
                   ("dictionary", "string"))


def _mlflow_type(arrow_type: str) -> str:
    for prefix, name in _ARROW_TO_MLFLOW:
        if arrow_type.startswith(prefix):
            return name
    return "string"


def table_datasets(folder: str | Path, validation: dict | None = None) -> list:
    """One MLflow dataset per validated table: columns and types, rows, validation counts.

    Built from the Parquet footer (no rows are read, none are logged); identifier and personal
    columns are left out of the schema; the digest is the file's sha256.
    """
    import pyarrow.parquet as pq
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for table in TABLES:
        path = Path(folder) / f"{table}.parquet"
        if not path.is_file():
            continue
        meta = pq.ParquetFile(path)
        columns = [{"type": _mlflow_type(str(f.type)), "name": f.name, "required": False}
                   for f in meta.schema_arrow
                   if f.name.lower() not in PERSONAL_COLUMNS | ID_COLUMNS]
        counts = (validation or {}).get(table) or {}
        profile = {"num_rows": meta.metadata.num_rows, "num_columns": len(meta.schema_arrow),
                   **{k: counts[k] for k in ("rows_in", "rows_accepted", "rows_quarantined")
                      if k in counts}}
        dataset = Dataset(name=table, digest=fingerprint_dir(path.parent, path.name)[:12],
                          source_type="local",
                          source=json.dumps({"uri": str(path.resolve())}),
                          schema=json.dumps({"mlflow_colspec": columns}),
                          profile=json.dumps(profile))
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "validated"),
                                                  InputTag("table", table)]))
    return inputs


def test_slice_dataset(mlflow, features: pd.DataFrame, labels: pd.Series, name: str,
                       root: str | Path = "."):
    """The test slice's feature rows and label, without identifier or personal columns."""
    drop = [c for c in features.columns if c.lower() in PERSONAL_COLUMNS | ID_COLUMNS]
    frame = features.drop(columns=drop).assign(label=labels.to_numpy())
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways", int hints
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(frame, targets="label", name=name,
                                       source=str(Path.cwd() / root / "data" / "features"))


def version_description(*, source: str, raw_dir: str, as_of: str | None, metrics: dict,
                        decision: dict, experiment: str, commit: str) -> str:
    """Plain text for a registered model version: data, as_of, test metrics, gate, promotion."""
    model = metrics.get("model") or {}
    gate = metrics.get("gate") or {}
    active = ((metrics.get("populations") or {}).get("active") or {}).get("model") or {}

    def fmt(block: dict, key: str) -> str:
        value = block.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        f"Data: {source} ({raw_dir}), as_of {as_of or 'unknown'}.",
        f"Test slice {metrics.get('test_cutoff')} ({metrics.get('n_test', '?')} customers): "
        f"ROC AUC {fmt(model, 'roc_auc')}, PR AUC {fmt(model, 'pr_auc')}, "
        f"Brier {fmt(model, 'brier')}"
        + (f"; active customers: ROC AUC {fmt(active, 'roc_auc')}" if active else "") + ".",
        f"Scorer: {gate.get('shipped', 'unknown')}.",
    ]
    if gate.get("summary"):
        lines.append(f"Gate: {gate['summary']}")
    lines.append(f"Promotion: {'champion' if decision.get('is_champion') else 'challenger'} "
                 f"({decision.get('reason', 'n/a')}).")
    lines.append(f"Experiment: {experiment}; commit {commit}.")
    return "\n".join(lines)


def log_saved_model(model_dir: Path, name: str = "model", registered_name: str | None = None):
    """Log an already saved churn model (`packaging.save_model`) into the active MLflow run, as
    the same pyfunc; returns the ModelInfo."""
    import mlflow.pyfunc

    from churnlens.packaging import saved_model_kwargs

    return mlflow.pyfunc.log_model(name=name, registered_model_name=registered_name,
                                   **saved_model_kwargs(Path(model_dir)))


def log_training_run(params: dict, metrics: dict, model_dir: Path, artifact_paths: list[Path],
                     fingerprint: str, test_features: pd.DataFrame, test_labels: pd.Series,
                     as_of: str | None = None, interim_dir: str | Path | None = None,
                     validation: dict | None = None, root: str | Path = ".") -> dict:
    """Log one training run, register the model as `challenger`, and maybe promote it to `champion`.

    `as_of` (data date) names the run; `interim_dir` (validated tables) and `validation`
    (validation.json) become the run's input datasets. Returns the promotion decision with its
    figures (also logged to the run). `root`: the project folder (its store, git state and
    `mlruns/`), the working directory by default.
    """
    mlflow = _mlflow(root)
    experiment = _experiment(mlflow, root)
    client = mlflow.MlflowClient()
    if (experiment.tags or {}).get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    register = bool(params.get("train", {}).get("register_model", True))
    git = git_state(root)
    commit = git["commit"] + ("-dirty" if git["dirty"] else "")
    dvc = dvc_context(git["branch"])
    source = data_source(params)
    raw_dir = str((params.get("data") or {}).get("raw_dir"))
    name = run_name(as_of, dvc["experiment"], source)
    model_name = registered_model_name(params)
    gate = metrics.get("gate") or {}
    tags = {
        "git_commit": commit,
        "git_dirty": "unknown" if git["dirty"] is None else str(git["dirty"]).lower(),
        "git_changed": ", ".join(git["changed"])[:500],
        "mlflow.source.git.commit": git["commit"],
        "data_fingerprint": fingerprint, "data_source": source, "data_raw_dir": raw_dir,
        "as_of": str(as_of), "test_cutoff": str(metrics.get("test_cutoff")),
        "scorer": str(gate.get("shipped")), "dvc_experiment": dvc["experiment"],
        "dvc_origin": dvc["origin"],
        "mlflow.note.content": f"Weekly churn model on {source}, as_of {as_of}. "
                               f"{gate.get('summary', '')}".strip(),
    }
    if git["branch"]:
        tags["mlflow.source.git.branch"] = git["branch"]
    tags.update({f"dvc_{key}": value for key, value in dvc.items()
                 if key in ("exp_name", "baseline_rev", "stage")})
    clean_stale_runs(client, experiment.experiment_id)
    with _sigterm_raises(), _this_process_tags() as owner:
        with mlflow.start_run(run_name=name, tags=owner) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})
            mlflow.log_metrics(numeric_metrics(metrics))
            mlflow.set_tags({k: v for k, v in tags.items() if v not in (None, "")})
            _log_datasets(mlflow, client, run.info.run_id, interim_dir, validation,
                          test_features, test_labels, str(metrics.get("test_cutoff")), root)
            for path in artifact_paths:
                if Path(path).is_file():
                    mlflow.log_artifact(str(path), artifact_path="reports")
            info = log_saved_model(Path(model_dir))
        # the run is FINISHED: only now does a version appear in the registry
        run_id = run.info.run_id
        decision = {"run_id": run_id, "run_name": name, "registered": register,
                    "registered_model": model_name if register else None}
        if register:
            decision.update(_register_and_promote(
                mlflow, client, info, Path(model_dir), owner, metrics, test_features,
                test_labels, model_name, fingerprint,
                describe={"source": source, "raw_dir": raw_dir, "as_of": as_of,
                          "experiment": dvc["experiment"], "commit": commit}, root=root))
            client.log_dict(run_id, decision, "promotion.json")
            client.set_tag(run_id, "promotion",
                           "champion" if decision["is_champion"] else "challenger")
    log.info("MLflow run %s (%s) logged to %s", decision["run_id"], name,
             tracking_uri(root).split("?")[0])
    return decision


def _experiment(mlflow, root: str | Path = "."):
    """The `churnlens` experiment, made active. MLflow keeps a new experiment's artifacts under
    the working directory's `mlruns/`; one created for a project folder `root` elsewhere keeps
    them under `root/mlruns/<id>` (SQLite stores), where the `chdir` into `root` put them."""
    folder = (Path.cwd() / root).resolve()
    db = sqlite_file(root=root)
    new = (db is not None and folder != Path.cwd().resolve()
           and mlflow.get_experiment_by_name(EXPERIMENT) is None)
    experiment = mlflow.set_experiment(EXPERIMENT)
    if new:
        connection = sqlite3.connect(str(db), timeout=30)
        try:
            with connection:
                connection.execute(
                    "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                    (f"{folder}/mlruns/{experiment.experiment_id}", experiment.experiment_id))
        finally:
            connection.close()
        experiment = mlflow.get_experiment(experiment.experiment_id)
    return experiment


# -- consistency after a kill ----------------------------------------------------------------
def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, ValueError):
        return None


@contextmanager
def _this_process_tags():
    pid = os.getpid()
    yield {PID_TAG: str(pid), STARTED_TAG: f"{_process_started(pid) or 0:.3f}",
           HOST_TAG: socket.gethostname()}


def owner_alive(tags: dict[str, str], started_ms: int | None = None) -> bool:
    """Whether the process that wrote these tags may still be running.

    A process on another host is assumed alive (we cannot look); a run from before these tags
    counts as alive for `LEGACY_STALE_S` after it started.
    """
    if PID_TAG not in tags:
        return bool(started_ms) and time.time() - started_ms / 1000 < LEGACY_STALE_S
    if tags.get(HOST_TAG) != socket.gethostname():
        return True
    try:
        pid, started = int(tags[PID_TAG]), float(tags.get(STARTED_TAG) or 0)
    except ValueError:
        return False
    now_started = _process_started(pid)
    return now_started is not None and (not started or abs(now_started - started) < 1.0)


def clean_stale_runs(client, experiment_id: str) -> dict[str, list[str]]:
    """Mark this experiment's RUNNING runs whose process is gone as KILLED, and undo the
    registry writes a killed training left behind: delete `pending` versions of dead processes
    (and versions of killed or failed runs without a state tag) after moving `champion` back to
    the version it pointed at before. Returns what was cleaned."""
    from mlflow.entities import RunStatus, ViewType

    killed = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'",
                                  run_view_type=ViewType.ALL, max_results=1000):
        if not owner_alive(run.data.tags, run.info.start_time):
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
            killed.append(run.info.run_id)
    deleted = []
    for model in client.search_registered_models(f"name LIKE '{REGISTERED_MODEL}%'"):
        for found in client.search_model_versions(f"name='{model.name}'"):
            version = client.get_model_version(model.name, found.version)  # with its aliases
            if _orphan(client, version):
                _undo_version(client, model.name, version)
                deleted.append(f"{model.name} v{version.version}")
    if killed or deleted:
        log.warning("cleaned up after killed training runs: %d run(s) marked KILLED %s, "
                    "%d unfinished model version(s) deleted %s", len(killed), killed,
                    len(deleted), deleted)
    return {"killed_runs": killed, "deleted_versions": deleted}


def _orphan(client, version) -> bool:
    tags = version.tags or {}
    state = tags.get(STATE_TAG)
    if state == "ready":
        return False
    if state == "pending":
        return not owner_alive(tags, version.creation_timestamp)
    if not version.run_id:  # registered by hand or by another tool: not ours to judge
        return False
    try:
        status = client.get_run(version.run_id).info.status
    except Exception:  # the run was deleted from the store
        return True
    return status in ("KILLED", "FAILED") and "champion" not in (version.aliases or [])


def _undo_version(client, name: str, version) -> None:
    tags = version.tags or {}
    if "champion" in (version.aliases or []):
        before = tags.get(CHAMPION_BEFORE_TAG)
        if before and before != "None":
            client.set_registered_model_alias(name, "champion", before)
            log.warning("%s: champion moved back from unfinished v%s to v%s", name,
                        version.version, before)
    client.delete_model_version(name, str(version.version))


@contextmanager
def _sigterm_raises():
    """Inside: SIGTERM raises SystemExit, so `finally` blocks and MLflow's run end still run."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _register_and_promote(mlflow, client, info, model_dir: Path, owner: dict, metrics,
                          test_features, test_labels, name: str, fingerprint: str,
                          describe: dict, root: str | Path = ".") -> dict:
    """Register the logged model as a `pending` version, set the aliases, describe it, mark it
    `ready`. Any exception (SIGTERM included) deletes the version and restores the champion."""
    from churnlens.packaging import model_digest

    try:
        before = str(client.get_model_version_by_alias(name, "champion").version)
    except mlflow.exceptions.MlflowException:
        before = None
    mv = mlflow.register_model(info.model_uri, name, tags={
        **owner, STATE_TAG: "pending", CHAMPION_BEFORE_TAG: str(before),
        DIGEST_TAG: model_digest(model_dir)})
    try:
        decision = _promote(mlflow, str(mv.version), metrics, test_features, test_labels, name,
                            fingerprint, root)
        _describe_version(client, decision, metrics, name, fingerprint=fingerprint, **describe)
        if decision["is_champion"]:
            client.set_registered_model_alias(name, "champion", decision["version"])
        client.set_model_version_tag(name, decision["version"], STATE_TAG, "ready")
    except BaseException:
        log.warning("training interrupted while registering %s v%s: version removed", name,
                    mv.version)
        _undo_version(client, name, client.get_model_version(name, str(mv.version)))
        raise
    return decision


def _log_datasets(mlflow, client, run_id, interim_dir, validation, features, labels,
                  test_cutoff, root: str | Path = ".") -> None:
    """Validated tables (summaries) and the test slice's feature rows as the run's inputs."""
    inputs = table_datasets(interim_dir, validation) if interim_dir else []
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
    if features is not None and len(features.columns):
        mlflow.log_input(test_slice_dataset(mlflow, features, labels,
                                            f"test_slice_{test_cutoff}", root), context="testing")


def _describe_version(client, decision, metrics, name, *, source, raw_dir, as_of, experiment,
                      commit, fingerprint) -> None:
    version = decision["version"]
    text = version_description(source=source, raw_dir=raw_dir, as_of=as_of, metrics=metrics,
                               decision=decision, experiment=experiment, commit=commit)
    client.update_model_version(name, version, description=text)
    model, gate = metrics.get("model") or {}, metrics.get("gate") or {}
    tags = {"data_source": source, "as_of": as_of, "test_cutoff": metrics.get("test_cutoff"),
            "scorer": gate.get("shipped"), "roc_auc": model.get("roc_auc"),
            "brier": model.get("brier"), "dvc_experiment": experiment, "git_commit": commit,
            "data_fingerprint": fingerprint,
            "gate_model_beats_simple": (gate.get("test") or {}).get("model_beats_simple")}
    for key, value in tags.items():
        if value is not None:
            client.set_model_version_tag(name, version, key,
                                         f"{value:.4f}" if isinstance(value, float) else
                                         str(value).lower() if isinstance(value, bool) else
                                         str(value))


def _promote(mlflow, version: str, metrics, test_features, test_labels, name: str,
             fingerprint: str | None = None, root: str | Path = ".") -> dict:
    """Challenger alias now; whether `version` should become champion (the caller moves it)."""
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, "challenger", version)
    new = {"roc_auc": metrics["model"]["roc_auc"], "brier": metrics["model"]["brier"]}
    try:
        champion, champion_version = _champion_figures(mlflow, test_features, test_labels, name,
                                                       metrics.get("test_cutoff"), fingerprint,
                                                       root)
        promote, reason = decide_promotion(new, champion)
        if champion is None and champion_version is not None:
            reason = f"champion v{champion_version} cannot score the current features"
    except ChampionSawTestSlice as seen:
        # no fair comparison on this slice: the new model, trained on newer data, takes over
        # when it passed its own gate (it beats the simple models on an honest test)
        champion, champion_version = None, seen.version
        promote = bool(((metrics.get("gate") or {}).get("test") or {}).get("model_beats_simple"))
        reason = (f"champion v{seen.version} learnt from this test slice (its data runs to "
                  f"{seen.as_of}, after the test cutoff {metrics.get('test_cutoff')}), so it "
                  "cannot be compared on it; the new model "
                  + ("beats the simple models on its test" if promote
                     else "does not beat the simple models on its test, so the champion stays"))
    log.info("model v%s: %s (%s); new AUC %.4f Brier %.4f; champion %s", version,
             "promoted to champion" if promote else "stays challenger", reason,
             new["roc_auc"], new["brier"], champion if champion else "none")
    return {"version": version, "is_champion": promote, "reason": reason, "new": new,
            "champion_before": champion, "champion_version_before": champion_version}


def _client_of_run(run_id: str, root: str | Path = "."):
    """(mlflow, MlflowClient) of the project's store, once `run_id` is known to be in it:
    `TrackingStoreMissing` when the store file is gone, `ChurnlensError` when the run is not in
    the store (another or a new `mlflow.db`)."""
    require_store(root)
    mlflow = _mlflow(root)
    client = mlflow.MlflowClient()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise ChurnlensError(f"MLflow run {run_id} is not in {tracking_uri(root)}") from None
    return mlflow, client


def log_to_run(run_id: str, artifact_paths: list[Path], metrics: dict[str, float] | None = None,
               artifact_dir: str = "explain", *, root: str | Path = ".") -> None:
    """Add artifacts (and metrics) of a later stage to the training run that made the model.

    `TrackingStoreMissing` when the store file is gone; `ChurnlensError` when the run is not in
    the store (another or a new `mlflow.db`).
    """
    _, client = _client_of_run(run_id, root)
    for path in artifact_paths:
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path=artifact_dir)
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, float(value))
    log.info("added %d artifacts to MLflow run %s", len(artifact_paths), run_id)


def log_texts_to_run(run_id: str, texts: dict[str, str], metrics: dict[str, float],
                     *, step: int = 0, artifact_dir: str = "outreach",
                     root: str | Path = ".") -> None:
    """Add text artifacts (name -> content, e.g. a curve as CSV) and metrics at `step` of a
    later stage to the training run that made the model (the export stage's uplift evaluation:
    one step per held-out list, so the run shows it week after week).

    `TrackingStoreMissing` when the store file is gone; `ChurnlensError` when the run is not in
    the store or MLflow refuses the write."""
    mlflow, client = _client_of_run(run_id, root)
    try:
        for name, text in texts.items():
            client.log_text(run_id, text, f"{artifact_dir}/{name}")
        for key, value in metrics.items():
            client.log_metric(run_id, key, float(value), step=int(step))
    except mlflow.exceptions.MlflowException as err:
        raise ChurnlensError(f"MLflow run {run_id}: {err}") from None
    log.info("added %d artifacts and %d metrics (step %d) to MLflow run %s", len(texts),
             len(metrics), step, run_id)


def move_champion(version: str | None, *, rollback: bool = False,
                  name: str = REGISTERED_MODEL) -> dict:
    """Point `champion` at `version` by hand; on rollback without a version, at the previous one.

    Only finished versions (`churnlens.state` not `pending`) qualify. The move is logged and
    recorded as tags on the model version it lands on.
    """
    require_store()
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    try:
        current = str(client.get_model_version_by_alias(name, "champion").version)
    except mlflow.exceptions.MlflowException:
        current = None
    if version is None:
        if not rollback or current is None:
            raise ChurnlensError("no version given and no champion to roll back from")
        older = [int(v.version) for v in client.search_model_versions(f"name='{name}'")
                 if int(v.version) < int(current)
                 and (v.tags or {}).get(STATE_TAG) != "pending"]
        if not older:
            raise ChurnlensError(f"champion v{current} is the oldest version: "
                                 "nothing to roll back to")
        version = str(max(older))
    try:
        target = client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException:
        raise ChurnlensError(f"model '{name}' has no version {version}") from None
    if (target.tags or {}).get(STATE_TAG) == "pending":
        raise ChurnlensError(f"model '{name}' version {version} is still being registered "
                             "(or its training was killed)")
    client.set_registered_model_alias(name, "champion", str(version))
    action = "rollback" if rollback else "promote"
    client.set_model_version_tag(name, str(version), "champion_set_by", action)
    client.set_model_version_tag(name, str(version), "champion_before", str(current))
    log.info("%s: champion %s v%s -> v%s", action, name, current, version)
    return {"action": action, "from": current, "to": str(version)}


def champion(name: str, root: str | Path = ".") -> dict[str, str] | None:
    """The version `champion` of registry entry `name` points at, with its `model_sha256` tag
    (None: no champion). `TrackingStoreMissing` when the store file is gone."""
    require_store(root)
    try:
        return _champion_from_sqlite(sqlite_file(root=root), name)
    except LookupError:
        pass  # not a local SQLite store of the schema read there: MLflow answers
    mlflow = _mlflow(root)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None  # no such registry entry, or no champion alias yet
        raise
    return {"version": str(version.version), "digest": (version.tags or {}).get(DIGEST_TAG),
            "run_id": version.run_id}


_CHAMPION_SQL = {
    "alias": "SELECT version FROM registered_model_aliases WHERE workspace = 'default' AND "
             "name = ? AND alias = 'champion'",
    "version": "SELECT run_id, current_stage FROM model_versions WHERE workspace = 'default' AND "
               "name = ? AND version = ?",
    "digest": "SELECT value FROM model_version_tags WHERE workspace = 'default' AND name = ? AND "
              "version = ? AND key = ?",
}


def _champion_from_sqlite(db: Path | None, name: str) -> dict[str, str] | None:
    """`champion(name)` read from the SQLite store with the standard library, as MLflow's SQL
    registry answers `get_model_version_by_alias` (no alias or a deleted version: None). It
    spares `churnlens score` importing MLflow (2.6-3.9 s of its run on the sample) when the
    registry only has to be read. `LookupError` when MLflow must answer instead: not a SQLite
    store, MLflow workspaces on, or a schema other than MLflow 3's (read-only: never changed)."""
    if db is None or os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").strip().lower() in (
            "1", "true") or os.environ.get("MLFLOW_WORKSPACE"):
        raise LookupError("not the default workspace of a local SQLite store")
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            alias = con.execute(_CHAMPION_SQL["alias"], (name,)).fetchone()
            if alias is None:
                return None
            version = con.execute(_CHAMPION_SQL["version"], (name, alias[0])).fetchone()
            if version is None or version[1] == "Deleted_Internal":
                return None
            digest = con.execute(_CHAMPION_SQL["digest"], (name, alias[0], DIGEST_TAG)).fetchone()
        finally:
            con.close()
    except sqlite3.Error as err:
        raise LookupError(str(err)) from None
    return {"version": str(alias[0]), "digest": digest[0] if digest else None,
            "run_id": version[0]}


def champion_version(name: str, root: str | Path = ".") -> str | None:
    """The version the `champion` alias of registry entry `name` points at (None: no champion)."""
    found = champion(name, root)
    return found["version"] if found else None


def download_model_version(name: str, version: str, target: str | Path,
                           root: str | Path = ".") -> Path:
    """Copy registered model `name` version `version` into the new folder `target`; when the
    version carries `model_sha256`, the copy must match it (`ModelFileError` otherwise)."""
    from churnlens.packaging import ModelFileError, model_digest

    mlflow = _mlflow(root)
    target = Path(target)
    target.mkdir(parents=True)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                      dst_path=str(target)))
    expected = (mlflow.MlflowClient().get_model_version(name, str(version)).tags
                or {}).get(DIGEST_TAG)
    if expected and model_digest(folder) != expected:
        raise ModelFileError(f"{name} v{version}: the files in the artifact store do not match "
                             f"the digest recorded at training ({DIGEST_TAG}); they were changed "
                             "or damaged: `churnlens rollback` or rerun `dvc repro -f -s train`")
    return folder
