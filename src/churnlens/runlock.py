"""One run at a time: an exclusive lock file for a stage that must not run twice at once.

`exclusive(path, what)` takes an OS lock on `path` (`flock` on POSIX: released by the kernel
when the process ends, even on `kill -9`, so a crashed run never leaves a stale lock) and writes
the holder's pid into it. A second process gets `BusyError`: "another churnlens train is running
(pid N)". Without `fcntl` (Windows) the file is created with O_EXCL and a lock whose pid is no
longer alive counts as stale and is taken over.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from churnlens.errors import BusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return "?"
    return text.split()[0] if text else "?"


def _busy(what: str, path: Path) -> BusyError:
    return BusyError(f"another {what} is running (pid {_holder(path)}); wait for it to finish "
                     f"(lock file {path})")


@contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[None]:
    """Hold the lock file `path` for the block, or raise `BusyError` naming the holder's pid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        with _exclusive_create(path, what):
            yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(what, path) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)   # the file stays (unlinking a flock'ed file races a waiter)
    finally:
        os.close(fd)


@contextmanager
def _exclusive_create(path: Path, what: str) -> Iterator[None]:  # pragma: no cover - Windows
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            holder = _holder(path)
            if holder.isdigit() and _alive(int(holder)):
                raise _busy(what, path) from None
            path.unlink(missing_ok=True)   # stale: its process is gone
    else:
        raise _busy(what, path)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:  # pragma: no cover - Windows
    import psutil

    return psutil.pid_exists(pid)
