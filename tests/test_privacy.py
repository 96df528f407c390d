import pandas as pd
import pytest

from churnlens.errors import ChurnlensError
from churnlens.privacy import pseudonymise, pseudonymise_setting

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
        pseudonymise_setting({"privacy": {"pseudonymise_ids": True}})
    assert pseudonymise_setting({"privacy": {"pseudonymise_ids": False}}) is None
    monkeypatch.setenv("CHURNLENS_ID_SALT", "x" * 20)
    assert pseudonymise_setting({"privacy": {"pseudonymise_ids": True}}) == b"x" * 20
