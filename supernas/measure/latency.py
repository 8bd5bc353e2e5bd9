"""Latency of a static model on a target: warm-up, repeats, median and spread.

* ``cpu``: PyTorch eager under ``torch.inference_mode`` with ``torch.set_num_threads(spec.threads)``
  (the previous thread count is restored afterwards); wall time by ``time.perf_counter``.
* ``cuda``: CUDA events around each forward, synchronised; raises :class:`TargetUnavailable` without a GPU.
* ``onnxruntime``: the model is exported to ONNX in memory (``torch.onnx.export``, TorchScript path,
  falling back to the dynamo path) and run by an ONNX Runtime session with ``spec.threads`` intra-op
  threads on the CUDA execution provider when present, else the CPU provider.
"""
from __future__ import annotations

import contextlib
import io
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .targets import TargetSpec, require_available


@dataclass
class LatencyResult:
    """Per-repeat times of one batch, in milliseconds, and their summary."""

    target: str
    times_ms: list[float] = field(repr=False)

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
        return {"median_ms": self.median_ms, "spread_ms": self.spread_ms, "min_ms": self.min_ms,
                "max_ms": float(max(self.times_ms)), "repeats": float(len(self.times_ms))}


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the previous count afterwards."""
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def onnx_bytes(model: nn.Module, example: torch.Tensor, opset: int | None = None) -> bytes:
    """The model exported to ONNX, in memory (eval mode; the model's own mode is restored)."""
    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=["output"])
            except Exception:  # noqa: BLE001 - models the TorchScript exporter cannot handle
                buf = io.BytesIO()
                torch.onnx.export(model, (example,), buf, dynamo=True, opset_version=opset,
                                  input_names=["input"], output_names=["output"])
    finally:
        model.train(was_training)
    return buf.getvalue()


def ort_session(model_bytes: bytes, threads: int = 1):
    """An ONNX Runtime session: CUDA execution provider when present, else CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(model_bytes, opts, providers=providers)


def measure_latency(model: nn.Module, example: torch.Tensor, spec: TargetSpec) -> LatencyResult:
    """Time ``model(example)`` on ``spec``: ``spec.warmup`` untimed calls, then ``spec.repeats`` timed ones."""
    require_available(spec)
    was_training = model.training
    model.eval()
    try:
        if spec.backend == "cpu":
            with torch_threads(spec.threads), torch.inference_mode():
                times = _time_calls(lambda: model(example), spec.warmup, spec.repeats)
        elif spec.backend == "cuda":
            times = _cuda_times(model, example, spec)
        else:
            with torch_threads(spec.threads):
                sess = ort_session(onnx_bytes(model, example, spec.onnx_opset), spec.threads)
            feed = {sess.get_inputs()[0].name: example.numpy()}
            times = _time_calls(lambda: sess.run(None, feed), spec.warmup, spec.repeats)
    finally:
        model.train(was_training)
    return LatencyResult(spec.name, times)


def _cuda_times(model: nn.Module, example: torch.Tensor, spec: TargetSpec) -> list[float]:
    dev = torch.device("cuda", spec.device)
    orig = next(iter(model.parameters()), torch.zeros(())).device
    model.to(dev)
    x = example.to(dev)
    times = []
    try:
        with torch.inference_mode():
            for _ in range(spec.warmup):
                model(x)
            torch.cuda.synchronize(dev)
            for _ in range(spec.repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                torch.cuda.synchronize(dev)
                times.append(float(start.elapsed_time(end)))
    finally:
        model.to(orig)
    return times
