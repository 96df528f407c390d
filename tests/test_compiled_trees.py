"""The compiled trees give LightGBM's raw scores to the last bit, or step aside for LightGBM."""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from churnlens import compiled_trees as ct
from churnlens.packaging import LoadedModel, to_model_input
from churnlens.serving import ApprovedModel
from model_fixtures import FEATURES, churn_rows, fitted_model
from pipeline_helpers import copy_run, run_stages

needs_compiler = pytest.mark.skipif(ct.compiler() is None, reason="no C compiler")


def bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).view(np.int64)


def assert_identical(compiled: ct.CompiledTrees, booster: lgb.Booster, matrix) -> None:
    expected = booster.predict(matrix, raw_score=True)
    for threads in (1, 2):
        np.testing.assert_array_equal(bits(compiled.raw_score(matrix, threads=threads)),
                                      bits(expected))


def train(X: np.ndarray, y: np.ndarray, categorical=(), **params) -> lgb.Booster:
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 1, **params}
    data = lgb.Dataset(X, y, categorical_feature=list(categorical) or "auto",
                       params={"min_data_per_group": 5, "cat_smooth": 1})
    return lgb.train(params, data, num_boost_round=params.pop("rounds", 40))


def hard_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Numbers with NaN, exact zeros, tiny values and infinities; a 70-category column with
    NaN and negative codes; a constant column; the label depends on all of it."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    a[rng.random(n) < 0.15] = np.nan
    b = np.round(rng.exponential(2.0, n), 1)
    b[rng.random(n) < 0.3] = 0.0
    c = rng.choice([-1e-36, 1e-36, -1e-30, 0.0, 1e-30, 2.0, -2.0], n)
    category = rng.integers(0, 70, n).astype(float)
    category[rng.random(n) < 0.05] = np.nan
    category[rng.random(n) < 0.03] = -1.0
    X = np.column_stack([a, b, c, category, np.ones(n)])
    logit = (np.nan_to_num(a, nan=1.5) + (b == 0) - 0.5 * b + 3 * c / 1e-30
             + np.where(np.isnan(category), 1.0, np.sin(np.nan_to_num(category))))
    return X, (rng.random(n) < 1 / (1 + np.exp(-np.clip(logit, -30, 30)))).astype(int)


def edge_rows(booster: lgb.Booster, n: int = 20_000, seed: int = 3) -> np.ndarray:
    """The probe rows plus values between and beyond them."""
    tables = ct.tables_from_model_text(booster.model_to_string())
    probe = ct.probe_matrix(tables, n, seed)
    rng = np.random.default_rng(seed)
    probe[rng.random(probe.shape) < 0.02] = np.nan
    return probe


@pytest.fixture(scope="module")
def hard_booster() -> lgb.Booster:
    X, y = hard_rows(6_000, 0)
    return train(X, y, categorical=[3], num_leaves=31, max_depth=8, min_data_in_leaf=5,
                 max_cat_to_onehot=2, rounds=60)


@needs_compiler
def test_the_churn_model_trees_are_lightgbms_to_the_bit():
    model = fitted_model()
    rows = churn_rows(5_000, seed=11)
    rows.loc[rows.index[::7], "events_change_30d"] = np.nan
    rows.loc[rows.index[::11], "segment"] = "enterprise"          # unknown -> NaN code
    matrix = model.preprocessor_.matrix(to_model_input(rows[FEATURES], FEATURES))
    compiled = ct.CompiledTrees.from_booster(model.booster_)
    assert compiled.n_trees == model.booster_.num_trees()
    assert_identical(compiled, model.booster_, matrix)
    assert_identical(compiled, model.booster_, edge_rows(model.booster_))


@needs_compiler
def test_missing_values_zeros_tiny_values_and_categories(hard_booster):
    tables = ct.tables_from_model_text(hard_booster.model_to_string())
    kinds = set(tables.column_kind.tolist())
    assert {ct.COPY_NAN_LEFT, ct.COPY_NAN_RIGHT, ct.CATEGORY_SET} <= kinds
    assert tables.column_bits_len.max() >= 2            # categories past 32: bitsets of 2+ words
    compiled = ct.CompiledTrees(tables)
    X, _ = hard_rows(20_000, 1)
    assert_identical(compiled, hard_booster, X)
    assert_identical(compiled, hard_booster, edge_rows(hard_booster))
    odd = X[:8].copy()
    odd[:, 3] = [np.nan, -0.5, -1.0, 69.9, 70.0, 1e12, np.inf, -np.inf]  # categories
    odd[:, 0] = [0.0, -0.0, 1e-36, -1e-36, np.inf, -np.inf, np.nan, 5e-324]
    assert_identical(compiled, hard_booster, odd)


