"""Tiered evaluation: screens with margins, the decision to evaluate in full, the front it ends with, resume,
and the evaluator's screen (a sample of the evaluation set, pooled into the full evaluation that follows)."""
from __future__ import annotations

import hashlib
import pickle
import random
import statistics

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from search_fixtures import small_eval, small_space
from supernas.errors import ConfigError
from supernas.measure import Evaluator
from supernas.measure import evaluator as evaluator_module
from supernas.measure.screening import binomial_margin, pooled, screen_split
from supernas.search import search
from supernas.search.base import parse_constraints
from supernas.search.pareto import front_indices
from supernas.search.tiered import Screenable, may_enter, optimistic, screen_columns
from supernas.store import Store

COLS = ["accuracy", "macs"]
MARGIN = 0.02


class NoisyScreen:
    """small_eval in full; a screen whose accuracy is off by a fixed pseudo-random amount within its margin."""

    def __init__(self) -> None:
        self.space = small_space()
        self.full: list[str] = []
        self.screens: list[str] = []

    def __call__(self, cfg):
        self.full.append(self.space.key(cfg))
        return small_eval(cfg)

    def screen(self, cfg):
        key = self.space.key(cfg)
        self.screens.append(key)
        u = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * 2 - 1  # in [-1, 1]
        true = small_eval(cfg)
        return {"accuracy": true["accuracy"] + 0.9 * MARGIN * u, "macs": true["macs"],
                "margin:accuracy": MARGIN, "margin:macs": 0.0}


def true_front(space):
    rows = [small_eval(c) for c in space.enumerate()]
    return sorted((rows[i]["accuracy"], rows[i]["macs"]) for i in front_indices(rows, COLS)[0])


def front_values(result):
    return sorted((p.values["accuracy"], p.values["macs"]) for p in result.front)


def test_optimistic_point_moves_each_column_by_its_margin_in_the_good_direction():
    s = {"accuracy": 0.8, "macs": 100.0, "margin:accuracy": 0.05, "margin:macs": 10.0}
    assert optimistic(s, COLS) == pytest.approx({"accuracy": 0.85, "macs": 90.0})
    assert screen_columns(COLS) == ["accuracy", "macs", "margin:accuracy", "margin:macs"]
    with pytest.raises(ConfigError, match="negative"):
        optimistic({**s, "margin:macs": -1.0}, COLS)


def test_may_enter_unless_even_the_best_case_is_dominated_or_infeasible():
    s = {"accuracy": 0.75, "macs": 100.0, "margin:accuracy": 0.125, "margin:macs": 0.0}  # at best 0.875
    assert may_enter(s, [], COLS)
    assert not may_enter(s, [{"accuracy": 0.9, "macs": 50.0}], COLS)  # dominated even at its best
    assert may_enter(s, [{"accuracy": 0.84, "macs": 50.0}], COLS)  # its best would beat it
    assert not may_enter(s, [{"accuracy": 0.875, "macs": 100.0}], COLS)  # equal at best: adds nothing
    assert not may_enter(s, [], COLS, parse_constraints({"macs": 90}))
    assert may_enter(s, [], COLS, parse_constraints(["accuracy >= 0.85"]))  # feasible at its best


def test_tiered_search_over_the_whole_space_ends_on_the_true_front_without_evaluating_everything():
    space, ev = small_space(), NoisyScreen()
    assert isinstance(ev, Screenable)
    res = search(space, ev, COLS, strategy="random", evaluations=space.size(), seed=0, progress=False, tiered=True)
    assert front_values(res) == true_front(space)  # the same values, not estimates
    out = {e.key for e in res.evaluations if e.status == "screened"}
    assert len(res.evaluations) == space.size() and len(out) > space.size() // 4
    assert out.isdisjoint(ev.full) and len(ev.full) == space.size() - len(out)
    assert res.summary()["screened_out"] == len(out)
    front = [p.values for p in res.front]
    for e in res.evaluations:  # every config screened out is dominated by the final front in truth
        if e.status == "screened":
            assert not may_enter({**small_eval(e.config), "margin:accuracy": 0.0, "margin:macs": 0.0}, front, COLS)


@pytest.mark.parametrize("strategy", ["random", "nsga2"])
def test_tiered_search_resumes_without_measuring_again_and_keeps_screens_apart(strategy, tmp_path):
    kw = dict(strategy=strategy, evaluations=60, seed=1, progress=False, tiered=True, store=tmp_path / "r.db")
    first_ev = NoisyScreen()
    first = search(small_space(), first_ev, COLS, **kw)
    again_ev = NoisyScreen()
    again = search(small_space(), again_ev, COLS, **kw)
    assert again_ev.full == [] and again_ev.screens == []
    assert front_values(again) == front_values(first)
    assert [e.status for e in again.evaluations] == [e.status for e in first.evaluations]
    store = Store(tmp_path / "r.db")
    full, screens = store.records("search"), store.records("search:screen")
    assert len(full) == len(first_ev.full) and len(screens) == len(first_ev.screens) == 58  # not the anchors
    assert all("margin:accuracy" in r.values for r in screens)
    assert not any("margin:accuracy" in r.values for r in full)


