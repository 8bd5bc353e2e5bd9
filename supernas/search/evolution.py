"""Random search and pymoo's evolutionary algorithms (NSGA-II, AGE-MOEA) on integer-encoded configs.

pymoo runs through its ask/tell API: a generation is asked from the algorithm, its configs are decoded
(``space.decode``), those never measured are handed out by ``ask``, and once every result of the
generation is told the generation goes back to pymoo through a ``StaticProblem``. Members whose config was
measured before (duplicates after decoding, warm-start configs) reuse the known result.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pymoo.core.evaluator import Evaluator
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.problems.static import StaticProblem

from ..errors import ConfigError, SupernasError
from ..space import Config, SearchSpace
from .base import Result, Strategy, register_strategy

MAX_EMPTY_GENERATIONS = 20
MATING_TRIES = 10  # generations in a row with nothing new before falling back to random samples


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniform samples over distinct sub-networks, never one already measured."""

    def _propose(self, n: int) -> list[Config]:
        return self.random_unseen(n)


def integer_problem(space: SearchSpace, n_obj: int, n_constr: int) -> Problem:
    """A pymoo problem over ``space.encode`` vectors (evaluated outside pymoo)."""
    xl, xu = space.bounds()
    return Problem(n_var=len(space), n_obj=n_obj, n_ieq_constr=n_constr, xl=xl.astype(float), xu=xu.astype(float))


def make_algorithm(name: str, pop_size: int, sampling: np.ndarray, seed: int) -> Any:
    """pymoo ``nsga2``, ``agemoea`` or single-objective ``ga`` with integer operators (SBX/PM + rounding)."""
    ops = dict(pop_size=pop_size, sampling=sampling, eliminate_duplicates=True,
               crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
               mutation=PM(eta=20, vtype=float, repair=RoundingRepair()))
    if name == "nsga2":
        from pymoo.algorithms.moo.nsga2 import NSGA2 as cls
    elif name == "ga":
        from pymoo.algorithms.soo.nonconvex.ga import GA as cls
    elif name == "agemoea":
        try:
            from pymoo.algorithms.moo.age import AGEMOEA as cls
        except Exception:  # noqa: BLE001 - pymoo raises a bare Exception when numba is missing
            raise SupernasError("strategy 'agemoea' needs numba (pip install numba)") from None
    else:
        raise ConfigError(f"unknown pymoo algorithm {name!r}; known: nsga2, agemoea, ga")
    algorithm = cls(**ops)
    algorithm.mating.n_max_iterations = MATING_TRIES  # small spaces: give up on duplicate-free offspring early
    return algorithm


def decode_population(space: SearchSpace, X: np.ndarray) -> list[Config]:
    xl, xu = space.bounds()
    return [space.decode(np.clip(np.rint(x), xl, xu).astype(int)) for x in np.atleast_2d(X)]


class PymooStrategy(Strategy):
    """Base of the pymoo-backed strategies; ``algorithm`` is ``nsga2`` or ``agemoea``."""

    algorithm_name = "nsga2"

    def __init__(self, space: SearchSpace, columns: Sequence[str], *, seed: int = 0, constraints: Any = None,
                 pop_size: int = 20) -> None:
        super().__init__(space, columns, seed=seed, constraints=constraints)
        if pop_size < 2:
            raise ConfigError(f"pop_size must be at least 2, got {pop_size}")
        self.pop_size = int(pop_size)
        self.problem = integer_problem(space, len(self.columns), len(self.constraints))
        self.algorithm: Any = None
        self._pop: Any = None            # the generation waiting for results
        self._keys: list[str] = []       # key of every member of that generation
        self._queue: list[Config] = []   # its new configs not yet handed out

    def _initial_sampling(self) -> np.ndarray:
        """Warm start: configs told before the first ask come first, then uniform samples."""
        told = [self.configs[k] for k, r in self.results.items() if r is not None][: self.pop_size]
        fresh = self.random_unseen(self.pop_size - len(told))
        cfgs = told + fresh
        if len(cfgs) < 2:
            raise SupernasError("the search space has fewer than 2 sub-networks left to search")
        return np.array([self.space.encode(c) for c in cfgs], dtype=float)

    def _new_generation(self) -> None:
        if self.algorithm is None:
            self.algorithm = make_algorithm(self.algorithm_name, self.pop_size, self._initial_sampling(), self.seed)
            self.algorithm.setup(self.problem, termination=NoTermination(), seed=self.seed, verbose=False)
        self._pop = self.algorithm.ask()
        cfgs = decode_population(self.space, self._pop.get("X"))
        self._keys = [self.space.key(c) for c in cfgs]
        queued: dict[str, Config] = {}
        for key, cfg in zip(self._keys, cfgs):
            if not self.seen(key):
                queued.setdefault(key, cfg)
        self._queue = list(queued.values())

    def _finish_generation(self) -> None:
        rows = [self.results[k] for k in self._keys]
        F = np.array([self.minimised(r) for r in rows])
        kw = {"G": np.array([self.violations(r) for r in rows])} if self.constraints else {}
        Evaluator().eval(StaticProblem(self.problem, F=F, **kw), self._pop)
        self.algorithm.tell(infills=self._pop)
        self._pop, self._keys = None, []

    def _generation_done(self) -> bool:
        return self._pop is not None and all(k in self.results for k in self._keys)

    def _propose(self, n: int) -> list[Config]:
        out: list[Config] = []
        empty = 0
        while len(out) < n:
            if self._pop is None:
                self._new_generation()
            if not self._queue:
                if not self._generation_done():
                    break  # results of handed-out members still outstanding
                self._finish_generation()
                empty += 1
                if empty >= MAX_EMPTY_GENERATIONS:  # converged: fill with random unseen samples
                    out.extend(self.random_unseen(n - len(out), exclude=out))
                    break
                continue
            take, self._queue = self._queue[: n - len(out)], self._queue[n - len(out):]
            out.extend(take)
            empty = 0
        return out

    def _told(self, cfgs: Sequence[Mapping[str, Any]], results: Sequence[Result]) -> None:
        if not self._queue and self._generation_done():
            self._finish_generation()


@register_strategy("nsga2")
class NSGA2Strategy(PymooStrategy):
    """pymoo NSGA-II with real measurements."""

    algorithm_name = "nsga2"


@register_strategy("agemoea")
class AGEMOEAStrategy(PymooStrategy):
    """pymoo AGE-MOEA (adaptive geometry estimation) with real measurements."""

    algorithm_name = "agemoea"
