"""Tiered evaluation: every sub-network is screened cheaply first (e.g. accuracy on a sample of the validation
set, latency from a few calls) and evaluated in full only when it can still enter the front.

A screen is an evaluate function's cheaper twin (the :class:`Screenable` contract): every metric column
estimated, plus ``margin:<column>``, the half-width of an interval that holds the full measurement at the
screener's confidence (0 for what it measured exactly). A screened sub-network is evaluated in full unless
its *optimistic* point (each column moved by its margin in the good direction) violates a constraint or is
weakly dominated by the front of full evaluations so far: then even its best case adds nothing to the
front's hypervolume. Screens are stored in a run of their own (``<run>:screen``), apart from full
evaluations, and replayed on resume like them; decisions depend only on what is stored, so a resumed
search re-measures nothing.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ConfigError
from ..measure.objectives import MARGIN, sign
from ..space import Config
from .base import Constraint
from .pareto import minimisation

SCREEN_RUN = "{run}:screen"


@runtime_checkable
class Screenable(Protocol):
    """An evaluate function with a cheap screen (``measure.Evaluator`` with ``screen_samples`` or ``screen_repeats``)."""

    def __call__(self, cfg: Config) -> Mapping[str, float]:
        """Every metric column, measured in full."""

    def screen(self, cfg: Config) -> Mapping[str, float]:
        """Every metric column estimated cheaply, and ``margin:<column>`` for each (>= 0)."""


def screen_columns(columns: Sequence[str]) -> list[str]:
    """What a screen returns: the columns, then their margins."""
    return [*columns, *(MARGIN + c for c in columns)]


def estimates(screened: Mapping[str, float], columns: Sequence[str]) -> dict[str, float]:
    """The estimated columns of a screen (its margins dropped)."""
    return {c: float(screened[c]) for c in columns}


def optimistic(screened: Mapping[str, float], columns: Sequence[str]) -> dict[str, float]:
    """Each column at the good end of its interval (``+ margin`` for a maximised one, ``- margin`` else)."""
    return {c: float(screened[c]) - sign(c) * _margin(screened, c) for c in columns}


def _margin(screened: Mapping[str, float], column: str) -> float:
    m = float(screened.get(MARGIN + column, 0.0))
    if not m >= 0:
        raise ConfigError(f"a screen returned a negative or undefined margin for {column!r}: {m}")
    return m


def may_enter(screened: Mapping[str, float], front: Sequence[Mapping[str, float]], columns: Sequence[str],
              constraints: Sequence[Constraint] = ()) -> bool:
    """False when even the optimistic point of a screen is infeasible or weakly dominated by a ``front``
    point (then its full evaluation cannot change the front's hypervolume); True otherwise."""
    best = optimistic(screened, columns)
    if not all(c.ok(best) for c in constraints):
        return False
    F = minimisation(list(front), columns)
    if len(F) == 0:
        return True
    o = minimisation([best], columns)[0]
    return not bool(np.any(np.all(F <= o, axis=1)))


def require_screenable(evaluate: Any) -> Screenable:
    """``evaluate`` as a Screenable, or a one-line ConfigError naming what is missing."""
    if not isinstance(evaluate, Screenable):
        raise ConfigError(f"tiered evaluation needs an evaluate function with a screen(config) method "
                          f"(measure.Evaluator with screen_samples or screen_repeats), got {type(evaluate).__name__}")
    return evaluate
