"""Logging to stderr with timestamps and the stage name; a tiny progress helper."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

FORMAT = "%(asctime)s %(levelname)-7s [%(stage)s] %(message)s"


class _StageFilter(logging.Filter):
    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def filter(self, record: logging.LogRecord) -> bool:
        record.stage = self.stage
        return True


def setup_logging(stage: str, level: int = logging.INFO) -> logging.Logger:
    """Configure the `churnlens` logger to write `time LEVEL [stage] message` to stderr."""
    logger = logging.getLogger("churnlens")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_StageFilter(stage))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


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
