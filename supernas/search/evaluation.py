"""Running the evaluate function: in-process, or as parallel Ray tasks, with retries.

Either way outcomes come back **in submission order** (each as soon as every earlier one is done), so the
driver writes the store and tells the strategy in a deterministic order whatever the number of workers.
An evaluation that still fails after ``retries`` retries comes back as a failed :class:`Outcome` with a
one-line error; it is never dropped.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from ..errors import ConfigError
from ..space import Config

Evaluate = Callable[[Config], Mapping[str, float]]


@runtime_checkable
class DriftCorrected(Protocol):
    """An evaluate function whose latencies are relative to a calibrated reference (``measure.Evaluator``):
    a run keeps one set of baselines across sessions, in its metadata, so resumed measurements compare."""

    def latency_baselines(self) -> dict[str, float]:
        """``{target: reference ms}``, calibrating what is missing."""

    def keep_latency_baselines(self, baselines: Mapping[str, float]) -> None:
        """Measure against ``baselines`` from now on."""


@dataclass
class Outcome:
    """The result of evaluating one config: ``values`` (every requested column) or ``error``."""

    config: Config
    values: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    elapsed_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def checked_values(values: Any, columns: Sequence[str]) -> dict[str, float]:
    """The requested columns of an evaluator's answer as floats; missing or non-finite ones are errors."""
    if not isinstance(values, Mapping):
        raise TypeError(f"evaluator returned {type(values).__name__}, not a dict of metric columns")
    out = {}
    for c in columns:
        if c not in values:
            raise KeyError(f"evaluator returned no {c!r}")
        v = float(values[c])
        if not math.isfinite(v):
            raise ValueError(f"evaluator returned non-finite {c}={v}")
        out[c] = v
    return out


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()[:500]


def run_one(evaluate: Evaluate, cfg: Config, columns: Sequence[str]) -> tuple[dict[str, float], float]:
    """Evaluate and check one config; returns (values, elapsed seconds). Runs inside Ray tasks too."""
    t0 = time.perf_counter()
    values = checked_values(evaluate(cfg), columns)
    return values, time.perf_counter() - t0


class LocalPool:
    """Evaluates in this process, one config at a time."""

    def __init__(self, evaluate: Evaluate, columns: Sequence[str], retries: int = 1) -> None:
        self.evaluate, self.columns, self.retries = evaluate, list(columns), int(retries)

    def map(self, cfgs: Sequence[Config]) -> Iterator[Outcome]:
        for cfg in cfgs:
            error = None
            for _ in range(self.retries + 1):
                try:
                    values, elapsed = run_one(self.evaluate, cfg, self.columns)
                    yield Outcome(cfg, values, None, elapsed)
                    break
                except Exception as e:  # noqa: BLE001 - any evaluator failure is recorded, not raised
                    error = _one_line(e)
            else:
                yield Outcome(cfg, {}, error)

    def close(self) -> None:
        pass


class RayPool:
    """Evaluates as Ray tasks, at most ``workers`` in flight; a local Ray is started when none is running
    (``ray_address`` joins an existing cluster). Tasks are retried ``retries`` times on exceptions and crashes."""

    def __init__(self, evaluate: Evaluate, columns: Sequence[str], workers: int, retries: int = 1,
                 ray_address: str | None = None, cpus_per_task: float = 1.0) -> None:
        import ray

        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if ray_address:
                kw["address"] = ray_address
            else:
                kw["num_cpus"] = workers
            try:
                ray.init(**kw)
            except Exception as e:  # noqa: BLE001 - e.g. unreachable cluster address
                raise ConfigError(f"cannot start or reach Ray (address={ray_address!r}): {_one_line(e)}") from None
            self.started = True
        self.workers, self.columns = int(workers), list(columns)
        self.evaluate_ref = ray.put(evaluate)
        self.task = ray.remote(run_one).options(num_cpus=cpus_per_task, max_retries=int(retries),
                                                 retry_exceptions=True)

    def map(self, cfgs: Sequence[Config]) -> Iterator[Outcome]:
        ray = self.ray
        refs: dict[Any, int] = {}
        done: dict[int, Outcome] = {}
        submitted, emitted = 0, 0
        while emitted < len(cfgs):
            while submitted < len(cfgs) and len(refs) < self.workers:
                refs[self.task.remote(self.evaluate_ref, cfgs[submitted], self.columns)] = submitted
                submitted += 1
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                i = refs.pop(ref)
                try:
                    values, elapsed = ray.get(ref)
                    done[i] = Outcome(cfgs[i], values, None, elapsed)
                except Exception as e:  # noqa: BLE001 - retried already; record the failure
                    cause = getattr(e, "cause", None)
                    done[i] = Outcome(cfgs[i], {}, _one_line(cause if isinstance(cause, BaseException) else e))
            while emitted in done:
                yield done.pop(emitted)
                emitted += 1

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_pool(evaluate: Evaluate, columns: Sequence[str], workers: int = 1, retries: int = 1,
              ray_address: str | None = None) -> LocalPool | RayPool:
    """``workers == 1`` and no ``ray_address``: in-process; otherwise Ray tasks."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if workers == 1 and not ray_address:
        return LocalPool(evaluate, columns, retries)
    return RayPool(evaluate, columns, workers, retries, ray_address)
