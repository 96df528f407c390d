"""params.yaml is checked once, up front (`churnlens.params_check`, via `config.load_params`):
every key a stage reads has a type and a range, and one error names every bad key."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pytest
import yaml

from churnlens.config import flatten, load_params
from churnlens.errors import ChurnlensError, ParamsError
from churnlens.params_check import check_params, memory_bytes

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def with_values(**dotted) -> dict:
    params = copy.deepcopy(PARAMS)
    for key, value in dotted.items():
        *parents, last = key.split("__")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return params


def problems(params: dict) -> list[str]:
    with pytest.raises(ParamsError) as err:
        check_params(params, "params.yaml")
    assert "\n" not in str(err.value)
    return err.value.problems


def test_the_repo_params_pass_unchanged():
    assert check_params(PARAMS) == PARAMS
    assert load_params(REPO / "params.yaml") == PARAMS


def test_absent_keys_are_not_errors():
    """Stages have defaults; a partial params file (as in many tests) is fine."""
    assert check_params({}) == {}
    assert check_params(None) == {}
    assert check_params({"label": {"horizon_days": 30}}) == {"label": {"horizon_days": 30}}


@pytest.mark.parametrize("value", [dt.date(2026, 8, 31), dt.datetime(2026, 8, 31, 12, 0),
                                   "2026-08-31", " 2026-08-31 ", "2026-08-31T00:00:00"])
def test_as_of_is_an_iso_string_whatever_yaml_made_of_it(value):
    assert check_params(with_values(snapshot__as_of=value))["snapshot"]["as_of"] == "2026-08-31"


def test_as_of_typed_as_a_yaml_date_is_read_as_its_iso_string(tmp_path):
    text = (REPO / "params.yaml").read_text(encoding="utf-8").replace(
        "as_of: null", "as_of: 2026-08-31")
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    assert isinstance(yaml.safe_load(text)["snapshot"]["as_of"], dt.date)   # what YAML makes
    assert load_params(tmp_path / "params.yaml")["snapshot"]["as_of"] == "2026-08-31"


@pytest.mark.parametrize("value", [None, "", "null", "None"])
def test_as_of_null_spellings_mean_the_default(value):
    assert check_params(with_values(snapshot__as_of=value))["snapshot"]["as_of"] is None


@pytest.mark.parametrize("value", ["yesterday", "2026-02-30", "31/08/2026", 20260831, True])
def test_bad_as_of(value):
    (line,) = problems(with_values(snapshot__as_of=value))
    assert line.startswith("snapshot.as_of: expected an ISO date (YYYY-MM-DD) or null")


@pytest.mark.parametrize("value", ["4GB", "512MB", "1.5GiB", "4 GB", "80%", "16MB"])
def test_memory_limits_duckdb_takes(value):
    check_params(with_values(features__memory_limit=value))


@pytest.mark.parametrize("value", ["lots", "4", 4, "4 GBs", "1MB", "-1GB", "0%", "", None])
def test_bad_memory_limits(value):
    (line,) = problems(with_values(features__memory_limit=value))
    assert line.startswith("features.memory_limit: expected a size")


@pytest.mark.parametrize("value", ["4g", "4GB", "512m", "2 GiB"])
def test_spark_driver_memory_sizes(value):
    check_params(with_values(features__spark_driver_memory=value))


@pytest.mark.parametrize("value", ["lots", "4", "1.5g", "1MB", "80%", None])
def test_bad_spark_driver_memory(value):
    (line,) = problems(with_values(features__spark_driver_memory=value))
    assert line.startswith("features.spark_driver_memory: expected a whole size")


def test_memory_bytes():
    assert memory_bytes("4GB") == 4 * 10**9
    assert memory_bytes("2 MiB") == 2 * 2**20
    assert memory_bytes("4") is None and memory_bytes(4) is None


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("features__threads", 0, "features.threads: expected a whole number >= 1, got 0"),
    ("features__threads", "two", "features.threads: expected a whole number >= 1, got 'two'"),
    ("features__threads", True, "features.threads: expected a whole number >= 1, got True"),
    ("features__threads", 1.5, "features.threads: expected a whole number >= 1"),
    ("label__horizon_days", -90, "label.horizon_days: expected a whole number >= 1"),
    ("label__definition", "churned", "label.definition: expected one of inactivity, "
                                     "cancellation"),
    ("features__engine", "polars", "features.engine: expected one of duckdb, spark"),
    ("features__windows", [7, 0], "features.windows: expected a non-empty list of whole days"),
    ("features__windows", "30", "features.windows: expected a non-empty list of whole days"),
    ("features__cutoff_step_days", 0, "features.cutoff_step_days: expected a whole number"),
    ("train__cv_folds", 1, "train.cv_folds: expected a whole number >= 2, got 1"),
    ("train__calibration", "platt", "train.calibration: expected one of auto, sigmoid, "
                                    "isotonic"),
    ("train__register_model", "yes", "train.register_model: expected true or false"),
    ("train__lgbm__learning_rate", 0, "train.lgbm.learning_rate: expected a number > 0"),
    ("train__lgbm__subsample", 1.5, "train.lgbm.subsample: expected a number in (0, 1]"),
    ("train__lgbm__max_depth", 0, "train.lgbm.max_depth: expected a whole number >= 1, or -1"),
    ("score__revenue_window_days", 45, "score.revenue_window_days: expected one of "
                                       "features.windows [7, 30, 90, 180], got 45"),
    ("drift__psi_threshold", 0, "drift.psi_threshold: expected a number > 0"),
    ("privacy__pseudonymise_ids", "on", "privacy.pseudonymise_ids: expected true or false"),
    ("privacy__salt_env", "MY SALT", "privacy.salt_env: expected an environment variable"),
    ("explain__sample_size", -1, "explain.sample_size: expected a whole number >= 0"),
    ("export__top_n", -1, "export.top_n: expected a whole number >= 0, got -1"),
    ("export__high_value_quantile", 2, "export.high_value_quantile: expected a number in "
                                       "[0, 1]"),
    ("export__tiers", ["urgent"], "export.tiers: expected tier names from score.tiers "
                                  "(high, medium, low), unknown: urgent"),
    ("export__actions", [{"when": "sometimes", "action": "Call"}],
     "export.actions rule 1: unknown condition 'sometimes'"),
    ("export__holdout_share", 1, "export.holdout_share: expected a number in [0, 1), got 1"),
    ("export__rank_by", "uplift", "export.rank_by: expected one of revenue_at_risk, "
                                  "revenue_saved, got 'uplift'"),
    ("generate__outreach_weeks", -1, "generate.outreach_weeks: expected a whole number >= 0"),
    ("generate__outreach_weeks", 2.5, "generate.outreach_weeks: expected a whole number >= 0"),
    ("generate__outreach_horizon_days", 3, "generate.outreach_horizon_days: expected a whole "
                                           "number >= 7"),
    ("generate__outreach_holdout_share", 1, "generate.outreach_holdout_share: expected a number "
                                            "in (0, 1)"),
    ("kpis__period_days", 0, "kpis.period_days: expected a whole number >= 1"),
    ("kpis__crr_target", 85, "kpis.crr_target: expected a number in [0, 1] or null"),
    ("kpis__revenue_window", "week", "kpis.revenue_window: expected auto, period or a whole"),
    ("report__top_n", "25", "report.top_n: expected a whole number >= 0, got '25'"),
    ("generate__end_date", "2024-01-01", "generate.end_date: expected a date on or after "
                                         "generate.start_date"),
])
def test_one_bad_key_one_line_naming_it(key, value, expected):
    (line,) = problems(with_values(**{key: value}))
    assert line.startswith(expected), line


@pytest.mark.parametrize("tiers", [{"high": 0.25, "medium": 0.5, "low": 0.0},
                                   {"high": 0.5, "medium": 0.5, "low": 0.0},
                                   {"high": 1.5, "low": 0.0}, {"high": "0.5"}, {}, [0.5]])
def test_tiers_must_be_bounds_in_0_1_highest_first(tiers):
    lines = problems(with_values(score__tiers=tiers))
    assert lines[0].startswith("score.tiers: expected")


def test_every_bad_key_in_one_error():
    params = with_values(features__memory_limit="lots", features__threads=0,
                         snapshot__as_of="yesterday", train__cv_folds=1, export__top_n=-5)
    with pytest.raises(ChurnlensError) as err:
        load_params_from(params)
    message = str(err.value)
    assert message.startswith("params.yaml: 5 bad values: ")
    for key in ("features.memory_limit", "features.threads", "snapshot.as_of",
                "train.cv_folds", "export.top_n"):
        assert key in message


def load_params_from(params: dict):
    return check_params(params, "params.yaml")


def test_whole_floats_become_ints():
    checked = check_params(with_values(label__horizon_days=90.0, features__windows=[7.0, 30, 90]))
    assert checked["label"]["horizon_days"] == 90 and type(checked["label"]["horizon_days"]) is int
    assert checked["features"]["windows"] == [7, 30, 90]


def test_a_section_that_is_not_a_mapping():
    assert problems({"features": [1, 2]}) == ["features: expected a section of keys, got [1, 2]"]
    with pytest.raises(ParamsError, match="top level"):
        check_params(["not", "a", "mapping"])


def test_every_key_of_params_yaml_is_checked():
    """A nonsense value for any key in params.yaml is caught and named (keys added to
    params.yaml later must get a check too)."""
    for dotted in flatten(PARAMS):
        lines = problems(with_values(**{dotted.replace(".", "__"): {"nonsense": [1]}}))
        named = [line for line in lines
                 if dotted.startswith(line.split(":")[0].split(" rule")[0])]
        assert named, (dotted, lines)


def test_missing_or_broken_params_file(tmp_path):
    with pytest.raises(ParamsError, match="params file .*nope.yaml not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("label:\n  horizon_days: [90\n")
    with pytest.raises(ParamsError, match=r"is not valid YAML \(line \d+, column \d+"):
        load_params(tmp_path / "bad.yaml")


def test_uplift_learners_are_the_ones_uplift_fits():
    """params_check keeps its own copy (no pandas import to check params); it must not drift."""
    from churnlens import uplift
    from churnlens.params_check import UPLIFT_LEARNERS

    assert set(UPLIFT_LEARNERS) == set(uplift.LEARNERS)
    assert uplift.DEFAULT_LEARNER in UPLIFT_LEARNERS
