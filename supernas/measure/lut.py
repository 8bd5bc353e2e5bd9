"""Per-target latency lookup tables (Once-for-All / HAT style).

A sub-network is cut into *units*: the modules found by descending from the model's top-level children
through ``nn.Sequential`` / ``nn.ModuleList`` containers (for the built-in families: stem layers, each
MBConv / bottleneck block, the head layers). A unit's entry is keyed by its structure (``repr``: widths,
kernel, stride, SE ...) and its input shape, and is timed once, alone, on the target. A sub-network's
latency is predicted as ``a * sum(entries) + b``, where the linear calibration ``(a, b)`` is fitted
(scikit-learn) on a few sub-networks measured end to end; it absorbs what the units do not see
(pooling and reshapes between units, per-call framework overhead).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .latency import LatencyReference, measure_latency
from .targets import TargetSpec, make_target

_CONTAINERS = (nn.Sequential, nn.ModuleList)


def example_input(supernet: nn.Module, cfg: Mapping[str, Any] | None, spec: TargetSpec) -> torch.Tensor:
    """A batch for sub-network ``cfg`` on ``spec``: the supernet's ``example_input`` (token ids for text
    families) or zeros of its ``input_shape``; ``spec.input_shape`` overrides the per-sample shape."""
    if spec.input_shape is not None:
        return torch.zeros(spec.shape(spec.input_shape))
    if hasattr(supernet, "example_input"):
        return supernet.example_input(cfg, batch=spec.batch_size)
    return torch.zeros(supernet.input_shape(cfg, batch=spec.batch_size))


def median_reference(supernet: nn.Module, baselines: Mapping[str, float] | None = None) -> LatencyReference:
    """The drift-correction reference of a supernet: its median sub-network (static) on one sample."""
    cfg = supernet.space.median()  # type: ignore[attr-defined]
    was_training = supernet.training
    model = supernet.extract(cfg)  # type: ignore[operator]
    supernet.train(was_training)
    spec = TargetSpec(name="reference", backend="cpu")
    return LatencyReference(model, example_input(supernet, cfg, spec), baselines)


def units(model: nn.Module) -> list[nn.Module]:
    """The modules a lookup table times separately (see the module docstring)."""
    out: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        if isinstance(m, _CONTAINERS):
            for child in m.children():
                visit(child)
        else:
            out.append(m)

    children = list(model.children())
    if not children:
        return [model]
    for c in children:
        visit(c)
    return out


def unit_calls(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """``(signature, unit, its input)`` for every unit call of one forward, in call order. Units whose
    input is not a single tensor are left to the calibration."""
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []

    def hook(mod: nn.Module, args: tuple) -> None:
        if len(args) == 1 and isinstance(args[0], torch.Tensor):
            x = args[0]
            sig = f"{mod!r}|{tuple(x.shape)}|{x.dtype}"
            calls.append((hashlib.sha1(sig.encode()).hexdigest()[:20], mod, x.detach().clone()))

    handles = [u.register_forward_pre_hook(hook) for u in units(model)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():  # not inference_mode: its tensors would break the TorchScript ONNX exporter
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return calls


class LatencyTable:
    """Latency lookup table of one target: unit signature -> median milliseconds, plus a calibration.
    With a ``reference``, every entry and calibration measurement is drift-corrected against it, so
    entries timed minutes apart are on one scale."""

    def __init__(self, target: TargetSpec | Mapping[str, Any] | str, reference: LatencyReference | None = None
                 ) -> None:
        self.target = make_target(target)
        self.reference = reference
        self.entries: dict[str, float] = {}
        self.coef, self.intercept = 1.0, 0.0
        self.calibrated = False

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, model: nn.Module, example: torch.Tensor) -> int:
        """Time every unit shape of ``model`` not yet in the table; returns how many were added."""
        added = 0
        for sig, mod, x in unit_calls(model, example):
            if sig not in self.entries:
                self.entries[sig] = measure_latency(mod, x, self.target, self.reference).median_ms
                added += 1
        return added

    def raw(self, model: nn.Module, example: torch.Tensor) -> float:
        """Uncalibrated sum of the unit entries (missing units are timed and added first)."""
        self.add(model, example)
        return float(sum(self.entries[sig] for sig, _, _ in unit_calls(model, example)))

    def calibrate(self, models: Iterable[tuple[nn.Module, torch.Tensor]],
                  measured_ms: Iterable[float] | None = None) -> dict[str, float]:
        """Fit ``measured = a * raw + b`` on sub-networks ``(model, example)``, measured end to end on the
        target unless ``measured_ms`` is given. Returns the fit's coefficients and its in-sample MAPE."""
        from sklearn.linear_model import LinearRegression

        pairs = list(models)
        if len(pairs) < 2:
            raise ConfigError("latency table calibration needs at least 2 sub-networks")
        raws = np.array([self.raw(m, x) for m, x in pairs])
        meas = (np.array(list(measured_ms), dtype=float) if measured_ms is not None
                else np.array([measure_latency(m, x, self.target, self.reference).median_ms for m, x in pairs]))
        if len(meas) != len(raws):
            raise ConfigError(f"calibration got {len(raws)} models but {len(meas)} measurements")
        fit = LinearRegression().fit(raws.reshape(-1, 1), meas)
        self.coef, self.intercept = float(fit.coef_[0]), float(fit.intercept_)
        if self.coef <= 0:  # degenerate spread of the calibration set: fall back to a pure scale
            self.coef, self.intercept = float(meas.sum() / raws.sum()), 0.0
        self.calibrated = True
        pred = self.coef * raws + self.intercept
        return {"coef": self.coef, "intercept": self.intercept, "mape": mape(pred, meas)}

    def predict(self, model: nn.Module, example: torch.Tensor) -> float:
        """Predicted latency (ms) of ``model`` on ``example``'s shape."""
        return self.coef * self.raw(model, example) + self.intercept

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target.model_dump(), "entries": self.entries, "coef": self.coef,
                "intercept": self.intercept, "calibrated": self.calibrated}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LatencyTable":
        try:
            table = cls(data["target"])
            table.entries = {str(k): float(v) for k, v in data["entries"].items()}
            table.coef, table.intercept = float(data["coef"]), float(data["intercept"])
            table.calibrated = bool(data.get("calibrated", True))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"not a latency table: {e}") from None
        return table

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read latency table {path}: {e}") from None


