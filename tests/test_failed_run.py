"""A failed or killed stage leaves the last good outputs in place (issue 12 part 1).

DVC deletes a stage's outputs before it runs it, unless they are `persist: true`; every output in
`dvc.yaml` is, and every stage writes each output through `churnlens.io.atomic_path` (a file by
one rename, a folder by one atomic exchange). These tests run real `dvc repro` in a copy of the
repository and break one stage at a time, the way it breaks in production, without a test hook in
the code: `sitecustomize.py` on `PYTHONPATH` (active only in `churnlens` processes) wraps
`churnlens.io.atomic_path` so that a stage's first write finds a full disk or a read-only folder,
crashes, or hangs until the test SIGKILLs the process group of `dvc repro`; bad input and a
single-class label fail the stage on their own. After each failure every pipeline output (model
folder, metrics, promotion, plots, lists, report, validation, predictions, ...) is byte-identical
to the last good run, and the next `dvc repro` recovers.

Fast: the validate stage in a small copy (generate, privacy, validate). Slow: a whole small run,
then every stage failing, the train stage killed at two points, and the recovery.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
N_CUSTOMERS = 400

# Wraps churnlens.io.atomic_path in `churnlens` processes when CHURNLENS_TEST_FAULT is set:
# {"kind": "disk_full" | "read_only" | "crash" | "hang", "name": file name or null (= the stage's
#  first write), "marker": path written when "hang" starts}.
FAULT_HOOK = '''
import json, os, sys
_SPEC = os.environ.get("CHURNLENS_TEST_FAULT")
if _SPEC and os.path.basename(sys.argv[0] if sys.argv else "") == "churnlens":
    import contextlib, errno, time
    from pathlib import Path
    import churnlens.io as _io

    _FAULT, _PLAIN, _SEEN = json.loads(_SPEC), _io.atomic_path, []

    @contextlib.contextmanager
    def _faulty(target):
        _SEEN.append(str(target))
        name, kind = _FAULT.get("name"), _FAULT["kind"]
        if (Path(target).name != name) if name else len(_SEEN) > 1:
            with _PLAIN(target) as tmp:
                yield tmp
            return
        if kind == "read_only":
            raise PermissionError(errno.EACCES, "Permission denied", str(Path(target).parent))
        with _PLAIN(target) as tmp:
            yield tmp                        # the stage writes its whole new output here
            if kind == "disk_full":
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
            if kind == "crash":
                raise RuntimeError("injected crash")
            Path(_FAULT["marker"]).write_text(str(os.getpid()))
            time.sleep(600)                  # "hang": the test kills the process group

    _io.atomic_path = _faulty
'''


# -- a copy of the repository ----------------------------------------------------------------------
def _env(repo: Path, fault: dict | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{repo}/mlflow.db",
                "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"})
    env.pop("VIRTUAL_ENV", None)
    env.pop("CHURNLENS_TEST_FAULT", None)
    if fault is not None:
        hook = repo.parent / "fault_hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(FAULT_HOOK)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
        env["CHURNLENS_TEST_FAULT"] = json.dumps(fault)
    return env


def dvc(repo: Path, *args: str, fault: dict | None = None, ok: bool = True) -> str:
    done = subprocess.run(["dvc", *args], cwd=repo, env=_env(repo, fault), capture_output=True,
                          text=True)
    text = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, f"dvc {' '.join(args)}: {done.returncode}\n{text[-4000:]}"
    return text


def make_repo(dest: Path) -> Path:
    """A copy of the working tree without pipeline outputs, on a small sample."""
    from pipeline_helpers import small_params
    from test_dvc_experiments import _copy_worktree

    _copy_worktree(dest)
    (dest / "params.yaml").write_text(yaml.safe_dump(small_params(N_CUSTOMERS), sort_keys=False))
    return dest


def outputs(repo: Path) -> list[str]:
    """Every `outs`/`metrics` path in the copy's dvc.yaml (with `${...}` resolved)."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    found = []
    for stage in spec["stages"].values():
        for item in stage.get("outs", []) + stage.get("metrics", []):
            path = next(iter(item)) if isinstance(item, dict) else item
            found.append(path.replace("${generate.out_dir}", params["generate"]["out_dir"]))
    return found


def snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file of every output present (folders file by file), and of dvc.lock."""
    digests = {}
    for rel in [*outputs(repo), "dvc.lock"]:
        path = repo / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.exists():
                digests[str(file.relative_to(repo))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def assert_unchanged(repo: Path, before: dict[str, str], what: str, but: str = "\0") -> None:
    """Every output file as in `before` (except those starting with `but`)."""
    before = {k: v for k, v in before.items() if not k.startswith(but)}
    after = {k: v for k, v in snapshot(repo).items() if not k.startswith(but)}
    missing = sorted(set(before) - set(after))
    changed = sorted(k for k in before if k in after and after[k] != before[k])
    extra = sorted(set(after) - set(before))
    assert not (missing or changed or extra), (
        f"{what}: missing {missing[:8]}, changed {changed[:8]}, new {extra[:8]}")


def debris(repo: Path) -> list[str]:
    """Hidden temp folders of atomic writes (`.NAME.PID.RANDOM`) left next to outputs."""
    folders = {(repo / rel).parent for rel in outputs(repo)}
    return sorted(str(p.relative_to(repo)) for folder in folders if folder.is_dir()
                  for p in folder.iterdir() if p.name.startswith(".") and p.is_dir())


def test_every_pipeline_output_is_persistent():
    """Without `persist: true` DVC deletes an output before its stage runs, so a failed run
    leaves nothing (and `cache: false` outputs cannot even be checked out again)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for name, stage in spec["stages"].items():
        for item in stage.get("outs", []) + stage.get("metrics", []):
            path, options = (item, {}) if isinstance(item, str) else next(iter(item.items()))
            assert (options or {}).get("persist") is True, f"stage {name}: {path} not persist"


# A writer of a folder killed at each step of the swap: after the next write of that folder (which
# fails here), the folder is the old or the new one, whole, and no temp folder is left.
SWAP_CHILD = """
import os, signal, sys
import churnlens.io as io
target, exchange, kill_at = sys.argv[1], sys.argv[2], sys.argv[3]
if exchange == "off":
    io._exchange = lambda a, b: False            # as on a system without renameat2
real_replace, real_exchange, calls = os.replace, getattr(io, "_exchange", None), []

def step(name, real):
    def wrapped(*args):
        result = real(*args)
        calls.append(name)
        if f"{name}-{calls.count(name)}" == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapped

os.replace = step("replace", real_replace)
if real_exchange is not None and exchange == "on":
    io._exchange = step("exchange", real_exchange)
with io.atomic_path(target) as tmp:
    tmp.mkdir()
    (tmp / "new.txt").write_text("new")
    if kill_at == "body":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("exchange,kill_at", [
    ("on", "body"), ("on", "exchange-1"), ("off", "replace-1"), ("off", "replace-2")])
def test_a_folder_swap_killed_at_any_step_leaves_a_whole_folder(tmp_path, exchange, kill_at):
    from churnlens.io import atomic_path

    target = tmp_path / "churn_model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    done = subprocess.run([sys.executable, "-c", SWAP_CHILD, str(target), exchange, kill_at])
    assert done.returncode in (0, -signal.SIGKILL)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        raise RuntimeError("the next run fails too")
    contents = {p.name: p.read_text() for p in target.iterdir()}
    assert contents in ({"old.txt": "old"}, {"new.txt": "new"}), contents
    assert [p.name for p in tmp_path.iterdir()] == ["churn_model"]


def test_cleanup_spares_other_outputs_and_live_writers(tmp_path):
    """`.a.csv.PID.X` belongs to `a.csv`, not to `a`; a running writer's folder is kept."""
    from churnlens.io import recover

    sibling = tmp_path / ".a.csv.1.abc"          # debris of another output (a.csv)
    live = tmp_path / f".a.{os.getppid()}.xyz"     # a writer of `a` that is still running
    dead = tmp_path / ".a.999999999.def"
    for folder in (sibling, live, dead):
        (folder / "old").mkdir(parents=True)
    recover(tmp_path / "a")
    assert sibling.exists() and live.exists() and not dead.exists()
    assert (tmp_path / "a").is_dir()              # the dead writer's moved-aside folder is back


# -- fast: the validate stage ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def validated(tmp_path_factory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("validated") / "repo")
    dvc(repo, "repro", "validate")
    return repo


