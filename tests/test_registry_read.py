"""`tracking.champion` reads the champion alias straight from the SQLite store (no MLflow import
in `churnlens score`); it must answer exactly what MLflow's registry answers."""

from __future__ import annotations

from churnlens import tracking

NAME = "churnlens-sample"


def _both(monkeypatch, name: str, root) -> tuple[dict | None, dict | None]:
    fast = tracking._champion_from_sqlite(tracking.sqlite_file(root=root), name)
    with monkeypatch.context() as m:
        m.setattr(tracking, "_champion_from_sqlite",
                  lambda db, name: (_ for _ in ()).throw(LookupError("MLflow answers")))
        slow = tracking.champion(name, root)
    assert tracking.champion(name, root) == fast
    return fast, slow


def test_the_sqlite_read_says_what_mlflow_says(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = tracking._mlflow(tmp_path).MlflowClient()   # the store tmp_path/mlflow.db
    source = tmp_path / "model"
    source.mkdir()
    client.create_registered_model(NAME)
    assert _both(monkeypatch, NAME, tmp_path) == (None, None)    # no champion alias yet
    assert _both(monkeypatch, "churnlens-other", tmp_path) == (None, None)  # no such entry
    for _ in range(3):
        client.create_model_version(NAME, source=str(source))
    client.set_model_version_tag(NAME, "1", tracking.DIGEST_TAG, "a" * 64)
    client.set_registered_model_alias(NAME, "champion", "1")
    fast, slow = _both(monkeypatch, NAME, tmp_path)
    assert fast == slow and fast["version"] == "1" and fast["digest"] == "a" * 64
    client.set_registered_model_alias(NAME, "champion", "2")    # moved by hand, no digest tag
    fast, slow = _both(monkeypatch, NAME, tmp_path)
    assert fast == slow and fast["version"] == "2" and fast["digest"] is None
    client.set_registered_model_alias(NAME, "champion", "3")
    client.delete_model_version(NAME, "3")                      # its alias goes with it
    assert _both(monkeypatch, NAME, tmp_path) == (None, None)


def test_other_stores_are_read_by_mlflow(tmp_path):
    import pytest

    with pytest.raises(LookupError):
        tracking._champion_from_sqlite(None, NAME)             # not a sqlite:/// URI
    with pytest.raises(LookupError):
        tracking._champion_from_sqlite(tmp_path / "missing.db", NAME)
    (tmp_path / "other.db").write_bytes(b"")                   # an empty (non-MLflow) database
    with pytest.raises(LookupError):
        tracking._champion_from_sqlite(tmp_path / "other.db", NAME)
