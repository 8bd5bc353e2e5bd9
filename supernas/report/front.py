"""The Pareto front of a table of evaluations, its knee and its table: ``search.pareto.front_indices`` on a
DataFrame, so the report and the picks see the front the search reported (constraints honoured)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..measure.objectives import direction
from ..search.base import parse_constraints
from ..search.pareto import front_indices


def check_columns(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """``columns`` as a list, after checking each is a known objective and present in ``df``."""
    cols = list(columns)
    if not cols:
        raise ConfigError("a report needs at least one objective column")
    for col in cols:
        direction(col)  # ConfigError naming an unknown objective
        if col not in df.columns:
            raise ConfigError(f"objective column {col!r} is not in the evaluations; "
                              f"columns: {', '.join(map(str, df.columns))}")
    return cols


def _front(df: pd.DataFrame, columns: Sequence[str], constraints: Any) -> tuple[list[int], int | None]:
    cols = check_columns(df, columns)
    cons_cols = [c.column for c in parse_constraints(constraints)]
    used = list(dict.fromkeys(cols + [c for c in cons_cols if c in df.columns]))
    rows = df[used].apply(pd.to_numeric, errors="coerce").to_dict("records")
    return front_indices(rows, cols, constraints)


def pareto_mask(df: pd.DataFrame, columns: Sequence[str], constraints: Any = None) -> np.ndarray:
    """Boolean mask (one per row) of the front: non-dominated among the rows that have every value and
    satisfy ``constraints`` (as in the run file's ``search.constraints``)."""
    mask = np.zeros(len(df), dtype=bool)
    mask[_front(df, columns, constraints)[0]] = True
    return mask


def knee_point(df: pd.DataFrame, columns: Sequence[str], constraints: Any = None) -> Any:
    """Index label of the knee of the front: the compromise point the search reports
    (``supernas.search.pareto.knee_index``: equal-weight ASF on the front scaled to [0, 1])."""
    knee = _front(df, columns, constraints)[1]
    if knee is None:
        raise ConfigError("no complete evaluation" + (" satisfies the constraints" if constraints else "")
                          + " to pick a knee from")
    return df.index[knee]


def config_text(row: pd.Series) -> str:
    """Canonical JSON of a row's config (from a ``config`` column, dict or JSON, else the ``key``)."""
    cfg = row.get("config")
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except json.JSONDecodeError:
            return cfg
    if isinstance(cfg, dict):
        return json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    key = row.get("key")
    return str(key) if key is not None and not (isinstance(key, float) and np.isnan(key)) else ""


def front_table(df: pd.DataFrame, columns: Sequence[str], constraints: Any = None) -> pd.DataFrame:
    """The front rows (feasible under ``constraints``): ``key``, ``config`` (canonical JSON), every objective
    column and ``knee`` (True on the knee row), sorted best first on the first objective."""
    cols = check_columns(df, columns)
    idx, k = _front(df, cols, constraints)
    front = df.iloc[idx]
    knee = df.index[k] if k is not None else None
    keys = front["key"].astype(str) if "key" in front.columns else pd.Series(
        [config_text(r) for _, r in front.iterrows()], index=front.index, dtype=object)
    table = pd.DataFrame({"key": keys, "config": [config_text(r) for _, r in front.iterrows()]},
                         index=front.index)
    for col in cols:
        table[col] = pd.to_numeric(front[col], errors="coerce")
    table["knee"] = table.index == knee
    return table.sort_values(cols[0], ascending=direction(cols[0]) == "min", kind="stable")


def write_front_table(df: pd.DataFrame, columns: Sequence[str], path: str | Path,
                      constraints: Any = None) -> pd.DataFrame:
    """Write ``front_table`` as CSV (or JSON records when ``path`` ends in ``.json``); return it."""
    table = front_table(df, columns, constraints)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(table.to_json(orient="records", indent=2) + "\n")
    else:
        table.to_csv(path, index=False)
    return table
