"""Hardware targets: where (and how) latency and memory are measured.

A :class:`TargetSpec` names a backend — ``cpu`` (PyTorch eager, inference mode, fixed thread count),
``cuda`` (CUDA events, synchronised) or ``onnxruntime`` (ONNX Runtime; CUDA provider when present,
else CPU) — with its thread count, batch size, warm-up and repeat counts. Targets are named so one run
can hold several (``latency_ms@cpu``, ``latency_ms@onnxruntime``); ``cpu``, ``cuda`` and ``onnxruntime``
are built in.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError, SupernasError, validation_problem

Backend = Literal["cpu", "cuda", "onnxruntime"]


class TargetUnavailable(SupernasError):
    """The hardware a target needs is not present here (e.g. no CUDA device)."""


class TargetSpec(BaseModel):
    """One named latency target. ``threads`` is the intra-op thread count used while measuring (restored
    afterwards); ``input_shape`` (without the batch dimension) overrides the supernet's own.
    ``drift_correction`` times every model in alternating blocks with a fixed reference model and
    rescales to the reference's calibrated speed; ``clock`` ``auto`` times single-threaded CPU
    targets by the calling thread's CPU time (see :mod:`supernas.measure.latency`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    backend: Backend
    threads: int = Field(1, ge=1, le=1024)
    batch_size: int = Field(1, ge=1, le=65536)
    warmup: int = Field(5, ge=0, le=10_000)
    repeats: int = Field(30, ge=1, le=100_000)
    input_shape: tuple[int, ...] | None = None
    device: int = Field(0, ge=0)
    onnx_opset: int | None = Field(None, ge=7)
    drift_correction: bool = True
    clock: Literal["auto", "wall", "thread"] = "auto"
    oversubscribe: bool = Field(False, description="allow more threads than the cores this process may use "
                                "(latency then includes time-sharing of cores)")

    @model_validator(mode="after")
    def _clock_fits_threads(self) -> "TargetSpec":
        if self.clock == "thread" and (self.threads != 1 or self.backend == "cuda"):
            raise ValueError("clock 'thread' times the calling thread: it needs threads: 1 on a CPU backend "
                             "(use clock: wall)")
        return self

    @property
    def uses_thread_clock(self) -> bool:
        """``auto``: the calling thread's CPU time for single-threaded CPU targets, wall time otherwise."""
        return self.clock == "thread" or (self.clock == "auto" and self.threads == 1 and self.backend != "cuda")

    def shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Batched input shape from a per-sample shape (``input_shape`` wins when set)."""
        return (self.batch_size, *(self.input_shape or sample_shape))

    def available(self) -> bool:
        return unavailable_reason(self) is None


def unavailable_reason(spec: TargetSpec) -> str | None:
    """Why ``spec`` cannot be measured on this machine, or None when it can."""
    if spec.backend == "cuda":
        import torch

        if not torch.cuda.is_available():
            return f"target {spec.name!r}: no CUDA device"
        if spec.device >= torch.cuda.device_count():
            return f"target {spec.name!r}: no CUDA device {spec.device}"
        return None
    if spec.backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        return f"target {spec.name!r}: onnxruntime is not installed (pip install onnxruntime)"
    cores = usable_cores()
    if spec.threads > cores and not spec.oversubscribe:
        return (f"target {spec.name!r}: {spec.threads} threads, but this process may use {cores} cores; latency "
                f"would include time-sharing (lower threads, or set oversubscribe: true)")
    return None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def require_available(spec: TargetSpec) -> None:
    reason = unavailable_reason(spec)
    if reason:
        raise TargetUnavailable(reason)


BUILTIN_TARGETS: dict[str, TargetSpec] = {
    "cpu": TargetSpec(name="cpu", backend="cpu"),
    "cuda": TargetSpec(name="cuda", backend="cuda", warmup=10, repeats=50),
    "onnxruntime": TargetSpec(name="onnxruntime", backend="onnxruntime"),
}


def make_target(spec: TargetSpec | Mapping[str, Any] | str, name: str | None = None) -> TargetSpec:
    """A validated :class:`TargetSpec` from a spec, a dict (e.g. from YAML) or a built-in name. A dict
    without ``backend`` named like a built-in target (``cpu``, ``cuda``, ``onnxruntime``) starts from it.

    Bad values raise :class:`ConfigError` with one line naming the target and the field."""
    if isinstance(spec, TargetSpec):
        return spec if name is None or name == spec.name else spec.model_copy(update={"name": name})
    if isinstance(spec, str):
        if spec not in BUILTIN_TARGETS:
            raise ConfigError(f"unknown target {spec!r}; built-in targets: {', '.join(BUILTIN_TARGETS)}")
        return make_target(BUILTIN_TARGETS[spec], name)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a target must be a name or a mapping, got {type(spec).__name__}")
    data = dict(spec)
    if name is not None:
        data.setdefault("name", name)
    builtin = BUILTIN_TARGETS.get(str(data.get("name")))
    if "backend" not in data and builtin is not None:  # ``cpu: {threads: 4}`` refines the built-in cpu
        data = {**builtin.model_dump(), **data}
    try:
        return TargetSpec(**data)
    except ValidationError as e:
        where, what = validation_problem(e, "target")
        raise ConfigError(f"target {data.get('name', '?')!r}: {where}: {what}"
                          f" (got {e.errors()[0].get('input')!r})") from None


def resolve_targets(targets: Mapping[str, Any] | None, names: list[str]) -> dict[str, TargetSpec]:
    """Target specs for ``names``: from ``targets`` (name -> spec or dict) or else the built-ins."""
    given = {n: make_target(s, n) for n, s in (targets or {}).items()}
    out = {}
    for n in names:
        if n in given:
            out[n] = given[n]
        elif n in BUILTIN_TARGETS:
            out[n] = BUILTIN_TARGETS[n]
        else:
            raise ConfigError(f"unknown target {n!r}; defined: {', '.join({**BUILTIN_TARGETS, **given})}")
    return out
