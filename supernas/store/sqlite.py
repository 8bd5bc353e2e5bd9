"""The result store: every evaluation, committed as soon as it is measured, never recorded twice.

A SQLite file (stdlib ``sqlite3``, WAL journal, busy timeout) holding

* ``runs``        — one row per run name, with a JSON ``meta`` dict;
* ``evaluations`` — one row per (run, config key): the config JSON, status (``ok``/``failed``), error text,
  time of the first insert and the evaluation's elapsed seconds;
* ``results``     — one row per (run, key, target, objective) with its value and time. A metric column
  ``"latency_ms@cpu"`` is objective ``latency_ms`` on target ``cpu``; ``"accuracy"`` has target ``''``.

Rows are inserted with ``INSERT OR IGNORE`` in one ``BEGIN IMMEDIATE`` transaction per :meth:`Store.put`,
so an existing measurement is never duplicated nor overwritten, several processes may write at once (each
opening its own :class:`Store`), and a killed writer loses at most the evaluation it was writing.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..errors import StoreError, warn
from ..measure.objectives import split_column
from .base import Record, ResultStore

if TYPE_CHECKING:  # pragma: no cover
    import pandas

FORMAT = "supernas-store"
VERSION = 1
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS supernas_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, meta TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, key TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, time REAL NOT NULL, elapsed_s REAL, UNIQUE (run, key));
CREATE TABLE IF NOT EXISTS results (
    run TEXT NOT NULL, key TEXT NOT NULL, target TEXT NOT NULL, objective TEXT NOT NULL, value REAL,
    time REAL NOT NULL, PRIMARY KEY (run, key, target, objective));
"""
STATUSES = ("ok", "failed")
# a damaged file is a DatabaseError; with invalid UTF-8 in its schema, decoding sqlite's own message fails first
DATABASE_ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)


def reason(e: BaseException) -> str:
    """sqlite's message for a database error (recovered from the bytes it could not decode)."""
    if isinstance(e, UnicodeDecodeError) and isinstance(e.object, bytes):
        return e.object.decode("utf-8", "replace")
    return str(e)


def decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")  # damaged text reads as text (and then fails its own checks)


REPAIR_HINT = "`supernas store repair {path}` copies every readable evaluation to a fresh store"


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL journaling. SQLite does not call the busy handler for this pragma, so several
    processes opening a brand-new store at once would get "database is locked": retry until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if not ("locked" in str(e) or "busy" in str(e)) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _column(target: str, objective: str) -> str:
    return f"{objective}@{target}" if target else objective


def stored_value(v: float | None) -> float:
    if isinstance(v, (str, bytes)):
        raise ValueError(f"a stored value is text ({v!r})")
    return float("nan") if v is None else float(v)


