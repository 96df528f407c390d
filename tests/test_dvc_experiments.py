"""Experiments are comparable in DVC: headline metrics in `dvc exp show`, git-tracked reports.

Fast: dvc.yaml declares one small metrics file, the metrics/plots files are not git-ignored, and
the train stage writes that file with a handful of numeric figures (no timestamps).
Slow: a throw-away copy of the repository, a committed baseline and two `dvc exp run -S ...`, then
`dvc exp show`, `dvc metrics diff`, `dvc params diff` and `dvc plots diff` as a user runs them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = "reports/headline_metrics.json"
# Git-tracked `cache: false` reports, readable with `dvc metrics show FILE`.
REPORT_JSONS = ("data/interim/validation.json", "reports/metrics.json", "reports/kpis.json",
                "reports/drift.json")
HEADLINE_COLUMNS = {"rows", "churn_rate"} | {
    f"{scorer}.{key}" for scorer in ("model", "recency", "logistic")
    for key in ("roc_auc", "pr_auc", "brier", "ece")}
# The README's comparison command: only what differs between experiments, plus the headline.
COMPARE = ["dvc", "exp", "show", "--csv", "--only-changed", "--drop", ".*/",
           "--keep", r"^(rows|churn_rate|model\.|recency\.|logistic\.)"]


def _dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _entries(items) -> list[str]:
    return [next(iter(item)) if isinstance(item, dict) else item for item in items or []]


def declared_metrics(spec: dict) -> list[str]:
    files = _entries(spec.get("metrics"))
    for stage in spec["stages"].values():
        files += _entries(stage.get("metrics"))
    return files


def declared_plots(spec: dict) -> list[str]:
    files = []
    for stage in spec["stages"].values():
        files += _entries(stage.get("plots"))
    for item in spec.get("plots") or []:
        definition = next(iter(item.values())) if isinstance(item, dict) else None
        if isinstance(definition, dict) and isinstance(definition.get("y"), dict):
            files += list(definition["y"])
        else:
            files += _entries([item])
    return files


def numeric_leaves(obj) -> list:
    if isinstance(obj, dict):
        return [leaf for value in obj.values() for leaf in numeric_leaves(value)]
    if isinstance(obj, list):
        return [leaf for value in obj for leaf in numeric_leaves(value)]
    return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


# -- fast ----------------------------------------------------------------------------------------
def test_dvc_yaml_declares_only_the_headline_metrics_file():
    assert declared_metrics(_dvc_yaml()) == [HEADLINE]


def test_metrics_plots_and_reports_are_tracked_by_git_and_not_cached():
    spec = _dvc_yaml()
    outs = {}
    for stage in spec["stages"].values():
        for item in stage.get("outs", []) + stage.get("metrics", []):
            if isinstance(item, dict):
                outs.update(item)
    files = [*declared_metrics(spec), *declared_plots(spec), *REPORT_JSONS]
    assert len(declared_plots(spec)) >= 5
    for path in files:
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
        assert ignored.returncode == 1, f"{path} is git-ignored: no revision would keep it"
        assert outs.get(path, {}).get("cache") is False, f"{path}: declare it `cache: false`"


def test_train_stage_writes_a_small_deterministic_headline_file(tmp_path, monkeypatch):
    import churnlens.tracking as tracking
    from churnlens.stages import train as stage
    from test_train_stage import AS_OF, PARAMS, feature_rows

    monkeypatch.setattr(tracking, "log_training_run",
                        lambda **kwargs: {"run_id": "fake", "registered": False})
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump(PARAMS))
    Path("data/features").mkdir(parents=True)
    Path("data/interim").mkdir(parents=True)
    Path("data/interim/validation.json").write_text("{}")
    Path("data/features/meta.json").write_text(json.dumps({"as_of": AS_OF.isoformat()}))
    feature_rows().to_parquet("data/features/training.parquet", index=False)

    result = stage.run("params.yaml")
    text = Path(HEADLINE).read_text()
    headline = json.loads(text)
    leaves = numeric_leaves(headline)
    assert 0 < len(leaves) < 30
    assert len(leaves) == len(HEADLINE_COLUMNS)  # numbers only: no dates, no run ids
    flat = set()
    for key, value in headline.items():
        flat |= {f"{key}.{name}" for name in value} if isinstance(value, dict) else {key}
    assert set(flat) == HEADLINE_COLUMNS
    metrics = result["metrics"]
    assert headline["rows"] == metrics["n_test"]
    assert headline["model"]["roc_auc"] == pytest.approx(metrics["model"]["roc_auc"], abs=1e-6)
    assert headline["recency"]["brier"] == pytest.approx(
        metrics["baselines"]["recency"]["brier"], abs=1e-6)


# -- slow: two experiments in a copy of the repository ------------------------------------------
def _env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{repo}/mlflow.db",
                "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
                "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"})
    env.pop("VIRTUAL_ENV", None)
    return env


def _pipeline_outputs(spec: dict) -> set[str]:
    return {path for stage in spec["stages"].values()
            for path in _entries(stage.get("outs")) + _entries(stage.get("metrics"))}


def _copy_worktree(dest: Path) -> None:
    """A clone holding the current working tree (tracked + untracked, not ignored) minus the
    pipeline's outputs, so the baseline run writes them afresh."""
    outputs = _pipeline_outputs(_dvc_yaml())
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src, dst = ROOT / rel, dest / rel
        if src.is_file() and rel not in outputs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.is_file():
            dst.unlink()


