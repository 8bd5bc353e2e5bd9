"""The search driver: store commits, resume equality, dedupe, failures recorded, bad input."""
from __future__ import annotations

import pytest

from search_fixtures import small_eval, small_space
from supernas.errors import ConfigError
from supernas.search import search
from supernas.store import Store

COLS = ["accuracy", "macs"]
OPTIONS = {"nsga2": {"pop_size": 10}, "linas": {"models": ("ridge",), "inner_pop": 24, "inner_generations": 6,
                                                  "population": 6, "initial": 10},
           "optuna": {"sampler": "tpe", "startup": 6}, "random": {}}


class Killed(BaseException):
    """Stands for the process being killed mid-search (not an evaluation failure)."""


class Counting:
    def __init__(self, kill_after: int | None = None, fail_keys: set[str] = frozenset()) -> None:
        self.calls, self.kill_after, self.fail_keys = [], kill_after, fail_keys

    def __call__(self, cfg):
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            raise Killed()
        self.calls.append(small_space().key(cfg))
        if self.calls[-1] in self.fail_keys:
            raise RuntimeError("out of memory\nsecond line")
        return small_eval(cfg)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_interrupted_and_resumed_search_ends_with_same_front(name, tmp_path):
    space = small_space()
    kw = dict(strategy=name, evaluations=36, seed=3, progress=False, batch_size=5, strategy_options=OPTIONS[name])
    full = search(space, small_eval, COLS, store=tmp_path / "a.db", **kw)
    killer = Counting(kill_after=17)
    with pytest.raises(Killed):
        search(space, killer, COLS, store=tmp_path / "b.db", **kw)
    assert len(Store(tmp_path / "b.db").records("search")) == 17  # committed as they arrived
    again = Counting()
    resumed = search(space, again, COLS, store=tmp_path / "b.db", **kw)
    assert len(again.calls) == 36 - 17  # everything measured is skipped
    assert [e.key for e in resumed.evaluations] == [e.key for e in full.evaluations]
    assert resumed.keys == full.keys and resumed.hypervolume == full.hypervolume
    assert sum(e.cached for e in resumed.evaluations) == 17
    recs = Store(tmp_path / "b.db").records("search")
    assert [r.key for r in recs] == [e.key for e in full.evaluations]


def test_store_rows_and_finished_run_is_not_reevaluated(tmp_path):
    space = small_space()
    store = Store(tmp_path / "s.db")
    res = search(space, small_eval, COLS, strategy="random", evaluations=12, store=store, run="r1", progress=False)
    recs = store.records("r1")
    assert [r.key for r in recs] == [e.key for e in res.evaluations]
    assert all(r.values == pytest.approx(small_eval(r.config)) for r in recs)
    assert store.run_meta("r1")["strategy"] == "random"
    counting = Counting()
    again = search(space, counting, COLS, strategy="random", evaluations=12, store=store, run="r1", progress=False)
    assert counting.calls == [] and again.keys == res.keys
    assert len(store.records("r1")) == 12  # never duplicated
    with pytest.raises(ConfigError, match="already holds results"):
        search(space, small_eval, COLS, strategy="random", evaluations=12, store=store, run="r1", progress=False,
               resume=False)


def test_failed_evaluations_are_retried_then_recorded(tmp_path):
    space = small_space()
    bad = space.key(space.largest())
    counting = Counting(fail_keys={bad})
    res = search(space, counting, COLS, strategy="random", evaluations=10, store=tmp_path / "f.db", retries=2,
                 progress=False)
    assert counting.calls.count(bad) == 3  # one try and two retries
    failed = [e for e in res.evaluations if e.status == "failed"]
    assert [e.key for e in failed] == [bad] and failed[0].error == "RuntimeError: out of memory"
    assert bad not in res.keys and len(res.evaluations) == 10
    stored = Store(tmp_path / "f.db").failed("search")
    assert [r.key for r in stored] == [bad] and stored[0].error == "RuntimeError: out of memory"


def test_evaluator_missing_a_column_is_a_failure():
    space = small_space()
    res = search(space, lambda cfg: {"accuracy": 0.5}, COLS, strategy="random", evaluations=4, progress=False,
                 retries=0, bounds={"accuracy": (0, 1), "macs": (0, 1e6)})
    assert all(e.status == "failed" and "no 'macs'" in e.error for e in res.evaluations)
    assert res.front == [] and res.hypervolume == [0.0] * 4


def test_bad_arguments():
    space = small_space()
    for kw, msg in [(dict(columns=[]), "at least one objective"), (dict(columns=["acc"]), "unknown objective"),
                    (dict(evaluations=0), "must be >= 1"), (dict(workers=0), "workers must be"),
                    (dict(strategy="nope"), "unknown search strategy")]:
        args = dict(columns=COLS, evaluations=4, progress=False) | kw
        with pytest.raises(ConfigError, match=msg):
            search(space, small_eval, args.pop("columns"), **args)
    with pytest.raises(ConfigError, match="SearchSpace or a Supernet"):
        search("space", small_eval, COLS)


def test_progress_bar_runs(capsys):
    res = search(small_space(), small_eval, COLS, strategy="random", evaluations=5, progress=True)
    assert len(res.evaluations) == 5
    assert "hv=" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_a_search_grown_from_15_to_30_evaluations_measures_15_more_and_ends_like_a_30_run(name, tmp_path):
    space = small_space()
    kw = dict(strategy=name, seed=4, progress=False, batch_size=5, strategy_options=OPTIONS[name])
    planned = search(space, small_eval, COLS, store=tmp_path / "a.db", evaluations=30, **kw)
    search(space, small_eval, COLS, store=tmp_path / "b.db", evaluations=15, **kw)
    more = Counting()
    grown = search(space, more, COLS, store=tmp_path / "b.db", evaluations=30, **kw)
    assert len(more.calls) == 15 and len(set(more.calls)) == 15
    assert [e.key for e in grown.evaluations] == [e.key for e in planned.evaluations]
    assert grown.keys == planned.keys and grown.hypervolume == planned.hypervolume