def mape(pred: Iterable[float], true: Iterable[float]) -> float:
    """Mean absolute percentage error, in percent."""
    from sklearn.metrics import mean_absolute_percentage_error

    return 100.0 * float(mean_absolute_percentage_error(np.asarray(list(true)), np.asarray(list(pred))))


def build_latency_table(supernet: nn.Module, target: TargetSpec | Mapping[str, Any] | str,
                        configs: Iterable[Mapping[str, Any]] | None = None, calib: int = 8,
                        seed: int = 0) -> LatencyTable:
    """A calibrated table for ``supernet`` on ``target``: units of ``configs`` (default: smallest, largest
    and ``calib`` random sub-networks) timed once, calibrated on ``calib`` measured sub-networks
    (the smallest, the largest and random ones); drift-corrected against the median sub-network."""
    table = LatencyTable(target, median_reference(supernet))
    space = supernet.space  # type: ignore[attr-defined]
    calib_cfgs = [space.smallest(), space.largest(), *space.sample_many(max(0, calib - 2), seed=seed)]
    for cfg in configs or ():
        table.add(supernet.extract(cfg), example_input(supernet, cfg, table.target))  # type: ignore[operator]
    pairs = [(supernet.extract(c).eval(), example_input(supernet, c, table.target))  # type: ignore[operator]
             for c in calib_cfgs]
    table.calibrate(pairs)
    return table


def lut_mape(table: LatencyTable, supernet: nn.Module, n: int = 50, seed: int = 1) -> dict[str, Any]:
    """MAPE (%) of the table's predictions against measured latency on ``n`` random sub-networks."""
    space = supernet.space  # type: ignore[attr-defined]
    pred, meas = [], []
    for cfg in space.sample_many(n, seed=seed):
        sub = supernet.extract(cfg).eval()  # type: ignore[operator]
        x = example_input(supernet, cfg, table.target)
        pred.append(table.predict(sub, x))
        meas.append(measure_latency(sub, x, table.target, table.reference).median_ms)
    return {"mape": mape(pred, meas), "predicted_ms": pred, "measured_ms": meas, "entries": len(table)}
