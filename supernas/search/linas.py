"""LINAS (predictor-guided evolutionary search) and its constrained single-objective variant.

Outer loop: measure a population for real. Inner loop: fit one predictor per column on everything
measured so far (``supernas.predict``, model chosen by CV), run a pymoo MOEA on the predicted objectives
(warm-started from the measured Pareto front), and propose the next population from every config the inner
run visited that was never measured, chosen by pymoo's rank-and-crowding survival (good and diverse).
"""
from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.evaluator import Evaluator
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.optimize import minimize
from pymoo.problems.static import StaticProblem

from ..errors import ConfigError
from ..predict import DEFAULT_MODELS, Predictor, fit_predictor
from ..space import Config, SearchSpace
from .base import Strategy, register_strategy
from .evolution import make_algorithm
from .pareto import pareto_indices


def canonical_vectors(space: SearchSpace, X: np.ndarray) -> np.ndarray:
    """Rounded, clipped encoded vectors with inactive genes set to 0 (equal vectors <=> equal configs)."""
    xl, xu = space.bounds()
    Xi = np.clip(np.rint(np.atleast_2d(X)), xl, xu).astype(int)
    for j, c in enumerate(space.choices):
        if c.active_if is not None:
            parent, k = c.active_if
            pj = space.names.index(parent)
            parent_values = np.asarray(space[parent].options)[Xi[:, pj]]
            Xi[parent_values <= k, j] = 0
    return Xi


def vector_features(space: SearchSpace, Xc: np.ndarray) -> np.ndarray:
    """``space.features`` of every canonical vector at once (same layout: ordinal, then one-hot)."""
    blocks = []
    for j, c in enumerate(space.choices):
        n = len(c.options)
        active = np.ones(len(Xc), dtype=bool)
        if c.active_if is not None:
            parent, k = c.active_if
            active = np.asarray(space[parent].options)[Xc[:, space.names.index(parent)]] > k
        blocks.append(np.where(active, (Xc[:, j] + 1) / n, 0.0)[:, None])
        blocks.append(np.eye(n)[Xc[:, j]] * active[:, None])
    return np.hstack(blocks)


class _PredictedProblem(Problem):
    """Objectives and constraints predicted for encoded configs; remembers every config it saw."""

    def __init__(self, strategy: "LINAS", predictors: dict[str, Predictor]) -> None:
        xl, xu = strategy.space.bounds()
        super().__init__(n_var=len(strategy.space), n_obj=len(strategy.search_columns),
                         n_ieq_constr=len(strategy.constraints), xl=xl.astype(float), xu=xu.astype(float))
        self.strategy, self.predictors = strategy, predictors
        self.visited: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _evaluate(self, X: np.ndarray, out: dict, *args: Any, **kwargs: Any) -> None:
        s = self.strategy
        Xc = canonical_vectors(s.space, X)
        feats = vector_features(s.space, Xc)
        pred = {c: self.predictors[c].predict(feats) for c in s.predicted_columns}
        F = np.column_stack([pred[c] * s.sign_of[c] for c in s.search_columns])
        out["F"] = F
        G = np.column_stack([c.violation(pred[c.column]) for c in s.constraints]) if s.constraints \
            else np.zeros((len(X), 0))
        if s.constraints:
            out["G"] = G
        for x, f, g in zip(Xc, F, G):
            self.visited.setdefault(x.tobytes(), (x, f, g))


