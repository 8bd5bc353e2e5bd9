"""Measurement: cost counts, accuracy, latency per hardware target, memory, latency lookup tables."""
from ..train.evaluate import evaluate_accuracy
from .counting import count, count_bytes, count_macs, count_params
from .evaluator import Evaluator, MeasureContext
from .latency import LatencyResult, measure_latency
from .lut import LatencyTable, build_latency_table, lut_mape
from .memory import peak_activation_bytes, peak_memory
from .objectives import direction, get_objective, list_objectives, register_objective
from .targets import BUILTIN_TARGETS, TargetSpec, TargetUnavailable, make_target, resolve_targets

__all__ = ["BUILTIN_TARGETS", "Evaluator", "LatencyResult", "LatencyTable", "MeasureContext", "TargetSpec",
           "TargetUnavailable", "build_latency_table", "count", "count_bytes", "count_macs", "count_params",
           "direction", "evaluate_accuracy", "get_objective", "list_objectives", "lut_mape", "make_target",
           "measure_latency", "peak_activation_bytes", "peak_memory", "register_objective", "resolve_targets"]