def test_a_run_measured_in_full_is_not_screened_when_it_turns_tiered(tmp_path):
    kw = dict(strategy="random", evaluations=40, seed=2, progress=False, store=tmp_path / "r.db")
    search(small_space(), NoisyScreen(), COLS, **kw)
    ev = NoisyScreen()
    grown = search(small_space(), ev, COLS, **{**kw, "evaluations": 60}, tiered=True)
    assert len(ev.screens) == 20 and len(ev.full) <= 20
    assert sum(e.status == "screened" for e in grown.evaluations[:40]) == 0


def test_tiered_search_needs_a_screen():
    with pytest.raises(ConfigError, match="screen"):
        search(small_space(), small_eval, COLS, evaluations=5, progress=False, tiered=True)


# ------------------------------------------------------------------ the evaluator's screen
@pytest.fixture(scope="module")
def tiny(tiny_net):
    net = tiny_net
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 3, 16, 16, generator=g), torch.randint(0, 10, (200,), generator=g)
    return net, DataLoader(TensorDataset(x, y), batch_size=32)


def evaluator(tiny, **kw):
    net, loader = tiny
    return Evaluator(net, ["accuracy", "top5", "macs"], calib_loader=loader, eval_loader=loader, calib_batches=2, **kw)


def test_screen_estimates_accuracy_with_a_margin_and_counts_exactly(tiny):
    net, _ = tiny
    ev, plain = evaluator(tiny, screen_samples=64), evaluator(tiny)
    cfg = net.space.largest()
    s = ev.screen(cfg)
    assert list(s) == ["accuracy", "top5", "macs", "margin:accuracy", "margin:top5", "margin:macs"]
    assert s["margin:accuracy"] > 0 and s["margin:top5"] > 0 and s["margin:macs"] == 0
    assert s["macs"] == plain(cfg)["macs"]
    whole = evaluator(tiny, screen_samples=500).screen(cfg)  # >= 200: the sample is the set
    assert whole["margin:accuracy"] == 0 and whole["accuracy"] == plain(cfg)["accuracy"]


def test_full_evaluation_after_a_screen_scores_only_the_rest_and_equals_a_plain_one(tiny, monkeypatch):
    net, _ = tiny
    scored = []
    real = evaluator_module.evaluate_accuracy

    def counting(model, batches, *a, **k):
        out = real(model, batches, *a, **k)
        scored.append(out["count"])
        return out

    monkeypatch.setattr(evaluator_module, "evaluate_accuracy", counting)
    ev, plain = evaluator(tiny, screen_samples=64), evaluator(tiny)
    for cfg in (net.space.smallest(), net.space.largest(), net.space.sample(rng=random.Random(3))):
        scored.clear()
        ev.screen(cfg)
        full = ev(cfg)
        assert scored == [64, 136]  # the sample, then the rest: 200 images scored once each
        assert full == pytest.approx(plain(cfg), abs=1e-12)
        assert ev(cfg) == pytest.approx(full, abs=1e-12)  # held screens are used once


def test_screens_held_are_bounded_and_not_pickled(tiny):
    net, _ = tiny
    ev = evaluator(tiny, screen_samples=32, screen_keep=2)
    rng = random.Random(0)
    for _ in range(4):
        ev.screen(net.space.sample(rng=rng))
    assert len(ev._screens) == 2
    assert len(pickle.loads(pickle.dumps(ev))._screens) == 0


def test_bad_screen_settings_fail_in_one_line(tiny):
    with pytest.raises(ConfigError, match="screen_samples"):
        evaluator(tiny, screen_samples=0)
    with pytest.raises(ConfigError, match="no screen"):
        evaluator(tiny).screen(tiny[0].space.largest())
    shuffled = DataLoader(tiny[1].dataset, batch_size=32, shuffle=True)
    with pytest.raises(ConfigError, match="not shuffled"):
        screen_split(shuffled, 3, 32)
    with pytest.raises(ConfigError, match="DataLoader"):
        screen_split([(torch.zeros(1), torch.zeros(1))], None, 1)


def test_screen_split_partitions_the_evaluated_items_the_same_way_every_time(tiny):
    loader = tiny[1]
    a, b = screen_split(loader, 5, 64), screen_split(loader, 5, 64)
    assert (a.n, a.size) == (64, 160)
    pick, rest = list(a.sample.dataset.indices), list(a.rest.dataset.indices)
    assert sorted(pick + rest) == list(range(160)) and pick == list(b.sample.dataset.indices)
    assert pooled({"accuracy": 0.5, "count": 64.0}, {"accuracy": 0.25, "count": 96.0}) == \
        pytest.approx({"accuracy": 0.35, "count": 160.0})


