"""The search driver: ask a strategy, evaluate (in process or on Ray), commit to the store, tell, repeat.

Resume is replay: the strategy is rebuilt from its seed and the driver runs the same ask/tell sequence,
taking every result already in the run's store instead of evaluating it again (failed or incomplete
records are re-evaluated). Since a strategy's state depends only on its seed and what it was told, an
interrupted and resumed search ends exactly where an uninterrupted one would.

The first evaluations are the space's smallest and largest sub-networks (``anchors``): extreme points
of the front, a warm start for every strategy, and, unless ``bounds`` are given, the fixed hypervolume
normalisation bounds of the run (see ``supernas.search.pareto``).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..space import Config, SearchSpace
from ..store import ResultStore
from .base import Strategy, check_columns, create_strategy, parse_constraints
from .evaluation import Evaluate, Outcome
from .pareto import Normalisation, front_indices, minimisation, target_groups
from .progress import SearchProgress
from .session import EvaluationSession
from .tiered import SCREEN_RUN, estimates, may_enter, require_screenable, screen_columns

DEFAULT_BATCH = 16


@dataclass
class Point:
    """One evaluated sub-network."""

    key: str
    config: Config
    values: dict[str, float]


@dataclass
class Evaluation(Point):
    """Any evaluation of the search, in tell order; ``status`` is ``ok``, ``failed`` or ``screened`` (a tiered
    search's screen said it cannot enter the front: ``values`` are the screen's estimates)."""

    status: str = "ok"
    error: str | None = None
    elapsed_s: float | None = None
    cached: bool = False


@dataclass
class Front:
    """The Pareto front over ``columns`` (feasible, successful evaluations only), its knee and hypervolume."""

    target: str
    columns: list[str]
    points: list[Point]
    knee: Point | None
    hypervolume: float


@dataclass
class SearchResult:
    run: str
    strategy: str
    seed: int
    columns: list[str]
    constraints: list[str]
    evaluations: list[Evaluation]
    front: list[Point]
    knee: Point | None
    fronts: dict[str, Front]
    hypervolume: list[float]
    normalisation: Normalisation
    best: dict[str, Point] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.front]

    def summary(self) -> dict[str, Any]:
        return {"run": self.run, "strategy": self.strategy, "seed": self.seed, "columns": self.columns,
                "constraints": self.constraints, "evaluations": len(self.evaluations),
                "failed": sum(e.status == "failed" for e in self.evaluations),
                "screened_out": sum(e.status == "screened" for e in self.evaluations), "front_size": len(self.front),
                "hypervolume": self.hypervolume[-1] if self.hypervolume else 0.0,
                "normalisation": self.normalisation.as_dict(),
                "knee": self.knee.key if self.knee else None}


def _space_of(obj: Any) -> SearchSpace:
    if isinstance(obj, SearchSpace):
        return obj
    space = getattr(obj, "space", None)
    if isinstance(space, SearchSpace):
        return space
    raise ConfigError(f"search needs a SearchSpace or a Supernet, got {type(obj).__name__}")


def _front(points: Sequence[Point], columns: list[str]) -> tuple[list[Point], Point | None]:
    idx, knee = front_indices([p.values for p in points], columns)  # points are the feasible ones already
    return [points[i] for i in idx], (points[knee] if knee is not None else None)


def search(space_or_supernet: Any, evaluate: Evaluate, columns: Sequence[str], *, strategy: str | Strategy = "linas",
           evaluations: int = 200, seed: int = 0, store: ResultStore | str | os.PathLike | None = None,
           run: str = "search", constraints: Any = None, workers: int = 1, ray_address: str | None = None,
           batch_size: int = DEFAULT_BATCH, progress: bool = True, resume: bool = True,
           bounds: Mapping[str, Sequence[float]] | None = None, anchors: bool = True, retries: int = 1,
           strategy_options: Mapping[str, Any] | None = None, tiered: bool = False) -> SearchResult:
    """Search ``evaluations`` distinct sub-networks for the Pareto front over metric ``columns``.

    ``evaluate(config) -> {column: value}`` measures one sub-network (picklable when ``workers > 1``).
    ``strategy`` is a registered name (``create_strategy``) with ``strategy_options``, or a fresh Strategy.
    ``constraints`` e.g. ``["latency_ms@cpu <= 5"]`` (on objective columns): the front and ``best`` hold
    only feasible points.
    ``store`` (a Store or a path) receives every evaluation as it completes; with ``resume`` the run's
    stored results are replayed, and without it a run that already holds results is an error.
    ``batch_size`` configs are asked at a time and evaluated by ``workers`` Ray tasks (``ray_address``
    joins a cluster); results do not depend on ``workers``. ``bounds`` ``{column: (a, b)}`` fix the
    hypervolume normalisation; by default it is the range measured on the two ``anchors``.
    ``tiered`` screens every config first (``evaluate`` must be :class:`Screenable`; not the anchors, nor what
    the run holds in full) and evaluates in full only those that can still enter the front, judged against
    the front of full evaluations before the batch (see :mod:`.tiered`); a screened-out config
    counts as one of the ``evaluations``, its estimates are what the strategy is told, and it is recorded with
    status ``screened``; the front, ``best`` and the hypervolume hold full evaluations only.
    """
    space = _space_of(space_or_supernet)
    cols = check_columns(columns)
    cons = parse_constraints(constraints)
    if evaluations < 1 or batch_size < 1:
        raise ConfigError(f"evaluations and batch_size must be >= 1, got {evaluations} and {batch_size}")
    if isinstance(strategy, Strategy):
        strat = strategy
        if strat.results or strat.asked:
            raise ConfigError("pass a fresh strategy to search (it was already asked or told)")
    else:
        strat = create_strategy(strategy, space, cols, seed=seed, constraints=constraints,
                                **dict(strategy_options or {}))
    norm = Normalisation.from_bounds(cols, bounds) if bounds is not None else None

    if tiered:
        require_screenable(evaluate)
    session = EvaluationSession(space, evaluate, cols, store=store, run=run, resume=resume, workers=workers,
                                retries=retries, ray_address=ray_address,
                                meta={"kind": "search", "strategy": strat.name, "seed": seed, "columns": cols,
                                      "constraints": [str(c) for c in cons], "evaluations": evaluations})
    try:
        screens = _screen_session(session, evaluate, cols, run, resume, workers, retries, ray_address) \
            if tiered else None
    except BaseException:
        session.close()
        raise
    history: list[Evaluation] = []
    ok_feasible: list[Point] = []
    hv: list[float] = []
    bar = SearchProgress(evaluations, cols, enabled=progress)

    def run_batch(cfgs: list[Config], screen: bool = True) -> None:
        keys = [space.key(c) for c in cfgs]
        screened, full = {}, set(keys)
        todo = [c for c, k in zip(cfgs, keys) if not session.measured(k)]  # what is stored in full stays
        if screens is not None and screen and todo:
            screened = {got.key: got for got in screens.evaluate_many(todo)}
            front = [ok_feasible[i].values for i in front_indices([p.values for p in ok_feasible], cols)[0]]
            full -= {k for k, got in screened.items() if not _needs_full(got.outcome, front, cols, cons)}
        fresh = session.evaluate_many([c for c, k in zip(cfgs, keys) if k in full])
        told = []
        for key in keys:
            got = next(fresh) if key in full else screened[key]
            out = got.outcome
            status = "failed" if not out.ok else ("ok" if key in full else "screened")
            values = estimates(out.values, cols) if status == "screened" else dict(out.values)
            ev = Evaluation(got.key, out.config, values, status, out.error, out.elapsed_s, got.cached)
            history.append(ev)
            if ev.status == "ok" and all(c.ok(ev.values) for c in cons):
                ok_feasible.append(ev)
            hv.append(norm.hypervolume([p.values for p in ok_feasible]) if norm is not None else 0.0)
            bar.update(ev, ok_feasible, hv[-1])
            told.append(values if out.ok else None)
        strat.tell(cfgs, told)

    with session, bar, (screens or contextlib.nullcontext()):
        if anchors:
            first = [c for c in _unique(space, [space.smallest(), space.largest()])][:evaluations]
            for c in first:
                strat.asked.add(space.key(c))
            run_batch(first, screen=False)
        if norm is None:
            measured = [e.values for e in history if e.status == "ok"]
            if not measured:
                raise ConfigError("cannot fix hypervolume bounds: the anchors failed to evaluate; "
                                  "give bounds= or check the evaluator")
            norm = Normalisation.from_values(cols, measured)
            hv[:] = [norm.hypervolume([p.values for p in ok_feasible[: i + 1]]) for i in range(len(hv))]
        while len(history) < evaluations:
            cfgs = strat.ask(min(batch_size, evaluations - len(history)))
            if not cfgs:
                break  # the space is exhausted
            run_batch(cfgs)
    return _result(run, strat, seed, cols, cons, history, ok_feasible, hv, norm)


def _screen_session(session: EvaluationSession, evaluate: Evaluate, cols: list[str], run: str, resume: bool,
                    workers: int, retries: int, ray_address: str | None) -> EvaluationSession:
    """The screens' session: the same store, run ``<run>:screen``."""
    return EvaluationSession(session.space, require_screenable(evaluate).screen, screen_columns(cols), store=session.store,
                             run=SCREEN_RUN.format(run=run), resume=resume, workers=workers, retries=retries,
                             ray_address=ray_address, meta={"kind": "screen", "of": run, "columns": cols})


