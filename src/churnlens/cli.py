"""`churnlens` command line: one command per DVC stage. Stage modules are imported lazily."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

from churnlens.errors import ChurnlensError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

PARAMS = typer.Option(Path("params.yaml"), "--params", help="params file")
RAW_DIR = typer.Argument(None, help="folder of raw tables (default: data.raw_dir)")
OUT_DIR = typer.Argument(None, help="output folder (default: data/interim)")


def _run_stage(stage: str, *args, **kwargs) -> None:
    """Run `churnlens.stages.<stage>.run`, turning user errors into one line on stderr + exit 1."""
    from churnlens.logs import setup_logging

    setup_logging(stage)
    try:
        module = importlib.import_module(f"churnlens.stages.{stage}")
        module.run(*args, **kwargs)
    except ChurnlensError as err:
        print(f"churnlens {stage}: error: {err}", file=sys.stderr)
        raise typer.Exit(1) from None


@app.command()
def generate(params: Path = PARAMS) -> None:
    """Write the synthetic sample data set (params `generate`)."""
    _run_stage("generate", params)


@app.command()
def privacy(params: Path = PARAMS) -> None:
    """Record whether ids are pseudonymised and the salt's fingerprint (data/privacy.json)."""
    _run_stage("privacy", params)


@app.command()
def validate(
    raw_dir: Path = RAW_DIR, out_dir: Path = OUT_DIR, params: Path = PARAMS,
) -> None:
    """Validate RAW_DIR; write accepted tables, quarantine and validation.json to OUT_DIR.

    Without arguments (as `dvc.yaml` calls it) RAW_DIR is `data.raw_dir` from the params file:
    the path never passes through a shell, so spaces and quotes in it are safe.
    """
    if raw_dir is None:
        from churnlens.config import load_params

        try:
            raw_dir = Path(str(load_params(params)["data"]["raw_dir"]))
        except (OSError, ChurnlensError, KeyError, TypeError) as err:
            print(f"churnlens validate: error: no RAW_DIR given and no data.raw_dir in {params} "
                  f"({err})", file=sys.stderr)
            raise typer.Exit(1) from None
    _run_stage("validate", raw_dir, out_dir or Path("data/interim"), params)


@app.command()
def features(params: Path = PARAMS) -> None:
    """Point-in-time features and labels at every cutoff."""
    _run_stage("features", params)


@app.command()
def train(params: Path = PARAMS) -> None:
    """Train, calibrate and evaluate the model; log the run to MLflow."""
    _run_stage("train", params)


@app.command()
def score(params: Path = PARAMS) -> None:
    """Score every active customer at as_of."""
    _run_stage("score", params)


@app.command()
def drift(params: Path = PARAMS) -> None:
    """Population stability of each feature, training snapshots vs today."""
    _run_stage("drift", params)


@app.command()
def explain(params: Path = PARAMS) -> None:
    """SHAP reasons for the at-risk customers and a sample of the rest."""
    _run_stage("explain", params)


@app.command()
def export(params: Path = PARAMS) -> None:
    """Write the ranked at-risk CSV for the customer-success team."""
    _run_stage("export", params)


@app.command()
def kpis(params: Path = PARAMS) -> None:
    """Retention KPIs for the last period and the one before."""
    _run_stage("kpis", params)


@app.command()
def report(params: Path = PARAMS) -> None:
    """Render the weekly HTML report."""
    _run_stage("report", params)


@app.command()
def promote(version: str, params: Path = PARAMS) -> None:
    """Make model VERSION the champion (by hand) for the data source in params; the next
    `dvc repro` scores with it."""
    _run_registry(version, rollback=False, params=params)


@app.command()
def rollback(
    version: str = typer.Argument(None, help="default: the version before the champion"),
    params: Path = PARAMS,
) -> None:
    """Move the champion alias back to VERSION or the previous version; the next `dvc repro`
    scores with it."""
    _run_registry(version, rollback=True, params=params)


def _run_registry(version: str | None, rollback: bool, params: Path) -> None:
    from churnlens.logs import setup_logging

    setup_logging("registry")
    try:
        from churnlens.config import load_params
        from churnlens.tracking import move_champion, registered_model_name

        name = registered_model_name(load_params(params))
        move = move_champion(version, rollback=rollback, name=name)
    except ChurnlensError as err:
        print(f"churnlens {'rollback' if rollback else 'promote'}: error: {err}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"champion: v{move['from']} -> v{move['to']}")


if __name__ == "__main__":
    app()
