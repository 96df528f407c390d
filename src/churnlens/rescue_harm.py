"""Uplift as rescue and harm per action on top of the churn model ("rescue_harm" learner).

A few hundred measured contacted and control customers cannot teach a model again who is about
to leave: the churn model learned that from every customer. What they can teach is what each
action changes. Any effect of a contact on a yes/no outcome is two things: it keeps some
customers who would have left (rescue) and loses some who would have stayed (harm). So:

* without contact a customer stays with the churn model's chance 1 - p (p = the churn
  probability on the list day, recalibrated on the measured customers: logit p' = a + b logit p);
* contact with action k keeps a would-be leaver with probability r_k and loses a would-be stayer
  with probability h_k;
* uplift = p' r_k - (1 - p') h_k, and `RescueHarmModel.rates` gives r_k and h_k in words a
  customer-success team uses ("of the customers who would have left, the onboarding call keeps
  31 %").

Each action's r_k and h_k are pulled towards the rates of all actions together (an L2 penalty
on their logit deviations, `POOLING_WEIGHT`), so an action with few outcomes stays near them.
Customer features enter only through p, and through the action, which the export's rules
already choose from them (open ticket, trial, inactivity, value). Letting r and h depend on
every feature as well (an L2-penalised logistic, penalty chosen by cross-validated likelihood)
was tried on two 53-list closed loops and kept less revenue than this on both (README,
"Ranking by who can be saved").

Assumed: the churn model's p orders the chance of leaving without contact well (its own test
metrics show how well), and an action's rescue and harm rates are the same for every customer
it is suggested to. A T-learner (`churnlens.uplift`) assumes neither and needs far more outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

PRIOR_RESCUE, PRIOR_HARM = 0.10, 0.02  # where the fit starts
POOLING_WEIGHT = 1.0  # L2 weight pulling each action's rescue/harm logit towards all actions'
ALL_ACTIONS = "(any action)"  # the one group when there is no action column


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _leave_logit(X: pd.DataFrame, anchor: str) -> np.ndarray:
    """logit of the churn probability in column `anchor` (missing or not a number: 0.5)."""
    return _logit(pd.to_numeric(X[anchor], errors="coerce").fillna(0.5).to_numpy(float))


@dataclass
class RescueHarmModel:
    """Fitted rescue/harm model: `predict` gives the uplift (see the module docstring)."""

    anchor: str  # column: churn probability on the list day
    group: str | None  # column: the action (None: one group)
    actions: list[str]
    calibration: np.ndarray  # a, b of logit p' = a + b logit p
    rescue_logit: np.ndarray  # per action
    harm_logit: np.ndarray
    overall: np.ndarray  # rescue and harm logits of all actions together (unseen actions)
    n_treated: int
    n_control: int
    learner: str = "rescue_harm"

    def _action_index(self, X: pd.DataFrame) -> np.ndarray:
        """Each row's action as an index into `actions`; -1 for an action not seen in fitting."""
        if self.group is None:
            return np.zeros(len(X), dtype=np.int64)
        lookup = {a: i for i, a in enumerate(self.actions)}
        return np.array([lookup.get(str(a), -1) if pd.notna(a) else -1 for a in X[self.group]],
                        dtype=np.int64)

    def parts(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: chance of leaving without contact, rescue rate, harm rate (an action not seen
        in fitting gets the rates of all actions together)."""
        leave = _sigmoid(self.calibration[0]
                         + self.calibration[1] * _leave_logit(X, self.anchor))
        k = self._action_index(X)
        seen = k >= 0
        rescue = np.where(seen, self.rescue_logit[np.maximum(k, 0)], self.overall[0])
        harm = np.where(seen, self.harm_logit[np.maximum(k, 0)], self.overall[1])
        return leave, _sigmoid(rescue), _sigmoid(harm)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Uplift: the change in the chance of staying that contact brings."""
        leave, rescue, harm = self.parts(X)
        return leave * rescue - (1 - leave) * harm

    def rates(self) -> list[dict[str, float | str]]:
        """Per action: the share of would-be leavers it keeps and of would-be stayers it loses."""
        return [{"action": a, "rescue_rate": round(float(_sigmoid(r)), 4),
                 "harm_rate": round(float(_sigmoid(h)), 4)}
                for a, r, h in zip(self.actions, self.rescue_logit, self.harm_logit, strict=True)]


class _Likelihood:
    """Penalised negative log-likelihood of the rescue/harm model and its gradient. theta = a,
    b, the overall rescue and harm logits, then each action's deviation from them (rescue, then
    harm); the deviations carry an L2 penalty (`POOLING_WEIGHT`), so an action with few outcomes
    is pulled towards the rates of all actions together (partial pooling)."""

    def __init__(self, base: np.ndarray, action: np.ndarray, n_actions: int,
                 treated: np.ndarray, retained: np.ndarray) -> None:
        self.base, self.t, self.y = base, treated.astype(float), retained.astype(float)
        self.onehot = np.eye(n_actions)[action]
        self.k = n_actions

    def start(self) -> np.ndarray:
        return np.concatenate([[0.0, 1.0, _logit(PRIOR_RESCUE), _logit(PRIOR_HARM)],
                               np.zeros(2 * self.k)])

    @staticmethod
    def split(theta: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a, b), per-action rescue logits, per-action harm logits."""
        return theta[:2], theta[2] + theta[4:4 + k], theta[3] + theta[4 + k:]

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        (a, b), alpha, beta = self.split(theta, self.k)
        stay0 = _sigmoid(-(a + b * self.base))  # p' = sigmoid(a + b logit p) is leaving
        r, h = _sigmoid(self.onehot @ alpha), _sigmoid(self.onehot @ beta)
        stay1 = stay0 * (1 - h) + (1 - stay0) * r
        P = np.clip(np.where(self.t > 0, stay1, stay0), 1e-9, 1 - 1e-9)
        g = self.y / P - (1 - self.y) / (1 - P)  # d loglik / dP
        dstay0 = -stay0 * (1 - stay0)  # d stay0 / d(a + b logit p)
        dP_dlin = np.where(self.t > 0, (1 - h - r) * dstay0, dstay0)
        grad_ab = [-np.sum(g * dP_dlin), -np.sum(g * dP_dlin * self.base)]
        grad_alpha = -self.onehot.T @ (g * self.t * (1 - stay0) * r * (1 - r))
        grad_beta = -self.onehot.T @ (g * self.t * -stay0 * h * (1 - h))
        deviation = theta[4:]
        nll = -np.sum(self.y * np.log(P) + (1 - self.y) * np.log(1 - P))
        value = float(nll + 0.5 * POOLING_WEIGHT * np.sum(deviation ** 2))
        grad = np.concatenate([grad_ab, [grad_alpha.sum(), grad_beta.sum()],
                               np.concatenate([grad_alpha, grad_beta])
                               + POOLING_WEIGHT * deviation])
        return value, grad


def fit_rescue_harm(features: pd.DataFrame, treated: Sequence[bool], retained: Sequence[bool],
                    *, anchor: str, group: str | None = None) -> RescueHarmModel:
    """Fit `RescueHarmModel` by penalised maximum likelihood on measured assignments: `features`
    holds `anchor` (the churn probability on the list day) and, when present, `group` (the
    action; other columns are not used); `treated` contacted (True) or control; `retained` the
    outcome. Control rows stay with 1 - p', contacted rows with (1 - p')(1 - h) + p' r."""
    from scipy.optimize import minimize

    if anchor not in features:
        raise ValueError(f"the rescue_harm learner needs the column {anchor!r}")
    group = group if group is not None and group in features else None
    treated = np.asarray(treated, dtype=bool)
    retained = np.asarray(retained, dtype=bool)
    if group is None:
        actions, index = [ALL_ACTIONS], np.zeros(len(features), dtype=np.int64)
    else:
        labels = features[group].astype("object").where(features[group].notna(), "")
        actions = sorted(labels.astype(str).unique().tolist())
        index = np.searchsorted(actions, labels.astype(str).to_numpy())
    objective = _Likelihood(_leave_logit(features, anchor), index, len(actions), treated,
                            retained)
    theta = minimize(objective, objective.start(), jac=True, method="L-BFGS-B",
                     options={"maxiter": 1000}).x
    calibration, rescue, harm = _Likelihood.split(theta, len(actions))
    return RescueHarmModel(anchor, group, actions, calibration, rescue, harm, theta[2:4].copy(),
                           int(treated.sum()), int((~treated).sum()))
