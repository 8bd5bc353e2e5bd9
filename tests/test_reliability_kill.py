"""Kill -9 and resume: a seeded LINAS search killed at 12 random points (in an evaluation, inside a store
commit, inside predictor fitting, and at random times) loses no committed evaluation, records none twice,
and ends on the uninterrupted run's front; a training killed in a step or half-way through writing a
checkpoint resumes from the last complete one to the same weights; four searches sharing one store."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from reliability_worker import COLUMNS, SEARCH, run_in_child
from search_fixtures import small_eval, small_space
from supernas.store import Store

KILLED = -9


def committed(log: Path) -> dict[str, dict]:
    """Keys whose put() had returned (complete lines of the child's commit log)."""
    if not log.exists():
        return {}
    lines = log.read_text().split("\n")[:-1]  # a line cut by the kill has no newline: not confirmed
    return {d["key"]: d["values"] for d in map(json.loads, lines)}


def store_rows(path: Path) -> dict[str, dict]:
    with Store(path, readonly=True) as st:
        recs = st.records(SEARCH["run"])
        keys = [r.key for r in recs]
        assert len(keys) == len(set(keys)), "an evaluation was recorded twice"
        n_results = st.conn.execute("SELECT COUNT(*) FROM results WHERE run=?", (SEARCH["run"],)).fetchone()[0]
    space = small_space()
    for r in recs:
        assert r.status == "ok" and r.key == space.key(r.config)
        assert r.values == pytest.approx(small_eval(r.config)), "a stored value differs from what was measured"
        assert set(r.values) == set(COLUMNS), f"half-written evaluation {r.key}: {r.values}"
    assert n_results == len(COLUMNS) * len(recs)
    return {r.key: r.values for r in recs}


def kill_plan(seed: int = 2024, rounds: int = 12) -> list[dict]:
    """Seeded kill points: 3 each inside evaluation / store commit / predictor fit, 3 at random times.
    Each round adds a bounded number of evaluations, so >= 10 kills land before the search completes."""
    rng = random.Random(seed)
    plan = ([{"kill": ("eval", rng.randint(1, 4))} for _ in range(3)]
            + [{"kill": ("commit", rng.randint(2, 5))} for _ in range(3)]
            + [{"kill": ("fit", rng.randint(1, 6))} for _ in range(3)]
            # a timer alone could let a fast machine finish the search: it also dies in its 2nd evaluation
            + [{"kill_after_s": rng.uniform(0.1, 0.8), "kill": ("eval", 2)} for _ in range(rounds - 9)])
    rng.shuffle(plan)
    return plan


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_search_killed_at_random_points_resumes_to_the_uninterrupted_front(tmp_path):
    ref = tmp_path / "ref.json"
    assert run_in_child("search", store=str(tmp_path / "ref.db"), commit_log=str(tmp_path / "ref.log"),
                        result=str(ref)) == 0
    db, log = tmp_path / "killed.db", tmp_path / "killed.log"
    before: dict[str, dict] = {}
    kills = 0
    for step in kill_plan():
        code = run_in_child("search", store=str(db), commit_log=str(log), kill_after_s=step.get("kill_after_s"),
                            kill=step.get("kill", (None, 0)))
        assert code == KILLED, step
        kills += 1
        rows = store_rows(db)
        for key, values in {**before, **committed(log)}.items():  # nothing committed before a kill is lost
            assert rows.get(key) == pytest.approx(values), (step, key)
        before = rows
    assert kills >= 10
    final = tmp_path / "final.json"
    assert run_in_child("search", store=str(db), commit_log=str(log), result=str(final)) == 0
    got, want = json.loads(final.read_text()), json.loads(ref.read_text())
    assert got["history"] == want["history"]  # same evaluations, same order
    assert sorted(got["front"]) == sorted(want["front"]) and got["knee"] == want["knee"]
    assert got["hypervolume"] == pytest.approx(want["hypervolume"])
    rows = store_rows(db)
    assert set(rows) == set(store_rows(tmp_path / "ref.db")) == set(want["history"])


# ------------------------------------------------------------------------------------------ training
def _weights(ckpt_dir: Path) -> dict:
    from supernas.train import load_checkpoint

    return load_checkpoint(ckpt_dir)["model"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_killed_in_a_step_and_mid_checkpoint_resumes_to_the_same_weights(tmp_path):
    import torch

    from reliability_worker import TRAIN
    from supernas.train import load_checkpoint

    assert run_in_child("train", ckpt_dir=str(tmp_path / "ref")) == 0
    ckpt = tmp_path / "killed"
    steps_per_epoch = 64 // TRAIN["batch_size"]
    rng = random.Random(8)

    # 1. killed while writing the very first checkpoint: nothing complete to resume, and no last.pt
    assert run_in_child("train", ckpt_dir=str(ckpt), kill=("save", 1)) == KILLED
    assert not (ckpt / "last.pt").exists() and list(ckpt.glob(".last.pt.*.tmp"))  # the half-written file
    # 2. killed in a training step of the second epoch: last.pt holds epoch 0
    step = rng.randint(steps_per_epoch + 1, 2 * steps_per_epoch)
    assert run_in_child("train", ckpt_dir=str(ckpt), kill=("step", step)) == KILLED
    assert load_checkpoint(ckpt)["epoch"] == 0
    # 3. resumed, then killed half-way through writing its second checkpoint (epoch 2): epoch 1 survives intact
    assert run_in_child("train", ckpt_dir=str(ckpt), kill=("save", 2)) == KILLED
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1 and [h["epoch"] for h in state["history"]] == [0, 1]
    # 4. resumed to the end from a different initialisation: every weight comes from the checkpoint
    assert run_in_child("train", ckpt_dir=str(ckpt), init_seed=99) == 0
    want, got = _weights(tmp_path / "ref"), _weights(ckpt)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert not list(ckpt.glob(".last.pt.*.tmp"))  # the next complete save removed the half-written files
    for d in (tmp_path / "ref", ckpt):  # the metrics log has each epoch once, as in an uninterrupted run
        epochs = [json.loads(line)["epoch"] for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(TRAIN["epochs"])), (d.name, epochs)


# ------------------------------------------------------------------------------------------ concurrency
@pytest.mark.timeout(300)
def test_four_searches_writing_one_store_at_once_lose_and_duplicate_nothing(tmp_path):
    """Extends tests/test_store.py's four raw writers to four whole searches sharing one run of one store."""
    import time

    from reliability_worker import start_child

    db = tmp_path / "shared.db"
    start = time.time() + 1.0
    procs = [start_child("shared_search", store=str(db), result=str(tmp_path / f"{i}.json"), start_at=start)
             for i in range(4)]
    for p in procs:
        p.join(240)
        assert p.exitcode == 0
    results = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(4)]
    assert all(r == results[0] for r in results)  # each saw the same deterministic search
    with Store(db, readonly=True) as st:
        recs = st.records("shared")
        n_results = st.conn.execute("SELECT COUNT(*) FROM results WHERE run='shared'").fetchone()[0]
    keys = [r.key for r in recs]
    assert len(keys) == len(set(keys)) == len(set(results[0]["history"])) == 24
    assert set(keys) == set(results[0]["history"]) and n_results == 2 * len(keys)
    assert all(r.values == pytest.approx(small_eval(r.config)) for r in recs)
