"""Recovering a damaged result store: every evaluation that can still be read goes to a fresh store.

The damaged file is never written. It is copied (with its ``-wal`` journal) to a scratch folder, where a
damaged SQLite header is restored (the magic string, the format versions, the page size and payload
fractions SQLite requires); each table is then read one row at a time by rowid, so an unreadable page costs
only the rows on it. Rows are kept when they make sense (a config that is a JSON mapping, a known status,
numeric values), and an evaluation is copied with all of its readable values or not at all.
"""
from __future__ import annotations

import json
import math
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import StoreError
from .sqlite import (DATABASE_ERRORS, FORMAT, STATUSES, VERSION, Store, decode_text, json_mapping, reason,
                     stored_value)

MAGIC = b"SQLite format 3\x00"
MAX_ROWID = 1 << 62
MIN_ROW_BYTES = 4  # the smallest cell SQLite stores a row in
LINEAR_PROBES = 256  # unreadable rowids probed one by one before the probe starts to leap


@dataclass
class StoreScan:
    """What could be read from a store: rows ready for :meth:`Store.import_rows`, and what was lost."""

    runs: list[tuple] = field(default_factory=list)
    evaluations: list[tuple] = field(default_factory=list)
    results: list[tuple] = field(default_factory=list)
    skipped_evaluations: int = 0
    skipped_results: int = 0
    unreadable_rows: int = 0  # rowids whose page could not be read (each may have held a row)
    fixes: list[str] = field(default_factory=list)  # damaged structure that was restored (header, store version)

    @property
    def damaged(self) -> bool:
        return bool(self.skipped_evaluations or self.skipped_results or self.unreadable_rows or self.fixes)

    def summary(self) -> str:
        lost = (f"{self.skipped_evaluations} evaluations and {self.skipped_results} values unusable"
                + (f", {self.unreadable_rows} rows unreadable" if self.unreadable_rows else ""))
        fixed = f"; repaired: {', '.join(self.fixes)}" if self.fixes else ""
        return f"{len(self.evaluations)} evaluations ({len(self.results)} values) of {len(self.runs)} runs readable; {lost}{fixed}"


def _fix_header(db: Path) -> list[str]:
    """Restore the fixed fields of an SQLite header in place; the names of the fields that were wrong."""
    data = bytearray(db.read_bytes()[:100])
    if len(data) < 100:
        raise StoreError(f"{db.name}: {len(data)} bytes, too short to be an SQLite database")
    fixes = []
    if data[:16] != MAGIC:
        data[:16], fixes = MAGIC, [*fixes, "magic string"]
    wal = db.with_name(db.name + "-wal").exists()
    for offset in (18, 19):
        if data[offset] not in (1, 2):
            data[offset], fixes = (2 if wal else 1), [*fixes, "format version"]
    size = int.from_bytes(data[16:18], "big")
    if not (size == 1 or (512 <= size <= 32768 and size & (size - 1) == 0)):
        total = db.stat().st_size
        guess = next((p for p in (4096, 1024, 2048, 8192, 16384, 32768, 512) if total % p == 0), 4096)
        data[16:18], fixes = guess.to_bytes(2, "big"), [*fixes, "page size"]
    if data[21:24] != b"\x40\x20\x20":
        data[21:24], fixes = b"\x40\x20\x20", [*fixes, "payload fractions"]
    if fixes:
        with open(db, "r+b") as f:
            f.write(bytes(data))
    return fixes


def _rows(conn: sqlite3.Connection, table: str, columns: str, scan: StoreScan, limit: int) -> Iterator[tuple]:
    """Every readable row of ``table`` in rowid order, read one at a time; rowids that cannot be read are
    stepped over (one by one, then in growing leaps), so a damaged page loses only its own rows. A damaged
    b-tree may answer out of order or in circles: only rows of increasing rowid count, at most ``limit``."""
    last, misses, count = 0, 0, 0
    while last < MAX_ROWID and count < limit:
        try:
            row = conn.execute(f"SELECT rowid, {columns} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1",
                               (last,)).fetchone()
            readable = row is None or (isinstance(row[0], int) and row[0] > last)
        except DATABASE_ERRORS:
            readable = False
        if not readable:
            misses += 1
            scan.unreadable_rows += 1
            last += 1 if misses <= LINEAR_PROBES else 1 << min(misses - LINEAR_PROBES, 60)
            continue
        if row is None:
            return
        misses, last, count = 0, row[0], count + 1
        yield row[1:]


def _number(v: Any) -> float | None:
    """``v`` as the store reads a number (NULL stays None); ValueError when it does not read as one."""
    stored_value(v)
    return None if v is None else float(v)


def _evaluation(row: tuple) -> tuple | None:
    run, key, config, status, error, when, elapsed = row
    parsed = json_mapping(config)
    if not (isinstance(run, str) and run and isinstance(key, str) and key and parsed is not None
            and status in STATUSES and (error is None or isinstance(error, str))):
        return None
    try:
        when = _number(when)
        elapsed = _number(elapsed)
    except ValueError:
        return None
    return (run, key, json.dumps(parsed, sort_keys=True), status, error,
            when if when is not None and math.isfinite(when) else time.time(), elapsed)


