import numpy as np
import pandas as pd
import pytest

from churnlens.errors import ChurnlensError
from churnlens.privacy import pseudonymise, pseudonymise_setting
from churnlens.settings import PrivacySettings

SALT = b"0123456789abcdef-test-salt"


def test_pseudonyms_are_stable_keyed_and_hide_the_id():
    ids = pd.Series(["00042", "00043", "00042"])
    out = pseudonymise(ids, SALT)
    assert out[0] == out[2] and out[0] != out[1]
    assert all(p.startswith("p_") and "42" not in p[:2] for p in out)
    assert not pseudonymise(ids, b"another-salt-0123456789").equals(out)


def test_switched_on_without_a_salt_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("CHURNLENS_ID_SALT", raising=False)
    with pytest.raises(ChurnlensError, match="CHURNLENS_ID_SALT"):
        pseudonymise_setting(PrivacySettings(pseudonymise_ids=True))
    assert pseudonymise_setting(PrivacySettings(pseudonymise_ids=False)) is None
    monkeypatch.setenv("CHURNLENS_ID_SALT", "x" * 20)
    assert pseudonymise_setting(PrivacySettings(pseudonymise_ids=True)) == b"x" * 20


def test_privacy_state_records_the_switch_and_a_salt_fingerprint_never_the_salt(monkeypatch):
    from churnlens.privacy import privacy_state

    off = PrivacySettings(pseudonymise_ids=False)
    assert privacy_state(off) == {"pseudonymise_ids": False, "salt_fingerprint": None}
    on = PrivacySettings(pseudonymise_ids=True, salt_env="TEST_SALT")
    monkeypatch.setenv("TEST_SALT", "a-secret-salt-of-some-length")
    first = privacy_state(on)
    assert first["pseudonymise_ids"] is True and len(first["salt_fingerprint"]) == 16
    assert "secret" not in str(first)
    assert privacy_state(on) == first  # stable
    monkeypatch.setenv("TEST_SALT", "another-secret-salt-of-length")
    assert privacy_state(on)["salt_fingerprint"] != first["salt_fingerprint"]


def test_stages_that_pseudonymise_depend_on_the_privacy_state():
    """Switching pseudonymisation on (or changing the salt) must rerun what it affects: DVC
    cannot see an environment variable, so an always-run stage writes data/privacy.json."""
    from pathlib import Path

    import yaml

    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())[
        "stages"]
    assert stages["privacy"].get("always_changed") is True
    assert "privacy" in stages["privacy"]["params"]
    for name in ("validate", "export", "report"):
        assert "data/privacy.json" in stages[name]["deps"], name


def test_privacy_stage_writes_the_state_file(tmp_path):
    import json

    import yaml

    from churnlens.stages import privacy as stage

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"privacy": {"pseudonymise_ids": False}}))
    stage.run(root=tmp_path)
    assert json.loads((tmp_path / "data/privacy.json").read_text()) == {
        "pseudonymise_ids": False, "salt_fingerprint": None}


def test_a_missing_id_stays_missing_and_does_not_stop_pseudonymising():
    """A quarantined row may have no customer_id (an empty cell): under pandas 3 `astype(str)`
    keeps it missing, and hashing it crashed the stage ('float' object has no attribute
    'encode')."""
    ids = pd.Series(["000837", np.nan, None, "000837"], name="customer_id")
    out = pseudonymise(ids, b"k" * 32)
    assert out.iloc[0] == out.iloc[3] and out.iloc[0].startswith("p_")
    assert out.iloc[1:3].isna().all() and out.name == "customer_id"