def test_a_failed_validate_keeps_the_validated_tables(validated):
    """Disk full while validate writes (the whole new data/interim is in its temp folder), then a
    raw file without a required column: data/interim, quarantine and validation.json stay."""
    repo = validated
    before = snapshot(repo)
    assert "data/interim/validation.json" in before and "data/interim/customers.parquet" in before
    assert any(k.startswith("data/interim/quarantine/") for k in before)

    text = dvc(repo, "repro", "-f", "-s", "validate", fault={"kind": "disk_full"}, ok=False)
    assert "No space left on device" in text
    assert_unchanged(repo, before, "validate, disk full")

    customers = repo / "data/sample/customers.csv"
    good = customers.read_bytes()
    customers.write_text("id,signup\n1,2025-01-01\n")        # no customer_id / signup_date
    try:
        dvc(repo, "repro", "-s", "validate", ok=False)
        assert_unchanged(repo, before, "validate, unusable customers file", but="data/sample/")
    finally:
        customers.write_bytes(good)
    assert debris(repo) == []
    assert "up to date" in dvc(repo, "status", "validate").lower()


# -- slow: a whole run -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("good_run") / "repo")
    dvc(repo, "repro")
    return repo


# stage -> how it fails: a full disk, a read-only folder or a crash at its first write
STAGE_FAULTS = {
    "generate": "crash", "privacy": "read_only", "validate": "disk_full", "features": "disk_full",
    "train": "read_only", "score": "disk_full", "drift": "crash", "explain": "disk_full",
    "export": "read_only", "kpis": "crash", "report": "disk_full",
}


@pytest.mark.slow
def test_every_output_of_a_good_run_is_covered(good_run):
    files = snapshot(good_run)
    for rel in ("models/churn_model/MLmodel", "reports/metrics.json", "reports/promotion.json",
                "reports/plots/calibration.csv", "reports/plots/calibration.png",
                "reports/at_risk.csv", "reports/weekly_report.html",
                "data/interim/validation.json", "data/processed/predictions.parquet",
                "reports/scores.parquet", "reports/headline_metrics.json"):
        assert rel in files, rel


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGE_FAULTS))
def test_a_failing_stage_keeps_every_output(good_run, stage):
    before = snapshot(good_run)
    dvc(good_run, "repro", "-f", "-s", stage, fault={"kind": STAGE_FAULTS[stage]}, ok=False)
    assert_unchanged(good_run, before, f"{stage} failed ({STAGE_FAULTS[stage]})")


@pytest.mark.slow
def test_a_single_class_label_keeps_the_model_and_reports(good_run):
    """train refuses a single-class label; restore the features with `dvc checkout`."""
    import pandas as pd

    before = snapshot(good_run)
    training = good_run / "data/features/training.parquet"
    rows = pd.read_parquet(training)
    rows.assign(label=0).to_parquet(training, index=False)
    text = dvc(good_run, "repro", "-s", "train", ok=False)
    assert "single class" in text
    dvc(good_run, "checkout", "--force", "data/features/training.parquet")
    assert_unchanged(good_run, before, "train, single-class label")


@pytest.mark.slow
@pytest.mark.parametrize("where", [None, "churn_model"], ids=["first-write", "model-folder"])
def test_a_killed_train_keeps_every_output_and_the_next_repro_recovers(good_run, where):
    """SIGKILL the process group of `dvc repro` while train writes (its first output, or the
    model folder, complete in its temp folder but not yet swapped in)."""
    import pandas as pd

    from churnlens.packaging import feature_columns_of, load_model, to_model_input

    before = snapshot(good_run)
    marker = good_run.parent / "hanging.pid"
    marker.unlink(missing_ok=True)
    fault = {"kind": "hang", "name": where, "marker": str(marker)}
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", "train"], cwd=good_run,
                            env=_env(good_run, fault), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), f"train never reached its write (dvc exit {proc.poll()})"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert_unchanged(good_run, before, f"train killed at {where or 'its first write'}")
    model = load_model(good_run / "models/churn_model")
    scoring = pd.read_parquet(good_run / "data/features/scoring.parquet")
    columns = feature_columns_of(good_run / "models/churn_model")
    assert len(model.predict(to_model_input(scoring.head(20), columns))) == 20

    dvc(good_run, "repro", "-f", "-s", "train")     # recovers: cleans the killed run's debris
    dvc(good_run, "repro")
    status = dvc(good_run, "status")
    assert set(re.findall(r"\t(.+)", status)) <= {"always changed"}, status   # privacy, score
    assert debris(good_run) == []

