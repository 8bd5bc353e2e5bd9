"""The SQLite result store: dedupe, concurrency, crash safety, foreign files, export."""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from supernas.errors import StoreError
from supernas.store import Record, Store


def cfg(i: int) -> dict:
    return {"depth": i % 3, "width": i}


def key(i: int) -> str:
    return json.dumps(cfg(i), sort_keys=True)


def test_put_get_and_dedupe(tmp_path):
    with Store(tmp_path / "r.db") as st:
        st.add_run("a", {"seed": 1})
        assert st.put("a", key(1), cfg(1), {"accuracy": 0.5, "latency_ms@cpu": 2.0}, elapsed_s=0.1)
        # same key again: nothing new, nothing overwritten
        assert not st.put("a", key(1), cfg(1), {"accuracy": 0.9, "latency_ms@cpu": 3.0})
        assert st.get("a", key(1)) == {"accuracy": 0.5, "latency_ms@cpu": 2.0}
        # a new column for the same key is added
        assert st.put("a", key(1), cfg(1), {"accuracy": 0.9, "latency_ms@onnxruntime": 1.5})
        assert st.get("a", key(1)) == {"accuracy": 0.5, "latency_ms@cpu": 2.0, "latency_ms@onnxruntime": 1.5}
        assert st.get("a", key(2)) is None
        assert st.has("a", key(1)) and not st.has("a", key(2))
        assert st.has("a", key(1), ["accuracy", "latency_ms@cpu"])
        assert not st.has("a", key(1), ["accuracy", "latency_ms@cuda"])
        assert len(st.records("a")) == 1 and len(st) == 1
        rows = st.conn.execute("SELECT target, objective FROM results ORDER BY target, objective").fetchall()
        assert rows == [("", "accuracy"), ("cpu", "latency_ms"), ("onnxruntime", "latency_ms")]


def test_runs_and_meta(tmp_path):
    with Store(tmp_path / "r.db") as st:
        st.add_run("a", {"x": 1})
        st.add_run("a")
        st.add_run("a", {"y": 2})
        st.put("b", key(0), cfg(0), {"macs": 10})  # put creates its run
        assert st.runs() == ["a", "b"]
        assert st.run_meta("a") == {"x": 1, "y": 2}
        assert st.run_meta("b") == {}
        with pytest.raises(StoreError, match="no run 'zzz'"):
            st.run_meta("zzz")
        # same key in two runs is two evaluations
        st.put("a", key(0), cfg(0), {"macs": 11})
        assert st.get("a", key(0)) == {"macs": 11.0} and st.get("b", key(0)) == {"macs": 10.0}


def test_records_order_and_failed(tmp_path):
    with Store(tmp_path / "r.db") as st:
        for i in (5, 2, 7):
            st.put("r", key(i), cfg(i), {"accuracy": i / 10})
        assert st.put("r", key(9), cfg(9), {}, status="failed", error="boom")
        recs = st.records("r")
        assert [r.config["width"] for r in recs] == [5, 2, 7, 9]
        assert all(isinstance(r, Record) for r in recs)
        assert recs[0].values == {"accuracy": 0.5} and recs[0].status == "ok"
        assert [r.key for r in st.failed("r")] == [key(9)]
        assert st.failed("r")[0].error == "boom" and st.failed("r")[0].values == {}
        assert not st.has("r", key(9))  # a failed evaluation is retried on resume
        assert recs[0].time <= recs[1].time <= recs[2].time
        # a retry that succeeds turns it into ok
        assert st.put("r", key(9), cfg(9), {"accuracy": 0.1})
        assert st.failed("r") == [] and st.has("r", key(9))
        with pytest.raises(StoreError, match="status"):
            st.put("r", key(1), cfg(1), {}, status="weird")
        with pytest.raises(StoreError, match="failed evaluation"):
            st.put("r", key(1), cfg(1), {"accuracy": 1.0}, status="failed")


def test_dataframe_and_exports(tmp_path):
    with Store(tmp_path / "r.db") as st:
        st.put("r", key(1), cfg(1), {"accuracy": 0.5, "latency_ms@cpu": 2.0})
        st.put("r", key(2), cfg(2), {"accuracy": float("nan"), "macs": 7})
        st.put("s", key(3), cfg(3), {"accuracy": 0.1})
        df = st.dataframe("r")
        assert list(df["key"]) == [key(1), key(2)]
        assert {"accuracy", "latency_ms@cpu", "macs"} <= set(df.columns)
        assert df.loc[0, "latency_ms@cpu"] == 2.0 and math.isnan(df.loc[1, "latency_ms@cpu"])
        assert len(st.dataframe()) == 3
        st.to_csv(tmp_path / "r.csv", run="r")
        back = pd.read_csv(tmp_path / "r.csv")
        assert json.loads(back.loc[1, "config"]) == cfg(2) and back.loc[1, "macs"] == 7
        st.to_json(tmp_path / "r.json")
        data = json.loads((tmp_path / "r.json").read_text())
        assert [d["run"] for d in data] == ["r", "r", "s"]
        assert data[1]["values"]["accuracy"] is None and data[1]["config"] == cfg(2)


