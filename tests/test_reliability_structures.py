"""Fuzzing damaged files (hypothesis, 500 examples each): checkpoints whose entries hold anything at all, and
result stores with random values in random cells or random bytes over random pages. Loading, reading,
checking and repairing them either works or raises one SupernasError line; never anything else."""
from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supernas.errors import SupernasError
from supernas.store import Store, repair_store, scan_store
from supernas.train.checkpoint import load_supernet, plain
from test_reliability_inputs import tiny_mbv3

FUZZ = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def one_line(e: BaseException) -> None:
    assert isinstance(e, SupernasError), f"{type(e).__name__}: {e}"
    assert str(e) and "\n" not in str(e), str(e)


# ------------------------------------------------------------------------------------- checkpoints
NET = tiny_mbv3()
STATE = {"arch": plain(NET.arch), "model": NET.state_dict(), "epoch": 0, "history": [{"loss": 1.0}],
         "optimizer": {"state": {}, "param_groups": []}, "rng": {"torch": torch.get_rng_state()}}
ARCH_KEYS = sorted(STATE["arch"])
MODEL_KEYS = sorted(STATE["model"])

leaves = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=6), st.sampled_from(["mbv3", "resnet", "bert", "vit", "relu", ""]),
                   st.builds(lambda shape: torch.zeros(shape), st.lists(st.integers(0, 3), max_size=3)),
                   st.builds(lambda n: torch.arange(n), st.integers(0, 5)))
anything = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                        max_leaves=8)


@st.composite
def damaged_states(draw):
    """A valid checkpoint with 1-3 entries replaced: top-level ones, arch arguments or model tensors."""
    state = {k: (dict(v) if isinstance(v, dict) else v) for k, v in STATE.items()}
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "arch", "arch", "model", "drop"]))
        if where == "top":
            state[draw(st.sampled_from(sorted(STATE) + ["version", "format"]))] = draw(anything)
        elif where == "arch":
            arch = state.get("arch") if isinstance(state.get("arch"), dict) else {}
            arch[draw(st.one_of(st.sampled_from(ARCH_KEYS), st.text(max_size=5)))] = draw(anything)
            state["arch"] = arch
        elif where == "model":
            model = state.get("model") if isinstance(state.get("model"), dict) else {}
            model[draw(st.sampled_from(MODEL_KEYS))] = draw(anything)
            state["model"] = model
        else:
            state.pop(draw(st.sampled_from(sorted(STATE))), None)
    return state


def test_damaged_checkpoints_load_or_give_one_line(tmp_path):
    path = tmp_path / "last.pt"

    @FUZZ
    @given(state=damaged_states())
    def check(state):
        torch.save({"format": "supernas-checkpoint", "version": 1, **state}, path)  # as save_checkpoint, no fsync
        try:
            net = load_supernet(path)
        except Exception as e:  # noqa: BLE001 - the assertion is on what it is
            one_line(e)
            return
        # accepted: what loaded is a working supernet of the recorded family
        assert net.arch["family"] == state["arch"]["family"]
        with torch.no_grad():
            out = net(net.example_input())  # it runs on its own input
        assert out.shape == (1, net.arch["num_classes"])

    check()


# ---------------------------------------------------------------------------------- result stores
COLUMNS = {"runs": ["run", "meta", "created"],
           "evaluations": ["run", "key", "config", "status", "error", "time", "elapsed_s"],
           "results": ["run", "key", "target", "objective", "value", "time"],
           "supernas_meta": ["name", "value"]}
cells = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True), st.text(max_size=8),
                  st.binary(max_size=8), st.sampled_from(["{}", "[]", '{"i": 1}', "ok", "failed", "r", "1", "2"]))
sql_damage = st.tuples(st.just("sql"), st.sampled_from(sorted(COLUMNS)), st.data())
byte_damage = st.tuples(st.just("bytes"), st.integers(0, 2**16), st.binary(min_size=1, max_size=64))


def _base_store(path: Path) -> None:
    with Store(path) as db:
        db.add_run("search", {"seed": 0})
        for i in range(30):
            db.put("search", f"k{i}", {"i": i}, {"accuracy": i / 30, "macs": 1000.0 * i, "latency_ms@cpu": 0.1 * i},
                   elapsed_s=0.2)
        db.put("search", "bad", {"i": -1}, {}, status="failed", error="boom")


@pytest.fixture(scope="module")
def base_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "results.db"
    _base_store(path)
    assert not path.with_name("results.db-wal").exists()
    return path


def test_damaged_stores_read_check_and_repair_or_give_one_line(base_store, tmp_path):
    @FUZZ
    @given(damages=st.lists(st.one_of(sql_damage, byte_damage), min_size=1, max_size=3))
    def check(damages):
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        db = work / "results.db"
        shutil.copyfile(base_store, db)
        for damage in damages:
            if damage[0] == "sql":
                _, table, data = damage
                column = data.draw(st.sampled_from(COLUMNS[table]))
                conn = sqlite3.connect(db)
                try:
                    conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                                 (data.draw(cells), data.draw(st.integers(1, 100))))
                    conn.commit()
                except (sqlite3.DatabaseError, UnicodeDecodeError):
                    pass  # the damage itself was refused (a constraint, or an earlier byte damage)
                finally:
                    conn.close()
            else:
                _, offset, data = damage
                raw = bytearray(db.read_bytes())
                offset %= len(raw)
                raw[offset:offset + len(data)] = data
                db.write_bytes(bytes(raw))
        try:
            with Store(db, readonly=True) as store:
                recs = store.records()
            assert all(isinstance(r.config, dict) and all(isinstance(v, float) for v in r.values.values())
                       for r in recs)
        except Exception as e:  # noqa: BLE001
            one_line(e)
        try:
            scan = scan_store(db)
            dest, _ = repair_store(db)
        except Exception as e:  # noqa: BLE001
            one_line(e)
            return
        with Store(dest, readonly=True) as fresh:  # a repaired store always opens and reads cleanly
            recs = fresh.records()
            assert fresh.damaged_rows == 0 and len(recs) == len(scan.evaluations) <= 31
            assert all(math.isnan(v) or isinstance(v, float) for r in recs for v in r.values.values())

    check()


def test_every_test_docs_reliability_names_exists():
    """docs/reliability.md lists each guarantee with its test: every test it names must exist."""
    import re

    doc = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text()
    names = re.findall(r"`(?:test_\w+\.py)?::(\w+)`", doc) + re.findall(r"`(test_\w+)`", doc)
    files = {f: (Path(__file__).parent / f).read_text() for f in re.findall(r"(test_\w+\.py)", doc)}
    assert len(names) >= 15 and len(files) >= 6
    every = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    assert [n for n in names if f"def {n}(" not in every] == []
