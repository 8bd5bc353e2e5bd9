"""Search strategies over a space (ask/tell), Pareto fronts and hypervolume, and the search driver."""
from . import evolution, linas, optuna_backend  # noqa: F401 - register the strategies
from .base import Constraint, Strategy, create_strategy, list_strategies, parse_constraints, register_strategy
from .driver import Evaluation, Front, Point, SearchResult, search
from .evaluation import LocalPool, Outcome, RayPool, make_pool
from .evolution import AGEMOEAStrategy, NSGA2Strategy, RandomSearch
from .linas import LINAS, ConstrainedSearch
from .optuna_backend import OptunaStrategy
from .pareto import (REFERENCE, Normalisation, feasible_indices, front_indices, knee_index, minimisation,
                     pareto_indices, target_groups)

__all__ = ["AGEMOEAStrategy", "Constraint", "ConstrainedSearch", "Evaluation", "Front", "LINAS", "LocalPool",
           "NSGA2Strategy", "Normalisation", "OptunaStrategy", "Outcome", "Point", "REFERENCE", "RandomSearch",
           "RayPool", "SearchResult", "Strategy", "create_strategy", "feasible_indices", "front_indices", "knee_index", "list_strategies",
           "make_pool", "minimisation", "parse_constraints", "pareto_indices", "register_strategy", "search",
           "target_groups"]
