"""DyNAS-T's own LINAS on a small table through the adapter (skipped when the dynast package is absent).
Its inner loop runs 400 predictor evaluations per loop here instead of its 5,000, to keep the test short."""
from __future__ import annotations

import logging
import sys

import pytest

from search_fixtures import small_eval, small_space
from supernas.bench import make_table
from supernas.bench.compare import run_curves
from supernas.bench.dynast_peer import DYNAST_NAME, dynast_problem, run_dynast_linas
from supernas.bench.tabular import TabularEvaluator
from supernas.errors import ConfigError

WHY = dynast_problem()
pytestmark = [pytest.mark.skipif(WHY is not None, reason=f"DyNAS-T peer unavailable: {WHY}"), pytest.mark.slow]
COLS = ["accuracy", "macs"]
FAST = {"population": 8, "inner_evals": 400}


class Recording(TabularEvaluator):
    def __init__(self, table) -> None:
        super().__init__(table)
        self.keys: list[str] = []

    def __call__(self, cfg):
        self.keys.append(self.space.key(cfg))
        return super().__call__(cfg)


@pytest.fixture(scope="module")
def table():
    space = small_space()
    return make_table(space, COLS, {space.key(c): small_eval(c) for c in space.enumerate()})


def test_dynast_linas_evaluates_distinct_table_configs_seeded_and_leaves_the_process_alone(table):
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    ev = Recording(table)
    got = run_dynast_linas(ev, COLS, 24, seed=0, **FAST)
    assert len(got) == 24 and len(ev.keys) == len(set(ev.keys)) == 24  # each distinct config looked up once
    assert got == [table.values()[k] for k in ev.keys]
    assert run_dynast_linas(TabularEvaluator(table), COLS, 24, seed=0, **FAST) == got  # seeded
    assert "torchvision" not in sys.modules and root.level == level and root.handlers == handlers


def test_dynast_linas_in_the_comparison_and_its_limits(table):
    curves = run_curves(table, COLS, strategies=[DYNAST_NAME], seeds=[0], budget=20,
                        strategy_options={DYNAST_NAME: FAST})
    hv = curves["relative_hv"].to_numpy()
    assert len(hv) == 20 and (hv[1:] >= hv[:-1]).all() and 0 < hv[-1] <= 1 + 1e-9
    with pytest.raises(ConfigError, match="2 or 3 distinct objectives"):
        run_dynast_linas(TabularEvaluator(table), ["accuracy"], 10, seed=0)
    with pytest.raises(ConfigError, match="searches without constraints"):
        run_curves(table, COLS, strategies=[DYNAST_NAME], seeds=[0], budget=10, constraints=["macs <= 1e9"])
