"""LINAS (predictor-guided search) and its constrained single-objective variant.

Outer loop: measure a small batch (``population``) for real. Inner loop, once per batch: fit one predictor
per column on everything measured so far (``supernas.predict``, model chosen by CV) and propose the next batch,
never a config already measured or asked. Two acquisitions:

* ``ehvi`` (default): bootstrap ensembles of each column's chosen model give scenarios of what measuring a
  candidate could yield (:mod:`supernas.search.acquisition`); the batch maximises Monte-Carlo expected
  hypervolume improvement over the measured front. Candidates are every config one choice away from the
  measured non-dominated set (local search around the front) plus the final population of a pymoo MOEA run on
  the ensembles' mean predictions (far-away configs the model believes in).
* ``moea`` (the original LINAS): the MOEA, warm-started from the measured front, runs on the predicted
  objectives and the batch is chosen among every unmeasured config it visited by pymoo's rank-and-crowding.
"""
from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

import numpy as np
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.evaluator import Evaluator
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.optimize import minimize
from pymoo.problems.static import StaticProblem
from threadpoolctl import threadpool_limits

from ..errors import ConfigError
from ..predict import DEFAULT_MODELS, FeatureMap, Predictor, as_feature_map, fit_predictor
from ..space import Config, SearchSpace
from .acquisition import BootstrapEnsemble, KnownColumn, greedy_ehvi
from .base import Strategy, register_strategy
from .evolution import make_algorithm
from .pareto import pareto_indices

ACQUISITIONS = ("ehvi", "moea")


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


def neighbours(space: SearchSpace, X: np.ndarray) -> np.ndarray:
    """Canonical vectors of every config one choice away from a row of ``X`` (the rows themselves and
    duplicates removed); changing a depth also activates or drops the choices it governs."""
    X = canonical_vectors(space, X)
    xl, xu = space.bounds()
    moved = []
    for j in range(X.shape[1]):
        for v in range(int(xl[j]), int(xu[j]) + 1):
            Y = X[X[:, j] != v].copy()
            Y[:, j] = v
            moved.append(Y)
    if not moved:
        return np.zeros((0, X.shape[1]), dtype=int)
    N = np.unique(canonical_vectors(space, np.vstack(moved)), axis=0)
    own = {x.tobytes() for x in X}
    return N[[x.tobytes() not in own for x in N]]


