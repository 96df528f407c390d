"""The README's and docs' commands work as written (issue 11: `dvc repro -S` did not exist).

Fast: every command in a ```bash block names a real program, subcommand and option, and every
file the docs point to is in the repository. Slow: the own-data commands run for real in a
fresh clone on a plain purchase log.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
PROGRAMS = {"make", "source", "export", "churnlens", "dvc", "mlflow", "python"}


def commands(path: Path) -> list[list[str]]:
    """Each command line of the file's bash blocks, split into words, comments dropped."""
    out = []
    for block in BLOCK.findall(path.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(words)
    return out


@cache
def help_text(*words: str) -> str:
    tool = BIN / words[0]
    proc = subprocess.run([str(tool), *words[1:], "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert proc.returncode == 0, (words, proc.stderr[-500:])
    return proc.stdout


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.M))


def check(words: list[str]) -> None:
    program, rest = words[0], words[1:]
    assert program in PROGRAMS, f"unexpected program in docs: {words}"
    if program == "make":
        assert set(rest) <= make_targets(), words
    elif program == "export":
        assert all(re.fullmatch(r"[A-Z_]+=\S+", w) for w in rest), words
    elif program == "source":
        assert (REPO / rest[0]).name == "activate" and rest[0].startswith(".venv/"), words
    elif program in ("churnlens", "dvc", "mlflow"):
        sub = [w for w in rest if not w.startswith("-")][: 2 if program == "dvc" else 1]
        if program == "dvc" and sub and sub[0] not in ("exp", "metrics", "plots", "params"):
            sub = sub[:1]
        text = help_text(program, *sub)
        for flag in (w.split("=")[0] for w in rest if w.startswith("-")):
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}([\s,=\]]|$)", text, re.M), (
                f"{' '.join(words)}: `{flag}` is not an option of `{program} {' '.join(sub)}`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_documented_command_exists_with_its_options(doc):
    found = commands(doc)
    for words in found:
        check(words)


def test_the_check_catches_an_option_that_does_not_exist():
    with pytest.raises(AssertionError, match="-S"):
        check(["dvc", "repro", "-S", "data.raw_dir=/x"])
    check(["dvc", "exp", "run", "-S", "data.raw_dir=/x"])


def test_docs_point_only_to_files_in_the_repository():
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        assert "../shared" not in text, doc.name
        for path in re.findall(r"`((?:docs|src|scripts|tests)/[\w./-]+\.\w+)`", text):
            assert (REPO / path).exists(), f"{doc.name} points to missing {path}"


def purchase_log(folder: Path) -> Path:
    """A plain purchase log: 60 customers, a year of monthly-ish purchases, some lapsing."""
    folder.mkdir(parents=True)
    rows, customers = [], []
    for i in range(60):
        start = pd.Timestamp("2025-01-01") + pd.Timedelta(days=3 * i)
        customers.append({"customer_id": f"{i:04d}", "signup_date": start.date().isoformat()})
        stop = start + pd.Timedelta(days=60 + 7 * (i % 40))
        day = start
        while day <= min(stop, pd.Timestamp("2025-12-31")):
            rows.append({"customer_id": f"{i:04d}", "timestamp": day.isoformat(),
                         "amount": 10.0 + i % 7})
            day += pd.Timedelta(days=20 + i % 15)
    pd.DataFrame(customers).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame(rows).to_csv(folder / "transactions.csv", index=False)
    return folder


@pytest.mark.slow
def test_own_data_commands_run_in_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    logs = purchase_log(tmp_path / "my logs")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    for words in commands(REPO / "README.md"):
        if words[:2] == ["churnlens", "validate"]:
            words = ["churnlens", "validate", str(logs), str(tmp_path / "checked")]
        elif words[:3] == ["dvc", "exp", "run"]:
            words = ["dvc", "exp", "run", "-S", f"data.raw_dir={logs}",
                     "-S", "train.register_model=false"]
        else:
            continue
        proc = subprocess.run(words, cwd=clone, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, (words, proc.stderr[-2000:])
    assert (tmp_path / "checked" / "validation.json").exists()
    scores = pd.read_parquet(clone / "reports/scores.parquet")
    assert len(scores) == 60
