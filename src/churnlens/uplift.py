"""Whom to contact: an uplift model over past lists with a control group (pure functions).

The at-risk list ranks by revenue at risk, but some listed customers stay whatever the team
does and some leave whatever it does; for others an action changes the outcome, for better or
worse (a discount offer to a customer with an open ticket). With enough measured outcomes of
contacted and control customers (`churnlens.outreach`), an uplift model estimates, per
customer, how much contact changes the chance of staying (`fit_uplift`, `LEARNERS`):

* "rescue_harm" (default, `churnlens.rescue_harm`): the churn model's chance of leaving times
  the share of would-be leavers the action keeps, minus the chance of staying times the share
  of would-be stayers it loses; two rates per action, learnt from a few hundred outcomes.
* "t": one LightGBM classifier of `retained` on the contacted customers' feature rows and one
  on the control customers' (features as they were on the list date);
  uplift(x) = P(retained | x, contacted) - P(retained | x, control); "x" the X-learner on top.
  They can find effects that depend on any feature, and need thousands of outcomes to.
* `expected_revenue_saved` = uplift x expected revenue over the horizon (negative = contact
  costs revenue).
* `enough_evidence`: the model is only fitted with at least `MIN_PER_ARM` measured customers in
  each arm; below that the caller keeps the risk ranking and says why.
* `qini_curve` / `qini_coefficient`: how well a ranking finds the customers whom contact helps,
  on held-out lists (Radcliffe's Qini: incremental customers (or revenue) kept when contacting
  the top k, treated minus control scaled to the treated count, against a random ranking).
* `kept_by_ranking`: with a known effect per customer (simulated data), what contacting the top
  share of a ranking truly keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from churnlens.rescue_harm import RescueHarmModel

MIN_PER_ARM = 200
DEFAULT_LEARNER = "rescue_harm"
LEARNERS = ("t", "x", "rescue_harm")
ANCHOR_FEATURE = "churn_probability_on_list"  # the churn model's probability on the list day
GROUP_FEATURE = "outreach_action"  # the (would-be) action of the assignment
DEFAULT_LGBM = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 7,
                "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1,
                "colsample_bytree": 0.8, "reg_lambda": 1.0, "verbose": -1, "n_jobs": 1}


def enough_evidence(treated: Sequence[bool], control: Sequence[bool],
                    min_per_arm: int = MIN_PER_ARM) -> tuple[bool, str]:
    """Whether an uplift model may be fitted, and the reason in words when not."""
    n_treated, n_control = int(np.sum(treated)), int(np.sum(control))
    if min(n_treated, n_control) < min_per_arm:
        return False, (f"too few measured outcomes for an uplift model: {n_treated} contacted "
                       f"and {n_control} control customers, {min_per_arm} per arm needed")
    return True, f"{n_treated} contacted and {n_control} control customers measured"


@dataclass
class UpliftModel:
    """Two classifiers of `retained`: on contacted and on control customers."""

    features: list[str]
    treated_model: Any
    control_model: Any
    n_treated: int
    n_control: int
    categories: dict[str, list] = field(default_factory=dict)

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.reindex(columns=self.features).copy()
        for column, cats in self.categories.items():
            out[column] = pd.Categorical(out[column].astype("object"), categories=cats)
        for column in out.columns:
            if column not in self.categories:
                out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
        return out

    def retention(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """P(retained) if contacted and if not, per row."""
        frame = self._frame(X)
        return (self.treated_model.predict_proba(frame)[:, 1],
                self.control_model.predict_proba(frame)[:, 1])

    learner: str = "t"
    effect_models: tuple[Any, Any] | None = None  # X-learner: tau on treated, tau on control
    propensity: float = 0.5  # share of treated among the fitted rows (X-learner weight)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Uplift: the change in the chance of staying that contact brings."""
        if self.effect_models is not None:
            frame = self._frame(X)
            on_treated, on_control = (m.predict(frame) for m in self.effect_models)
            return self.propensity * on_control + (1 - self.propensity) * on_treated
        with_contact, without = self.retention(X)
        return with_contact - without