def _needs_full(screen: Outcome, front: Sequence[Mapping[str, float]], cols: list[str], cons: list) -> bool:
    """A failed screen is final (recorded as failed); a successful one goes on unless it cannot enter the front."""
    return screen.ok and may_enter(screen.values, front, cols, cons)


def _unique(space: SearchSpace, cfgs: Sequence[Config]) -> list[Config]:
    seen: dict[str, Config] = {}
    for c in cfgs:
        seen.setdefault(space.key(c), c)
    return list(seen.values())


def _result(run: str, strat: Strategy, seed: int, cols: list[str], cons: list, history: list[Evaluation],
            ok_feasible: list[Point], hv: list[float], norm: Normalisation | None) -> SearchResult:
    assert norm is not None
    points = [Point(p.key, p.config, p.values) for p in ok_feasible]
    front, knee = _front(points, cols)
    fronts = {}
    for target, group in target_groups(cols).items():
        pts, k = _front(points, group)
        fronts[target] = Front(target, group, pts, k, norm.subset(group).hypervolume([p.values for p in pts]))
    best = {}
    for c in cols:
        if points:
            s = minimisation([p.values for p in points], [c])[:, 0]
            best[c] = points[int(s.argmin())]
    return SearchResult(run, strat.name, seed, cols, [str(c) for c in cons], history, front, knee, fronts, hv,
                        norm, best)
