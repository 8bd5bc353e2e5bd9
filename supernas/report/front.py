"""The Pareto front of a table of evaluations (pymoo's non-dominated sorting), its knee, its table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..measure.objectives import direction, sign
from ..search.pareto import knee_index, pareto_indices


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


def minimisation_matrix(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Objective values as floats, negated where the objective is maximised (NaN kept)."""
    cols = check_columns(df, columns)
    values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    signs = np.array([sign(c) for c in cols])
    return values * signs


def pareto_mask(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Boolean mask (one per row) of the non-dominated rows; rows with a missing value are never on it."""
    F = minimisation_matrix(df, columns)
    mask = np.zeros(len(df), dtype=bool)
    complete = np.flatnonzero(~np.isnan(F).any(axis=1))
    mask[complete[pareto_indices(F[complete])]] = True
    return mask


def knee_point(df: pd.DataFrame, columns: Sequence[str]) -> Any:
    """Index label of the knee of the front: the same compromise point the search reports
    (``supernas.search.pareto.knee_index``: equal-weight ASF on the front scaled to [0, 1])."""
    mask = pareto_mask(df, columns)
    if not mask.any():
        raise ConfigError("no complete evaluation to pick a knee from")
    k = knee_index(minimisation_matrix(df, columns)[mask])
    return df.index[np.flatnonzero(mask)[k]]


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


def front_table(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The front rows: ``key``, ``config`` (canonical JSON), every objective column and ``knee``
    (True on the knee row), sorted best first on the first objective."""
    cols = check_columns(df, columns)
    mask = pareto_mask(df, cols)
    front = df.loc[mask]
    knee = knee_point(df, cols) if mask.any() else None
    keys = front["key"].astype(str) if "key" in front.columns else pd.Series(
        [config_text(r) for _, r in front.iterrows()], index=front.index, dtype=object)
    table = pd.DataFrame({"key": keys, "config": [config_text(r) for _, r in front.iterrows()]},
                         index=front.index)
    for col in cols:
        table[col] = pd.to_numeric(front[col], errors="coerce")
    table["knee"] = table.index == knee
    return table.sort_values(cols[0], ascending=direction(cols[0]) == "min", kind="stable")


def write_front_table(df: pd.DataFrame, columns: Sequence[str], path: str | Path) -> pd.DataFrame:
    """Write ``front_table`` as CSV (or JSON records when ``path`` ends in ``.json``); return it."""
    table = front_table(df, columns)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(table.to_json(orient="records", indent=2) + "\n")
    else:
        table.to_csv(path, index=False)
    return table
