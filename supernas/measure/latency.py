"""Latency of a static model on a target: warm-up, repeats, median and spread.

* ``cpu``: PyTorch eager under ``torch.inference_mode`` with ``torch.set_num_threads(spec.threads)``
  (the previous thread count is restored afterwards).
* ``cuda``: CUDA events around each forward, synchronised; raises :class:`TargetUnavailable` without a GPU.
* ``onnxruntime``: the model is exported to ONNX in memory (``torch.onnx.export``, TorchScript path,
  falling back to the dynamo path) and run by an ONNX Runtime session with ``spec.threads`` intra-op
  threads on the CUDA execution provider when present, else the CPU provider.

**Clock.** Multi-threaded targets are timed by the wall clock (``time.perf_counter``). A single-threaded
CPU target (``threads: 1``, ``clock: auto``) is timed by the calling thread's CPU time
(``time.thread_time``): with one intra-op thread, PyTorch and ONNX Runtime compute on the calling thread,
so this is the model's latency on a dedicated core, without the time the OS gives other processes
(``clock: wall`` times the wall clock instead).

**Drift correction** (``spec.drift_correction``, given a :class:`LatencyReference`). On shared and virtual
machines the CPU's speed drifts (other tenants' cache and memory traffic, frequency; on a GPU target, the
host that launches the kernels of a small model):
the same model's median moves by up to 1.8x between runs seconds apart on the 2-core development VM,
while the *ratio* of two models timed alternately stays within a few percent. So the model is timed in
blocks alternating with a fixed reference model, and every time is rescaled by
``reference.baseline_ms / median(adjacent reference block)``: the result is the latency the model has
when the machine runs the reference at its calibrated speed. The baseline is calibrated once
(:meth:`LatencyReference.calibrate`: the fastest of several rounds' medians) and kept for the whole run,
so values measured minutes or processes apart are comparable.
"""
from __future__ import annotations

import contextlib
import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from .onnx_model import OnnxModel, onnx_bytes, ort_session
from .targets import TargetSpec, TargetUnavailable, require_available


