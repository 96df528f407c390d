"""Personal data: pseudonymous customer ids and the list of columns that must never travel.

With `privacy.pseudonymise_ids: true`, every output except the at-risk list carries a keyed hash
of the customer id (HMAC-SHA256 with a salt from the environment variable named by
`privacy.salt_env`, never committed). The export step maps back to real ids for the CS team.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import pandas as pd

from churnlens.errors import ChurnlensError
from churnlens.settings import DEFAULTS, PrivacySettings

PII_COLUMNS = ("email", "name")
DEFAULT_SALT_ENV = DEFAULTS.privacy.salt_env


def salt_from_env(variable: str = DEFAULT_SALT_ENV) -> bytes:
    """The pseudonymisation key; refuses to run without one (a guessable hash is no protection)."""
    value = os.environ.get(variable, "")
    if len(value) < 16:
        raise ChurnlensError(f"privacy.pseudonymise_ids is on but ${variable} is unset or shorter "
                             "than 16 characters: export a secret salt (never commit it)")
    return value.encode()


def pseudonymise(ids: pd.Series, salt: bytes) -> pd.Series:
    """Keyed hash of each id: `p_` + 16 hex characters; equal ids give equal pseudonyms; a
    missing id (a quarantined row without one) stays missing."""
    present = ids.notna().to_numpy()
    text = ids[present].astype(str)
    mapping = {raw: "p_" + hmac.new(salt, raw.encode(), hashlib.sha256).hexdigest()[:16]
               for raw in pd.unique(text)}
    out = pd.Series(None, index=ids.index, dtype=object, name=ids.name)
    out[present] = text.map(mapping).to_numpy()
    return out


FINGERPRINT_MESSAGE = b"churnlens salt fingerprint v1"


def privacy_state(privacy: PrivacySettings) -> dict[str, object]:
    """What the pipeline's outputs depend on, safe to write down: whether ids are pseudonymised
    and a fingerprint of the salt (an HMAC of a fixed message, which does not reveal the salt)."""
    salt = pseudonymise_setting(privacy)
    if salt is None:
        return {"pseudonymise_ids": False, "salt_fingerprint": None}
    digest = hmac.new(salt, FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]
    return {"pseudonymise_ids": True, "salt_fingerprint": digest}


def pseudonymise_setting(privacy: PrivacySettings) -> bytes | None:
    """The salt when pseudonymisation is switched on (`privacy` settings), else None."""
    if not privacy.pseudonymise_ids:
        return None
    return salt_from_env(privacy.salt_env)
