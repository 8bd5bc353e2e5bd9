"""supernas.bench: exhaustive tables (coverage, resume, front), tabular evaluator, strategy comparison."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from search_fixtures import small_eval, small_space
from supernas.bench import (TabularEvaluator, build_table, compare_strategies, load_table, make_table,
                            run_curves)
from supernas.bench.compare import evaluations_to_reach
from supernas.errors import ConfigError
from supernas.store import Store

COLS = ["accuracy", "macs"]


class Counting:
    """small_eval that counts its calls and can be made to stop (KeyboardInterrupt) after ``stop_after``."""

    def __init__(self, stop_after: int | None = None, fail_key: str | None = None) -> None:
        self.keys: list[str] = []
        self.stop_after, self.fail_key = stop_after, fail_key

    def __call__(self, cfg: dict) -> dict[str, float]:
        if self.stop_after is not None and len(self.keys) >= self.stop_after:
            raise KeyboardInterrupt  # not an Exception: escapes the pool like a killed process
        key = small_space().key(cfg)
        self.keys.append(key)
        if key == self.fail_key:
            raise RuntimeError("broken sub-network")
        return small_eval(cfg)


def brute_force_front(rows: list[dict[str, float]]) -> set[int]:
    """Indices of rows no other row dominates (accuracy max, macs min)."""
    def dominates(a: dict, b: dict) -> bool:
        return (a["accuracy"] >= b["accuracy"] and a["macs"] <= b["macs"]
                and (a["accuracy"] > b["accuracy"] or a["macs"] < b["macs"]))
    return {i for i, r in enumerate(rows) if not any(dominates(o, r) for o in rows)}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "small.csv"
    return build_table(small_space(), small_eval, COLS, path, progress=False)


def test_build_table_covers_every_config_once_with_the_true_front(tmp_path):
    space = small_space()
    ev = Counting()
    t = build_table(space, ev, COLS, tmp_path / "t.csv", progress=False)
    keys = [space.key(c) for c in space.enumerate()]
    assert sorted(ev.keys) == sorted(keys) and len(set(ev.keys)) == space.size() == len(t)
    assert sorted(t.frame["key"]) == sorted(keys)
    for key, row in zip(t.frame["key"], t.rows()):
        assert row == pytest.approx(small_eval(space.from_key(key)))
    front = brute_force_front(t.rows())
    assert set(np.nonzero(t.frame["on_front"].to_numpy())[0]) == front and 1 < len(front) < len(t)
    again = load_table(tmp_path / "t")
    assert again.columns == COLS and again.space.size() == space.size()
    assert list(again.frame["key"]) == list(t.frame["key"])
    assert (again.frame["on_front"] == t.frame["on_front"]).all()
    assert np.allclose(again.frame[COLS].to_numpy(), t.frame[COLS].to_numpy(), rtol=1e-5)
    assert again.frame["config"][0] == t.frame["config"][0]


def test_build_table_resumes_after_an_interruption(tmp_path):
    space = small_space()
    first = Counting(stop_after=40)
    with pytest.raises(KeyboardInterrupt):
        build_table(space, first, COLS, tmp_path / "t.csv", progress=False)
    with Store(tmp_path / "t.db") as db:
        assert len(db.records("table")) == 40
    rest = Counting()
    t = build_table(space, rest, COLS, tmp_path / "t.csv", progress=False)
    assert len(rest.keys) == space.size() - 40 and not set(rest.keys) & set(first.keys)
    assert len(t) == space.size()
    with pytest.raises(ConfigError, match="already holds"):
        build_table(space, Counting(), COLS, tmp_path / "t.csv", progress=False, resume=False)


def test_build_table_leaves_failures_out_and_retries_them(tmp_path):
    space = small_space()
    bad = space.key(space.largest())
    t = build_table(space, Counting(fail_key=bad), COLS, tmp_path / "t.csv", progress=False, retries=0)
    assert len(t) == space.size() - 1 and bad not in set(t.frame["key"]) and t.meta["failed"] == 1
    retry = Counting()
    t = build_table(space, retry, COLS, tmp_path / "t.csv", progress=False)
    assert retry.keys == [bad] and len(t) == space.size() and t.meta["failed"] == 0


def test_build_table_refuses_large_spaces_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="limited to 100"):
        build_table(small_space(), small_eval, COLS, tmp_path / "t.csv", max_size=100)
    with pytest.raises(ConfigError, match="no benchmark table"):
        load_table(tmp_path / "missing.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a valid"):
        load_table(tmp_path / "x.csv")


def test_tabular_evaluator_looks_up_and_pickles(table):
    ev = TabularEvaluator(table)
    space = table.space
    for cfg in [space.smallest(), space.largest(), space.sample(seed=3)]:
        assert ev(cfg) == pytest.approx(small_eval(cfg))
    # inactive choices do not matter: same key, same row
    cfg = dict(space.smallest(), **{"b2.kernel": 7})
    assert ev(cfg) == ev(space.smallest())
    copy = pickle.loads(pickle.dumps(ev))
    assert copy(space.largest()) == ev(space.largest()) and len(copy) == space.size()
    partial = make_table(space, COLS, {space.key(space.smallest()): small_eval(space.smallest())})
    with pytest.raises(KeyError, match="not in the benchmark table"):
        TabularEvaluator(partial)(space.largest())


def test_evaluations_to_reach():
    curve = np.array([0.2, 0.9, 0.96, 0.99, 1.0])
    assert evaluations_to_reach(curve, 0.95) == 3 and evaluations_to_reach(curve, 0.99) == 4
    assert evaluations_to_reach(curve[:3], 0.99) == float("inf")


def test_compare_strategies_relative_hypervolume(table, tmp_path):
    n = len(table)
    fast_linas = {"inner_generations": 3, "models": ("ridge",)}
    summary = compare_strategies(table, COLS, strategies=["random", "linas", "pymoo-nsga2"], seeds=2,
                                 budgets=(10, n), out_dir=tmp_path, strategy_options={"linas": fast_linas})
    assert list(summary["strategy"]) == ["random", "linas", "pymoo-nsga2"]
    assert (summary[f"hv@{n} median"] <= 1 + 1e-9).all() and (summary["hv@10 median"] > 0).all()
    full = summary.set_index("strategy").loc[["random", "linas"]]
    assert list(full[f"hv@{n} median"]) == pytest.approx([1.0, 1.0])  # the whole space: the true front
    assert (full["hv@10 median"] < 1).all()
    assert (full["evals99 reached"] == 2).all() and (full["evals99 median"] <= n).all()
    assert (summary["evals95 median"] <= summary["evals99 median"]).all()
    for name in ["runs.csv", "curves.csv", "summary.csv", "summary.md", "relative_hv.png"]:
        assert (tmp_path / name).stat().st_size > 0
    assert "evals to 99%" in (tmp_path / "summary.md").read_text()


def test_curves_are_monotone_and_bounded_and_constrained_joins_with_constraints(table):
    names = {"random", "nsga2", "optuna", "constrained", "pymoo-nsga2"}
    curves = run_curves(table, COLS, strategies=sorted(names), seeds=[0], budget=30, cheap_budget=60,
                        constraints=["macs <= 40000"],
                        strategy_options={"constrained": {"inner_generations": 3, "models": ("ridge",)}})
    assert set(curves["strategy"]) == names
    for name, g in curves.groupby("strategy"):
        hv = g["relative_hv"].to_numpy()
        assert len(hv) == (60 if name in ("random", "pymoo-nsga2") else 30)
        assert np.all(np.diff(hv) >= -1e-12) and 0 < hv[-1] <= 1 + 1e-9
    without = run_curves(table, COLS, strategies=["random", "constrained"], seeds=[0], budget=5)
    assert set(without["strategy"]) == {"random"}
    with pytest.raises(ConfigError, match="unknown strategy"):
        run_curves(table, COLS, strategies=["hillclimb"], seeds=1, budget=5)
    with pytest.raises(ConfigError, match="no column"):
        run_curves(table, ["params"], strategies=["random"], seeds=1, budget=5)
