"""Stage `privacy`: write `data/privacy.json` (pseudonymisation on/off, salt fingerprint).

DVC cannot watch an environment variable, so this stage runs on every `dvc repro`
(`always_changed`) and rewrites the small file; the stages that pseudonymise depend on it, and
rerun only when it changes: when `privacy.pseudonymise_ids` is switched, or the salt is.
The salt itself is never written (see `churnlens.privacy.privacy_state`).
"""

from __future__ import annotations

from pathlib import Path

from churnlens.catalog import Catalog
from churnlens.logs import get_logger
from churnlens.privacy import privacy_state
from churnlens.settings import load_settings

log = get_logger("privacy")


def run(params_path: str | Path | None = None, root: str | Path = ".") -> dict:
    """`data/privacy.json` under the project folder `root` (default: the working directory);
    `params_path` default `root/params.yaml`."""
    catalog = Catalog(root)
    state = privacy_state(load_settings(catalog.params(params_path)).privacy)
    catalog.write_json(state, "privacy_state")
    log.info("pseudonymised ids: %s", "on" if state["pseudonymise_ids"] else "off")
    return state
