"""`churnlens` command line: one command per DVC stage. Stage modules are imported lazily."""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path

# How idle worker threads wait, read once when each runtime loads: set before any stage imports
# LightGBM, scikit-learn or numpy. OpenMP (LightGBM, scikit-learn) and OpenBLAS (numpy, scipy:
# the logistic fits) spin-wait by default; on a busy machine the spinning threads steal the
# cores the working ones need (churnlens train 906 s -> 124 s at load 13-18 with PASSIVE; one
# logistic fit 1.7 -> 0.2 CPU-s with the short OpenBLAS timeout; README "Benchmark"). Results do
# not change: the thread counts and how work is split stay the same, only waiting changes.
# A value already in the environment wins: OMP_WAIT_POLICY=ACTIVE on a machine of its own, where
# spinning LightGBM threads were faster (1.1 vs 1.8-3.6 s for three fits at load ~1).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")   # 2**4 cycles of spinning, the minimum

import typer  # noqa: E402

from churnlens.errors import ChurnlensError, ParamsError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

PARAMS = typer.Option(Path("params.yaml"), "--params", help="params file")
RAW_DIR = typer.Argument(None, help="folder of raw tables (default: data.raw_dir)")
OUT_DIR = typer.Argument(None, help="output folder (default: data/interim)")


DEBUG_ENV = "CHURNLENS_DEBUG"   # =1: an unexpected error shows its Python traceback on stderr


def _run_stage(stage: str, *args, **kwargs) -> None:
    """Run `churnlens.stages.<stage>.run`; any error becomes one line on stderr and exit 1.

    A user error (`ChurnlensError`: bad params, bad input, missing earlier output) is its own
    message. Anything else (a bug, a full disk, DuckDB out of memory) is one line naming what
    happened and the stage log holding the full traceback (`churnlens.logs.log_path`); with
    CHURNLENS_DEBUG=1 the traceback also goes to stderr.
    """
    from churnlens.logs import setup_logging

    setup_logging(stage)
    try:
        module = importlib.import_module(f"churnlens.stages.{stage}")
        module.run(*args, **kwargs)
    except ChurnlensError as err:
        _fail(stage, str(err))
    except KeyboardInterrupt:
        _fail(stage, "interrupted", code=130)
    except Exception as err:  # noqa: BLE001 - the one place every other error becomes one line
        _fail_unexpected(stage, err)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _fail(stage: str, message: str, code: int = 1) -> None:
    """One line on stderr (and in the stage log), then exit `code`."""
    from churnlens.logs import log_to_file

    message = _one_line(message, limit=2000)
    log_to_file(f"error: {message}")
    print(f"churnlens {stage}: error: {message}", file=sys.stderr)
    raise typer.Exit(code) from None


def _fail_unexpected(stage: str, err: Exception) -> None:
    from churnlens.logs import log_traceback

    where = log_traceback(err)
    if _debug():
        raise err
    hint = (f"full traceback in {where}" if where is not None
            else "the stage log could not be written")
    _fail(stage, f"{unexpected_message(err)} ({hint}; {DEBUG_ENV}=1 prints it here)")


def unexpected_message(err: BaseException) -> str:
    """What an unexpected error means, in one line, for the errors a run meets in practice."""
    name = type(err).__name__
    text = _one_line(str(err).splitlines()[0] if str(err) else "", limit=200)
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        target = f" writing {err.filename}" if err.filename else ""
        return f"disk full{target} ({err.strerror or text}): free some space and rerun"
    if isinstance(err, MemoryError):
        return "out of memory: free memory (or lower features.memory_limit) and rerun"
    if type(err).__module__.split(".")[0] in ("duckdb", "_duckdb"):
        if name == "OutOfMemoryException":
            return (f"DuckDB ran out of memory ({text}): raise features.memory_limit, or free "
                    "disk space for its temp folder")
        if "No space left" in text or "disk" in text.lower():
            return f"DuckDB could not write to disk ({text}): free disk space and rerun"
        return f"DuckDB error {name}: {text}"
    return f"unexpected {name}" + (f": {text}" if text else "")


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
        from churnlens.settings import load_settings

        try:
            raw_dir = Path(load_settings(params).data.raw_dir)
        except ParamsError as err:
            print(f"churnlens validate: error: no RAW_DIR given, and {params} cannot give "
                  f"data.raw_dir: {_one_line(str(err), 2000)}", file=sys.stderr)
            raise typer.Exit(1) from None
        except (OSError, ChurnlensError, KeyError, TypeError) as err:
            print(f"churnlens validate: error: no RAW_DIR given and no data.raw_dir in {params} "
                  f"({err})", file=sys.stderr)
            raise typer.Exit(1) from None
    from churnlens.paths import INTERIM

    _run_stage("validate", raw_dir, out_dir or INTERIM, params)


