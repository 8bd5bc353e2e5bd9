"""Exhaustive benchmark tables: every sub-network of a small space, evaluated once, with its true front.

A table is two files: ``<name>.csv`` (one row per sub-network: ``key``, ``config`` as JSON, one column per
objective and ``on_front``, true when the row is on the exact Pareto front over all objectives) and
``<name>.json`` (the search space's choices, the objective columns and free-form ``meta``: how it was made).
While a table is built every evaluation goes to a result store first (run ``table``), so an interrupted
build resumes where it stopped.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import ConfigError
from ..search.base import check_columns
from ..search.evaluation import Evaluate
from ..search.pareto import Normalisation, front_indices
from ..search.session import EvaluationSession
from ..space import Choice, SearchSpace
from ..store import ResultStore

#: the largest space ``build_table`` accepts (every sub-network is evaluated)
MAX_TABLE_SIZE = 20_000
TABLE_RUN = "table"
CHUNK = 32  # configs handed to the pool at a time (progress and store commits in between)


class TableError(ConfigError):
    """A benchmark table file is missing, malformed or does not fit the request."""


@dataclass
class Table:
    """An exhaustive table: ``frame`` has ``key``, ``config`` (dict), one column per objective, ``on_front``."""

    space: SearchSpace
    columns: list[str]
    frame: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def front(self) -> pd.DataFrame:
        return self.frame[self.frame["on_front"]]

    def values(self) -> dict[str, dict[str, float]]:
        """``{key: {column: value}}`` of every row."""
        vals = self.frame[self.columns].to_numpy(float)
        return {k: dict(zip(self.columns, map(float, row))) for k, row in zip(self.frame["key"], vals)}

    def rows(self, columns: Sequence[str] | None = None) -> list[dict[str, float]]:
        cols = list(columns or self.columns)
        return self.frame[cols].to_dict("records")

    def normalisation(self, columns: Sequence[str] | None = None) -> Normalisation:
        """Fixed hypervolume bounds: the range of every column over the whole table."""
        cols = self._check(columns)
        return Normalisation.from_values(cols, self.rows(cols))

    def true_hypervolume(self, columns: Sequence[str] | None = None,
                         norm: Normalisation | None = None) -> float:
        cols = self._check(columns)
        return (norm or self.normalisation(cols)).hypervolume(self.rows(cols))

    def _check(self, columns: Sequence[str] | None) -> list[str]:
        cols = list(columns or self.columns)
        missing = [c for c in cols if c not in self.columns]
        if missing:
            raise TableError(f"the table has no column(s) {', '.join(missing)}; it has {', '.join(self.columns)}")
        return cols

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (CSV) and its ``.json`` sidecar atomically; returns the CSV path."""
        path = Path(path).with_suffix(".csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.frame.copy()
        df["config"] = [json.dumps(c, sort_keys=True) for c in df["config"]]
        tmp = path.with_suffix(".csv.tmp")
        df.to_csv(tmp, index=False, float_format="%.6g")
        tmp.replace(path)
        side = {"format": "supernas-table", "version": 1, "columns": self.columns,
                "space": space_to_dict(self.space), "meta": self.meta}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(side, indent=1))
        tmp.replace(path.with_suffix(".json"))
        return path


def space_to_dict(space: SearchSpace) -> list[dict[str, Any]]:
    """The space as JSON-ready dicts (a choice's sampling ``prior`` only where it has one)."""
    return [{"name": c.name, "options": list(c.options), "active_if": list(c.active_if) if c.active_if else None,
             **({"prior": list(c.prior)} if c.prior is not None else {})} for c in space.choices]


def space_from_dict(choices: Sequence[Mapping[str, Any]]) -> SearchSpace:
    return SearchSpace([Choice(c["name"], tuple(c["options"]), tuple(c["active_if"]) if c.get("active_if") else None,
                               tuple(c["prior"]) if c.get("prior") is not None else None) for c in choices])


