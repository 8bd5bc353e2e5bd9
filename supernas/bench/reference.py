"""The outside reference: pymoo's NSGA-II called directly on the integer encoding, looking the table up."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import ElementwiseProblem
from pymoo.core.termination import Termination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize

from ..search.base import Constraint
from ..space import SearchSpace
from .tabular import TabularEvaluator

PYMOO_NAME = "pymoo-nsga2"


class TableProblem(ElementwiseProblem):
    """Objectives (minimisation) and constraints of encoded configs, looked up in a table. ``order`` holds
    the values of every *distinct* config in the order first evaluated (repeats are free, as with a store)."""

    def __init__(self, space: SearchSpace, evaluate: TabularEvaluator, columns: Sequence[str],
                 signs: np.ndarray, constraints: Sequence[Constraint] = ()) -> None:
        xl, xu = space.bounds()
        super().__init__(n_var=len(space), n_obj=len(columns), n_ieq_constr=len(constraints), xl=xl, xu=xu,
                         vtype=int)
        self.space, self.lookup, self.columns, self.signs = space, evaluate, list(columns), signs
        self.constraints = list(constraints)
        self.cache: dict[str, dict[str, float]] = {}
        self.order: list[dict[str, float]] = []

    def _evaluate(self, x: np.ndarray, out: dict, *args: Any, **kwargs: Any) -> None:
        xl, xu = self.space.bounds()
        key = self.space.key(self.space.decode(np.clip(np.rint(x), xl, xu).astype(int)))
        if key not in self.cache:
            self.cache[key] = self.lookup(self.space.from_key(key))
            self.order.append(self.cache[key])
        vals = self.cache[key]
        out["F"] = np.array([vals[c] for c in self.columns], float) * self.signs
        if self.constraints:
            out["G"] = np.array([c.violation(vals[c.column]) for c in self.constraints], float)


class _DistinctBudget(Termination):
    """Stops once the problem has seen ``budget`` distinct configs, or after ``patience`` generations in a
    row that found nothing new (a small space nearly exhausted)."""

    def __init__(self, problem: TableProblem, budget: int, patience: int = 100) -> None:
        super().__init__()
        self.problem, self.budget, self.patience = problem, budget, patience
        self.last, self.stalled = 0, 0

    def _update(self, algorithm: Any) -> float:
        seen = len(self.problem.order)
        self.stalled = 0 if seen > self.last else self.stalled + 1
        self.last = seen
        return 1.0 if self.stalled >= self.patience else min(1.0, seen / self.budget)


def run_pymoo_nsga2(evaluate: TabularEvaluator, columns: Sequence[str], signs: np.ndarray, budget: int,
                    seed: int, *, constraints: Sequence[Constraint] = (), pop_size: int = 20) -> list[dict[str, float]]:
    """Plain pymoo NSGA-II (integer random sampling, SBX + PM with rounding, duplicate elimination);
    returns the values of the first ``budget`` distinct configs it evaluated, in order."""
    problem = TableProblem(evaluate.space, evaluate, columns, signs, constraints)
    algorithm = NSGA2(pop_size=pop_size, sampling=IntegerRandomSampling(), eliminate_duplicates=True,
                      crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
                      mutation=PM(eta=20, vtype=float, repair=RoundingRepair()))
    minimize(problem, algorithm, _DistinctBudget(problem, budget), seed=seed, verbose=False)
    return problem.order[:budget]