@app.command()
def features(params: Path = PARAMS) -> None:
    """Point-in-time features and labels at every cutoff."""
    _run_stage("features", params)


@app.command()
def train(params: Path = PARAMS) -> None:
    """Train, calibrate and evaluate the model; log the run to MLflow."""
    _run_stage("train", params)


SCORE_INPUT = typer.Option(None, "--input", help="score this folder of raw tables with the "
                           "approved model instead (nothing written to the project)")
SCORE_OUTPUT = typer.Option(None, "--output", help="with --input: CSV file to write (atomically); "
                            "default: the CSV on stdout")
SCORE_AS_OF = typer.Option(None, "--as-of", help="with --input: scoring date (default: "
                           "snapshot.as_of, else the last day the data is complete)")
SCORE_ENGINE = typer.Option("local", "--engine", help="spark: feature rows at as_of and scores "
                            "on Spark, --input = validated tables (default data/interim), "
                            "--output = Parquet dataset folder (required)")


@app.command()
def score(params: Path = PARAMS, input_dir: Path = SCORE_INPUT, output: Path = SCORE_OUTPUT,
          as_of: str = SCORE_AS_OF, engine: str = SCORE_ENGINE) -> None:
    """Score every active customer at as_of (the DVC stage).

    With --input DIR: validate, build features, score, explain and suggest actions for every
    customer of the raw folder DIR with the approved model (the registry's champion), as CSV.
    With --engine spark: the validated tables scored on Spark into a Parquet dataset.
    """
    if engine not in ("local", "spark"):
        raise typer.BadParameter("--engine is local or spark")
    if engine == "spark":
        if output is None:
            raise typer.BadParameter("--engine spark needs --output (a Parquet dataset)")
        _run_stage("score_spark", params, str(output), input_dir and str(input_dir), as_of)
        return
    if input_dir is None:
        if output is not None or as_of is not None:
            raise typer.BadParameter("--output and --as-of go with --input DIR")
        _run_stage("score", params)
        return
    _score_input(input_dir, output, as_of, params)


def _score_input(input_dir: Path, output: Path | None, as_of: str | None, params: Path) -> None:
    """`churnlens score --input`: the CSV to `output` or stdout; on stderr one summary line (or
    one error line), the full log in the stage log file as for every command."""
    import logging

    from churnlens.logs import setup_logging

    for handler in setup_logging("score").handlers:  # stderr: warnings and the summary line
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        from churnlens.score_logs import score_raw_logs, summary_line, to_csv_text

        scores = score_raw_logs(input_dir, params=params, as_of=as_of)
        text = to_csv_text(scores)
    except ChurnlensError as err:
        _fail("score", str(err))
    except KeyboardInterrupt:
        _fail("score", "interrupted", code=130)
    except Exception as err:  # noqa: BLE001 - one line, as `_run_stage` does
        _fail_unexpected("score", err)
    if output is None:
        sys.stdout.write(text)
    else:
        from churnlens.io import write_text

        try:
            write_text(text, output, encoding="utf-8-sig")
        except OSError as err:
            _fail("score", f"cannot write {output}: {err.strerror or err}")
    print(summary_line(scores) + (f"; wrote {output}" if output else ""), file=sys.stderr)


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
    command = "rollback" if rollback else "promote"
    try:
        from churnlens.config import load_params
        from churnlens.tracking import move_champion, registered_model_name

        name = registered_model_name(load_params(params))
        move = move_champion(version, rollback=rollback, name=name)
    except ChurnlensError as err:
        _fail(command, str(err))
    except KeyboardInterrupt:
        _fail(command, "interrupted", code=130)
    except Exception as err:  # noqa: BLE001 - one line, traceback in logs/registry.log
        _fail_unexpected(command, err)
    print(f"champion: v{move['from']} -> v{move['to']}")


if __name__ == "__main__":
    app()
