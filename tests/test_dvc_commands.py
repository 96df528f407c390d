"""No params value reaches a shell: `dvc.yaml` commands hold no `${...}`, and `churnlens validate`
without arguments reads `data.raw_dir` itself (issue 12: a folder named `x;touch PWNED;y` ran
`touch`, a folder with a space failed with a usage error)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from churnlens.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_no_stage_command_interpolates_a_param():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert "${" not in str(stage["cmd"]), f"stage {name}: {stage['cmd']}"


def test_validate_without_arguments_reads_raw_dir_from_params(tmp_path, monkeypatch):
    raw = tmp_path / "my 'logs;touch PWNED;y $(id)"
    raw.mkdir()
    pd.DataFrame({"customer_id": ["a", "b"], "signup_date": ["2025-01-01", "2025-02-01"]}
                 ).to_csv(raw / "customers.csv", index=False)
    pd.DataFrame({"customer_id": ["a"], "timestamp": ["2025-03-01"], "amount": [5.0]}
                 ).to_csv(raw / "transactions.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"raw_dir": str(raw)}}))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data/interim/customers.parquet").exists()
    assert not list(tmp_path.rglob("PWNED"))


def test_validate_without_arguments_or_params_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 1
    assert "no RAW_DIR given" in result.output and "Traceback" not in result.output