def fit_uplift(features: pd.DataFrame, treated: Sequence[bool], retained: Sequence[bool], *,
               seed: int = 0, params: Mapping[str, Any] | None = None,
               min_per_arm: int = MIN_PER_ARM, learner: str = "t"
               ) -> UpliftModel | RescueHarmModel:
    """Rescue/harm learner (`learner` "rescue_harm", `churnlens.rescue_harm`: needs the column
    `ANCHOR_FEATURE`, uses `GROUP_FEATURE` when present), T-learner ("t", the default here: it
    needs no particular column; the export's default is `DEFAULT_LEARNER`) or X-learner ("x")
    with LightGBM. `features`: one row per
    measured assignment (features on the list date); `treated`: contacted (True) or control
    (False); `retained`: the outcome. Object/string/category columns become LightGBM
    categoricals. Raises ValueError when an arm has fewer than `min_per_arm` rows (see
    `enough_evidence`).

    X-learner (Kuenzel et al. 2019): the two outcome models of the T-learner impute each
    customer's effect (treated: retained - P(retained | x, control); control: P(retained | x,
    contacted) - retained); a regressor per arm learns the imputed effect from x, and the two
    are averaged with the propensity as weight (the control arm's model gets the treated share).
    Each effect model is fitted on the outcomes of one arm and the other arm's model, so it
    borrows strength across the arms."""
    if learner not in LEARNERS:
        raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {learner!r}")
    treated = np.asarray(treated, dtype=bool)
    ok, reason = enough_evidence(treated, ~treated, min_per_arm)
    if not ok:
        raise ValueError(reason)
    if learner == "rescue_harm":
        from churnlens.rescue_harm import fit_rescue_harm

        return fit_rescue_harm(features, treated, retained, anchor=ANCHOR_FEATURE,
                               group=GROUP_FEATURE)
    import lightgbm as lgb

    retained = np.asarray(retained, dtype=bool)
    text_types = (pd.CategoricalDtype, pd.StringDtype)
    categories = {c: sorted(features[c].dropna().astype(str).unique().tolist())
                  for c in features.columns
                  if features[c].dtype == object or isinstance(features[c].dtype, text_types)}
    model = UpliftModel(list(features.columns), None, None, int(treated.sum()),
                        int((~treated).sum()), categories)
    frame = model._frame(features.astype({c: "object" for c in categories}))
    settings = {**DEFAULT_LGBM, **(params or {}), "random_state": int(seed)}
    fitted = []
    for arm in (treated, ~treated):
        y = retained[arm]
        if y.all() or not y.any():  # one class only: a constant model
            fitted.append(_Constant(float(y.mean())))
            continue
        fitted.append(lgb.LGBMClassifier(**settings).fit(frame[arm], y))
    model.treated_model, model.control_model = fitted
    if learner == "x":
        import lightgbm as lgb

        on_control = model.treated_model.predict_proba(frame)[:, 1]
        on_treated = model.control_model.predict_proba(frame)[:, 1]
        imputed = np.where(treated, retained - on_treated, on_control - retained)
        regressor = {k: v for k, v in settings.items() if k != "objective"}
        model.effect_models = tuple(
            lgb.LGBMRegressor(**regressor).fit(frame[arm], imputed[arm])
            for arm in (treated, ~treated))
        model.learner, model.propensity = "x", float(treated.mean())
    return model


class _Constant:
    def __init__(self, p: float) -> None:
        self.p = p

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.full(len(X), 1 - self.p), np.full(len(X), self.p)])


