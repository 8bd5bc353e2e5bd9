"""LINAS's acquisition pieces: greedy Monte-Carlo EHVI against pymoo's exact hypervolume, bootstrap
ensembles, one-choice neighbourhoods, and the acquisitions through the strategy."""
from __future__ import annotations

import numpy as np
import pytest
from pymoo.indicators.hv import HV

from search_fixtures import small_eval, small_space
from supernas.errors import ConfigError
from supernas.search import create_strategy
from supernas.search.acquisition import BootstrapEnsemble, greedy_ehvi
from supernas.search.linas import canonical_vectors, neighbours
from supernas.search.pareto import REFERENCE


def exact_gain(front: np.ndarray, point: np.ndarray) -> float:
    hv = HV(ref_point=np.full(front.shape[1], REFERENCE))
    return float(hv.do(np.vstack([front, point])) - hv.do(front))


def test_greedy_ehvi_picks_follow_pymoo_hypervolume_improvement():
    """One noiseless scenario: the first pick has the largest exact improvement (pymoo HV), the second the
    largest improvement given the first; dominated candidates are never picked."""
    rng = np.random.default_rng(0)
    front = np.array([[0.2, 0.9], [0.5, 0.5], [0.9, 0.2]])
    cand = np.vstack([rng.random((30, 2)) * 0.9 + 0.05, [[0.95, 0.95]]])
    gains = np.array([exact_gain(front, c) for c in cand])
    picks = greedy_ehvi(front, cand[None], 2, np.random.default_rng(1), points=200_000)
    assert picks[0] == int(np.argmax(gains))
    second = np.array([exact_gain(np.vstack([front, cand[picks[0]]]), c) for c in cand])
    second[picks[0]] = -1
    assert picks[1] == int(np.argmax(second))
    assert len(cand) - 1 not in picks  # (0.95, 0.95) is dominated by the front


def test_greedy_ehvi_prefers_the_candidate_likely_to_improve_and_respects_feasibility():
    front = np.array([[0.5, 0.5]])
    sure = np.tile([[0.45, 0.45]], (64, 1))            # always a little better
    gamble = np.tile([[0.6, 0.6]], (64, 1))            # dominated in most scenarios ...
    gamble[:4] = [0.1, 0.1]                            # ... much better in 1 of 16
    scen = np.stack([sure, gamble], axis=1)            # (S, C, m)
    rng = np.random.default_rng(0)
    exp_sure = exact_gain(front, sure[0])
    exp_gamble = exact_gain(front, gamble[0]) * 4 / 64
    first = greedy_ehvi(front, scen, 1, rng, points=100_000)[0]
    assert first == int(exp_gamble > exp_sure)
    feasible = np.ones((64, 2), dtype=bool)
    feasible[:, first] = False
    assert greedy_ehvi(front, scen, 1, rng, feasible=feasible) == [1 - first]
    assert greedy_ehvi(front, scen[:, :0], 3, rng) == []


def test_bootstrap_ensemble_is_seeded_and_its_residual_tracks_the_noise():
    rng = np.random.default_rng(0)
    X = rng.random((80, 3))
    y = X @ [3.0, -2.0, 1.0] + rng.normal(0, 0.3, 80)
    a = BootstrapEnsemble("ridge", 6, seed=3).fit(X, y)
    b = BootstrapEnsemble("ridge", 6, seed=3).fit(X, y)
    assert np.array_equal(a.predict_members(X[:5]), b.predict_members(X[:5]))
    assert a.predict_members(X[:5]).shape == (6, 5)
    assert 0.2 < a.residual_std < 0.45
    s = a.scenarios(X[:5], 1000, np.random.default_rng(0))
    assert s.shape == (1000, 5) and 0.2 < s.std(axis=0).mean() < 0.5
    pos = BootstrapEnsemble("ridge", 4, seed=0, log=True).fit(X, np.exp(y))
    assert np.all(pos.scenarios(X[:5], 50, np.random.default_rng(0)) > 0)


def test_neighbours_differ_in_one_choice_and_exclude_the_rows():
    space = small_space()
    cfgs = space.sample_many(3, seed=0)
    X = canonical_vectors(space, np.array([space.encode(c) for c in cfgs]))
    N = neighbours(space, X)
    assert len(N) and len(np.unique(N, axis=0)) == len(N)
    own = {x.tobytes() for x in X}
    for v in N:
        assert v.tobytes() not in own
        cfg = space.decode(v)
        assert min(sum(cfg.get(k) != c.get(k) for k in set(cfg) | set(c)) for c in cfgs) >= 1
    # every config one active choice away from the first row is there
    first = space.decode(X[0])
    for ch in space.choices:
        if ch.name in first and ch.active_if is None:
            for opt in ch.options:
                if opt != first[ch.name]:
                    moved = space.encode({**first, ch.name: opt})
                    assert any(np.array_equal(moved, v) for v in N) or moved.tobytes() in own


@pytest.mark.parametrize("acquisition", ["ehvi", "moea"])
def test_linas_acquisitions_never_repeat_and_are_seeded(acquisition):
    def run(seed: int) -> list[str]:
        s = create_strategy("linas", small_space(), ["accuracy", "macs"], seed=seed, models=("ridge",),
                            acquisition=acquisition, initial=8, population=4, inner_pop=16, inner_generations=3)
        keys = []
        for _ in range(6):
            cfgs = s.ask(4)
            s.tell(cfgs, [small_eval(c) for c in cfgs])
            keys += [s.space.key(c) for c in cfgs]
        return keys
    keys = run(0)
    assert len(keys) == len(set(keys)) == 24
    assert keys == run(0)
    with pytest.raises(ConfigError, match="unknown linas acquisition 'ucb'"):
        create_strategy("linas", small_space(), ["accuracy", "macs"], acquisition="ucb")
