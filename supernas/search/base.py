"""The ask/tell interface shared by every strategy, constraints, and the strategy registry.

A strategy's state is a deterministic function of its seed and the sequence of ``ask``/``tell`` calls,
so a search replayed from its store proposes exactly what it proposed the first time (resume).
Results are ``dict[column, float]`` or ``None`` for a failed evaluation.
"""
from __future__ import annotations

import inspect
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..measure.objectives import direction, get_objective, sign
from ..registry import Registry
from ..space import Config, SearchSpace

Result = Mapping[str, float] | None
FAILED_PENALTY = 1e12  # objective value and constraint violation given to failed evaluations


@dataclass(frozen=True)
class Constraint:
    """A budget on a metric column: ``column <= bound`` or ``column >= bound``."""

    column: str
    op: str
    bound: float

    def violation(self, value: float) -> float:
        """<= 0 when satisfied (pymoo's convention), else by how much it is exceeded."""
        return value - self.bound if self.op == "<=" else self.bound - value

    def ok(self, values: Mapping[str, float]) -> bool:
        return self.column in values and self.violation(float(values[self.column])) <= 0

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.bound:g}"


_CONSTRAINT_RE = re.compile(r"^\s*([\w@.\-]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


def parse_constraints(spec: Any) -> list[Constraint]:
    """Accepts ``None``; a mapping ``{column: bound}`` (``<=`` for min objectives, ``>=`` for max ones),
    ``{column: ("<=", bound)}``; or a sequence of ``Constraint`` / strings like ``"latency_ms@cpu <= 5"``."""
    if spec is None:
        return []
    items: list[Constraint] = []
    if isinstance(spec, Mapping):
        for col, v in spec.items():
            get_objective(col)
            if isinstance(v, (tuple, list)) and len(v) == 2:
                op, bound = v
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                op, bound = ("<=" if direction(col) == "min" else ">="), v
            else:
                raise ConfigError(f"constraint on {col!r} must be a number or (op, number), got {v!r}")
            items.append(_make(col, op, bound))
        return items
    if isinstance(spec, (str, Constraint)):
        spec = [spec]
    for s in spec:
        if isinstance(s, Constraint):
            items.append(_make(s.column, s.op, s.bound))
            continue
        m = _CONSTRAINT_RE.match(str(s))
        if not m:
            raise ConfigError(f"cannot read constraint {s!r}; write it like 'latency_ms@cpu <= 5'")
        get_objective(m.group(1))
        items.append(_make(m.group(1), m.group(2), m.group(3)))
    return items


def _make(col: str, op: Any, bound: Any) -> Constraint:
    if op not in ("<=", ">="):
        raise ConfigError(f"constraint on {col!r}: operator must be '<=' or '>=', got {op!r}")
    try:
        b = float(bound)
    except (TypeError, ValueError):
        raise ConfigError(f"constraint on {col!r}: bound {bound!r} is not a number") from None
    if not math.isfinite(b):
        raise ConfigError(f"constraint on {col!r}: bound must be finite")
    return Constraint(col, op, b)


def check_columns(columns: Sequence[str]) -> list[str]:
    cols = list(columns)
    if not cols:
        raise ConfigError("a search needs at least one objective column")
    if len(set(cols)) != len(cols):
        raise ConfigError(f"duplicate objective columns in {cols}")
    for c in cols:
        get_objective(c)
    return cols


class Strategy:
    """Base class: proposes configs with :meth:`ask`, learns from :meth:`tell`.

    ``ask(n)`` returns at most ``n`` configs never told before and never returned by an earlier ``ask``
    (deduplicated by ``space.key``). ``tell`` accepts any configs, asked or not (warm start, resume).
    """

    name = "base"

    def __init__(self, space: SearchSpace, columns: Sequence[str], *, seed: int = 0,
                 constraints: Any = None) -> None:
        self.space = space
        self.columns = check_columns(columns)
        self.seed = int(seed)
        self.constraints = parse_constraints(constraints)
        for c in self.constraints:
            if c.column not in self.columns:
                raise ConfigError(f"constraint column {c.column!r} is not among the measured columns "
                                  f"{self.columns}")
        self.signs = np.array([sign(c) for c in self.columns])
        self.rng = random.Random(self.seed)
        self.results: dict[str, Result] = {}      # key -> told result (None = failed), in tell order
        self.configs: dict[str, Config] = {}      # key -> canonical config of everything asked or told
        self.asked: set[str] = set()

    # ---------------------------------------------------------------- interface
    def ask(self, n: int) -> list[Config]:
        if n <= 0:
            return []
        out: list[Config] = []
        for cfg in self._propose(n)[:n]:
            key = self.space.key(cfg)
            if not self.seen(key):  # guard: never hand out a config twice
                self.asked.add(key)
                self.configs[key] = self.space.validate(cfg)
                out.append(self.configs[key])
        return out

    def tell(self, cfgs: Sequence[Mapping[str, Any]], results: Sequence[Result]) -> None:
        if len(cfgs) != len(results):
            raise ConfigError(f"tell got {len(cfgs)} configs but {len(results)} results")
        for cfg, res in zip(cfgs, results):
            key = self.space.key(cfg)
            self.configs[key] = self.space.validate(cfg)
            self.results[key] = None if res is None else {c: float(res[c]) for c in self.columns}
        self._told(cfgs, results)

    def _propose(self, n: int) -> list[Config]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _told(self, cfgs: Sequence[Mapping[str, Any]], results: Sequence[Result]) -> None:
        """Hook for strategies that update state on tell."""

    # ----------------------------------------------------------------- helpers
    def seen(self, key: str) -> bool:
        return key in self.results or key in self.asked

    def minimised(self, res: Result) -> np.ndarray:
        """Objective row turned into minimisation (failed -> penalty)."""
        if res is None:
            return np.full(len(self.columns), FAILED_PENALTY)
        return np.array([res[c] for c in self.columns], dtype=float) * self.signs

    def violations(self, res: Result) -> np.ndarray:
        """Constraint row in pymoo's convention (<= 0 feasible); failed -> penalty."""
        if res is None:
            return np.full(len(self.constraints), FAILED_PENALTY)
        return np.array([c.violation(res[c.column]) for c in self.constraints], dtype=float)

    def measured(self, ok_only: bool = True) -> tuple[list[Config], list[dict[str, float]]]:
        """Told configs and their results (failed ones dropped when ``ok_only``)."""
        keys = [k for k, r in self.results.items() if r is not None or not ok_only]
        return [self.configs[k] for k in keys], [self.results[k] for k in keys]  # type: ignore[misc]

    def random_unseen(self, n: int, exclude: Iterable[Mapping[str, Any]] = (), tries: int = 50) -> list[Config]:
        """Up to ``n`` uniform samples never told or asked and not in ``exclude`` (fewer when the space runs
        out)."""
        r = self.rng
        taken = {self.space.key(c) for c in exclude}
        out: dict[str, Config] = {}
        misses = 0
        while len(out) < n and misses < tries * max(n, 1):
            cfg = self.space.sample(rng=r)
            key = self.space.key(cfg)
            if self.seen(key) or key in out or key in taken:
                misses += 1
                continue
            out[key] = cfg
        if len(out) < n and self.space.size() <= 100_000:  # small space: finish by enumeration
            for cfg in self.space.enumerate():
                key = self.space.key(cfg)
                if len(out) >= n:
                    break
                if not self.seen(key) and key not in out and key not in taken:
                    out[key] = cfg
        return list(out.values())


_STRATEGIES: Registry[Callable[..., Strategy]] = Registry("search strategy")


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        _STRATEGIES.add(name, cls)
        return cls
    return deco


def list_strategies() -> list[str]:
    return _STRATEGIES.names()


def create_strategy(name: str, space: SearchSpace, columns: Sequence[str], *, seed: int = 0,
                    constraints: Any = None, **kw: Any) -> Strategy:
    """Build a registered strategy by name (``random``, ``nsga2``, ``agemoea``, ``linas``, ``constrained``,
    ``optuna``); ``kw`` are the strategy's own options."""
    check_strategy_options(name, kw)
    return _STRATEGIES.get(name)(space, columns, seed=seed, constraints=constraints, **kw)


def check_strategy_options(name: str, options: Mapping[str, Any]) -> None:
    """ConfigError (one line) for an unknown strategy or an option its constructor does not take; a run
    file's ``search.options`` are checked this way when it is loaded, before any training."""
    strategy = _STRATEGIES.get(name)
    try:
        inspect.signature(strategy).bind(None, None, seed=0, constraints=None, **options)
    except TypeError as e:
        raise ConfigError(f"bad option for strategy {name!r}: {e}") from None


def unique_configs(space: SearchSpace, cfgs: Iterable[Mapping[str, Any]]) -> list[Config]:
    out: dict[str, Config] = {}
    for c in cfgs:
        out.setdefault(space.key(c), space.validate(c))
    return list(out.values())
