"""Damaged result stores: named in one line with the way out, and ``supernas store repair`` recovers every
evaluation that can still be read (the damaged file is never written)."""
from __future__ import annotations

import shutil
import sqlite3

import pytest
import yaml

from cli_helpers import assert_one_line, cli
from supernas.errors import StoreError
from supernas.store import Store, repair_store, scan_store
from test_reliability_inputs import run_file


def _store(path, n: int = 4, values: int = 2):
    with Store(path) as db:
        db.add_run("r", {"seed": 1})
        for i in range(n):
            db.put("r", f"k{i}", {"i": i}, {f"m{j}": float(i * 10 + j) for j in range(values)}, elapsed_s=0.5)
    return path


def _sql(path, sql: str):
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    return path


def _bytes(path, offset: int, data: bytes):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))
    return path


DAMAGES = {  # name: (damage, evaluations recovered of 4)
    "config-not-json": (lambda p: _sql(p, "UPDATE evaluations SET config='{not json' WHERE id=2"), 3),
    "value-is-text": (lambda p: _sql(p, "UPDATE results SET value='abc' WHERE rowid=5"), 3),
    "metadata-not-json": (lambda p: _sql(p, "UPDATE runs SET meta='{oops'"), 4),
    "version-is-text": (lambda p: _sql(p, "UPDATE supernas_meta SET value='one' WHERE name='version'"), 4),
    "header-readonly": (lambda p: _bytes(p, 18, b"\x03"), 4),  # "attempt to write a readonly database"
    "header-versions": (lambda p: _bytes(p, 18, b"\x07\x07"), 4),
    "header-magic": (lambda p: _bytes(p, 0, b"garbage-garbage!"), 4),
    "header-page-size": (lambda p: _bytes(p, 16, b"\x00\x03"), 4),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_every_readable_evaluation_is_recovered(tmp_path, name):
    damage, expected = DAMAGES[name]
    src = damage(_store(tmp_path / "results.db"))
    before = src.read_bytes()
    dest, scan = repair_store(src)
    assert src.read_bytes() == before  # the damaged file is not touched
    assert scan.damaged and len(scan.evaluations) == expected
    with Store(dest, readonly=True) as db:
        recs = db.records("r")
        assert len(recs) == expected and db.damaged_rows == 0 and db.run_meta("r") in ({"seed": 1}, {})
        for rec in recs:  # what was recovered is what was written
            i = rec.config["i"]
            assert rec.values == {"m0": i * 10.0, "m1": i * 10.0 + 1} and rec.elapsed_s == 0.5
    assert not scan_store(dest).damaged


def test_a_damaged_page_loses_only_its_rows(tmp_path):
    src = _store(tmp_path / "results.db", n=400, values=3)
    conn = sqlite3.connect(src)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert not (tmp_path / "results.db-wal").exists()  # everything is in the main file
    raw = src.read_bytes()

    def results_leaf(n: int) -> bool:  # a table-leaf page (type 13) of `results` rows, not of `evaluations`
        page = raw[n * page_size:(n + 1) * page_size]
        return page[0] == 13 and b"k200" in page and b"m1" in page and b'{"i"' not in page

    page = next(n for n in range(1, pages) if results_leaf(n))
    _bytes(src, page * page_size, b"\xff" * page_size)
    with pytest.raises(StoreError):
        with Store(src, readonly=True) as db:
            db.records("r")
    dest, scan = repair_store(src)
    with Store(dest, readonly=True) as db:
        recs = db.records("r")
    complete = [r for r in recs if len(r.values) == 3]
    assert len(recs) == 400 and 300 <= len(complete) < 400 and scan.unreadable_rows > 0, scan.summary()
    assert len(scan.results) == sum(len(r.values) for r in recs) < 1200
    for rec in recs:  # values lost with the page are missing (a resumed search measures them again), none wrong
        i = rec.config["i"]
        assert rec.values.items() <= {f"m{j}": float(i * 10 + j) for j in range(3)}.items()


def test_replace_keeps_the_damaged_file_beside_the_repaired_one(tmp_path):
    src = DAMAGES["config-not-json"][0](_store(tmp_path / "results.db"))
    dest, _ = repair_store(src, replace=True)
    assert dest == src and (tmp_path / "results.db.damaged").exists()
    assert len(Store(src, readonly=True).records("r")) == 3
    with pytest.raises(StoreError, match="exists"):
        repair_store(src, tmp_path / "results.db.damaged")


def test_what_is_not_a_store_is_named(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"x" * 10)
    with pytest.raises(StoreError, match="too short"):
        scan_store(tmp_path / "junk.db")
    conn = sqlite3.connect(tmp_path / "foreign.db")
    conn.execute("CREATE TABLE t (a)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a supernas result store"):
        scan_store(tmp_path / "foreign.db")
    with pytest.raises(StoreError, match="does not exist"):
        scan_store(tmp_path / "missing.db")


def _copy(run, dest):
    shutil.copytree(run, dest)
    cfg = yaml.safe_load((dest / "config.yaml").read_text())
    cfg["out"] = str(dest)
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dest


@pytest.mark.parametrize("name, reading", [
    ("config-not-json", "warning"), ("value-is-text", "warning"),  # rows skipped, the report is still written
    ("version-is-text", "error"), ("header-magic", "error"),  # the store cannot be opened
    ("header-readonly", "fine"), ("metadata-not-json", "fine"),  # a report only reads; the results are all there
])
def test_the_cli_names_the_damage_and_repairs_it(finished_run, tmp_path, capsys, name, reading):
    run = _copy(finished_run, tmp_path / "run")
    db = run / "results.db"
    DAMAGES[name][0](db)
    code, err = cli(["report", run], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    if reading == "error":
        assert_one_line(code, err, str(db), f"supernas store repair {db}")
    elif reading == "warning":
        assert code == 0 and len(lines) == 1 and lines[0].startswith("warning: ") and "store repair" in lines[0]
        assert "1 of 4 evaluations are unreadable" in lines[0]
    else:
        assert code == 0 and not lines
    assert_one_line(*cli(["store", "check", db], capsys), str(db), "is damaged")
    code, err = cli(["store", "repair", db, "--replace"], capsys)
    assert code == 0 and (run / "results.db.damaged").exists()
    assert cli(["store", "check", db], capsys)[0] == 0
    code, err = cli(["report", run], capsys)
    assert code == 0 and not err.strip()
