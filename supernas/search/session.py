"""The evaluation session: one run of a result store being filled (Optuna's ``Study`` is the model).

It opens the store, replays what the run already holds, hands the configs still to be measured to a pool
(in process or Ray), commits each result as it arrives and gives every outcome back in submission order,
marked as measured now or taken from the store. The search driver and the benchmark-table builder both
evaluate through it, so resume works the same way for both: nothing stored is measured again, failed or
incomplete records are.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from ..errors import ConfigError
from ..space import Config, SearchSpace
from ..store import Record, ResultStore, open_store
from .evaluation import DriftCorrected, Evaluate, LocalPool, Outcome, RayPool, make_pool


@dataclass
class SessionOutcome:
    """An :class:`Outcome` with its config ``key``; ``cached`` when it was read from the store."""

    key: str
    outcome: Outcome
    cached: bool


class EvaluationSession:
    """Evaluates configs of ``space`` on ``columns`` for run ``run`` of ``store`` (a ResultStore, a path, or
    None for no store).

    ``meta`` is merged into the run's metadata. A run that already holds evaluations is resumed, or refused
    without ``resume``. An evaluate function that is :class:`DriftCorrected` measures against the run's
    stored latency baselines (stored on first use). The pool (``workers``, ``retries``, ``ray_address``,
    see :func:`make_pool`) starts only when something has to be measured. Use as a context manager."""

    def __init__(self, space: SearchSpace, evaluate: Evaluate, columns: Sequence[str], *,
                 store: ResultStore | str | os.PathLike | None = None, run: str = "search",
                 meta: Mapping[str, Any] | None = None, resume: bool = True, workers: int = 1, retries: int = 1,
                 ray_address: str | None = None) -> None:
        self.space, self.evaluate, self.columns, self.run = space, evaluate, list(columns), run
        self._pool_args = (workers, retries, ray_address)
        self._pool: LocalPool | RayPool | None = None
        self.store, self._owned = open_store(store)
        self.stored: dict[str, Record] = {}
        if self.store is None:
            return
        try:
            records = self.store.records(run)
            if records and not resume:
                raise ConfigError(f"run {run!r} already holds results in {self.store.path}; resume it or pick "
                                  "another run name")
            self.stored = {r.key: r for r in records
                           if r.status == "ok" and all(c in r.values for c in self.columns)}
            self.store.add_run(run, meta)
            if isinstance(evaluate, DriftCorrected):  # one latency baseline per run, across sessions
                evaluate.keep_latency_baselines(self.store.run_meta(run).get("latency_baselines", {}))
                self.store.add_run(run, {"latency_baselines": evaluate.latency_baselines()})
        except BaseException:
            self.close()
            raise

    def measured(self, key: str) -> bool:
        """True when the run already holds every column for ``key``."""
        return key in self.stored

    def evaluate_many(self, cfgs: Sequence[Config]) -> Iterator[SessionOutcome]:
        """Every config's outcome in submission order: stored ones read back, the others measured (each
        committed to the store before it is yielded)."""
        keys = [self.space.key(c) for c in cfgs]
        todo = [c for c, k in zip(cfgs, keys) if k not in self.stored]
        fresh = self.pool.map(todo) if todo else iter(())
        for cfg, key in zip(cfgs, keys):
            rec = self.stored.get(key)
            if rec is not None:
                yield SessionOutcome(key, Outcome(cfg, {c: rec.values[c] for c in self.columns}, None,
                                                  rec.elapsed_s), True)
                continue
            out = next(fresh)  # in submission order, as they complete
            self._commit(key, out)
            yield SessionOutcome(key, out, False)

    def _commit(self, key: str, out: Outcome) -> None:
        if self.store is None:
            return
        if out.ok:
            self.store.put(self.run, key, out.config, out.values, elapsed_s=out.elapsed_s)
            self.stored[key] = Record(self.run, key, dict(out.config), dict(out.values), elapsed_s=out.elapsed_s)
        else:
            self.store.put(self.run, key, out.config, {}, status="failed", error=out.error,
                           elapsed_s=out.elapsed_s)

    @property
    def pool(self) -> LocalPool | RayPool:
        if self._pool is None:
            self._pool = make_pool(self.evaluate, self.columns, *self._pool_args)
        return self._pool

    def close(self) -> None:
        """Stop the pool and close the store when the session opened it."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._owned and self.store is not None:
            self.store.close()
            self._owned = False

    def __enter__(self) -> "EvaluationSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