def test_readonly_and_pickle(tmp_path):
    path = tmp_path / "r.db"
    with Store(path) as st:
        st.put("r", key(1), cfg(1), {"accuracy": 0.5})
        copy = pickle.loads(pickle.dumps(st))
        assert copy.get("r", key(1)) == {"accuracy": 0.5}
        copy.close()
    with Store(path, readonly=True) as ro:
        assert ro.get("r", key(1)) == {"accuracy": 0.5}
        with pytest.raises(StoreError, match="read-only"):
            ro.put("r", key(2), cfg(2), {"accuracy": 0.1})
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing.db", readonly=True)


def test_corrupt_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="is not a supernas result store"):
        Store(junk)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (a INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="is not a supernas result store"):
        Store(foreign)
    # a store whose header was overwritten
    good = tmp_path / "good.db"
    Store(good).close()
    raw = bytearray(good.read_bytes())
    raw[:16] = b"garbage-garbage!"
    good.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="is not a supernas result store"):
        Store(good)
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path)


def _writer(path: str, wid: int, n: int) -> None:
    with Store(path) as st:
        for i in range(n):
            # every writer also writes one shared key, to exercise the dedupe under contention
            st.put("r", key(1000 * wid + i), cfg(1000 * wid + i), {"accuracy": i, "latency_ms@cpu": wid})
            st.put("r", key(0), cfg(0), {"accuracy": -1.0, f"latency_ms@w{wid}": float(wid)})


def test_four_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "r.db")
    n = 40
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, n)) for w in range(1, 5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(path, readonly=True) as st:
        recs = st.records("r")
        keys = [r.key for r in recs]
        assert len(keys) == len(set(keys)) == 4 * n + 1
        for w in range(1, 5):
            for i in range(n):
                assert st.get("r", key(1000 * w + i)) == {"accuracy": float(i), "latency_ms@cpu": float(w)}
        shared = st.get("r", key(0))
        assert shared == {"accuracy": -1.0, **{f"latency_ms@w{w}": float(w) for w in range(1, 5)}}


_KILLED_WRITER = """
import json, sys, time
from supernas.store import Store
st = Store(sys.argv[1])
i = 0
while True:
    st.put("r", json.dumps({"i": i}), {"i": i}, {"accuracy": i, "macs": 2 * i})
    print(i, flush=True)
    i += 1
"""


def test_reopen_after_killed_writer_keeps_committed_rows(tmp_path):
    path = tmp_path / "r.db"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    committed = []
    for line in proc.stdout:  # each printed index was committed before it was printed
        committed.append(int(line))
        if len(committed) >= 60:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with Store(path) as st:
        recs = st.records("r")
        got = {r.config["i"]: r.values for r in recs}
        for i in committed:
            assert got[i] == {"accuracy": float(i), "macs": 2.0 * i}
        assert all(v == {"accuracy": float(i), "macs": 2.0 * i} for i, v in got.items())  # no half-written row
        assert st.put("r", json.dumps({"i": 10_000}), {"i": 10_000}, {"accuracy": 1})


def _damaged_store(tmp_path, sql: str, args: tuple = ()):
    import sqlite3

    path = tmp_path / "d.db"
    with Store(path) as db:
        db.add_run("r", {"seed": 1})
        for i in range(4):
            db.put("r", f"k{i}", {"i": i}, {"accuracy": 0.5 + i / 10, "macs": 10.0 * i})
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("sql", [
    "UPDATE evaluations SET config='{not json' WHERE key='k1'",
    "UPDATE evaluations SET config='[1, 2]' WHERE key='k1'",
    "UPDATE results SET value='abc' WHERE key='k1' AND objective='macs'",
    "UPDATE evaluations SET status='??' WHERE key='k1'",
])
def test_a_partly_damaged_store_still_yields_its_good_rows(tmp_path, sql):
    with Store(_damaged_store(tmp_path, sql), readonly=True) as db:
        recs = db.records("r")
        assert [r.key for r in recs] == ["k0", "k2", "k3"] and db.damaged_rows == 1
        assert len(db.dataframe("r")) == 3


def test_damaged_run_metadata_reads_empty_and_is_rewritten(tmp_path):
    path = _damaged_store(tmp_path, "UPDATE runs SET meta='{oops'")
    with Store(path) as db:
        assert db.run_meta("r") == {}
        db.add_run("r", {"seed": 2})
        assert db.run_meta("r") == {"seed": 2}


def test_a_text_store_version_is_named(tmp_path):
    path = _damaged_store(tmp_path, "UPDATE supernas_meta SET value='one' WHERE name='version'")
    with pytest.raises(StoreError, match=r"is damaged: its store version 'one' is not a number"):
        Store(path)
