"""Content fingerprints of data folders (no MLflow, no pandas: cheap to import anywhere)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def fingerprint_dir(folder: str | Path, pattern: str = "**/*.parquet") -> str:
    """sha256 over the relative names and bytes of the files in `folder` (sorted)."""
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(folder.glob(pattern)):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