@needs_compiler
def test_zero_as_missing_and_single_leaf_trees():
    X, y = hard_rows(4_000, 2)
    booster = train(X, y, zero_as_missing=True, num_leaves=15, rounds=30)
    assert ct.ZERO_LEFT in ct.tables_from_model_text(booster.model_to_string()).column_kind \
        or ct.ZERO_RIGHT in ct.tables_from_model_text(booster.model_to_string()).column_kind
    assert_identical(ct.CompiledTrees.from_booster(booster), booster, X)
    assert_identical(ct.CompiledTrees.from_booster(booster), booster, edge_rows(booster))
    constant = train(np.ones((200, 3)), np.r_[np.zeros(100), np.ones(100)], rounds=5)
    tables = ct.tables_from_model_text(constant.model_to_string())
    assert tables.depth.max() == 0                       # every tree is one leaf
    assert_identical(ct.CompiledTrees(tables), constant, np.ones((10, 3)))


@needs_compiler
def test_any_memory_layout_and_float_type_give_the_same_scores(hard_booster):
    compiled = ct.CompiledTrees.from_booster(hard_booster)
    X, _ = hard_rows(3_000, 4)
    expected = bits(hard_booster.predict(X, raw_score=True))
    for matrix in (np.ascontiguousarray(X), np.asfortranarray(X), X[::-1][::-1],
                   np.asfortranarray(np.repeat(X, 2, axis=0))[::2]):
        np.testing.assert_array_equal(bits(compiled.raw_score(matrix)), expected)
    single = X.astype(np.float32)
    np.testing.assert_array_equal(bits(compiled.raw_score(single)),
                                  bits(hard_booster.predict(single, raw_score=True)))
    assert compiled.raw_score(X[:0]).shape == (0,)
    with pytest.raises(ValueError, match="5 columns"):
        compiled.raw_score(X[:, :4])


def test_models_the_kernel_does_not_score_are_refused(monkeypatch):
    X, y = hard_rows(2_000, 5)
    labels = np.where(np.isnan(X[:, 0]), 2, y)
    multiclass = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1},
                           lgb.Dataset(X, labels), num_boost_round=3)
    with pytest.raises(ct.UnsupportedModel, match="multiclass"):
        ct.tables_from_model_text(multiclass.model_to_string())
    linear = train(np.nan_to_num(X[:, :3]), y, linear_tree=True, rounds=3)
    with pytest.raises(ct.UnsupportedModel, match="linear"):
        ct.tables_from_model_text(linear.model_to_string())
    deep = train(X, y, num_leaves=31, max_depth=5, rounds=3)
    monkeypatch.setattr(ct, "MAX_DEPTH", 4)
    with pytest.raises(ct.UnsupportedModel, match="at most 4"):
        ct.tables_from_model_text(deep.model_to_string())