@register_strategy("linas")
class LINAS(Strategy):
    """Predictor-guided search: ``initial`` uniform samples, then rounds of ``population`` proposals from an
    inner pymoo run (``inner`` = ``nsga2``/``agemoea``, ``inner_pop`` x ``inner_generations``) on predictors
    cross-validated over ``models`` with ``folds`` folds. Never proposes a measured config."""

    inner_default = "nsga2"

    def __init__(self, space: SearchSpace, columns: Sequence[str], *, seed: int = 0, constraints: Any = None,
                 population: int = 10, initial: int = 20, inner: str | None = None, inner_pop: int = 50,
                 inner_generations: int = 20, models: Sequence[str] = DEFAULT_MODELS, folds: int = 3) -> None:
        super().__init__(space, columns, seed=seed, constraints=constraints)
        if population < 1 or initial < 2:
            raise ConfigError(f"linas needs population >= 1 and initial >= 2, got {population} and {initial}")
        self.population, self.initial = int(population), int(initial)
        self.inner = inner or self.inner_default
        self.inner_pop, self.inner_generations = int(inner_pop), int(inner_generations)
        self.models, self.folds = tuple(models), int(folds)
        self.search_columns: list[str] = list(self.columns)
        self.sign_of = dict(zip(self.columns, self.signs))
        self.round = 0
        self._queue: list[Config] = []
        self.predictors: dict[str, Predictor] = {}

    @property
    def predicted_columns(self) -> list[str]:
        cols = list(self.search_columns)
        return cols + [c.column for c in self.constraints if c.column not in cols]

    def _propose(self, n: int) -> list[Config]:
        out: list[Config] = []
        rounds = 0
        while len(out) < n:
            self._queue = [c for c in self._queue if not self.seen(self.space.key(c))]
            if not self._queue:
                n_known = len(self.results) + sum(k not in self.results for k in self.asked) + len(out)
                if n_known < self.initial:
                    self._queue = self.random_unseen(self.initial - n_known, exclude=out)
                elif rounds < 2:
                    rounds += 1
                    self._queue = [c for c in self._predictor_round() if c not in out]
                if not self._queue:
                    break
            take, self._queue = self._queue[: n - len(out)], self._queue[n - len(out):]
            out += take
        if len(out) < n:
            out += self.random_unseen(n - len(out), exclude=out)
        return out

    def fit(self) -> dict[str, Predictor]:
        """Fit one predictor per needed column on every successful measurement (seeded per round)."""
        cfgs, results = self.measured()
        X = self.space.features_many(cfgs)
        self.predictors = {c: fit_predictor(X, [r[c] for r in results], column=c, models=self.models,
                                            folds=self.folds, seed=self.seed + self.round) for c in self.predicted_columns}
        return self.predictors

    def _inner_pop(self) -> int:
        """``inner_pop``, smaller for tiny spaces where pymoo cannot find that many distinct offspring."""
        return int(min(self.inner_pop, max(8, self.space.size() // 8)))

    def _warm_start(self, rng_seed: int) -> np.ndarray:
        cfgs, results = self.measured()
        F = np.array([self.minimised(r)[[self.columns.index(c) for c in self.search_columns]] for r in results])
        order = pareto_indices(F) if len(self.search_columns) > 1 else list(np.argsort(F[:, 0], kind="stable"))
        size = self._inner_pop()
        seeds = [cfgs[i] for i in order][: size // 2]
        fill = [self.space.sample(rng=random.Random(rng_seed + i)) for i in range(size - len(seeds))]
        return np.array([self.space.encode(c) for c in seeds + fill], dtype=float)

    def _predictor_round(self) -> list[Config]:
        self.round += 1
        predictors = self.fit()
        problem = _PredictedProblem(self, predictors)
        round_seed = self.seed * 7919 + self.round
        algorithm = make_algorithm(self.inner, self._inner_pop(), self._warm_start(round_seed), round_seed)
        minimize(problem, algorithm, ("n_gen", self.inner_generations), seed=round_seed, verbose=False)
        seen = {self.space.encode(cfg).tobytes() for cfg in self.configs.values()}
        fresh = [v for b, v in problem.visited.items() if b not in seen]
        if not fresh:
            return []
        X = np.array([v[0] for v in fresh])
        chosen = self._select(X, np.array([v[1] for v in fresh]), np.array([v[2] for v in fresh]), problem)
        return [self.space.decode(X[i]) for i in chosen]

    def _select(self, X: np.ndarray, F: np.ndarray, G: np.ndarray, problem: Problem) -> list[int]:
        """Indices of ``population`` candidates by pymoo rank-and-crowding on predicted objectives
        (feasible first)."""
        k = min(self.population, len(X))
        pop = Population.new("X", X.astype(float))
        kw = {"G": G} if self.constraints else {}
        Evaluator().eval(StaticProblem(problem, F=F, **kw), pop)
        chosen = RankAndCrowding().do(problem, pop, n_survive=k, random_state=np.random.default_rng(self.round),
                                      return_indices=True)
        return [int(i) for i in chosen]


@register_strategy("constrained")
class ConstrainedSearch(LINAS):
    """Best ``objective`` (default: the first column) under the given constraints: a LINAS whose inner loop is
    pymoo's single-objective GA with constraint handling on predicted values; proposals are the
    predicted-feasible, predicted-best unmeasured configs."""

    inner_default = "ga"

    def __init__(self, space: SearchSpace, columns: Sequence[str], *, seed: int = 0, constraints: Any = None,
                 objective: str | None = None, **kw: Any) -> None:
        super().__init__(space, columns, seed=seed, constraints=constraints, **kw)
        if not self.constraints:
            raise ConfigError("strategy 'constrained' needs at least one constraint, e.g. 'latency_ms@cpu <= 5'")
        objective = objective or self.columns[0]
        if objective not in self.columns:
            raise ConfigError(f"objective {objective!r} is not among the columns {self.columns}")
        self.objective = objective
        self.search_columns = [objective]

    def _select(self, X: np.ndarray, F: np.ndarray, G: np.ndarray, problem: Problem) -> list[int]:
        cv = np.maximum(G, 0).sum(axis=1) if G.size else np.zeros(len(X))
        order = np.lexsort((F[:, 0], cv))  # least predicted violation first, then best predicted objective
        return [int(i) for i in order[: self.population]]