def json_mapping(text: Any) -> dict[str, Any] | None:
    """A stored JSON mapping (a config, run metadata), None when the text is not one."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _meta(text: Any) -> dict[str, Any]:
    return json_mapping(text) or {}


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


class Store:
    """A SQLite result store at ``path`` (created when missing, unless ``readonly``)."""

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self.damaged_rows = 0  # evaluations the last records() call could not read
        self._open()

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a supernas result store")
        if self.readonly and not self.path.exists():
            raise StoreError(f"result store {self.path} does not exist")
        if not self.readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.readonly:
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                       timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            else:
                conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open result store {self.path}: {e}") from e
        conn.text_factory = decode_text
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables and not self.readonly:
                self._create(conn)
            elif "supernas_meta" not in tables:
                raise StoreError(f"{self.path} is not a supernas result store")
            else:
                if not self.readonly:
                    _set_wal(conn)
                fmt = dict(conn.execute("SELECT name, value FROM supernas_meta").fetchall())
                if fmt.get("format") != FORMAT:
                    raise StoreError(f"{self.path} is not a supernas result store")
                version = fmt.get("version", "0")
                if not str(version).isdigit():
                    raise StoreError(f"{self.path} is damaged: its store version {version!r} is not a number; "
                                     f"{REPAIR_HINT.format(path=self.path)}")
                if int(version) > VERSION:
                    raise StoreError(f"{self.path} was written by a newer supernas (store version "
                                     f"{fmt['version']} > {VERSION})")
        except sqlite3.OperationalError as e:
            conn.close()
            if "locked" in str(e) or "busy" in str(e):
                raise StoreError(f"result store {self.path} stayed locked by another process for "
                                 f"{BUSY_TIMEOUT_S:.0f} s") from e
            raise StoreError(f"{self.path} is not a supernas result store ({e})") from e
        except DATABASE_ERRORS as e:
            conn.close()
            raise StoreError(f"{self.path} is not a supernas result store, or is damaged ({reason(e)}); if it is one, "
                             f"{REPAIR_HINT.format(path=self.path)}") from e
        except StoreError:
            conn.close()
            raise
        self._conn = conn

    def _create(self, conn: sqlite3.Connection) -> None:
        _set_wal(conn)
        conn.execute("BEGIN IMMEDIATE")  # IF NOT EXISTS / OR IGNORE: another process may create it too
        try:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("INSERT OR IGNORE INTO supernas_meta VALUES ('format', ?)", (FORMAT,))
            conn.execute("INSERT OR IGNORE INTO supernas_meta VALUES ('version', ?)", (str(VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"result store {self.path} is closed")
        return self._conn

    def _write(self, fn: Any) -> Any:
        """Run ``fn(conn)`` in one IMMEDIATE transaction, committed before returning."""
        if self.readonly:
            raise StoreError(f"result store {self.path} was opened read-only")
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise StoreError(f"result store {self.path} is locked: {e}") from e
            try:
                out = fn(conn)
                conn.execute("COMMIT")
                return out
            except DATABASE_ERRORS as e:
                _rollback(conn)
                raise StoreError(f"cannot write result store {self.path} ({reason(e)}); it may be damaged: "
                                 f"{REPAIR_HINT.format(path=self.path)}") from e
            except BaseException:
                _rollback(conn)
                raise

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self.conn.execute(sql, args).fetchall()
            except DATABASE_ERRORS as e:
                raise StoreError(f"cannot read result store {self.path} ({reason(e)}); "
                                 f"{REPAIR_HINT.format(path=self.path)}") from e

    # -------------------------------------------------------------------- runs
    def add_run(self, run: str, meta: Mapping[str, Any] | None = None) -> None:
        """Create run ``run`` (idempotent); ``meta`` is merged into the run's stored metadata."""
        if not run or not isinstance(run, str):
            raise StoreError(f"a run name must be a non-empty string, got {run!r}")

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO runs (run, meta, created) VALUES (?, '{}', ?)", (run, time.time()))
            if meta:
                old = _meta(conn.execute("SELECT meta FROM runs WHERE run=?", (run,)).fetchone()[0])
                conn.execute("UPDATE runs SET meta=? WHERE run=?", (json.dumps({**old, **dict(meta)}), run))

        self._write(tx)

    def runs(self) -> list[str]:
        return [r[0] for r in self._read("SELECT run FROM runs ORDER BY created, rowid")]

    def run_meta(self, run: str) -> dict:
        rows = self._read("SELECT meta FROM runs WHERE run=?", (run,))
        if not rows:
            raise StoreError(f"no run {run!r} in result store {self.path}; runs: {', '.join(self.runs()) or 'none'}")
        return _meta(rows[0][0])  # damaged metadata reads as empty; the next add_run rewrites it

    # ----------------------------------------------------------------- writing
    def put(self, run: str, key: str, config: Mapping[str, Any], values: Mapping[str, float], *,
            status: str = "ok", elapsed_s: float | None = None, error: str | None = None) -> bool:
        """Record one evaluation of config ``key`` in ``run``; returns True when anything new was written.

        Measurements already stored for (run, key, column) are kept as they are. A ``failed`` evaluation
        (``error`` text, no values) that later succeeds is turned into ``ok``."""
        if status not in STATUSES:
            raise StoreError(f"status must be one of {STATUSES}, got {status!r}")
        if not run or not key:
            raise StoreError("put needs a non-empty run name and config key")
        rows = []
        for column, v in values.items():
            objective, target = split_column(column)
            if not objective:
                raise StoreError(f"bad metric column {column!r}")
            rows.append((target, objective, None if v is None else float(v)))
        if status == "failed" and rows:
            raise StoreError("a failed evaluation carries an error, not values")
        config_json = json.dumps(dict(config), sort_keys=True)

        def tx(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute("INSERT OR IGNORE INTO runs (run, meta, created) VALUES (?, '{}', ?)", (run, now))
            changed = conn.execute(
                "INSERT OR IGNORE INTO evaluations (run, key, config, status, error, time, elapsed_s) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (run, key, config_json, status, error, now, elapsed_s)).rowcount > 0
            if not changed and status == "ok":
                changed = conn.execute(
                    "UPDATE evaluations SET status='ok', error=NULL, elapsed_s=COALESCE(?, elapsed_s) "
                    "WHERE run=? AND key=? AND status='failed'", (elapsed_s, run, key)).rowcount > 0
            for target, objective, v in rows:
                changed |= conn.execute(
                    "INSERT OR IGNORE INTO results (run, key, target, objective, value, time) VALUES (?,?,?,?,?,?)",
                    (run, key, target, objective, v, now)).rowcount > 0
            return changed

        return bool(self._write(tx))

    def import_rows(self, runs: Iterable[tuple], evaluations: Iterable[tuple], results: Iterable[tuple]) -> None:
        """Insert rows read from another store as they are, in one transaction (``INSERT OR IGNORE``):
        ``runs`` (run, meta JSON, created), ``evaluations`` (run, key, config JSON, status, error, time,
        elapsed_s), ``results`` (run, key, target, objective, value, time)."""
        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR IGNORE INTO runs (run, meta, created) VALUES (?, ?, ?)", runs)
            conn.executemany("INSERT OR IGNORE INTO evaluations (run, key, config, status, error, time, elapsed_s) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", evaluations)
            conn.executemany("INSERT OR IGNORE INTO results (run, key, target, objective, value, time) "
                             "VALUES (?, ?, ?, ?, ?, ?)", results)

        self._write(tx)

    # ----------------------------------------------------------------- reading
    def get(self, run: str, key: str) -> dict[str, float] | None:
        """Every column measured for config ``key`` of ``run``; None when the config was never recorded."""
        if not self._read("SELECT 1 FROM evaluations WHERE run=? AND key=?", (run, key)):
            return None
        return {_column(t, o): stored_value(v) for t, o, v in self._read(
            "SELECT target, objective, value FROM results WHERE run=? AND key=? ORDER BY rowid", (run, key))}

    def has(self, run: str, key: str, columns: Iterable[str] | None = None) -> bool:
        """With ``columns``: all of them are measured for ``key``. Without: ``key`` was evaluated successfully
        (a failed evaluation does not count, so a resumed search retries it)."""
        if columns is None:
            return bool(self._read("SELECT 1 FROM evaluations WHERE run=? AND key=? AND status='ok'", (run, key)))
        got = self.get(run, key) or {}
        return all(c in got for c in columns)

    def records(self, run: str | None = None) -> list[Record]:
        """Every evaluation (of ``run``, or of all runs), in insertion order."""
        where, args = ("WHERE run=?", (run,)) if run is not None else ("", ())
        evals = self._read(f"SELECT run, key, config, status, error, time, elapsed_s FROM evaluations {where} "
                           "ORDER BY id", args)
        values: dict[tuple[str, str], dict[str, float]] = {}
        damaged: set[tuple[str, str]] = set()
        for r, k, t, o, v in self._read(f"SELECT run, key, target, objective, value FROM results {where} "
                                        "ORDER BY rowid", args):
            try:
                values.setdefault((r, k), {})[_column(t, o)] = stored_value(v)
            except (TypeError, ValueError):
                damaged.add((r, k))
        out = []
        for r, k, c, s, err, tm, el in evals:
            config = json_mapping(c)
            if config is not None and (r, k) not in damaged and s in STATUSES:
                out.append(Record(r, k, config, values.get((r, k), {}), s, tm, el, err))
            else:
                damaged.add((r, k))
        self.damaged_rows = len(damaged)  # skipped; a resumed search measures them again
        if damaged:
            warn(f"{self.path}: {len(damaged)} of {len(evals)} evaluations are unreadable and skipped (a resumed "
                 f"search measures them again); {REPAIR_HINT.format(path=self.path)}")
        return out

    def failed(self, run: str) -> list[Record]:
        return [rec for rec in self.records(run) if rec.status == "failed"]

    def dataframe(self, run: str | None = None) -> "pandas.DataFrame":
        """One row per (run, key): run, key, config (dict), status, time, elapsed_s, error, then a column
        per metric."""
        import pandas as pd

        recs = self.records(run)
        base = ["run", "key", "config", "status", "time", "elapsed_s", "error"]
        metrics = list(dict.fromkeys(c for rec in recs for c in rec.values))
        rows = [{**{b: getattr(rec, b) for b in base}, **rec.values} for rec in recs]
        return pd.DataFrame(rows, columns=base + metrics)

    def to_csv(self, path: str | os.PathLike, run: str | None = None) -> None:
        """CSV of :meth:`dataframe`, the config written as JSON."""
        df = self.dataframe(run)
        df["config"] = [json.dumps(c, sort_keys=True) for c in df["config"]]
        df.to_csv(path, index=False)

    def to_json(self, path: str | os.PathLike, run: str | None = None) -> None:
        """A JSON list of records (non-finite values written as null)."""
        def clean(rec: Record) -> dict[str, Any]:
            d = rec.as_dict()
            d["values"] = {c: (v if math.isfinite(v) else None) for c, v in rec.values.items()}
            return d

        Path(path).write_text(json.dumps([clean(r) for r in self.records(run)], indent=1))

    def __len__(self) -> int:
        return self._read("SELECT COUNT(*) FROM evaluations")[0][0]

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as its path: the copy (e.g. in a Ray worker) opens its own connection."""
        return {"path": str(self.path), "readonly": self.readonly}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], readonly=state["readonly"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}{', readonly=True' if self.readonly else ''})"


def open_store(store: ResultStore | str | os.PathLike | None) -> tuple[ResultStore | None, bool]:
    """``(store, owned)``: a path opens a SQLite store (owned: the caller closes it); a store is used as is."""
    if store is None or isinstance(store, ResultStore):
        return store, False
    return Store(store), True