def scan_store(path: str | Path) -> StoreScan:
    """Read everything usable from the store at ``path`` (which is left untouched)."""
    src = Path(path)
    if not src.is_file():
        raise StoreError(f"result store {src} does not exist")
    scan = StoreScan()
    with tempfile.TemporaryDirectory(prefix="supernas-repair-") as tmp:
        db = Path(tmp) / "store.db"
        shutil.copyfile(src, db)
        for suffix in ("-wal",):
            journal = src.with_name(src.name + suffix)
            if journal.exists():
                shutil.copyfile(journal, db.with_name(db.name + suffix))
        scan.fixes = _fix_header(db)
        conn = sqlite3.connect(str(db), isolation_level=None)
        conn.text_factory = decode_text
        try:
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            except DATABASE_ERRORS as e:
                raise StoreError(f"{src}: its table of contents cannot be read ({reason(e)}); nothing can be "
                                 f"recovered") from None
            missing = {"runs", "evaluations", "results"} - tables
            if missing:
                raise StoreError(f"{src} has no {', '.join(sorted(missing))} table: not a supernas result store")
            _check_format(conn, src, scan)
            size = db.stat().st_size + (wal.stat().st_size if (wal := db.with_name(db.name + "-wal")).exists() else 0)
            _collect(conn, scan, limit=size // MIN_ROW_BYTES + 1)
        finally:
            conn.close()
    return scan


def _check_format(conn: sqlite3.Connection, src: Path, scan: StoreScan) -> None:
    try:
        meta = dict(conn.execute("SELECT name, value FROM supernas_meta").fetchall())
    except (*DATABASE_ERRORS, ValueError, TypeError):
        meta = {}
    version = str(meta.get("version", ""))
    if version.isdigit() and int(version) > VERSION:
        raise StoreError(f"{src} was written by a newer supernas (store version {version} > {VERSION}); "
                         f"repair it with that version")
    if meta.get("format") != FORMAT or not version.isdigit():
        scan.fixes.append("store format and version")


def _collect(conn: sqlite3.Connection, scan: StoreScan, limit: int) -> None:
    """``limit``: the most rows a table of this file can hold (a damaged b-tree must not read forever)."""
    runs: dict[str, tuple] = {}
    for run, meta, created in _rows(conn, "runs", "run, meta, created", scan, limit):
        if isinstance(run, str) and run:
            ok = isinstance(created, (int, float)) and not isinstance(created, bool) and math.isfinite(created)
            parsed = json_mapping(meta)
            if parsed is None:
                scan.fixes.append(f"metadata of run {run!r} (reset to empty)")
            runs[run] = (run, json.dumps(parsed or {}), float(created) if ok else time.time())
    kept: set[tuple[str, str]] = set()
    for row in _rows(conn, "evaluations", "run, key, config, status, error, time, elapsed_s", scan, limit):
        ev = _evaluation(row)
        if ev is None:
            scan.skipped_evaluations += 1
            continue
        scan.evaluations.append(ev)
        kept.add((ev[0], ev[1]))
        runs.setdefault(ev[0], (ev[0], "{}", ev[5]))
    values: dict[tuple[str, str], list[tuple]] = {}
    broken: set[tuple[str, str]] = set()
    for run, key, target, objective, value, when in _rows(conn, "results",
                                                          "run, key, target, objective, value, time", scan,
                                                          limit):
        try:
            good = isinstance(target, str) and isinstance(objective, str) and bool(objective)
            value, when = _number(value), _number(when)
        except ValueError:
            good = False
        if not good:
            broken.add((run, key))
            scan.skipped_results += 1
            continue
        values.setdefault((run, key), []).append((run, key, target, objective, value,
                                                  when if when is not None else time.time()))
    # an evaluation with an unusable value would read as complete without it: measure it again instead
    scan.skipped_evaluations += len(broken & kept)
    scan.evaluations = [ev for ev in scan.evaluations if (ev[0], ev[1]) not in broken]
    scan.results = [r for ev in scan.evaluations for r in values.get((ev[0], ev[1]), [])]
    scan.skipped_results += sum(len(v) for k, v in values.items() if k not in kept or k in broken)
    scan.runs = list(runs.values())


def repair_store(path: str | Path, out: str | Path | None = None, replace: bool = False) -> tuple[Path, StoreScan]:
    """Copy every usable evaluation of the store at ``path`` to a fresh store at ``out`` (default:
    ``<name>.repaired.db`` beside it). ``replace``: the damaged file (and its journal) moves to
    ``<name>.damaged`` and the repaired store takes its place. Returns the repaired store's path and the scan."""
    src = Path(path)
    scan = scan_store(src)
    dest = Path(out) if out is not None else src.with_name(f"{src.stem}.repaired{src.suffix or '.db'}")
    if dest.exists():
        raise StoreError(f"{dest} exists; choose another --out or remove it")
    with Store(dest) as fresh:
        fresh.import_rows(scan.runs, scan.evaluations, scan.results)
    if replace:
        kept = src.with_name(src.name + ".damaged")
        if kept.exists():
            raise StoreError(f"{kept} exists (an earlier repair's copy); move it away first")
        for suffix in ("-wal", "-shm"):
            side = src.with_name(src.name + suffix)
            if side.exists():
                side.replace(kept.with_name(kept.name + suffix))
        src.replace(kept)
        dest.replace(src)
        dest = src
    return dest, scan
