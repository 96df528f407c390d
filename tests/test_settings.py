"""The settings object: built once from the checked params, typed, frozen, every default once."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from churnlens.errors import ParamsError
from churnlens.settings import DEFAULTS, Settings, feature_config, load_settings, settings_from

PROJECT_PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"


def test_an_empty_params_file_gives_the_defaults():
    settings = settings_from({})
    assert settings == DEFAULTS
    assert settings.label.horizon_days == 90 and settings.label.definition == "inactivity"
    assert settings.features.windows == (7, 30, 90, 180)
    assert settings.export.rules  # the default action rules


def test_given_values_are_typed_and_the_rest_keeps_its_default():
    settings = settings_from({"label": {"horizon_days": 60.0},
                              "features": {"windows": [30, 7]},
                              "export": {"tiers": "high", "inactive_days": 14},
                              "unknown_section": {"x": 1}})
    assert settings.label.horizon_days == 60 and isinstance(settings.label.horizon_days, int)
    assert settings.label.definition == "inactivity"
    assert settings.features.windows == (30, 7)
    assert feature_config(settings)["windows"] == [7, 30]    # sorted for the SQL
    assert settings.export.tiers == ("high",) and settings.export.inactive_days == 14.0
    assert settings.params["label"]["horizon_days"] == 60   # the checked dict is kept


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.label.horizon_days = 30


def test_a_bad_value_is_the_validators_one_error():
    with pytest.raises(ParamsError, match="label.horizon_days"):
        settings_from({"label": {"horizon_days": 0}})


def test_the_project_params_load(tmp_path):
    settings = load_settings(PROJECT_PARAMS)
    raw = yaml.safe_load(PROJECT_PARAMS.read_text(encoding="utf-8"))
    assert settings.label.horizon_days == raw["label"]["horizon_days"]
    assert settings.train.lgbm == raw["train"]["lgbm"]
    assert isinstance(settings, Settings)
