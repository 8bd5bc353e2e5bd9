"""The objective registry: named, measured quantities with a direction.

A *metric column* is an objective name, optionally bound to a latency target with ``@``:
``accuracy``, ``macs``, ``latency_ms@cpu``, ``latency_ms@onnxruntime``. Columns are what the store
records and what search strategies optimise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from ..errors import ConfigError
from ..registry import Registry

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Objective:
    """``per_target`` objectives (latency, memory) are measured once per hardware target."""

    name: str
    direction: Direction
    per_target: bool = False
    fn: Callable[..., float] | None = None
    description: str = ""


_OBJECTIVES: Registry[Objective] = Registry("objective")


def register_objective(name: str, direction: Direction, per_target: bool = False,
                       description: str = "") -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator registering ``fn`` as objective ``name`` (users add their own the same way)."""
    if direction not in ("min", "max"):
        raise ConfigError(f"objective {name!r}: direction must be 'min' or 'max', got {direction!r}")
    if "@" in name:
        raise ConfigError(f"objective name {name!r} may not contain '@'")

    def deco(fn: Callable[..., float]) -> Callable[..., float]:
        declared = name in _OBJECTIVES and _OBJECTIVES.get(name).fn is None  # a built-in given its function
        _OBJECTIVES.add(name, Objective(name, direction, per_target, fn, description or (fn.__doc__ or "").strip()),
                        replaces=declared)
        return fn

    return deco


def get_objective(name: str) -> Objective:
    return _OBJECTIVES.get(name.split("@", 1)[0])


def list_objectives() -> list[str]:
    return _OBJECTIVES.names()


def split_column(column: str) -> tuple[str, str]:
    """``'latency_ms@cpu' -> ('latency_ms', 'cpu')``; ``'accuracy' -> ('accuracy', '')``."""
    name, _, target = column.partition("@")
    return name, target


def direction(column: str) -> Direction:
    """Direction of a metric column (``'max'`` or ``'min'``)."""
    return get_objective(column).direction


#: prefix of the column that holds a screened estimate's uncertainty (``margin:accuracy``)
MARGIN = "margin:"


def sign(column: str) -> float:
    """+1 for objectives to minimise, -1 for those to maximise (multiply to get a minimisation)."""
    return -1.0 if direction(column) == "max" else 1.0


def _declare(name: str, direction_: Direction, per_target: bool, description: str) -> None:
    _OBJECTIVES.setdefault(name, Objective(name, direction_, per_target, None, description))


# Built-in objectives; their measuring functions are bound by the measurement modules.
for _n, _d, _t, _desc in [
    ("accuracy", "max", False, "top-1 accuracy on the held-out split, after BN recalibration"),
    ("top5", "max", False, "top-5 accuracy on the held-out split"),
    ("perplexity", "min", False, "exp of the mean cross-entropy on the held-out split (per token for a decoder)"),
    ("latency_ms", "min", True, "median latency of one batch on a target, in milliseconds"),
    ("macs", "min", False, "multiply-accumulates of one forward pass of one sample"),
    ("params", "min", False, "number of parameters"),
    ("bytes", "min", False, "bytes of parameters and buffers"),
    ("peak_mem", "min", True, "peak memory of one forward pass on a target, in bytes"),
    ("grad_norm", "max", False, "zero-cost proxy: sum of the loss gradient's weight norms on one batch"),
    ("snip", "max", False, "zero-cost proxy: sum |w * dL/dw| on one batch"),
    ("synflow", "max", False, "zero-cost proxy: log synaptic flow with |weights| on an all-ones input"),
    ("naswot", "max", False, "zero-cost proxy: log |det| of the activation-code kernel of one batch"),
    ("zen", "max", False, "zero-cost proxy: log feature-map change under input noise + BN scale terms"),
]:
    _declare(_n, _d, _t, _desc)


def describe(column: str) -> dict[str, Any]:
    obj = get_objective(column)
    return {"column": column, "objective": obj.name, "direction": obj.direction,
            "target": split_column(column)[1], "description": obj.description}
