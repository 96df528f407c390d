"""Stage `validate`: RAW_DIR -> OUT_DIR/{TABLE.parquet, quarantine/TABLE.parquet, validation.json}.

Reads the privacy settings (pseudonymised ids or not) and runs
`churnlens.validation_run.validate_folder`, which streams the large tables chunk by chunk and
replaces OUT_DIR in one atomic step (see there).
"""

from __future__ import annotations

from pathlib import Path

from churnlens.logs import get_logger
from churnlens.privacy import pseudonymise_setting
from churnlens.settings import load_settings
from churnlens.validation_run import REPORT, validate_folder

__all__ = ["REPORT", "run"]

log = get_logger("validate")


def run(raw_dir: str | Path, out_dir: str | Path, params_path: str | Path | None = None) -> None:
    """Validate `raw_dir`; write accepted and quarantined rows and the report to `out_dir`.

    With `privacy.pseudonymise_ids` on in `params_path`, each `customer_id` written is a keyed hash.
    The folders are the caller's (the CLI: `data.raw_dir` and `data/interim` under the project).
    """
    salt = _pseudonym_salt(params_path)
    validate_folder(raw_dir, out_dir, salt)
    if salt is not None:
        log.info("customer ids pseudonymised (privacy.pseudonymise_ids)")
    log.info("wrote %s", out_dir)


def _pseudonym_salt(params_path: str | Path | None) -> bytes | None:
    if params_path is None or not Path(params_path).exists():
        return None
    return pseudonymise_setting(load_settings(params_path).privacy)
