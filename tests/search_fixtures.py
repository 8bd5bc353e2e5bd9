"""Cheap synthetic spaces and evaluators with known fronts, shared by the search tests."""
from __future__ import annotations

import math

from supernas.space import Choice, SearchSpace


def small_space() -> SearchSpace:
    """156 sub-networks, with depth-dependent (inactive) choices."""
    return SearchSpace([
        Choice("depth", (1, 2, 3)),
        Choice("width", (8, 16, 24, 32)),
        Choice("b1.kernel", (3, 5, 7), active_if=("depth", 1)),
        Choice("b2.kernel", (3, 5, 7), active_if=("depth", 2)),
        Choice("res", (16, 24, 32)),
    ])


def wide_space() -> SearchSpace:
    """5**6 = 15625 sub-networks."""
    return SearchSpace([Choice(f"c{i}", (0, 1, 2, 3, 4)) for i in range(6)])


def small_eval(cfg: dict) -> dict[str, float]:
    """accuracy (max) and macs (min): more capacity costs macs and buys accuracy, at different rates."""
    kern = sum(cfg.get(f"b{i}.kernel", 0) for i in (1, 2))
    macs = cfg["res"] ** 2 * cfg["width"] * (1.0 + 0.5 * cfg["depth"] + kern / 7.0)
    acc = 1.0 - 1.0 / (1.0 + 0.04 * cfg["width"] + 0.3 * cfg["depth"] + 0.02 * cfg["res"] + 0.05 * kern)
    return {"accuracy": acc, "macs": macs}


_W_ACC = (0.9, 0.2, 0.7, 0.1, 0.5, 0.3)
_W_LAT = (0.2, 0.9, 0.3, 0.8, 0.4, 0.6)


def wide_eval(cfg: dict) -> dict[str, float]:
    """accuracy (max), latency_ms@cpu (min): non-linear, different weights, so the front is non-trivial."""
    x = [cfg[f"c{i}"] for i in range(6)]
    s_acc = sum(w * v for w, v in zip(_W_ACC, x))
    s_lat = sum(w * v for w, v in zip(_W_LAT, x))
    acc = 1.0 - math.exp(-0.25 * s_acc - 0.05 * x[0] * x[2])
    lat = 1.0 + 0.5 * s_lat + 0.1 * s_acc + 0.05 * x[1] * x[3]
    return {"accuracy": acc, "latency_ms@cpu": lat}


def two_target_eval(cfg: dict) -> dict[str, float]:
    out = small_eval(cfg)
    out["latency_ms@cpu"] = out["macs"] / 1e4 + cfg["depth"]
    out["latency_ms@onnxruntime"] = out["macs"] / 2e4 + 2.0 * cfg["width"] / 8
    return out
