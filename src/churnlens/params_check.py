"""Checking `params.yaml` once, up front: every key a stage reads, its type and its range.

`check_params` returns a normalised copy (a YAML date such as `as_of: 2026-08-31` becomes the
ISO string "2026-08-31"; a whole float such as `90.0` where days are meant becomes 90) or raises
one `ParamsError` naming every bad key and what it expects. Keys that are absent are not errors:
each stage has a default for them. Called by `churnlens.config.load_params`, so every stage
checks the whole file before it reads or writes anything.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from churnlens.errors import ChurnlensError, ParamsError
from churnlens.labels import DEFINITIONS

LABEL_DEFINITIONS = DEFINITIONS                     # churnlens.labels: the one definition
ENGINES = ("duckdb", "spark")
CALIBRATION = ("auto", "sigmoid", "isotonic")
SECTIONS = ("data", "generate", "snapshot", "label", "features", "train", "score", "drift",
            "privacy", "explain", "export", "kpis", "report")
MIN_MEMORY_BYTES = 16 * 1000**2
_UNITS = {"": None, "b": 1, "byte": 1, "bytes": 1,
          "k": 1000, "kb": 1000, "kilobyte": 1000, "kilobytes": 1000, "kib": 1024,
          "m": 1000**2, "mb": 1000**2, "megabyte": 1000**2, "megabytes": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gigabyte": 1000**3, "gigabytes": 1000**3, "gib": 1024**3,
          "t": 1000**4, "tb": 1000**4, "terabyte": 1000**4, "terabytes": 1000**4, "tib": 1024**4}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

REVENUE_WINDOWS = ("period", "auto")                # = churnlens.kpis.REVENUE_WINDOWS
RANK_BY = ("revenue_at_risk", "revenue_saved")     # export.rank_by
UPLIFT_LEARNERS = ("rescue_harm", "t", "x")          # = churnlens.uplift.LEARNERS (kept light)


class _Problems:
    """Collects `key: expected ..., got ...` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, key: str, expected: str, value: Any = None, *, got: bool = True) -> None:
        self.lines.append(f"{key}: expected {expected}" + (f", got {_show(value)}" if got else ""))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def _as_whole(value: Any) -> int | None:
    """An int from an int or a whole float (90.0); None for anything else (bools, text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def memory_bytes(value: Any) -> int | None:
    """Bytes of a DuckDB-style size (`4GB`, `512 MB`, `1.5GiB`); None when it is not one."""
    match = _MEMORY.match(str(value)) if isinstance(value, str) else None
    if not match:
        return None
    unit = _UNITS.get(match.group(2).lower())
    return None if unit is None else int(float(match.group(1)) * unit)


def iso_date(value: Any) -> str | None:
    """"YYYY-MM-DD" from a date, a datetime at any time of day, or an ISO date string."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(text[:10]).isoformat() if (
                len(text) == 10 or text[10:11] in ("T", " ")) else None
        except ValueError:
            return None
    return None


