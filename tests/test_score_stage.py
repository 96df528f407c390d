"""Which model scores (issue 11: CS saw scores from a challenger that had lost the gate): the
registry's champion for this data source, else the newly trained model, and `serving.json`
says which and why."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnlens import tracking
from churnlens.stages import score as stage

FEATURES = pd.DataFrame({"customer_id": ["a"], "days_since_last_activity": [3.0]})


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """A fake registry: `champion` version and what a download writes (a real saved model)."""
    from churnlens.packaging import model_digest, save_model
    from model_fixtures import FEATURES as COLUMNS
    from model_fixtures import churn_rows, fitted_model

    source = tmp_path / "registered"
    save_model(fitted_model(0), COLUMNS, source, churn_rows(10, seed=1))
    state = {"champion": None, "downloads": [], "source": source,
             "digest": model_digest(source)}

    def download(name, version, target, root="."):
        import shutil

        shutil.copytree(state["source"], target)
        state["downloads"].append((name, version))
        return Path(target)

    def champion(name, root="."):
        if state["champion"] is None:
            return None
        return {"version": state["champion"], "digest": state["digest"], "run_id": "r"}

    monkeypatch.setattr(tracking, "champion", champion)
    monkeypatch.setattr(tracking, "download_model_version", download)
    return state


def features():
    from model_fixtures import churn_rows

    return churn_rows(5, seed=2)


def promotion(version="5", is_champion=False, registered=True):
    return {"registered": registered, "registered_model": "churnlens-sample",
            "version": version, "is_champion": is_champion,
            "reason": "worse than the champion on AUC"}


def test_a_model_that_lost_the_gate_does_not_score(registry, tmp_path):
    registry["champion"] = "4"
    serving = stage.resolve_serving_model(promotion(), features(), root=tmp_path)
    assert serving["scored_by"] == "approved model" and serving["version"] == "4"
    assert serving["waiting_for_approval"] and serving["new_version"] == "5"
    assert serving["model_dir"] == str(Path("models/serving"))  # relative to the project
    assert (tmp_path / "models" / "serving" / "approved.json").is_file()
    assert registry["downloads"] == [("churnlens-sample", "4")]
    # the next run reuses the kept copy (same version, same digest): no second download
    stage.resolve_serving_model(promotion(), features(), root=tmp_path)
    assert registry["downloads"] == [("churnlens-sample", "4")]


def test_the_champion_scores_from_the_registry_even_when_it_is_the_new_model(registry, tmp_path):
    registry["champion"] = "5"
    serving = stage.resolve_serving_model(promotion(is_champion=True), features(),
                                           root=tmp_path)
    assert serving["model_dir"] == str(Path("models/serving"))
    assert serving["version"] == "5" and not serving["waiting_for_approval"]
    assert serving["reason"] == "the new model is the approved model"


def test_without_registry_or_champion_the_new_model_scores(registry, tmp_path):
    registry["champion"] = None
    assert stage.resolve_serving_model(promotion(), features(), root=tmp_path)["reason"] == \
        "no approved model yet"
    unregistered = stage.resolve_serving_model(promotion(registered=False), features(),
                                                 root=tmp_path)
    assert unregistered["reason"] == "the model registry is not used"
    assert unregistered["model_dir"] == "models/churn_model"
    assert registry["downloads"] == []


def test_a_champion_that_cannot_read_todays_features_hands_over_with_a_reason(registry, tmp_path):
    registry["champion"] = "4"
    serving = stage.resolve_serving_model(promotion(), FEATURES, root=tmp_path)
    assert serving["model_dir"] == "models/churn_model"
    assert "cannot score today's features" in serving["reason"]


def test_a_broken_registry_does_not_stop_the_weekly_list(monkeypatch, tmp_path):
    def broken(name, root="."):
        raise OSError("database is locked")

    monkeypatch.setattr(tracking, "champion", broken)
    serving = stage.resolve_serving_model(promotion(), FEATURES, root=tmp_path)
    assert serving["model_dir"] == "models/churn_model" and "could not be read" in serving["reason"]
    assert serving["approved"] is False


def test_a_download_that_does_not_match_its_digest_is_refused(registry, tmp_path):
    from churnlens.packaging import ModelFileError

    registry["champion"], registry["digest"] = "4", "0" * 64
    with pytest.raises(ModelFileError):
        stage.resolve_serving_model(promotion(), features(), root=tmp_path)


def test_report_says_in_plain_words_that_a_new_model_waits_for_approval():
    from churnlens.report import _not_champion

    waiting = _not_champion({**promotion(), "serving": {"waiting_for_approval": True,
                                                        "champion_version": "4"}})
    assert waiting["kind"] == "waiting" and waiting["champion_version"] == "4"
    assert _not_champion({**promotion(), "serving": {}})["kind"] == "unapproved"
    assert _not_champion(promotion(is_champion=True)) is None