@dataclass
class LatencyResult:
    """Per-repeat times of one batch, in milliseconds, and their summary."""

    target: str
    times_ms: list[float] = field(repr=False)
    drift: float | None = None  # median (reference now / its baseline) when drift-corrected, else None

    @property
    def median_ms(self) -> float:
        return float(statistics.median(self.times_ms))

    @property
    def spread_ms(self) -> float:
        """Inter-quartile range of the repeats."""
        q1, q3 = np.percentile(self.times_ms, [25, 75])
        return float(q3 - q1)

    @property
    def min_ms(self) -> float:
        return float(min(self.times_ms))

    def summary(self) -> dict[str, float]:
        out = {"median_ms": self.median_ms, "spread_ms": self.spread_ms, "min_ms": self.min_ms,
               "max_ms": float(max(self.times_ms)), "repeats": float(len(self.times_ms))}
        if self.drift is not None:
            out["drift"] = self.drift
        return out


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the previous count afterwards."""
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


Timer = Callable[[Callable[[], object]], float]  # times one call, in milliseconds


def clock_timer(clock: Callable[[], float]) -> Timer:
    def timer(fn: Callable[[], object]) -> float:
        t0 = clock()
        fn()
        return (clock() - t0) * 1e3
    return timer


def cuda_timer(device: torch.device) -> Timer:
    """CUDA events around the call, synchronised (includes the host's kernel launches when they are slower
    than the GPU, as a user's forward call does)."""
    def timer(fn: Callable[[], object]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return float(start.elapsed_time(end))
    return timer


def _time_calls(fn: Callable[[], object], warmup: int, repeats: int,
                timer: Timer = clock_timer(time.perf_counter)) -> list[float]:
    for _ in range(warmup):
        fn()
    return [timer(fn) for _ in range(repeats)]


def timer_of(spec: TargetSpec) -> Timer:
    """How ``spec`` times one call (see the module docstring)."""
    if spec.backend == "cuda":
        return cuda_timer(torch.device("cuda", spec.device))
    return clock_timer(time.thread_time if spec.uses_thread_clock else time.perf_counter)


#: calls per block when a model is timed alternately with the reference (each block starts with one
#: untimed call, so the other model's cache footprint is not charged to this one)
DRIFT_BLOCK = 8


def _time_alternating(fn: Callable[[], object], ref_fn: Callable[[], object], baseline_ms: float,
                      warmup: int, repeats: int, timer: Timer) -> tuple[list[float], float]:
    """``repeats`` times of ``fn`` taken in blocks between blocks of ``ref_fn`` (ref, fn, ref, fn, ..., ref),
    each rescaled by ``baseline_ms / mean(median of the reference blocks either side)``; also the median
    drift factor."""
    for _ in range(warmup):
        fn()
        ref_fn()
    times, drifts = [], []
    before = statistics.median(_time_calls(ref_fn, 1, DRIFT_BLOCK, timer))
    while len(times) < repeats:
        k = min(DRIFT_BLOCK, repeats - len(times))
        block = _time_calls(fn, 1, k, timer)
        after = statistics.median(_time_calls(ref_fn, 1, DRIFT_BLOCK, timer))
        drift = (before + after) / (2 * baseline_ms)
        times += [t / drift for t in block]
        drifts.append(drift)
        before = after
    return times, float(statistics.median(drifts))


class LatencyReference:
    """The fixed model every latency on a CPU target is timed against (drift correction), with its
    calibrated ``baseline_ms`` per target name. Picklable: ONNX Runtime sessions are rebuilt on demand."""

    def __init__(self, model: nn.Module, example: torch.Tensor, baseline_ms: dict[str, float] | None = None,
                 rounds: int = 5) -> None:
        self.model, self.example = model.eval(), example
        self.baseline_ms: dict[str, float] = dict(baseline_ms or {})
        self.rounds = rounds
        self._sessions: dict[Any, Any] = {}  # ONNX Runtime sessions and GPU copies, rebuilt on demand

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sessions": {}}

    def runner(self, spec: TargetSpec) -> Callable[[], object]:
        """A no-argument call of the reference on ``spec``'s backend, at ``spec.batch_size``."""
        x = self.example[:1].expand(spec.batch_size, *self.example.shape[1:]).contiguous()
        if spec.backend == "cpu":
            return lambda: self.model(x)
        if spec.backend == "cuda":
            dev = torch.device("cuda", spec.device)
            if dev not in self._sessions:  # a copy on the GPU, kept while this object lives
                self._sessions[dev] = copy.deepcopy(self.model).to(dev)
            model, xd = self._sessions[dev], x.to(dev)
            return lambda: model(xd)
        key = (spec.threads, spec.onnx_opset, tuple(x.shape))
        if key not in self._sessions:
            with torch_threads(spec.threads):
                self._sessions[key] = ort_session(onnx_bytes(self.model, x, spec.onnx_opset), spec.threads)
        sess = self._sessions[key]
        feed = {sess.get_inputs()[0].name: x.numpy()}
        return lambda: sess.run(None, feed)

    def calibrate(self, spec: TargetSpec) -> float:
        """The reference's latency on ``spec`` (``spec.repeats`` calls, fastest median of ``rounds``), kept
        as its baseline unless one is already set (a run keeps one baseline per target)."""
        if spec.name not in self.baseline_ms:
            fn = self.runner(spec)
            with torch_threads(spec.threads), torch.inference_mode():
                medians = [statistics.median(_time_calls(fn, max(spec.warmup, 1), spec.repeats, timer_of(spec)))
                           for _ in range(self.rounds)]
            self.baseline_ms[spec.name] = float(min(medians))
        return self.baseline_ms[spec.name]


def measure_latency(model: nn.Module, example: torch.Tensor, spec: TargetSpec,
                    reference: LatencyReference | None = None) -> LatencyResult:
    """Time ``model(example)`` on ``spec``: ``spec.warmup`` untimed calls, then ``spec.repeats`` timed ones,
    drift-corrected against ``reference`` when given and ``spec.drift_correction``."""
    require_available(spec)
    was_training = model.training
    model.eval()
    drift = None
    try:
        with _placed(model, example, spec) as fn:
            correct = reference is not None and spec.drift_correction
            if correct:
                baseline = reference.calibrate(spec)
                ref_fn = reference.runner(spec)
            with torch_threads(spec.threads), torch.inference_mode():
                if correct:
                    times, drift = _time_alternating(fn, ref_fn, baseline, spec.warmup, spec.repeats,
                                                     timer_of(spec))
                else:
                    times = _time_calls(fn, spec.warmup, spec.repeats, timer_of(spec))
    finally:
        model.train(was_training)
    return LatencyResult(spec.name, times, drift)


@contextlib.contextmanager
def _placed(model: nn.Module, example: torch.Tensor, spec: TargetSpec) -> Iterator[Callable[[], object]]:
    """A no-argument call of ``model(example)`` on ``spec``'s backend (on CUDA the model is moved to the GPU
    and back afterwards; for ONNX Runtime it is exported and loaded into a session)."""
    if isinstance(model, OnnxModel) and spec.backend != "onnxruntime":
        raise TargetUnavailable(f"target {spec.name!r} runs PyTorch on {spec.backend}; a {model.precision} "
                                f"ONNX model is timed on an onnxruntime target")
    if spec.backend == "cpu":
        yield lambda: model(example)
    elif spec.backend == "onnxruntime":
        with torch_threads(spec.threads):
            graph = model.model_bytes if isinstance(model, OnnxModel) else onnx_bytes(model, example,
                                                                                      spec.onnx_opset)
            sess = ort_session(graph, spec.threads)
        feed = {sess.get_inputs()[0].name: example.numpy()}
        yield lambda: sess.run(None, feed)
    else:
        dev = torch.device("cuda", spec.device)
        orig = next(iter(model.parameters()), torch.zeros(())).device
        model.to(dev)
        x = example.to(dev)
        try:
            yield lambda: model(x)
        finally:
            model.to(orig)