class _PredictedProblem(Problem):
    """Objectives and constraints predicted for encoded configs; remembers every config it saw.
    ``models`` maps each predicted column to anything with ``predict(features)``."""

    def __init__(self, strategy: "LINAS", models: Mapping[str, Any]) -> None:
        xl, xu = strategy.space.bounds()
        super().__init__(n_var=len(strategy.space), n_obj=len(strategy.search_columns),
                         n_ieq_constr=len(strategy.constraints), xl=xl.astype(float), xu=xu.astype(float))
        self.strategy, self.models = strategy, models
        self.visited: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def predict(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(F, G) of canonical vectors: minimised search columns, constraint violations."""
        s = self.strategy
        feats = vector_features(s.space, Xc)
        pred = {c: self.models[c].predict(feats) for c in s.predicted_columns}
        F = np.column_stack([pred[c] * s.sign_of[c] for c in s.search_columns])
        G = np.column_stack([c.violation(pred[c.column]) for c in s.constraints]) if s.constraints \
            else np.zeros((len(Xc), 0))
        return F, G

    def _evaluate(self, X: np.ndarray, out: dict, *args: Any, **kwargs: Any) -> None:
        Xc = canonical_vectors(self.strategy.space, X)
        F, G = self.predict(Xc)
        out["F"] = F
        if self.strategy.constraints:
            out["G"] = G
        for x, f, g in zip(Xc, F, G):
            self.visited.setdefault(x.tobytes(), (x, f, g))


class _EnsembleMean:
    def __init__(self, ensemble: BootstrapEnsemble | KnownColumn) -> None:
        self.ensemble = ensemble

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.ensemble.predict_members(X).mean(axis=0)


@register_strategy("linas")
class LINAS(Strategy):
    """Predictor-guided search: ``initial`` uniform samples, then rounds of ``population`` proposals (default 2;
    give it at least the number of parallel workers to keep them all busy), one round per ``ask``, so every
    batch is chosen with every result told so far, on predictors cross-validated over ``models`` with ``folds``
    folds. ``acquisition`` ``ehvi`` (default; ``ensemble`` bootstrap members per column, ``scenarios``
    Monte-Carlo scenarios) or ``moea``; the inner pymoo run is ``inner`` = ``nsga2``/``agemoea``, ``inner_pop``
    x ``inner_generations`` (default 20 for ``moea``; 0 = no inner run, the default for ``ehvi``, whose
    candidates are then the front's one-choice neighbours). ``features``: a
    :class:`~supernas.predict.FeatureMap` (or the names of its parts, without a cost table) whose derived
    columns the predictors see; a column its cost table computes exactly (e.g. ``macs``) is not predicted.
    Never proposes a measured config."""

    inner_default = "nsga2"
    acquisition_default = "ehvi"
    #: rounds of 2: on the mbv3 table (10 seeds) the median evaluations to 99% of the true front's hypervolume
    #: fell from 114 (rounds of 5) to 97.5 (rounds of 3) and 93.5
    population_default = 2

    def __init__(self, space: SearchSpace, columns: Sequence[str], *, seed: int = 0, constraints: Any = None,
                 population: int | None = None, initial: int = 20, inner: str | None = None, inner_pop: int = 50,
                 inner_generations: int | None = None, models: Sequence[str] = DEFAULT_MODELS, folds: int = 3,
                 acquisition: str | None = None, ensemble: int = 8, scenarios: int = 32,
                 log_columns: bool = True, features: FeatureMap | Sequence[str] | None = None) -> None:
        super().__init__(space, columns, seed=seed, constraints=constraints)
        population = self.population_default if population is None else population
        if population < 1 or initial < 2:
            raise ConfigError(f"linas needs population >= 1 and initial >= 2, got {population} and {initial}")
        self.acquisition = acquisition or self.acquisition_default
        if self.acquisition not in ACQUISITIONS:
            raise ConfigError(f"unknown linas acquisition {self.acquisition!r}; known: {', '.join(ACQUISITIONS)}")
        if ensemble < 2 or scenarios < 1:
            raise ConfigError(f"linas needs ensemble >= 2 and scenarios >= 1, got {ensemble} and {scenarios}")
        self.population, self.initial = int(population), int(initial)
        self.inner = inner or self.inner_default
        if inner_generations is None:  # ehvi: local candidates only (measured best on the mbv3 table)
            inner_generations = 0 if self.acquisition == "ehvi" else 20
        self.inner_pop, self.inner_generations = int(inner_pop), int(inner_generations)
        self.models, self.folds = tuple(models), int(folds)
        self.ensemble, self.scenarios = int(ensemble), int(scenarios)
        self.log_columns = bool(log_columns)
        self.features = as_feature_map(space, features)
        self.search_columns: list[str] = list(self.columns)
        self.sign_of = dict(zip(self.columns, self.signs))
        self.round = 0
        self._queue: list[Config] = []
        self.predictors: dict[str, Predictor] = {}
        self.ensembles: dict[str, BootstrapEnsemble | KnownColumn] = {}

    @property
    def predicted_columns(self) -> list[str]:
        cols = list(self.search_columns)
        return cols + [c.column for c in self.constraints if c.column not in cols]

    def _propose(self, n: int) -> list[Config]:
        self._queue = [c for c in self._queue if not self.seen(self.space.key(c))]
        if not self._queue:
            n_known = len(self.results) + sum(k not in self.results for k in self.asked)
            if n_known < self.initial or len(self.measured()[0]) < 2:
                self._queue = self.random_unseen(max(self.initial - n_known, 1))
            else:
                self._queue = self._predictor_round()
        out, self._queue = self._queue[:n], self._queue[n:]
        return out or self.random_unseen(n)  # nothing new predicted: the space is nearly exhausted

    def fit(self) -> dict[str, Predictor]:
        """Fit one predictor per needed column on every successful measurement (seeded per round)."""
        cfgs, results = self.measured()
        X = self.space.features_many(cfgs)
        self.predictors = {c: fit_predictor(X, [r[c] for r in results], column=c, models=self.models,
                                            folds=self.folds, seed=self.seed + self.round, features=self.features)
                           for c in self.predicted_columns}
        return self.predictors

    def _inner_pop(self) -> int:
        """``inner_pop``, smaller for tiny spaces where pymoo cannot find that many distinct offspring."""
        return int(min(self.inner_pop, max(8, self.space.size() // 8)))

    def _search_values(self, results: Sequence[Mapping[str, float]]) -> np.ndarray:
        """(n, search columns) minimised values of measured results."""
        idx = [self.columns.index(c) for c in self.search_columns]
        return np.array([self.minimised(r)[idx] for r in results]).reshape(len(results), len(idx))

    def _measured_front(self, feasible_only: bool = False) -> tuple[list[Config], np.ndarray]:
        """The measured non-dominated configs and their minimised search-column values (one search column:
        every measured config, best first)."""
        cfgs, results = self.measured()
        if feasible_only:
            keep = [i for i, r in enumerate(results) if all(c.ok(r) for c in self.constraints)]
            cfgs, results = [cfgs[i] for i in keep], [results[i] for i in keep]
        F = self._search_values(results)
        order = pareto_indices(F) if len(self.search_columns) > 1 else list(np.argsort(F[:, 0], kind="stable"))
        return [cfgs[i] for i in order], F[order]

    def _warm_start(self, rng_seed: int) -> np.ndarray:
        seeds = self._measured_front()[0][: self._inner_pop() // 2]
        fill = [self.space.sample(rng=random.Random(rng_seed + i)) for i in range(self._inner_pop() - len(seeds))]
        return np.array([self.space.encode(c) for c in seeds + fill], dtype=float)

    def _run_inner(self, problem: _PredictedProblem) -> Any:
        round_seed = self.seed * 7919 + self.round
        algorithm = make_algorithm(self.inner, self._inner_pop(), self._warm_start(round_seed), round_seed)
        return minimize(problem, algorithm, ("n_gen", self.inner_generations), seed=round_seed, verbose=False)

    def _seen_vectors(self) -> set[bytes]:
        """Canonical vectors of every config told or asked."""
        enc = np.array([self.space.encode(c) for c in self.configs.values()]).reshape(len(self.configs), -1)
        return {x.tobytes() for x in canonical_vectors(self.space, enc)}

    def _predictor_round(self) -> list[Config]:
        """The next batch; BLAS/OpenMP pools held to one thread (tiny matrices; and the picks then do not
        depend on the machine's core count)."""
        self.round += 1
        with threadpool_limits(limits=1):
            return self._ehvi_round() if self.acquisition == "ehvi" else self._moea_round()

    def _moea_round(self) -> list[Config]:
        problem = _PredictedProblem(self, self.fit())
        self._run_inner(problem)
        seen = self._seen_vectors()
        fresh = [v for b, v in problem.visited.items() if b not in seen]
        if not fresh:
            return []
        X = np.array([v[0] for v in fresh])
        chosen = self._select(X, np.array([v[1] for v in fresh]), np.array([v[2] for v in fresh]), problem)
        return [self.space.decode(X[i]) for i in chosen]

    def _ehvi_round(self) -> list[Config]:
        predictors = self.fit()
        cfgs, results = self.measured()
        X = self.space.features_many(cfgs)
        self.ensembles = {}
        transform = self.features.transform if self.features is not None else None
        for j, c in enumerate(self.predicted_columns):
            if predictors[c].model == "exact":
                self.ensembles[c] = KnownColumn(predictors[c])
                continue
            y = np.array([r[c] for r in results])
            log = self.log_columns and c.startswith("latency") and bool(np.all(y > 0))
            self.ensembles[c] = BootstrapEnsemble(predictors[c].model, self.ensemble, log=log, transform=transform,
                                                  seed=self.seed * 7919 + self.round * 31 + j).fit(X, y)
        problem = _PredictedProblem(self, {c: _EnsembleMean(e) for c, e in self.ensembles.items()})
        front_cfgs, front = self._measured_front(feasible_only=True)
        pool = [neighbours(self.space, np.array([self.space.encode(c) for c in front_cfgs or cfgs]))]
        if self.inner_generations > 0:
            pool.append(canonical_vectors(self.space, self._run_inner(problem).pop.get("X")))
        seen = self._seen_vectors()
        cand = np.unique(np.vstack(pool), axis=0)
        cand = cand[[x.tobytes() not in seen for x in cand]]
        if len(cand) == 0:
            return []
        rng = np.random.default_rng([self.seed, self.round])
        feats = vector_features(self.space, cand)
        scen = {c: e.scenarios(feats, self.scenarios, rng) for c, e in self.ensembles.items()}
        # normalise like the hypervolume: minimisation, the range of everything measured -> [0, 1]
        all_F = self._search_values(results)
        lo, hi = all_F.min(axis=0), all_F.max(axis=0)
        width = np.where(hi > lo, hi - lo, 1.0)
        S = np.stack([scen[c] * self.sign_of[c] for c in self.search_columns], axis=2)
        ok = np.all([c.violation(scen[c.column]) <= 0 for c in self.constraints], axis=0) if self.constraints else None
        picks = greedy_ehvi((front - lo) / width, (S - lo) / width, self.population, rng, feasible=ok)
        if len(picks) < self.population:  # nothing more to gain in any scenario: best predicted by rank and crowding
            rest = np.array([i for i in range(len(cand)) if i not in set(picks)], dtype=int)
            if len(rest):
                F, G = problem.predict(cand[rest])
                picks += [int(rest[i]) for i in self._select(cand[rest], F, G, problem)][: self.population - len(picks)]
        return [self.space.decode(cand[i]) for i in picks]

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
    acquisition_default = "moea"
    population_default = 5  # each round runs a GA on the predictors

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
