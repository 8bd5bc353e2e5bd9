"""The evaluation session: replay of stored results, commits, failures, latency baselines, the store contract."""
from __future__ import annotations

import pytest

from search_fixtures import small_eval, small_space
from supernas.bench import build_table
from supernas.errors import ConfigError
from supernas.search import search
from supernas.search.session import EvaluationSession
from supernas.store import Record, ResultStore, Store

COLS = ["accuracy", "macs"]


class Counting:
    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, cfg):
        key = small_space().key(cfg)
        self.calls.append(key)
        if key in self.fail:
            raise RuntimeError("boom")
        return small_eval(cfg)


class MemoryStore:
    """A store that is not SQLite: only what the ResultStore protocol promises."""

    def __init__(self) -> None:
        from pathlib import Path
        self.path = Path("memory")
        self.meta: dict[str, dict] = {}
        self.rows: dict[tuple[str, str], Record] = {}

    def add_run(self, run, meta=None):
        self.meta.setdefault(run, {}).update(meta or {})

    def run_meta(self, run):
        return dict(self.meta[run])

    def put(self, run, key, config, values, *, status="ok", elapsed_s=None, error=None):
        old = self.rows.get((run, key))
        if old is not None and old.status == "ok":
            return False
        self.rows[(run, key)] = Record(run, key, dict(config), dict(values), status, 0.0, elapsed_s, error)
        return True

    def records(self, run=None):
        return [r for (k, _), r in self.rows.items() if run is None or k == run]

    def close(self):
        pass


def configs(n: int):
    return list(small_space().enumerate())[:n]


def test_session_commits_then_replays_without_measuring(tmp_path):
    space, cfgs = small_space(), configs(6)
    first = Counting(fail={small_space().key(cfgs[2])})
    with EvaluationSession(space, first, COLS, store=tmp_path / "s.db", run="r") as s:
        got = list(s.evaluate_many(cfgs))
    assert [g.key for g in got] == [space.key(c) for c in cfgs]  # submission order
    assert [g.outcome.ok for g in got] == [True, True, False, True, True, True] and not any(g.cached for g in got)
    recs = Store(tmp_path / "s.db").records("r")
    assert [r.status for r in recs] == ["ok", "ok", "failed", "ok", "ok", "ok"]
    again = Counting()
    with EvaluationSession(space, again, COLS, store=tmp_path / "s.db", run="r") as s:
        got2 = list(s.evaluate_many(cfgs))
    assert again.calls == [space.key(cfgs[2])]  # only the failed one is measured again
    assert [g.cached for g in got2] == [True, True, False, True, True, True]
    assert [g.outcome.values for g in got2] == [pytest.approx(small_eval(c)) for c in cfgs]


def test_session_starts_no_pool_when_everything_is_stored(tmp_path):
    space, cfgs = small_space(), configs(3)
    with EvaluationSession(space, small_eval, COLS, store=tmp_path / "s.db") as s:
        list(s.evaluate_many(cfgs))
    with EvaluationSession(space, Counting(), COLS, store=tmp_path / "s.db") as s:
        assert all(g.cached for g in s.evaluate_many(cfgs))
        assert s._pool is None


def test_session_refuses_a_filled_run_without_resume_and_closes_the_store(tmp_path):
    space = small_space()
    with EvaluationSession(space, small_eval, COLS, store=tmp_path / "s.db", run="r") as s:
        list(s.evaluate_many(configs(2)))
    with pytest.raises(ConfigError, match="run 'r' already holds results"):
        EvaluationSession(space, small_eval, COLS, store=tmp_path / "s.db", run="r", resume=False)
    EvaluationSession(space, small_eval, COLS, store=tmp_path / "s.db", run="other", resume=False).close()


class Drifting(Counting):
    """An evaluate function with latency baselines (the DriftCorrected contract)."""

    def __init__(self, baseline: float) -> None:
        super().__init__()
        self.baselines: dict[str, float] = {}
        self.calibrated = baseline

    def latency_baselines(self):
        self.baselines.setdefault("cpu", self.calibrated)
        return dict(self.baselines)

    def keep_latency_baselines(self, baselines):
        self.baselines.update(baselines)


def test_latency_baselines_are_kept_per_run_across_sessions(tmp_path):
    space = small_space()
    EvaluationSession(space, Drifting(2.0), COLS, store=tmp_path / "s.db", run="r").close()
    later = Drifting(3.0)  # this session's machine would calibrate differently
    EvaluationSession(space, later, COLS, store=tmp_path / "s.db", run="r").close()
    assert later.latency_baselines() == {"cpu": 2.0}
    assert Store(tmp_path / "s.db").run_meta("r")["latency_baselines"] == {"cpu": 2.0}


def test_search_and_table_run_on_any_result_store(tmp_path):
    space, mem = small_space(), MemoryStore()
    assert isinstance(mem, ResultStore)
    kw = dict(strategy="random", evaluations=10, seed=1, progress=False)
    res = search(space, small_eval, COLS, store=mem, **kw)
    assert [r.key for r in mem.records("search")] == [e.key for e in res.evaluations]
    again = Counting()
    res2 = search(space, again, COLS, store=mem, **kw)
    assert again.calls == [] and res2.keys == res.keys
    table = build_table(space, small_eval, COLS, tmp_path / "t.csv", store=mem, progress=False)
    assert len(table) == space.size() == len(mem.records("table"))