def test_binomial_margin_covers_the_population_accuracy(tiny):
    """Sampling 64 of 1,000 items (900 right) many times: the z = 3 interval misses the truth < 1 % of the time."""
    population = torch.zeros(1000)
    population[:900] = 1
    g = torch.Generator().manual_seed(0)
    misses = 0
    for _ in range(2000):
        p = float(population[torch.randperm(1000, generator=g)[:64]].mean())
        misses += abs(p - 0.9) > binomial_margin(p, 64, 1000, 3.0)
    assert misses / 2000 < 0.01
    assert binomial_margin(0.5, 100, 100, 3.0) == 0.0 and binomial_margin(1.0, 50, 1000, 3.0) > 0


def test_a_run_file_with_screen_samples_searches_tiered(tmp_path, capsys):
    import yaml

    from cli_helpers import cli
    from supernas.config import parse_config
    from supernas.run.paths import open_run
    from test_reliability_inputs import run_file, tiny_mbv3, write_checkpoint

    cfgfile = run_file(tmp_path, "r", search={"strategy": "random", "objectives": ["accuracy", "macs"],
                                              "evaluations": 12, "screen_samples": 64, "calib_batches": 2})
    paths = open_run(parse_config(yaml.safe_load(cfgfile.read_text())))
    write_checkpoint(tiny_mbv3(), paths.checkpoints / "last.pt")
    code, _ = cli(["search", str(cfgfile), "-q"], capsys)
    assert code == 0
    store = Store(paths.results)
    screens, full = store.records("search:screen"), store.records("search")
    assert len(screens) == 10 and 2 <= len(full) <= 12  # the anchors are not screened
    summary = __import__("json").loads(paths.search_json.read_text())
    assert summary["screened_out"] == 12 - len(full) and summary["evaluations"] == 12


def test_median_interval_reaches_the_order_statistics_that_hold_the_median():
    from supernas.measure.screening import median_interval

    assert median_interval([7, 1, 2, 3, 4, 5, 6], 3.0) == (4.0, 3.0)  # n = 7: only [min, max] is wide enough
    assert median_interval(range(1, 31), 2.0) == (15.5, 5.5)  # [x_(10), x_(21)] at 95 %
    rng = random.Random(0)
    misses = sum(abs(m - 0.6931471805599453) > g for m, g in
                 (median_interval([rng.expovariate(1.0) for _ in range(15)], 3.0) for _ in range(2000)))
    assert misses / 2000 < 0.01  # exponential times: the true median ln 2 is held


def test_latency_screen_times_a_few_calls_and_the_full_evaluation_only_the_rest(tiny, monkeypatch):
    net, loader = tiny
    scored, timed = [], []
    real, real_latency = evaluator_module.evaluate_accuracy, evaluator_module.measure_latency
    monkeypatch.setattr(evaluator_module, "evaluate_accuracy",
                        lambda *a, **k: scored.append(1) or real(*a, **k))

    def latency(model, example, spec, reference=None):
        got = real_latency(model, example, spec, reference)
        timed.append(got.times_ms)
        return got

    monkeypatch.setattr(evaluator_module, "measure_latency", latency)
    target = {"cpu": {"backend": "cpu", "threads": 1, "warmup": 1, "repeats": 12}}
    ev = Evaluator(net, ["accuracy", "latency_ms@cpu"], calib_loader=loader, eval_loader=loader, calib_batches=2,
                   targets=target, screen_repeats=5)
    cfg = net.space.largest()
    s = ev.screen(cfg)
    assert s["margin:latency_ms@cpu"] > 0 and s["margin:accuracy"] == 0 and s["latency_ms@cpu"] > 0
    full = ev(cfg)
    assert full["accuracy"] == s["accuracy"] and scored == [1]  # accuracy measured once, in the screen
    assert full["latency_ms@cpu"] > 0 and full.keys() == {"accuracy", "latency_ms@cpu"}
    assert [len(t) for t in timed] == [5, 7]  # 12 timed calls in all: the screen's 5 count towards them
    assert full["latency_ms@cpu"] == statistics.median(timed[0] + timed[1])
    timed.clear()
    assert ev(cfg)["latency_ms@cpu"] > 0 and [len(t) for t in timed] == [12]  # held screens are used once


def test_benchmark_bound_skips_only_the_dominated_and_stops_at_the_level():
    """benchmarks/tiered.py's free-exact-screen bound: a row dominated by an earlier one costs nothing, the
    others their seconds, up to the row where the hypervolume reaches the level."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from tiered import exact_screen_bound  # type: ignore[import-not-found]

    from supernas.search.pareto import Normalisation

    rows = [({"accuracy": 0.5, "macs": 1.0}, 1.0), ({"accuracy": 0.9, "macs": 3.0}, 2.0),
            ({"accuracy": 0.4, "macs": 2.0}, 4.0),  # dominated by the first row
            ({"accuracy": 0.8, "macs": 1.5}, 8.0), ({"accuracy": 0.85, "macs": 2.5}, 16.0)]
    norm = Normalisation.from_values(COLS, [r for r, _ in rows[:2]])
    level = norm.hypervolume([r for r, _ in rows[:4]])
    assert exact_screen_bound(rows, norm, level) == (15.0, 11.0, 1, 4)
    assert exact_screen_bound(rows, norm, 1e9) is None