class _Section:
    """One params section: typed getters that record a problem and normalise in place."""

    def __init__(self, params: dict, name: str, problems: _Problems) -> None:
        self.name, self.problems = name, problems
        section = params.get(name)
        if section is None:
            self.values: dict = {}
        elif isinstance(section, Mapping):
            self.values = section
        else:
            problems.add(name, "a section of keys", section)
            self.values = {}

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def has(self, key: str) -> bool:
        return key in self.values

    def whole(self, key: str, low: int, *, allow_null: bool = False) -> int | None:
        if not self.has(key):
            return None
        value = self.values[key]
        if value is None and allow_null:
            return None
        number = _as_whole(value)
        if number is None or number < low:
            extra = " or null" if allow_null else ""
            self.problems.add(self.key(key), f"a whole number >= {low}{extra}", value)
            return None
        self.values[key] = number
        return number

    def number(self, key: str, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False,
               allow_null: bool = False) -> float | None:
        if not self.has(key):
            return None
        value = self.values[key]
        if value is None and allow_null:
            return None
        ok = _is_number(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            if low is not None and high is not None:
                what = (f"a number in {'(' if low_open else '['}{low:g}, {high:g}"
                        f"{')' if high_open else ']'}")
            elif low is not None:
                what = f"a number {'>' if low_open else '>='} {low:g}"
            else:
                what = "a number"
            self.problems.add(self.key(key), what + (" or null" if allow_null else ""), value)
            return None
        return float(value)

    def choice(self, key: str, options: tuple[str, ...]) -> str | None:
        if not self.has(key):
            return None
        value = self.values[key]
        if not isinstance(value, str) or value not in options:
            self.problems.add(self.key(key), "one of " + ", ".join(options), value)
            return None
        return value

    def flag(self, key: str) -> None:
        if self.has(key) and not isinstance(self.values[key], bool):
            self.problems.add(self.key(key), "true or false", self.values[key])

    def text(self, key: str, *, allow_empty: bool = False) -> str | None:
        if not self.has(key):
            return None
        value = self.values[key]
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self.problems.add(self.key(key), "text" if allow_empty else "non-empty text", value)
            return None
        return value

    def date(self, key: str, *, allow_null: bool = False) -> str | None:
        if not self.has(key):
            return None
        value = self.values[key]
        if allow_null and (value is None or (isinstance(value, str)
                                             and value.strip() in ("", "null", "None"))):
            self.values[key] = None
            return None
        iso = iso_date(value)
        if iso is None:
            self.problems.add(self.key(key), "an ISO date (YYYY-MM-DD)"
                              + (" or null" if allow_null else ""), value)
            return None
        self.values[key] = iso
        return iso


def check_params(params: Any, source: str = "params") -> dict[str, Any]:
    """The checked, normalised params (a deep copy); `ParamsError` listing every bad key."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ParamsError(source, [f"expected keys and values at the top level, "
                                   f"got {type(params).__name__}"])
    params = copy.deepcopy(dict(params))
    problems = _Problems()
    s = {name: _Section(params, name, problems) for name in SECTIONS}

    data = s["data"]
    data.text("raw_dir")
    if data.has("raw_dir") and isinstance(data.values["raw_dir"], str) and "\x00" in (
            data.values["raw_dir"]):
        problems.add("data.raw_dir", "a folder path without NUL characters", got=False)

    gen = s["generate"]
    gen.whole("seed", 0)
    gen.whole("n_customers", 1)
    gen.whole("chunk_size", 1)
    start, end = gen.date("start_date"), gen.date("end_date")
    if start and end and end < start:
        problems.add("generate.end_date", f"a date on or after generate.start_date ({start})",
                     end)
    gen.text("out_dir")
    gen.whole("outreach_weeks", 0)  # simulated outreach (0 = off) and its optional settings
    gen.whole("outreach_horizon_days", 7)
    gen.number("outreach_holdout_share", 0, 1, low_open=True, high_open=True)

    s["snapshot"].date("as_of", allow_null=True)

    label = s["label"]
    label.choice("definition", LABEL_DEFINITIONS)
    label.whole("horizon_days", 1)

    feats = s["features"]
    feats.choice("engine", ENGINES)
    feats.whole("cutoff_step_days", 1)
    feats.whole("max_cutoffs", 2)
    windows = _windows(feats, problems)
    feats.whole("inactivity_days", 1)
    feats.whole("threads", 1)
    _memory_limit(feats, problems)
    _spark_driver_memory(feats, problems)

    _train(s["train"], problems)
    _score(s["score"], problems, windows)
    s["drift"].number("psi_threshold", 0, low_open=True)

    privacy = s["privacy"]
    privacy.flag("pseudonymise_ids")
    salt_env = privacy.text("salt_env")
    if salt_env is not None and not _ENV_NAME.match(salt_env):
        problems.add("privacy.salt_env", "an environment variable name (letters, digits, _)",
                     salt_env)

    explain = s["explain"]
    explain.whole("sample_size", 0)
    explain.whole("seed", 0)

    _export(s["export"], problems, s["score"])

    kpis = s["kpis"]
    kpis.whole("period_days", 1)
    kpis.number("crr_target", 0, 1, allow_null=True)
    if kpis.has("revenue_window") and kpis.values["revenue_window"] not in REVENUE_WINDOWS:
        days = _as_whole(kpis.values["revenue_window"])
        if days is None or days < 1:
            problems.add("kpis.revenue_window", "auto, period or a whole number of days >= 1",
                         kpis.values["revenue_window"])

    report = s["report"]
    report.whole("top_n", 0)
    report.text("currency", allow_empty=True)

    if problems.lines:
        raise ParamsError(source, problems.lines)
    return params


def _windows(feats: _Section, problems: _Problems) -> list[int] | None:
    if not feats.has("windows"):
        return None
    value = feats.values["windows"]
    days = ([_as_whole(w) for w in value] if isinstance(value, list | tuple) else [None])
    if not days or any(d is None or d < 1 for d in days):
        problems.add("features.windows", "a non-empty list of whole days >= 1, e.g. [7, 30, 90]",
                     value)
        return None
    feats.values["windows"] = days
    return days


def _memory_limit(feats: _Section, problems: _Problems) -> None:
    if not feats.has("memory_limit"):
        return
    value = feats.values["memory_limit"]
    size = memory_bytes(value)
    percent = _PERCENT.match(value) if isinstance(value, str) else None
    if percent is not None and 0 < float(percent.group(1)) <= 100:
        return
    if size is None or size < MIN_MEMORY_BYTES:
        problems.add("features.memory_limit", "a size of at least 16MB with its unit, "
                     "e.g. 4GB or 512MB (or a share of the RAM like 50%)", value)


def _spark_driver_memory(feats: _Section, problems: _Problems) -> None:
    if not feats.has("spark_driver_memory"):
        return
    from churnlens.spark_features import _spark_memory  # what Spark is handed

    value = feats.values["spark_driver_memory"]
    size = memory_bytes(value)
    if size is None or size < MIN_MEMORY_BYTES or _spark_memory(value) is None:
        problems.add("features.spark_driver_memory", "a whole size with its unit, e.g. 4g "
                     "or 4GB or 512m", value)


def _train(train: _Section, problems: _Problems) -> None:
    train.whole("seed", 0)
    train.whole("cv_folds", 2)
    train.whole("early_stopping_rounds", 0, allow_null=True)
    train.choice("calibration", CALIBRATION)
    train.flag("register_model")
    if not train.has("lgbm") or train.values["lgbm"] is None:
        return
    lgbm = train.values["lgbm"]
    if not isinstance(lgbm, Mapping):
        problems.add("train.lgbm", "a section of LightGBM parameters", lgbm)
        return
    knobs = _Section({"train.lgbm": lgbm}, "train.lgbm", problems)
    knobs.whole("n_estimators", 1)
    knobs.number("learning_rate", 0, low_open=True)
    knobs.whole("num_leaves", 2)
    if knobs.has("max_depth"):
        depth = _as_whole(lgbm["max_depth"])
        if depth is None or depth == 0 or depth < -1:
            problems.add("train.lgbm.max_depth", "a whole number >= 1, or -1 for no limit",
                         lgbm["max_depth"])
        else:
            lgbm["max_depth"] = depth
    knobs.whole("min_child_samples", 0)
    knobs.number("subsample", 0, 1, low_open=True)
    knobs.whole("subsample_freq", 0)
    knobs.number("colsample_bytree", 0, 1, low_open=True)
    knobs.number("reg_lambda", 0)
    knobs.number("reg_alpha", 0)
    for key, value in lgbm.items():
        if not isinstance(key, str):
            problems.add("train.lgbm", "parameter names as text", key)
        elif isinstance(value, Mapping | list):
            problems.add(f"train.lgbm.{key}", "a single value", value)


def _score(score: _Section, problems: _Problems, windows: list[int] | None) -> None:
    revenue_window = score.whole("revenue_window_days", 1)
    if revenue_window is not None and windows is not None and revenue_window not in windows:
        problems.add("score.revenue_window_days", f"one of features.windows {windows}",
                     revenue_window)
    if not score.has("tiers"):
        return
    tiers = score.values["tiers"]
    if not isinstance(tiers, Mapping) or not tiers:
        problems.add("score.tiers", "tier names with their lower bound of churn_probability, "
                     "highest first (high: 0.5, medium: 0.25, low: 0.0)", tiers)
        return
    bad = [name for name, bound in tiers.items()
           if not isinstance(name, str) or not name.strip() or not _is_number(bound)
           or not 0 <= bound <= 1]
    if bad:
        problems.add("score.tiers", "a lower bound in [0, 1] for each named tier, got "
                     + ", ".join(f"{name}: {_show(tiers[name])}" for name in bad), got=False)
        return
    bounds = list(tiers.values())
    if any(later >= earlier for earlier, later in zip(bounds, bounds[1:], strict=False)):
        problems.add("score.tiers", "lower bounds strictly decreasing, highest tier first, got "
                     + ", ".join(f"{name}: {bound}" for name, bound in tiers.items()),
                     got=False)


def _export(export: _Section, problems: _Problems, score: _Section) -> None:
    export.whole("top_n", 0)
    export.number("high_value_quantile", 0, 1)
    export.number("inactive_days", 0)
    export.number("holdout_share", 0, 1, high_open=True)
    export.whole("holdout_seed", 0)
    export.choice("rank_by", RANK_BY)
    export.choice("uplift_learner", UPLIFT_LEARNERS)
    if export.has("tiers"):
        tiers = export.values["tiers"]
        names = [tiers] if isinstance(tiers, str) else tiers
        known = score.values.get("tiers") if isinstance(score.values.get("tiers"),
                                                        Mapping) else None
        if not isinstance(names, list) or not names or not all(
                isinstance(t, str) for t in names):
            problems.add("export.tiers", "a list of tier names from score.tiers", tiers)
        elif known is not None and set(names) - set(known):
            unknown = sorted(set(names) - set(known))
            problems.add("export.tiers", f"tier names from score.tiers ({', '.join(known)}), "
                         f"unknown: {', '.join(unknown)}", got=False)
    if export.has("actions"):
        from churnlens.actions import parse_rules

        try:
            parse_rules(export.values["actions"] or [])
        except ChurnlensError as err:
            problems.lines.append(str(err))
        except TypeError:
            problems.add("export.actions", "a list of {when: CONDITION, action: TEXT} rules",
                         export.values["actions"])
