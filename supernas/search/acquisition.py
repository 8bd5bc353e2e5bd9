"""LINAS's batch acquisition: Monte-Carlo expected hypervolume improvement (q-EHVI) over predicted scenarios.

*Scenarios.* For every predicted column a bootstrap ensemble of the cross-validated model is fitted; one
scenario is a plausible outcome of measuring every candidate: per column, the prediction of one randomly drawn
ensemble member (what the model does not know) plus Gaussian noise with the model's cross-validated residual
spread (what a measurement adds on top of what any model of the features can know: evaluation noise,
interactions the model misses). Candidates whose measured value may turn out better than predicted thus keep a
chance in proportion to how likely that is, and exploitation (the ensemble mean) mixes with exploration (its
spread and the residuals).

*EHVI.* Objectives are turned into minimisation and normalised by the measured range; hypervolume is taken
against ``REFERENCE`` as in :mod:`supernas.search.pareto`. Monte-Carlo points are spread uniformly over the part
of the box that the measured front does not dominate; a candidate's gain in a scenario is the share of those
points it dominates there and no earlier pick of the batch dominates in the same scenario (sequential greedy
q-EHVI with per-scenario fantasies, as in BoTorch's qEHVI). With constraints a candidate counts only in the
scenarios where its predicted constraint values are satisfied.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn.model_selection import KFold, cross_val_predict

from ..predict import MODELS
from .pareto import REFERENCE


class BootstrapEnsemble:
    """``members`` copies of a ``supernas.predict`` model (``MODELS[model]``), each fitted on a bootstrap
    resample (on ``transform(X)`` when given, e.g. a :class:`~supernas.predict.FeatureMap`'s derived columns);
    ``residual_std`` is the spread of the model's 5-fold cross-validated residuals (what one
    measurement differs from the model's prediction). With ``log`` the model works on log values (for strictly
    positive, skewed columns such as latency: multiplicative noise), and predictions and scenarios are turned
    back.
    Deterministic for a ``seed``."""

    def __init__(self, model: str, members: int = 8, seed: int = 0, log: bool = False,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.model, self.members, self.seed, self.log = model, int(members), int(seed), bool(log)
        self.transform = transform
        self.estimators: list[Any] = []
        self.residual_std = 0.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> "BootstrapEnsemble":
        X, y = self._inputs(X), np.asarray(y, float)
        if self.log:
            y = np.log(y)
        n = len(y)
        rng = np.random.default_rng(self.seed)
        self.estimators = []
        for b in range(self.members):
            idx = rng.integers(0, n, n)
            if np.ptp(y[idx]) == 0:  # a constant resample teaches nothing; use all data for this member
                idx = np.arange(n)
            self.estimators.append(MODELS[self.model](self.seed + b).fit(X[idx], y[idx]))
        folds = min(5, n)
        if folds >= 2 and np.ptp(y) > 0:
            cv = KFold(folds, shuffle=True, random_state=self.seed)
            oof = cross_val_predict(MODELS[self.model](self.seed), X, y, cv=cv)
            self.residual_std = float(np.std(y - oof))
        else:
            self.residual_std = 0.0
        return self

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, float))
        return self.transform(X) if self.transform is not None else X

    def _members(self, X: np.ndarray) -> np.ndarray:
        X = self._inputs(X)
        return np.array([est.predict(X) for est in self.estimators], dtype=float)

    def predict_members(self, X: np.ndarray) -> np.ndarray:
        """(members, n) predictions in the column's units."""
        P = self._members(X)
        return np.exp(P) if self.log else P

    def scenarios(self, X: np.ndarray, n_scenarios: int, rng: np.random.Generator) -> np.ndarray:
        """(n_scenarios, n) sampled outcomes: a random member's prediction plus cross-validated residual noise."""
        P = self._members(X)
        noise = rng.standard_normal((n_scenarios, P.shape[1])) * self.residual_std
        out = P[rng.integers(0, len(P), n_scenarios)] + noise
        return np.exp(out) if self.log else out


class KnownColumn:
    """A column computed exactly (a predictor of model ``exact``): every member and scenario is its value."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    def predict_members(self, X: np.ndarray) -> np.ndarray:
        return self.predictor.predict(np.atleast_2d(X))[None, :]

    def scenarios(self, X: np.ndarray, n_scenarios: int, rng: np.random.Generator) -> np.ndarray:
        return np.repeat(self.predict_members(X), n_scenarios, axis=0)


def dominated_by(front: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Boolean mask: rows of ``P`` weakly dominated by some row of ``front`` (minimisation)."""
    mask = np.zeros(len(P), dtype=bool)
    for f in front:
        mask |= np.all(f <= P, axis=1)
    return mask


def greedy_ehvi(front: np.ndarray, scen: np.ndarray, k: int, rng: np.random.Generator, *,
                feasible: np.ndarray | None = None, points: int = 16384, max_candidates: int = 4096) -> list[int]:
    """Up to ``k`` candidate indices, greedily maximising Monte-Carlo expected hypervolume improvement.

    ``front``: (p, m) measured non-dominated points, normalised minimisation (p may be 0); ``scen``:
    (S, C, m) scenario values of the C candidates in the same units; ``feasible``: (S, C) whether the candidate
    satisfies the constraints in each scenario. ``points`` uniform draws in the box between the best values
    and ``REFERENCE`` estimate the volumes (those the front already dominates are dropped). Only the
    ``max_candidates`` candidates most often not dominated by the front are scored; dominance is kept as
    packed bits (S x candidates x points / 8 bytes). Picks stop early when no candidate adds anything in any
    scenario.
    """
    S, C, m = scen.shape
    if C == 0 or k <= 0:
        return []
    ok = np.ones((S, C), dtype=bool) if feasible is None else np.asarray(feasible, dtype=bool)
    free = (np.array([~dominated_by(front, scen[s]) for s in range(S)]) & ok).sum(axis=0)  # scenarios per candidate
    order = np.argsort(-free, kind="stable")[:max_candidates]
    keep = order[free[order] > 0]
    if len(keep) == 0:
        return []
    sub = scen[:, keep, :]
    ref = np.full(m, REFERENCE)
    lo = np.minimum(sub.reshape(-1, m).min(axis=0), front.min(axis=0) if len(front) else ref)
    lo = np.minimum(lo, ref - 1e-9)
    U = lo + rng.random((points, m)) * (ref - lo)
    U = U[~dominated_by(front, U)]
    if len(U) == 0:
        return []
    # D[s, c]: packed bits over U, candidate c dominates the point in scenario s (and is feasible there)
    D = np.stack([np.packbits(np.all(sub[s][:, None, :] <= U[None, :, :], axis=2) & ok[s, keep][:, None], axis=1)
                  for s in range(S)])
    alive = np.full((S, D.shape[2]), 0xFF, dtype=np.uint8)
    chosen: list[int] = []
    for _ in range(min(k, len(keep))):
        gain = np.bitwise_count(D & alive[:, None, :]).sum(axis=(0, 2), dtype=np.int64)
        gain[chosen] = -1
        best = int(np.argmax(gain))
        if gain[best] <= 0:
            break
        chosen.append(best)
        alive &= ~D[:, best, :]  # the pick's points are no longer up for grabs in its scenarios
    return [int(keep[i]) for i in chosen]
