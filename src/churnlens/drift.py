"""Population stability index (PSI) per feature: training snapshots vs the scoring snapshot.

PSI = sum over bins of (actual% - expected%) * ln(actual% / expected%). Numeric features use
10 quantile bins of the training distribution (missing values get a bin of their own);
string features use their categories. Rule of thumb: < 0.1 stable, 0.1–0.2 moderate, > 0.2 shift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EPSILON = 1e-4
FLAG_THRESHOLD = 0.2


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected / max(expected.sum(), 1), EPSILON, None)
    a = np.clip(actual / max(actual.sum(), 1), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _numeric_counts(reference: pd.Series, current: pd.Series,
                    bins: int) -> tuple[np.ndarray, np.ndarray]:
    ref, cur = reference.astype("float64"), current.astype("float64")
    edges = (np.unique(np.nanquantile(ref.dropna(), np.linspace(0, 1, bins + 1)))
             if ref.notna().any() else np.array([0.0]))
    inner = edges[1:-1]

    def counts(values: pd.Series) -> np.ndarray:
        present = values.dropna().to_numpy()
        binned = np.bincount(np.searchsorted(inner, present, side="right"),
                             minlength=len(inner) + 1)
        return np.append(binned, values.isna().sum())

    return counts(ref), counts(cur)


def _category_counts(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    ref, cur = reference.astype(str), current.astype(str)
    categories = sorted(set(ref) | set(cur))
    return (ref.value_counts().reindex(categories, fill_value=0).to_numpy(),
            cur.value_counts().reindex(categories, fill_value=0).to_numpy())


def population_stability(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """PSI of `current` against `reference`."""
    numeric = pd.api.types.is_numeric_dtype(reference) or pd.api.types.is_bool_dtype(reference)
    expected, actual = (_numeric_counts(reference, current, bins) if numeric
                        else _category_counts(reference, current))
    return _psi(expected.astype(float), actual.astype(float))


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, features: list[str],
                 threshold: float = FLAG_THRESHOLD) -> dict[str, dict]:
    """`{feature: {"psi": float, "flag": bool}}` for every feature, plus nothing else."""
    report = {}
    for feature in features:
        psi = population_stability(reference[feature], current[feature])
        report[feature] = {"psi": round(psi, 6), "flag": bool(psi > threshold)}
    return report