def expected_revenue_saved(uplift: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """Uplift x expected revenue over the horizon (missing value = 0)."""
    value = np.nan_to_num(np.asarray(value, dtype=float), nan=0.0)
    return np.asarray(uplift, dtype=float) * value


def qini_curve(score: Sequence[float], treated: Sequence[bool], retained: Sequence[bool],
               weight: Sequence[float] | None = None) -> pd.DataFrame:
    """The Qini curve of a ranking (highest `score` first) on measured customers: for each
    number targeted k, `targeted_share` = k / n and `qini` = kept_treated(k) -
    kept_control(k) x treated(k) / control(k), where kept counts retained customers (or sums
    `weight`, e.g. revenue); `random` is the straight line to the same end point."""
    score = np.asarray(score, dtype=float)
    treated = np.asarray(treated, dtype=bool)
    retained = np.asarray(retained, dtype=bool)
    w = np.ones(len(score)) if weight is None else np.nan_to_num(
        np.asarray(weight, dtype=float), nan=0.0)
    order = np.argsort(-score, kind="mergesort")
    t, r, w = treated[order], retained[order], w[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    kept_t, kept_c = np.cumsum(r * w * t), np.cumsum(r * w * ~t)
    with np.errstate(divide="ignore", invalid="ignore"):
        qini = kept_t - np.where(n_c > 0, kept_c * n_t / n_c, 0.0)
    k = np.arange(1, len(score) + 1)
    share = k / max(len(score), 1)
    return pd.DataFrame({"targeted_share": np.concatenate([[0.0], share]),
                         "qini": np.concatenate([[0.0], qini]),
                         "random": np.concatenate([[0.0], share * (qini[-1] if len(qini)
                                                                     else 0.0)])})


def qini_coefficient(score: Sequence[float], treated: Sequence[bool], retained: Sequence[bool],
                     weight: Sequence[float] | None = None) -> float:
    """Area between the Qini curve and the random line, per customer on the list (0 = no
    better than random; in units of customers (or `weight`) kept per customer)."""
    curve = qini_curve(score, treated, retained, weight)
    gap = (curve["qini"] - curve["random"]).to_numpy()
    x = curve["targeted_share"].to_numpy()
    area = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))
    return area / max(len(curve) - 1, 1)


def capped(value: Sequence[float], quantile: float = 0.95) -> np.ndarray:
    """Values winsorised at their `quantile` (missing = 0, negative = 0), for revenue-weighted
    evaluation: on a few hundred measured customers one large account would otherwise decide the
    sign of a revenue-weighted Qini (a single harmed account of 21,600 did so in the closed
    loop), which then measures that account, not the ranking."""
    value = np.clip(np.nan_to_num(np.asarray(value, dtype=float), nan=0.0), 0.0, None)
    if not len(value):
        return value
    return np.minimum(value, float(np.quantile(value, quantile)))


def qini_interval(score: Sequence[float], treated: Sequence[bool], retained: Sequence[bool],
                  weight: Sequence[float] | None = None, *, confidence: float = 0.95,
                  draws: int = 300, seed: int = 0) -> tuple[float, float]:
    """Bootstrap percentile interval of `qini_coefficient`: customers resampled with
    replacement within each arm (the arms' sizes kept), `draws` times."""
    score = np.asarray(score, dtype=float)
    treated = np.asarray(treated, dtype=bool)
    retained = np.asarray(retained, dtype=bool)
    w = None if weight is None else np.asarray(weight, dtype=float)
    rng = np.random.default_rng(seed)
    arms = [np.flatnonzero(treated), np.flatnonzero(~treated)]
    values = []
    for _ in range(int(draws)):
        # in the original order, so that tied scores are ordered as in the point estimate
        rows = np.sort(np.concatenate([rng.choice(a, len(a)) for a in arms if len(a)]))
        values.append(qini_coefficient(score[rows], treated[rows], retained[rows],
                                       None if w is None else w[rows]))
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def kept_by_ranking(score: Sequence[float], effect: Sequence[float], share: float) -> float:
    """What contacting the top `share` of a ranking truly keeps, given each customer's known
    effect (e.g. simulated (Y1 - Y0) x revenue)."""
    score = np.asarray(score, dtype=float)
    k = int(round(float(share) * len(score)))
    order = np.argsort(-score, kind="mergesort")[:k]
    return float(np.asarray(effect, dtype=float)[order].sum())


def evaluate(score: Sequence[float], treated: Sequence[bool], retained: Sequence[bool],
             weight: Sequence[float] | None = None, *, points: int = 11) -> dict[str, Any]:
    """Qini coefficient and a coarse curve (for `reports/outreach.json`)."""
    curve = qini_curve(score, treated, retained, weight)
    picks = np.unique(np.round(np.linspace(0, len(curve) - 1, points)).astype(int))
    return {"qini_coefficient": round(qini_coefficient(score, treated, retained, weight), 6),
            "customers": int(len(curve) - 1),
            "curve": [{"targeted_share": round(float(curve["targeted_share"].iat[i]), 4),
                       "qini": round(float(curve["qini"].iat[i]), 4),
                       "random": round(float(curve["random"].iat[i]), 4)} for i in picks]}
