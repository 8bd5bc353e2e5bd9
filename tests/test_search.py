"""Strategies on cheap synthetic objectives with known fronts; Pareto, knee, hypervolume, constraints."""
from __future__ import annotations

import numpy as np
import pytest
from pymoo.indicators.hv import HV

from search_fixtures import small_eval, small_space, two_target_eval, wide_eval, wide_space
from supernas.errors import ConfigError
from supernas.search import (Constraint, Normalisation, create_strategy, knee_index, list_strategies,
                             minimisation, pareto_indices, parse_constraints, search, target_groups)
from supernas.search.linas import canonical_vectors, vector_features

SMALL_COLS = ["accuracy", "macs"]
WIDE_COLS = ["accuracy", "latency_ms@cpu"]
FAST_LINAS = {"models": ("ridge", "svr"), "inner_pop": 30, "inner_generations": 8, "population": 8,
              "initial": 16}
OPTIONS = {"random": {}, "nsga2": {"pop_size": 12}, "agemoea": {"pop_size": 12}, "linas": FAST_LINAS,
           "optuna": {"sampler": "tpe"}}


def dominated(F: np.ndarray, i: int) -> bool:
    return bool(np.any(np.all(F <= F[i], axis=1) & np.any(F < F[i], axis=1)))


def true_front(space, evaluate, cols):
    cfgs = list(space.enumerate())
    vals = [evaluate(c) for c in cfgs]
    F = minimisation(vals, cols)
    return {space.key(cfgs[i]) for i in range(len(cfgs)) if not dominated(F, i)}, vals


def test_registry_lists_all_strategies():
    assert set(list_strategies()) >= {"random", "nsga2", "agemoea", "linas", "constrained", "optuna"}
    with pytest.raises(ConfigError, match="unknown search strategy 'bogus'"):
        create_strategy("bogus", small_space(), SMALL_COLS)
    with pytest.raises(ConfigError, match="bad option for strategy 'nsga2'"):
        create_strategy("nsga2", small_space(), SMALL_COLS, popsize=3)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "agemoea" else n
                                  for n in sorted(OPTIONS)])  # agemoea: numba compiles for ~10 s once
def test_strategy_finds_known_front(name):
    space = small_space()
    front_keys, all_vals = true_front(space, small_eval, SMALL_COLS)
    res = search(space, small_eval, SMALL_COLS, strategy=name, evaluations=40, seed=2, progress=False,
                 strategy_options=OPTIONS[name], batch_size=8)
    keys = [e.key for e in res.evaluations]
    assert len(keys) == 40 and len(set(keys)) == 40  # distinct sub-networks only
    assert keys[:2] == [space.key(space.smallest()), space.key(space.largest())]
    F = minimisation([e.values for e in res.evaluations], SMALL_COLS)
    assert {res.evaluations[i].key for i in range(40) if not dominated(F, i)} == set(res.keys)
    assert len(set(res.keys) & front_keys) >= 3
    true_hv = res.normalisation.hypervolume(all_vals)
    assert res.hypervolume[-1] >= 0.9 * true_hv
    assert res.knee is not None and res.knee.key in res.keys


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_strategy_is_deterministic_for_a_seed(name):
    space = small_space()
    runs = [search(space, small_eval, SMALL_COLS, strategy=name, evaluations=24, seed=seed, progress=False,
                   strategy_options=OPTIONS[name], batch_size=8) for seed in (4, 4, 5)]
    seqs = [[e.key for e in r.evaluations] for r in runs]
    assert seqs[0] == seqs[1]
    assert seqs[0] != seqs[2]


def test_pymoo_strategy_ask_tell_never_repeats():
    space = small_space()
    strat = create_strategy("nsga2", space, SMALL_COLS, seed=0, pop_size=10)
    seen, handed = set(), 0
    for _ in range(12):
        cfgs = strat.ask(7)  # at most 7: the rest of a generation, or the start of the next one
        keys = {space.key(c) for c in cfgs}
        assert 1 <= len(cfgs) <= 7 and not keys & seen and len(keys) == len(cfgs)
        seen |= keys
        handed += len(cfgs)
        strat.tell(cfgs, [small_eval(c) for c in cfgs])
    assert len(seen) == handed > 50


@pytest.mark.slow
def test_linas_needs_fewer_evaluations_than_random_and_nsga2():
    space = wide_space()
    _, all_vals = true_front(space, wide_eval, WIDE_COLS)
    hv = {}
    for name, opts in [("random", {}), ("nsga2", {"pop_size": 12}), ("linas", FAST_LINAS)]:
        res = search(space, wide_eval, WIDE_COLS, strategy=name, evaluations=60, seed=1, progress=False,
                     strategy_options=opts, batch_size=8)
        hv[name] = res.hypervolume
    assert hv["linas"][-1] > hv["nsga2"][-1] and hv["linas"][-1] > hv["random"][-1]
    # LINAS reaches random's final hypervolume with far fewer evaluations
    assert next(i for i, v in enumerate(hv["linas"]) if v >= hv["random"][-1]) < 45


def test_constrained_search_respects_budget():
    space = wide_space()
    cfgs = list(space.enumerate())
    vals = [wide_eval(c) for c in cfgs]
    bound = float(np.median([v["latency_ms@cpu"] for v in vals]))
    best_true = max(v["accuracy"] for v in vals if v["latency_ms@cpu"] <= bound)
    res = search(space, wide_eval, WIDE_COLS, strategy="constrained", evaluations=50, seed=0, progress=False,
                 constraints=[f"latency_ms@cpu <= {bound}"], strategy_options=FAST_LINAS, batch_size=8)
    rnd = search(space, wide_eval, WIDE_COLS, strategy="random", evaluations=50, seed=0, progress=False,
                 constraints={"latency_ms@cpu": bound}, batch_size=8)
    assert all(p.values["latency_ms@cpu"] <= bound for p in res.front)
    assert res.best["accuracy"].values["accuracy"] >= rnd.best["accuracy"].values["accuracy"]
    assert res.best["accuracy"].values["accuracy"] >= 0.98 * best_true
    with pytest.raises(ConfigError, match="needs at least one constraint"):
        create_strategy("constrained", space, WIDE_COLS)