@pytest.mark.slow
def test_two_experiments_compare_in_dvc(tmp_path):
    repo = tmp_path / "repo"
    _copy_worktree(repo)
    env = _env(repo)

    def run(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        tail = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{tail}"
        return done.stdout + done.stderr

    run("git", "add", "-A")
    run("git", "commit", "--quiet", "--allow-empty", "-m", "test: working tree")
    run("dvc", "repro")                      # the baseline, committed the get-started way
    tracked = run("git", "status", "--porcelain", "--untracked-files=all")
    for path in (HEADLINE, "reports/metrics.json", "dvc.lock"):
        assert path in tracked, f"{path} is not shown by git status after dvc repro"
    run("git", "add", "-A")
    run("git", "commit", "--quiet", "-m", "test: baseline results")
    assert run("git", "status", "--porcelain").strip() == ""

    run("dvc", "exp", "run", "-n", "leaves-7", "-S", "train.lgbm.num_leaves=7")
    run("dvc", "exp", "run", "-n", "leaves-31", "-S", "train.lgbm.num_leaves=31")

    plain = list(csv.DictReader(io.StringIO(run("dvc", "exp", "show", "--csv"))))
    compare_text = run(*COMPARE)
    compare = list(csv.DictReader(io.StringIO(compare_text)))
    print(f"\ndvc exp show --csv: {len(plain[0])} columns; "
          f"{' '.join(COMPARE)}: {len(compare[0])} columns\n{compare_text}")
    for table in (plain, compare):
        assert HEADLINE_COLUMNS <= set(table[0]), set(table[0])
        names = {row["Experiment"] for row in table}
        assert {"leaves-7", "leaves-31"} <= names
        for row in table:
            for column in HEADLINE_COLUMNS:
                float(row[column])           # every revision has every figure: no "!" or ""
    assert len(compare[0]) < 30
    assert "train.lgbm.num_leaves" in compare[0]
    by_name = {row["Experiment"]: row for row in compare}
    assert by_name["leaves-7"]["train.lgbm.num_leaves"] == "7"
    assert by_name["leaves-7"]["model.roc_auc"] != by_name["leaves-31"]["model.roc_auc"]

    diff = run("dvc", "metrics", "diff", "--json", "HEAD", "leaves-7")
    assert "failed" not in diff.lower()
    changes = json.loads(diff)[HEADLINE]
    assert {"model.roc_auc", "model.brier"} <= set(changes)
    full = run("dvc", "metrics", "diff", "--targets", "reports/metrics.json", "--", "HEAD",
               "leaves-31")
    assert "failed" not in full.lower() and "model.roc_auc" in full
    assert "failed" not in run("dvc", "metrics", "show", "reports/kpis.json").lower()

    params = run("dvc", "params", "diff", "HEAD", "leaves-31")
    assert "train.lgbm.num_leaves" in params and "31" in params

    plots = json.loads(run("dvc", "plots", "diff", "--json", "HEAD", "leaves-7"))
    assert not plots.get("errors"), plots.get("errors")
    assert "Calibration (test slice)" in plots["data"]
    revisions = {point.get("rev") for block in plots["data"]["Calibration (test slice)"]
                 for point in block.get("content", {}).get("data", {}).get("values", [])}
    print("plots diff revisions:", revisions)


def test_make_exp_show_is_the_tested_comparison_command():
    """`make exp-show` (the README's short view) runs exactly the command checked above."""
    import shlex

    lines = (ROOT / "Makefile").read_text().splitlines()
    recipe = lines[next(i for i, line in enumerate(lines) if line.startswith("exp-show:")) + 1]
    command = shlex.split(recipe.strip())
    assert command == [part for part in COMPARE if part != "--csv"]
