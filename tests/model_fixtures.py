"""A tiny learnable churn problem and a fitted ChurnClassifier, shared by model-layer tests."""

from functools import lru_cache

import numpy as np
import pandas as pd

from churnlens.model import ChurnClassifier


def churn_rows(n: int, seed: int) -> pd.DataFrame:
    """Rows where churn is driven by inactivity and falling usage, plus noise."""
    rng = np.random.default_rng(seed)
    recency = rng.integers(0, 120, n).astype(float)
    change = rng.uniform(-1, 1, n)
    logit = -2.5 + recency / 25 - 1.5 * change
    label = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "customer_id": [f"{i:05d}" for i in range(n)],
        "days_since_last_activity": recency,
        "events_change_30d": change,
        "revenue_180d": rng.gamma(2.0, 100.0, n),
        "segment": rng.choice(["trial", "basic", "pro"], n),
        "label": label,
    })


FEATURES = ["days_since_last_activity", "events_change_30d", "revenue_180d", "segment"]


@lru_cache(maxsize=4)
def fitted_model(seed: int = 0) -> ChurnClassifier:
    """Fitted once per seed and shared (treat as read-only)."""
    train = churn_rows(3000, seed)
    model = ChurnClassifier(lgbm_params={"n_estimators": 60, "num_leaves": 7, "learning_rate": 0.1},
                            seed=seed, early_stopping_rounds=10, calibration="sigmoid",
                            cv_folds=3)
    return model.fit(train[FEATURES], train["label"], groups=train["customer_id"])
