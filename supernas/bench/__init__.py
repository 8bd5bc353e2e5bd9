"""Ground truth for search: exhaustive tables of small spaces, a tabular evaluator, strategy comparison."""
from .table import MAX_TABLE_SIZE, Table, TableError, build_table, load_table, make_table
from .compare import DEFAULT_BUDGETS, DEFAULT_STRATEGIES, compare_strategies, run_curves, summarise
from .reference import PYMOO_NAME, run_pymoo_nsga2
from .tabular import TabularEvaluator

__all__ = ["DEFAULT_BUDGETS", "DEFAULT_STRATEGIES", "MAX_TABLE_SIZE", "PYMOO_NAME", "compare_strategies", "run_curves",
           "run_pymoo_nsga2", "summarise", "Table", "TableError", "TabularEvaluator", "build_table", "load_table", "make_table"]
