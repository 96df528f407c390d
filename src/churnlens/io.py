"""File I/O at the edges: atomic writes and reading one input table (CSV or Parquet)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` only on success.

    Works for files and directories. A crash or kill leaves `target` untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_debris(target)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _remove_debris(target: Path) -> None:
    """Delete temp folders a killed writer of `target` left behind (hidden `.NAME.*` siblings)."""
    for debris in target.parent.glob(f".{glob.escape(target.name)}.*"):
        if debris.is_dir():
            shutil.rmtree(debris, ignore_errors=True)


def _write_atomic(target: str | Path, writer: Callable[[Path], Any]) -> Path:
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def write_parquet(df: pd.DataFrame, target: str | Path) -> Path:
    """Write a DataFrame as Parquet atomically (no index)."""
    return _write_atomic(target, lambda tmp: df.to_parquet(tmp, index=False))


def write_json(obj: Any, target: str | Path) -> Path:
    """Write pretty, key-sorted JSON atomically (NaN becomes null)."""
    text = json.dumps(_clean_json(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return write_text(text, target)


def write_text(text: str, target: str | Path, encoding: str = "utf-8") -> Path:
    """Write text atomically."""
    return _write_atomic(target, lambda tmp: tmp.write_text(text, encoding=encoding))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _clean_json(obj: Any) -> Any:
    """Make numpy scalars, NaN and timestamps JSON-safe."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return obj


def find_table(folder: str | Path, name: str) -> Path | None:
    """Return `folder/name.parquet` or `folder/name.csv`, whichever exists (Parquet first)."""
    folder = Path(folder)
    for suffix in (".parquet", ".csv"):
        candidate = folder / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    return None
