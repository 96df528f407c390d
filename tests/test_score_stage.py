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
    """A fake registry: `champion` version and what a download writes."""
    monkeypatch.chdir(tmp_path)
    state = {"champion": None, "columns": ["days_since_last_activity"], "downloads": []}

    def download(name, version, target):
        target = Path(target)
        (target / "artifacts").mkdir(parents=True)
        (target / "artifacts/feature_columns.json").write_text(
            pd.Series(state["columns"]).to_json(orient="values"))
        state["downloads"].append((name, version))
        return target

    monkeypatch.setattr(tracking, "champion_version", lambda name: state["champion"])
    monkeypatch.setattr(tracking, "download_model_version", download)
    return state


def promotion(version="5", is_champion=False, registered=True):
    return {"registered": registered, "registered_model": "churnlens-sample",
            "version": version, "is_champion": is_champion,
            "reason": "worse than the champion on AUC"}


def test_a_model_that_lost_the_gate_does_not_score(registry):
    registry["champion"] = "4"
    serving = stage.resolve_serving_model(promotion(), FEATURES)
    assert serving["scored_by"] == "approved model" and serving["version"] == "4"
    assert serving["waiting_for_approval"] and serving["new_version"] == "5"
    assert serving["model_dir"] == str(Path("models/serving"))
    assert registry["downloads"] == [("churnlens-sample", "4")]


def test_the_new_model_scores_when_it_is_the_champion_or_there_is_none(registry):
    registry["champion"] = "5"
    serving = stage.resolve_serving_model(promotion(is_champion=True), FEATURES)
    assert serving["model_dir"] == "models/churn_model" and not serving["waiting_for_approval"]
    registry["champion"] = None
    assert stage.resolve_serving_model(promotion(), FEATURES)["reason"] == "no approved model yet"
    unregistered = stage.resolve_serving_model(promotion(registered=False), FEATURES)
    assert unregistered["reason"] == "the model registry is not used"
    assert registry["downloads"] == []


def test_a_champion_that_cannot_read_todays_features_hands_over_with_a_reason(registry):
    registry["champion"], registry["columns"] = "4", ["a_feature_that_is_gone"]
    serving = stage.resolve_serving_model(promotion(), FEATURES)
    assert serving["model_dir"] == "models/churn_model"
    assert "cannot score today's features" in serving["reason"]


def test_a_broken_registry_does_not_stop_the_weekly_list(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def broken(name):
        raise OSError("database is locked")

    monkeypatch.setattr(tracking, "champion_version", broken)
    serving = stage.resolve_serving_model(promotion(), FEATURES)
    assert serving["model_dir"] == "models/churn_model" and "could not be read" in serving["reason"]


def test_report_says_in_plain_words_that_a_new_model_waits_for_approval():
    from churnlens.report import _not_champion

    waiting = _not_champion({**promotion(), "serving": {"waiting_for_approval": True,
                                                        "champion_version": "4"}})
    assert waiting["kind"] == "waiting" and waiting["champion_version"] == "4"
    assert _not_champion({**promotion(), "serving": {}})["kind"] == "unapproved"
    assert _not_champion(promotion(is_champion=True)) is None