# -- the churn model, served ---------------------------------------------------------------------
@pytest.fixture()
def fresh(monkeypatch, tmp_path):
    """No kernel or trees from other tests; the kernel built in a folder of this test."""
    monkeypatch.setattr(ct, "_kernel", None)
    monkeypatch.setattr(ct, "_cache", {})
    monkeypatch.setenv(ct.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(ct.ENV, raising=False)
    return tmp_path / "cache"


def loaded(seed: int = 0) -> tuple[LoadedModel, pd.DataFrame]:
    rows = churn_rows(4_000, seed=21)[FEATURES]
    return LoadedModel(fitted_model(seed), FEATURES, None), rows


def assert_lightgbm_scored(caplog) -> None:
    """The accelerated model fell back: its probabilities are plain LightGBM's, to the bit, and
    its trees are scored by LightGBM (log captured in `caplog`)."""
    model, rows = loaded()
    fast = ct.accelerated_model(model)
    with caplog.at_level(logging.INFO, logger="churnlens.compiled_trees"):
        got = fast.predict(rows)
    np.testing.assert_array_equal(bits(got["churn_probability"]),
                                  bits(model.predict(rows)["churn_probability"]))
    assert ct.tree_score_path(fast.estimator) == "lightgbm"


@needs_compiler
def test_served_probabilities_are_identical_and_the_log_says_compiled(fresh, caplog):
    model, rows = loaded()
    approved = ApprovedModel(model, {})
    with caplog.at_level(logging.INFO, logger="churnlens.compiled_trees"):
        got = approved.predict(rows)
    expected = model.predict(rows)
    np.testing.assert_array_equal(bits(got["churn_probability"]),
                                  bits(expected["churn_probability"]))
    assert got.index.equals(expected.index)
    assert ct.tree_score_path(approved._scorer.estimator) == "compiled"
    assert "tree_score" not in vars(model.estimator)       # the loaded model is left as it was
    assert "trees compiled" in caplog.text and "identical" in caplog.text
    assert list(fresh.glob("compiled_trees-*.so"))          # built once, kept in the cache
    proba = ct.accelerate(model.estimator).evaluation_proba(rows)
    np.testing.assert_array_equal(bits(proba["lightgbm"]),
                                  bits(model.estimator.evaluation_proba(rows)["lightgbm"]))


@pytest.mark.parametrize("breakage", ["switched off", "no compiler", "compiler fails"])
def test_without_the_kernel_lightgbm_scores_and_the_log_says_why(fresh, monkeypatch, caplog,
                                                                 breakage):
    if breakage == "switched off":
        monkeypatch.setenv(ct.ENV, "off")
    elif breakage == "no compiler":
        monkeypatch.setattr(ct, "compiler", lambda: None)
    else:
        monkeypatch.setenv("CC", "false")
    assert_lightgbm_scored(caplog)
    why = {"switched off": f"{ct.ENV}=off", "no compiler": "no C compiler",
           "compiler fails": "failed to build the kernel"}[breakage]
    assert "tree scores: LightGBM predict" in caplog.text and why in caplog.text


@needs_compiler
def test_a_difference_on_the_scored_rows_falls_back_to_lightgbm(fresh, monkeypatch, caplog):
    real = ct.CompiledTrees.raw_score
    monkeypatch.setattr(ct.CompiledTrees, "raw_score",
                        lambda self, m, threads=None: np.nextafter(real(self, m, threads), 9.0))
    assert_lightgbm_scored(caplog)
    assert "differ from LightGBM" in caplog.text


@needs_compiler
def test_trees_that_fail_the_probe_check_are_not_used(fresh, monkeypatch):
    model, _ = loaded()
    monkeypatch.setattr(ct, "probe_matrix", lambda tables, rows=0, seed=0: np.full(
        (4, tables.n_features), np.nan))
    monkeypatch.setattr(ct, "differences", lambda compiled, booster, matrix: 1)
    compiled, why = ct.compiled_for(model.estimator.booster_)
    assert compiled is None and "ScoreMismatch" in why


@needs_compiler
def test_the_kernel_is_built_once_and_reused(fresh, monkeypatch):
    first = ct.build_kernel()
    assert first.parent == fresh and first.is_file()
    commands, run = [], ct.subprocess.run
    monkeypatch.setattr(ct.subprocess, "run",
                        lambda cmd, **kw: commands.append(cmd) or run(cmd, **kw))
    assert ct.build_kernel() == first
    assert commands and not any("-o" in cmd for cmd in commands)   # asked the version only


def test_empty_input_and_other_estimators():
    model, rows = loaded()
    fast = ct.accelerate(model.estimator)
    assert fast.tree_score(rows.head(0)).shape == (0,)      # what LightGBM answers
    assert ct.tree_score_path(fast) is None                 # nothing was scored
    with pytest.raises(TypeError, match="not a fitted ChurnClassifier"):
        ct.accelerate(object())


@needs_compiler
def test_the_pipeline_outputs_are_byte_identical_with_lightgbm(sample_run, tmp_path):
    """score, explain and export again with plain LightGBM: the same bytes as the run that
    scored with the compiled trees."""
    assert any("trees compiled" in line for line in sample_run.log)
    again = copy_run(sample_run, tmp_path / "lightgbm")
    again.env[ct.ENV] = "off"
    run_stages(again, ["score", "explain", "export"])
    assert any("LightGBM predict (CHURNLENS_COMPILED_TREES=off)" in line for line in again.log)
    for rel in ("data/processed/predictions.parquet", "reports/scores.parquet",
                "reports/at_risk.csv"):
        assert (again / rel).read_bytes() == (sample_run / rel).read_bytes(), rel
