"""Logging to stderr with timestamps and the stage name, and to a stage log file; progress.

Each `churnlens STAGE` run appends its log to `logs/STAGE.log` (folder: `CHURNLENS_LOG_DIR`,
default `logs/` in the working directory), with the process id, so the full traceback of an
unexpected error has a place to go while stderr gets one line (see `churnlens.cli`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

FORMAT = "%(asctime)s %(levelname)-7s [%(stage)s] %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)-7s [%(stage)s %(process)d] %(message)s"
LOG_DIR_ENV = "CHURNLENS_LOG_DIR"
DEFAULT_LOG_DIR = Path("logs")
MAX_LOG_BYTES = 5_000_000    # a bigger stage log is moved to STAGE.log.1 when a run starts


class _StageFilter(logging.Filter):
    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def filter(self, record: logging.LogRecord) -> bool:
        record.stage = self.stage
        return True


def log_path(stage: str) -> Path:
    """Where `churnlens STAGE` appends its log: `$CHURNLENS_LOG_DIR/STAGE.log` or `logs/`."""
    return Path(os.environ.get(LOG_DIR_ENV) or DEFAULT_LOG_DIR) / f"{stage}.log"


def setup_logging(stage: str, level: int = logging.INFO,
                  to_file: bool = True) -> logging.Logger:
    """Configure the `churnlens` logger to write `time LEVEL [stage] message` to stderr and
    (`to_file`) to `log_path(stage)`; a log folder that cannot be written is skipped."""
    logger = logging.getLogger("churnlens")
    for old in logger.handlers:
        old.close()
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_StageFilter(stage))
    logger.addHandler(handler)
    if to_file:
        file_handler = _file_handler(log_path(stage))
        if file_handler is not None:
            file_handler.addFilter(_StageFilter(stage))
            logger.addHandler(file_handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


class _FileHandler(logging.FileHandler):
    """A stage log file that never prints logging's own traceback when a write fails (a full
    disk must not turn one error line into three tracebacks): it just stops writing."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        self.failed = True


def _file_handler(path: Path) -> logging.FileHandler | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
        handler = _FileHandler(path, mode="a", encoding="utf-8", delay=True)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(FILE_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.name = "churnlens-file"
    return handler


def stage_log_file() -> Path | None:
    """The log file the current stage writes to (None: stderr only)."""
    for handler in logging.getLogger("churnlens").handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def log_to_file(message: str, level: int = logging.ERROR) -> None:
    """Write one message to the stage log file only (stderr already has it)."""
    for handler in logging.getLogger("churnlens").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(logging.LogRecord("churnlens", level, __file__, 0, message, None,
                                             None))


def log_traceback(err: BaseException) -> Path | None:
    """Write `err` with its full traceback to the stage log file only (not to stderr); return
    the file, or None when there is none or it cannot be written."""
    for handler in logging.getLogger("churnlens").handlers:
        if isinstance(handler, logging.FileHandler):
            record = logging.LogRecord(
                "churnlens", logging.ERROR, __file__, 0,
                "unexpected error: %s\n%s", (type(err).__name__, "".join(
                    traceback.format_exception(type(err), err, err.__traceback__)).rstrip()),
                None)
            try:
                handler.handle(record)
                handler.flush()
            except OSError:
                return None
            return None if getattr(handler, "failed", False) else Path(handler.baseFilename)
    return None


def get_logger(name: str) -> logging.Logger:
    """Module logger under the `churnlens` hierarchy."""
    return logging.getLogger(f"churnlens.{name}")


def progress(items: Iterable[T], label: str, total: int | None = None,
             every_s: float = 5.0) -> Iterator[T]:
    """Yield items, logging `label: i/total` at most every `every_s` seconds and at the end."""
    log = get_logger("progress")
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    last = time.monotonic()
    count = 0
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            log.info("%s: %d/%s", label, count, total if total is not None else "?")
            last = now
    log.info("%s: done (%d)", label, count)