def test_hypervolume_equals_pymoo_direct():
    space = small_space()
    res = search(space, small_eval, SMALL_COLS, strategy="random", evaluations=30, seed=0, progress=False)
    norm = res.normalisation
    anchors = [small_eval(space.smallest()), small_eval(space.largest())]
    lo = np.minimum(*[np.array([-a["accuracy"], a["macs"]]) for a in anchors])
    hi = np.maximum(*[np.array([-a["accuracy"], a["macs"]]) for a in anchors])
    assert np.allclose(norm.lower, lo) and np.allclose(norm.upper, hi)
    for n in (3, 10, 30):
        F = np.array([[-e.values["accuracy"], e.values["macs"]] for e in res.evaluations[:n]])
        direct = HV(ref_point=np.array([1.1, 1.1])).do((F - lo) / (hi - lo))
        assert res.hypervolume[n - 1] == pytest.approx(direct, rel=1e-12)
    assert len(res.hypervolume) == 30 and all(np.diff(res.hypervolume) >= -1e-12)
    fixed = Normalisation.from_bounds(SMALL_COLS, {"accuracy": (0.5, 1.0), "macs": (0, 1e6)})
    assert fixed.lower.tolist() == [-1.0, 0.0] and fixed.upper.tolist() == [-0.5, 1e6]


def test_pareto_and_knee():
    F = np.array([[0.0, 1.0], [0.2, 0.2], [1.0, 0.0], [0.5, 0.5], [0.3, 0.9]])
    assert pareto_indices(F) == [0, 1, 2]
    assert knee_index(F[[0, 1, 2]]) == 1
    assert pareto_indices(np.zeros((0, 2))) == [] and knee_index(np.zeros((0, 2))) is None


def test_fronts_per_target():
    space = small_space()
    cols = ["accuracy", "latency_ms@cpu", "latency_ms@onnxruntime"]
    assert target_groups(cols) == {"cpu": ["accuracy", "latency_ms@cpu"],
                                   "onnxruntime": ["accuracy", "latency_ms@onnxruntime"]}
    assert target_groups(SMALL_COLS) == {"": SMALL_COLS}
    res = search(space, two_target_eval, cols, strategy="nsga2", evaluations=40, seed=0, progress=False)
    for target, group in target_groups(cols).items():
        front = res.fronts[target]
        F = minimisation([e.values for e in res.evaluations], group)
        assert set(p.key for p in front.points) == {res.evaluations[i].key for i in range(40) if not dominated(F, i)}
        assert front.knee in front.points and front.hypervolume > 0
    assert set(res.fronts["cpu"].points[0].values) == set(cols)


def test_constraint_parsing():
    assert parse_constraints({"latency_ms@cpu": 5}) == [Constraint("latency_ms@cpu", "<=", 5.0)]
    assert parse_constraints({"accuracy": 0.9}) == [Constraint("accuracy", ">=", 0.9)]
    assert parse_constraints(["macs<=1e6", "accuracy >= 0.5"])[0] == Constraint("macs", "<=", 1e6)
    assert parse_constraints({"macs": (">=", 3)})[0].violation(1.0) == 2.0
    for bad, msg in [("latency <> 3", "cannot read constraint"), ({"macs": "x"}, "must be a number"),
                     (["bogus <= 1"], "unknown objective"), ({"macs": ("<", 1)}, "operator")]:
        with pytest.raises(ConfigError, match=msg):
            parse_constraints(bad)
    with pytest.raises(ConfigError, match="not among the measured columns"):
        create_strategy("random", small_space(), SMALL_COLS, constraints=["params <= 3"])


def test_vector_features_match_space_features():
    space = small_space()
    cfgs = list(space.enumerate())
    X = np.array([space.encode(c) for c in cfgs])
    X[X[:, 0] == 0, 2] = 2  # junk in genes that are inactive (depth 1) must not matter
    assert np.array_equal(vector_features(space, canonical_vectors(space, X)), space.features_many(cfgs))


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_optuna_trials_carry_the_constraints(sampler):
    """Every Optuna trial, asked or added from outside, holds the violations of the supernas constraints
    (Optuna >= 5: on the trial; before: through constraints_func), without deprecation warnings."""
    import warnings

    from supernas.search.optuna_backend import TRIAL_CONSTRAINTS

    space = small_space()
    bound = float(np.median([small_eval(c)["macs"] for c in space.enumerate()]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        s = create_strategy("optuna", space, SMALL_COLS, seed=0, sampler=sampler, constraints=[f"macs <= {bound}"],
                            pop_size=4, startup=4)
        outside = space.sample(seed=1)
        s.tell([outside], [small_eval(outside)])
        for _ in range(4):
            cfgs = s.ask(3)
            s.tell(cfgs, [small_eval(c) for c in cfgs])
    trials = s.study.get_trials(deepcopy=False)
    assert len(trials) >= 13
    for t in trials:
        if t.state.name != "COMPLETE":
            continue
        cfg = {c.name: c.options[t.params[c.name]] for c in space.choices if c.name in t.params}
        want = small_eval(space.validate(cfg))["macs"] - bound
        got = list(t.constraints.values())[0] if TRIAL_CONSTRAINTS else t.user_attrs["supernas_constraints"][0]
        assert got == pytest.approx(want)
