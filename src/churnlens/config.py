"""Reading `params.yaml` and the few derived settings every stage shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Return the parsed params file as a nested dict."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested params to dotted keys (`label.horizon_days`), e.g. for MLflow."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
