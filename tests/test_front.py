"""One front: the search, the picks, the report and the benchmark tables agree, constraints honoured."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from supernas.errors import ConfigError
from supernas.run import SEARCH_RUN, RunPaths, default_config
from supernas.run.picks import pick_config
from supernas.report import front_table
from supernas.search import front_indices, parse_constraints, search
from supernas.space import Choice, SearchSpace
from supernas.store import Store

COLS = ["accuracy", "macs"]


def _rows(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{"accuracy": rng.random(), "macs": rng.uniform(10, 1000), "params": rng.uniform(1, 100)}
            for _ in range(n)]


def _dominates(a, b) -> bool:
    better_or_equal = a["accuracy"] >= b["accuracy"] and a["macs"] <= b["macs"]
    return better_or_equal and (a["accuracy"] > b["accuracy"] or a["macs"] < b["macs"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_front_is_the_non_dominated_set_of_the_feasible_rows(seed):
    rows = _rows(60, seed)
    rows[3]["accuracy"] = float("nan")  # incomplete rows are never on it
    rows[0] = {"accuracy": 2.0, "macs": 900.0, "params": 1.0}  # the most accurate, over the MACs budget
    cons = {"macs": 400.0, "params": 70.0}
    idx, knee = front_indices(rows, COLS, cons)
    feasible = [i for i, r in enumerate(rows) if r["macs"] <= 400 and r["params"] <= 70 and i != 3]
    expected = [i for i in feasible if not any(_dominates(rows[j], rows[i]) for j in feasible)]
    assert idx == expected and knee in idx
    assert 0 in front_indices(rows, COLS)[0] and 0 not in idx  # the constraint changes the answer
    assert front_indices(rows, COLS, {"macs": 0.0}) == ([], None)


def test_search_refuses_a_constraint_on_a_column_it_does_not_measure():
    space = SearchSpace([Choice("a", (1, 2, 3))])
    with pytest.raises(ConfigError, match="constraint column 'params' is not among the measured columns"):
        search(space, lambda cfg: {"accuracy": 1.0, "macs": 1.0}, COLS, strategy="random", evaluations=3,
               constraints={"params": 3}, progress=False)


def _run_with_store(tmp_path, rows, constraints):
    cfg = default_config()
    cfg.search.objectives = COLS
    cfg.search.constraints = constraints
    paths = RunPaths(tmp_path)
    with Store(paths.results) as db:
        db.add_run(SEARCH_RUN, {})
        for i, r in enumerate(rows):
            db.put(SEARCH_RUN, f"k{i}", {"id": i}, r)
    return cfg, paths


@pytest.mark.parametrize("pick", ["best-accuracy", "knee", "0", "best-accuracy if macs <= 500",
                                  "best-macs"])
def test_picks_never_choose_an_infeasible_sub_network(tmp_path, pick):
    rows = _rows(80, 4)
    rows[0] = {"accuracy": 2.0, "macs": 900.0, "params": 5.0}  # dominates everything, but over budget
    cfg, paths = _run_with_store(tmp_path, rows, {"macs": 300.0})
    _, chosen = pick_config(cfg, paths, pick)
    picked = rows[chosen["id"]]
    assert picked["macs"] <= 300.0
    feasible = [r for r in rows if r["macs"] <= 300.0]
    if pick == "best-accuracy":
        assert picked["accuracy"] == max(r["accuracy"] for r in feasible)
    unconstrained, _ = _run_with_store(tmp_path / "free", rows, {})
    if pick == "best-accuracy":
        assert pick_config(unconstrained, RunPaths(tmp_path / "free"), pick)[1] == {"id": 0}


def test_a_pick_no_feasible_sub_network_satisfies_says_so(tmp_path):
    cfg, paths = _run_with_store(tmp_path, _rows(10, 5), {"macs": 1.0})
    with pytest.raises(ConfigError, match=r"no evaluated sub-network satisfies the constraints \(macs <= 1\)"):
        pick_config(cfg, paths, "knee")


def test_report_front_is_the_search_front(tmp_path):
    space = SearchSpace([Choice("a", tuple(range(8))), Choice("b", tuple(range(8)))])

    def evaluate(cfg):
        return {"accuracy": float(np.sin(cfg["a"]) + cfg["b"]), "macs": float(cfg["a"] * 3 + cfg["b"] ** 2)}

    cons = ["macs <= 30"]
    result = search(space, evaluate, COLS, strategy="random", evaluations=40, seed=1, store=tmp_path / "r.db",
                    constraints=cons, progress=False)
    with Store(tmp_path / "r.db", readonly=True) as db:
        df = db.dataframe("search")
    table = front_table(df, COLS, cons)
    assert set(table["key"]) == set(result.keys)
    assert table.loc[table["knee"], "key"].item() == result.knee.key
    assert all(c.ok(r) for c in parse_constraints(cons) for r in table[COLS].to_dict("records"))
    assert json.loads(table["config"].iloc[0])  # configs stay readable
