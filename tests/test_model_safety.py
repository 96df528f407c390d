"""Issue 12 part 10 (and part 8, "a corrupt model"): loading a model never runs code from the
model folder, and a damaged model stops with one line.

Whoever can write `models/`, `mlruns/` or the DVC remote could plant a pickle; churnlens stores
the model as LightGBM's text model plus JSON (`churnlens.packaging`) and reads only those."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from churnlens import packaging
from churnlens.packaging import ModelFileError, load_model, save_model
from model_fixtures import FEATURES, churn_rows, fitted_model


class _Planted:
    """A pickle that, when loaded, creates the file `marker` (stands for running `id`)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Planted(marker)))
    # the planted file really does run code when unpickled (checked on a copy)
    probe = marker.with_name("probe")
    (marker.parent / "probe.pkl").write_bytes(pickle.dumps(_Planted(probe)))
    pickle.loads((marker.parent / "probe.pkl").read_bytes())
    assert probe.exists()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "m"
    save_model(fitted_model(0), FEATURES, folder, churn_rows(20, seed=5))
    return folder


def copy_of(saved: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def test_the_stored_model_is_data_and_reproduces_every_score_exactly(saved):
    files = sorted(p.name for p in (saved / "artifacts").iterdir())
    assert files == ["feature_columns.json", "lightgbm.txt", "model.json"]
    model, rows = fitted_model(0), churn_rows(300, seed=9)
    rows.loc[3, "segment"] = "enterprise"          # unseen category
    rows.loc[4, "revenue_180d"] = np.nan
    loaded = load_model(saved)
    assert np.array_equal(loaded.predict(rows)["churn_probability"],
                          model.predict_proba(rows[FEATURES])[:, 1])
    assert np.array_equal(loaded.estimator.contributions(rows[FEATURES]),
                          model.contributions(rows[FEATURES]))


def test_isotonic_calibration_and_a_blend_survive_the_round_trip(tmp_path):
    from churnlens.model import ChurnClassifier

    train = churn_rows(1500, seed=3)
    model = ChurnClassifier(lgbm_params={"n_estimators": 20, "num_leaves": 5}, seed=1,
                            early_stopping_rounds=5, calibration="isotonic", cv_folds=3,
                            blend_weights=(0.5,))
    model.fit(train[FEATURES], train["label"], groups=train["customer_id"])
    save_model(model, FEATURES, tmp_path / "m", train)
    rows = churn_rows(200, seed=4)
    loaded = load_model(tmp_path / "m").estimator
    for key, values in model.evaluation_proba(rows[FEATURES]).items():
        np.testing.assert_allclose(loaded.evaluation_proba(rows[FEATURES])[key], values,
                                   rtol=0, atol=1e-15, err_msg=key)
    assert loaded.calibration_method_ == "isotonic" and loaded.scorer_ == "blend"


def test_a_planted_pickle_in_an_old_style_model_is_refused_not_run(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    for name in packaging.DIGEST_FILES:
        (folder / "artifacts" / name).unlink()
    marker = tmp_path / "pwned"
    plant(folder / "artifacts" / "estimator.joblib", marker)
    with pytest.raises(ModelFileError, match="pickle") as err:
        load_model(folder)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_pickles_planted_next_to_the_model_files_are_never_opened(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    marker = tmp_path / "pwned"
    for path in (folder / "python_model.pkl", folder / "artifacts" / "estimator.joblib",
                 folder / "artifacts" / "extra.pkl"):
        plant(path, marker)
    (folder / "code" / "churnlens" / "__init__.py").write_text(
        f"import os\nos.system('touch {marker}')\n")
    loaded = load_model(folder)
    rows = churn_rows(5, seed=1)
    want = fitted_model().predict_proba(rows[FEATURES])[:, 1]
    np.testing.assert_allclose(loaded.predict(rows)["churn_probability"], want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(packaging.estimator_of(folder).predict_proba(rows[FEATURES])[:, 1],
                               want, rtol=0, atol=1e-12)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate_booster", "garble_json", "wrong_format",
                                    "no_files", "bad_columns"])
def test_a_corrupt_model_gives_one_clear_line(saved, tmp_path, damage):
    folder = copy_of(saved, tmp_path)
    art = folder / "artifacts"
    if damage == "truncate_booster":
        text = (art / "lightgbm.txt").read_text()
        (art / "lightgbm.txt").write_text(text[: len(text) // 3])
    elif damage == "garble_json":
        (art / "model.json").write_bytes(b"\x00\xff{not json")
    elif damage == "wrong_format":
        (art / "model.json").write_text('{"format": "something-else/9"}')
    elif damage == "no_files":
        for name in packaging.DIGEST_FILES:
            (art / name).unlink()
    elif damage == "bad_columns":
        (art / "feature_columns.json").write_text("[1, 2")
    with pytest.raises(ModelFileError) as err:
        load_model(folder)
    message = str(err.value)
    assert "\n" not in message and str(folder) in message and "dvc repro" in message


def test_the_cli_prints_a_corrupt_model_as_one_line(saved, tmp_path, monkeypatch):
    """`churnlens score` on a damaged models/churn_model: exit 1, one line on stderr."""
    import pandas as pd
    import yaml
    from typer.testing import CliRunner

    from churnlens.cli import app

    monkeypatch.chdir(tmp_path)
    model = copy_of(saved, tmp_path)
    Path("models").mkdir()
    model.rename("models/churn_model")
    text = Path("models/churn_model/artifacts/lightgbm.txt").read_text()
    Path("models/churn_model/artifacts/lightgbm.txt").write_text(text[:200])
    Path("data/features").mkdir(parents=True)
    churn_rows(10, seed=1).assign(cutoff=pd.Timestamp("2026-01-01")).to_parquet(
        "data/features/scoring.parquet")
    Path("params.yaml").write_text(yaml.safe_dump({
        "train": {"register_model": False}, "label": {"horizon_days": 90},
        "score": {"tiers": {"high": 0.5, "low": 0.0}, "revenue_window_days": 180}}))
    result = CliRunner().invoke(app, ["score"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("churnlens score: error: models/churn_model")
    assert "corrupt" in lines[0]


def test_a_new_fitted_attribute_cannot_be_silently_dropped(tmp_path):
    import copy

    model = copy.copy(fitted_model(0))
    model.surprise_ = 1
    with pytest.raises(TypeError, match="surprise_"):
        save_model(model, FEATURES, tmp_path / "m", churn_rows(5, seed=1))


def test_model_digest_covers_every_model_file(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    digest = packaging.model_digest(folder)
    (folder / "python_model.pkl").write_bytes(b"not part of the model data")
    assert packaging.model_digest(folder) == digest
    spec = (folder / "artifacts" / "model.json").read_text()
    (folder / "artifacts" / "model.json").write_text(spec.replace('"blend_weight": 1.0',
                                                                  '"blend_weight": 0.0'))
    assert packaging.model_digest(folder) != digest


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
