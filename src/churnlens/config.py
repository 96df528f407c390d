"""Reading `params.yaml` and the few derived settings every stage shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from churnlens.errors import ParamsError

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """Return the parsed, checked params file as a nested dict.

    Every key a stage reads is checked up front (`churnlens.params_check`): a bad value raises
    one `ParamsError` naming every bad key; a YAML date (`as_of: 2026-08-31`) becomes its ISO
    string. A missing or unparsable file is a `ParamsError` too.
    """
    from churnlens.params_check import check_params

    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ParamsError(str(path), ["file not found"],
                          f"params file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ParamsError(str(path), [f"cannot be read ({err})"],
                          f"params file {path} cannot be read ({err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ParamsError(str(path), [f"not valid YAML ({where}{problem})"],
                          f"params file {path} is not valid YAML ({where}{problem})") from None
    return check_params(raw, source=str(path))


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
