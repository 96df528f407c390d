"""File I/O at the edges: atomic writes and reading one input table (CSV or Parquet)."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; put it in place of `target` only on success.

    Works for files and directories. The temporary path lives in a hidden sibling folder with a
    unique name (`.NAME.PID.RANDOM`). A file replaces `target` with one `rename`; a directory is
    swapped with the old one in one `renameat2(RENAME_EXCHANGE)` call (Linux), so a failure or a
    kill at any moment leaves either the complete old `target` or the complete new one. Where the
    exchange is not available, the old directory is moved aside first and the next write of
    `target` puts it back if a kill came between the two renames (see `recover`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        _publish(tmp, target, tmp_dir / _OLD)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


_OLD = "old"  # inside a `.NAME.PID.RANDOM` folder: the previous directory while it is swapped out


def _publish(tmp: Path, target: Path, aside: Path) -> None:
    if not (target.is_dir() and not target.is_symlink()):
        os.replace(tmp, target)  # a file (or nothing) at target: rename is atomic
        return
    if tmp.is_dir() and _exchange(tmp, target):
        return  # tmp now holds the old directory; the caller removes it
    os.replace(target, aside)  # fallback: a kill between these two renames is undone by recover()
    os.replace(tmp, target)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if _renameat2 is None:
        return False
    import ctypes

    if _renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:  # AT_FDCWD, EXCHANGE
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem/kernel cannot
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _load_renameat2():
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                     ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_renameat2 = _load_renameat2()


def recover(target: str | Path) -> None:
    """Undo what a killed writer of `target` left behind: put back a directory it had moved aside
    (fallback swap interrupted between its two renames) and delete its hidden temp folders.

    Temp folders of a writer that is still running (its pid is alive) are left alone.
    """
    target = Path(target)
    for debris in sorted(target.parent.glob(f".{glob.escape(target.name)}.*")):
        rest = debris.name[len(target.name) + 2:]  # PID.RANDOM (or an older RANDOM / old-PID)
        if not debris.is_dir() or not re.fullmatch(r"(\d+\.)?[\w-]+", rest) or _alive(rest):
            continue  # not ours (`.NAME.x.PID.RANDOM` belongs to NAME.x), or still being written
        if not target.exists() and (debris / _OLD).is_dir():
            os.replace(debris / _OLD, target)
        elif not target.exists() and debris.name.startswith(f".{target.name}.old-"):
            os.replace(debris, target)  # moved aside by churnlens <= 0.1's two-rename swap
            continue
        shutil.rmtree(debris, ignore_errors=True)


def _alive(suffix: str) -> bool:
    """True if the writer named in `PID.RANDOM` is another process that is still running."""
    pid = suffix.split(".", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
