"""Ray-parallel evaluation: same front as sequential, deterministic store order, retries, failures kept."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from search_fixtures import small_eval, small_space
from supernas.search import search
from supernas.store import Store

COLS = ["accuracy", "macs"]


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        here = str(Path(__file__).resolve().parent)  # workers import this folder's evaluators by name
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    if started:
        ray.shutdown()


class FlakyOnce:
    """Fails the first attempt of every config (state in files: tasks run in other processes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __call__(self, cfg):
        mark = os.path.join(self.folder, small_space().key(cfg).replace('"', "").replace("/", "_"))
        if not os.path.exists(mark):
            open(mark, "w").close()
            raise RuntimeError("transient")
        return small_eval(cfg)


def always_fails_for_depth3(cfg):
    if cfg["depth"] == 3:
        raise ValueError("bad sub-network")
    return small_eval(cfg)


@pytest.mark.slow
def test_two_ray_workers_give_the_sequential_front(ray_session, tmp_path):
    space = small_space()
    kw = dict(strategy="nsga2", evaluations=18, seed=7, progress=False, batch_size=6,
              strategy_options={"pop_size": 8})
    seq = search(space, small_eval, COLS, store=tmp_path / "seq.db", **kw)
    par = search(space, small_eval, COLS, store=tmp_path / "par.db", workers=2, **kw)
    assert [e.key for e in par.evaluations] == [e.key for e in seq.evaluations]
    assert par.keys == seq.keys and par.hypervolume == seq.hypervolume
    assert [r.key for r in Store(tmp_path / "par.db").records("search")] == [e.key for e in seq.evaluations]


@pytest.mark.slow
def test_ray_retries_then_records_failures(ray_session, tmp_path):
    space = small_space()
    flaky = search(space, FlakyOnce(tmp_path), COLS, strategy="random", evaluations=12, seed=1, workers=2,
                   retries=1, progress=False)
    assert len(list(tmp_path.iterdir())) == 12  # every config failed once ...
    assert all(e.status == "ok" for e in flaky.evaluations)  # ... and its retry succeeded
    res = search(space, always_fails_for_depth3, COLS, strategy="random", evaluations=12, seed=1, workers=2,
                 retries=1, store=tmp_path / "f.db", progress=False)
    failed = [e for e in res.evaluations if e.status == "failed"]
    assert failed and all(e.config["depth"] == 3 for e in failed)
    assert all("bad sub-network" in e.error for e in failed)
    assert len(res.evaluations) == 12
    assert {r.key for r in Store(tmp_path / "f.db").failed("search")} == {e.key for e in failed}