def front_mask(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """True for the rows on the exact Pareto front over ``columns``."""
    mask = np.zeros(len(frame), dtype=bool)
    mask[front_indices(frame[list(columns)].to_dict("records"), columns)[0]] = True
    return mask


def make_table(space: SearchSpace, columns: Sequence[str], points: Mapping[str, Mapping[str, float]],
               meta: Mapping[str, Any] | None = None) -> Table:
    """A :class:`Table` from ``{key: values}`` (rows in the space's enumeration order)."""
    cols = check_columns(columns)
    rows = []
    for key, vals in points.items():
        rows.append({"key": key, "config": space.from_key(key), **{c: float(vals[c]) for c in cols}})
    frame = pd.DataFrame(rows, columns=["key", "config", *cols])
    frame["on_front"] = front_mask(frame, cols) if len(frame) else np.zeros(0, bool)
    return Table(space, cols, frame, dict(meta or {}))


def load_table(path: str | os.PathLike) -> Table:
    """Read a table written by :meth:`Table.save` (``path`` with or without ``.csv``)."""
    path = Path(path).with_suffix(".csv")
    side = path.with_suffix(".json")
    if not path.exists() or not side.exists():
        raise TableError(f"no benchmark table at {path} (need {path.name} and {side.name})")
    try:
        info = json.loads(side.read_text())
        if info.get("format") != "supernas-table":
            raise ValueError("not a supernas table sidecar")
        space, cols = space_from_dict(info["space"]), list(info["columns"])
        frame = pd.read_csv(path)
        frame["config"] = [json.loads(c) for c in frame["config"]]
        missing = [c for c in ["key", "config", *cols, "on_front"] if c not in frame.columns]
        if missing:
            raise ValueError(f"missing column(s) {', '.join(missing)}")
        frame["on_front"] = frame["on_front"].astype(bool)
    except (ValueError, KeyError, TypeError, pd.errors.ParserError) as e:
        raise TableError(f"{path} is not a valid supernas benchmark table: {e}") from None
    return Table(space, cols, frame, dict(info.get("meta") or {}))


def _space_of(obj: Any) -> SearchSpace:
    space = obj if isinstance(obj, SearchSpace) else getattr(obj, "space", None)
    if not isinstance(space, SearchSpace):
        raise ConfigError(f"build_table needs a Supernet or a SearchSpace, got {type(obj).__name__}")
    return space


def build_table(supernet: Any, evaluate: Evaluate, columns: Sequence[str], out_path: str | os.PathLike, *,
                store: ResultStore | str | os.PathLike | None = None, workers: int = 1, ray_address: str | None = None,
                progress: bool = True, resume: bool = True, meta: Mapping[str, Any] | None = None,
                retries: int = 1, max_size: int = MAX_TABLE_SIZE) -> Table:
    """Evaluate every sub-network of ``supernet.space`` (or of a SearchSpace) with ``evaluate`` and save the
    table at ``out_path`` (CSV + JSON sidecar, see the module docstring).

    Results go to ``store`` (default: ``out_path`` with suffix ``.db``) as they come, run ``table``; with
    ``resume`` configs already stored are skipped, without it a store that holds results is an error.
    ``workers > 1`` (or ``ray_address``) evaluates as Ray tasks. Spaces above ``max_size`` sub-networks are
    refused. Configs that still fail after ``retries`` are left out of the table (``meta['failed']``) and
    retried by the next build."""
    space = _space_of(supernet)
    cols = check_columns(columns)
    size = space.size()
    if size > max_size:
        raise ConfigError(f"the space has {size} sub-networks; a benchmark table is limited to {max_size} "
                          f"(reduce the space's choices)")
    out_path = Path(out_path).with_suffix(".csv")
    with EvaluationSession(space, evaluate, cols, store=store or out_path.with_suffix(".db"), run=TABLE_RUN,
                           meta={"kind": "table", "columns": cols, "size": size}, resume=resume, workers=workers,
                           retries=retries, ray_address=ray_address) as session:
        failed = _evaluate_all(session, size, progress)
        done = {k: r.values for k, r in session.stored.items()}
    table = make_table(space, cols, {space.key(c): done[space.key(c)] for c in space.enumerate()
                                     if space.key(c) in done},
                       {**dict(meta or {}), "size": size, "failed": failed})
    table.save(out_path)
    return table


def _evaluate_all(session: EvaluationSession, size: int, progress: bool) -> int:
    """Evaluate every sub-network the session's run does not hold yet, chunk by chunk; returns #failed."""
    todo = [c for c in session.space.enumerate() if not session.measured(session.space.key(c))]
    failed = 0
    bar = Progress(TextColumn("table"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.description}"), disable=not progress)
    with bar:
        task = bar.add_task("", total=size, completed=size - len(todo))
        for start in range(0, len(todo), CHUNK):
            for got in session.evaluate_many(todo[start:start + CHUNK]):
                failed += not got.outcome.ok
                bar.update(task, advance=1, description=f"failed={failed}")
    return failed
