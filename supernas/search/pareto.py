"""Pareto fronts, knee points and hypervolume (pymoo) on normalised objectives.

Normalisation: every column is first turned into a minimisation (``sign(col) * value``), then mapped
linearly so that the run's fixed bounds ``lower`` -> 0 and ``upper`` -> 1. The bounds are fixed once per
run (given by the user, or the range measured on the space's smallest and largest sub-networks), so the
hypervolume of different evaluation counts, strategies and resumed runs is comparable. A column whose
bounds coincide gets width 1. The reference point is ``REFERENCE = 1.1`` in every normalised objective:
points worse than 10% beyond the upper bound contribute nothing. Hypervolume is pymoo's
``pymoo.indicators.hv.HV`` of the non-dominated points, so the best possible value is ``1.1 ** m``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from pymoo.decomposition.asf import ASF
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from ..errors import ConfigError
from ..measure.objectives import sign, split_column
from .base import parse_constraints

REFERENCE = 1.1


def minimisation(rows: Sequence[Mapping[str, float]], columns: Sequence[str]) -> np.ndarray:
    """(n, m) matrix of ``sign(col) * value`` (all objectives to minimise)."""
    signs = np.array([sign(c) for c in columns])
    if not rows:
        return np.zeros((0, len(columns)))
    return np.array([[float(r[c]) for c in columns] for r in rows], dtype=float) * signs


def pareto_indices(F: np.ndarray) -> list[int]:
    """Indices (ascending) of the non-dominated rows of a minimisation matrix (pymoo's sorting)."""
    if len(F) == 0:
        return []
    return sorted(int(i) for i in NonDominatedSorting().do(np.asarray(F, float), only_non_dominated_front=True))


def knee_index(F: np.ndarray) -> int | None:
    """The compromise (knee) point of a front: the front is scaled to [0, 1] per objective and the point
    with the smallest equal-weight achievement scalarising function (pymoo ``ASF``) wins; ties -> first."""
    F = np.asarray(F, float)
    if len(F) == 0:
        return None
    lo, hi = F.min(axis=0), F.max(axis=0)
    width = np.where(hi - lo > 0, hi - lo, 1.0)
    scaled = (F - lo) / width
    weights = np.full(F.shape[1], 1.0 / F.shape[1])
    return int(np.argmin(ASF().do(scaled, weights=weights).ravel()))


def feasible_indices(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], constraints: Any = None) -> list[int]:
    """Indices of the rows with a finite value in every column that satisfy every constraint
    (``parse_constraints`` input: a mapping, strings or Constraint objects)."""
    cons = parse_constraints(constraints)
    out = []
    for i, row in enumerate(rows):
        try:
            values = [float(row[c]) for c in columns]
        except (KeyError, TypeError, ValueError):
            continue
        if all(math.isfinite(v) for v in values) and all(c.ok(row) for c in cons):
            out.append(i)
    return out


def front_indices(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                  constraints: Any = None) -> tuple[list[int], int | None]:
    """The one definition of a front: indices (ascending, into ``rows``) of the non-dominated rows among the
    complete, feasible ones, and the index of its knee (``knee_index``) or None when no row qualifies.
    The search, the picks, the report and the benchmark tables all use it."""
    ok = feasible_indices(rows, columns, constraints)
    F = minimisation([rows[i] for i in ok], columns)
    front = [ok[i] for i in pareto_indices(F)]
    k = knee_index(minimisation([rows[i] for i in front], columns))
    return front, (front[k] if k is not None else None)


@dataclass
class Normalisation:
    """Fixed per-run bounds of every column, in minimisation space (see the module docstring)."""

    columns: list[str]
    lower: np.ndarray
    upper: np.ndarray
    reference: float = REFERENCE

    @classmethod
    def from_values(cls, columns: Sequence[str], rows: Sequence[Mapping[str, float]]) -> "Normalisation":
        """Bounds = range of the given measurements (e.g. the smallest and largest sub-networks)."""
        F = minimisation(rows, columns)
        if len(F) == 0:
            raise ConfigError("hypervolume bounds need at least one measurement")
        return cls(list(columns), F.min(axis=0), F.max(axis=0))

    @classmethod
    def from_bounds(cls, columns: Sequence[str], bounds: Mapping[str, Sequence[float]]) -> "Normalisation":
        """Bounds given by the user in natural units, ``{column: (a, b)}`` (order of a and b is free)."""
        lo, hi = [], []
        for c in columns:
            if c not in bounds:
                raise ConfigError(f"hypervolume bounds miss column {c!r}")
            pair = [float(v) for v in bounds[c]]
            if len(pair) != 2 or not np.all(np.isfinite(pair)):
                raise ConfigError(f"hypervolume bounds for {c!r} must be two finite numbers, got {bounds[c]!r}")
            a, b = sorted(sign(c) * v for v in pair)
            lo.append(a)
            hi.append(b)
        return cls(list(columns), np.array(lo), np.array(hi))

    def subset(self, columns: Sequence[str]) -> "Normalisation":
        idx = [self.columns.index(c) for c in columns]
        return Normalisation(list(columns), self.lower[idx], self.upper[idx], self.reference)

    def transform(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        width = np.where(self.upper - self.lower > 0, self.upper - self.lower, 1.0)
        return (minimisation(rows, self.columns) - self.lower) / width

    def hypervolume(self, rows: Sequence[Mapping[str, float]]) -> float:
        """pymoo hypervolume of the normalised rows w.r.t. the reference point (0.0 for no rows)."""
        F = self.transform(rows)
        if len(F) == 0:
            return 0.0
        F = F[pareto_indices(F)]
        return float(HV(ref_point=np.full(len(self.columns), self.reference)).do(F))

    def as_dict(self) -> dict:
        return {"columns": self.columns, "lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "reference": self.reference, "space": "minimisation (sign * value)"}


def target_groups(columns: Sequence[str]) -> dict[str, list[str]]:
    """Columns per hardware target: target-free columns (accuracy, macs) join every target's group.
    With no or one target the single group is keyed by that target ('' when none)."""
    targets = sorted({split_column(c)[1] for c in columns} - {""})
    if len(targets) <= 1:
        return {targets[0] if targets else "": list(columns)}
    return {t: [c for c in columns if split_column(c)[1] in ("", t)] for t in targets}
