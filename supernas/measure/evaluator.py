"""The Evaluator: every requested metric column of one config (extract, BN-recalibrate, evaluate, time, count).

Objectives are measured by the function bound to them in the registry (:mod:`.objectives`); each is called
as ``fn(ctx)`` with a :class:`MeasureContext`. Users add their own objectives the same way::

    @register_objective("energy_mj", "min", per_target=True)
    def energy(ctx: MeasureContext) -> float:
        return my_meter(ctx.model, ctx.example(), ctx.target)
"""
from __future__ import annotations

import math
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..space import Config, SearchSpace
from ..train.bn import recalibrate_bn
from ..train.evaluate import evaluate_accuracy
from .counting import count_bytes, count_macs, count_params
from .latency import LatencyReference, measure_latency
from .lut import example_input, median_reference
from .memory import peak_memory
from .onnx_model import OnnxModel
from .proxies import PROXIES, first_batch, proxy_score
from .screening import SCREENED, ScreenSplit, binomial_margin, median_interval, pooled, screen_split
from .objectives import MARGIN, get_objective, register_objective, split_column
from .targets import TargetSpec, require_available, resolve_targets

#: objectives that need no BN recalibration: independent of the weights, or (the zero-cost proxies) scored
#: with batch statistics
NO_RECALIBRATION = {"macs", "params", "bytes", "latency_ms", "peak_mem", *PROXIES}


@dataclass
class _Held:
    """What a screen keeps for the full evaluation that follows: the models, the columns measured in full, the
    sample's accuracy scores and the split they came from, the timed calls per latency target."""

    models: tuple[Config, nn.Module, nn.Module | None]
    exact: dict[str, float]
    sample: dict[str, float] | None
    split: ScreenSplit | None
    timed: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class MeasureContext:
    """What an objective function sees: the sub-network (``model``, static, BN-recalibrated when the
    evaluator has calibration data, eval mode), its ``config``, the ``target`` of a per-target column
    (None otherwise), the held-out ``eval_loader``, a per-config ``cache`` and the labelled training batch
    the zero-cost proxies score (the same for every config)."""

    supernet: nn.Module
    config: Config
    model: nn.Module
    target: TargetSpec | None = None
    eval_loader: Iterable | None = None
    eval_batches: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    reference: LatencyReference | None = None
    float_model: nn.Module | None = None
    proxy_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def counted_model(self) -> nn.Module:
        """The PyTorch module MACs and parameters are counted on: ``float_model`` when ``model`` is a
        deployed graph made from it (an INT8 ONNX model computes the same products), else ``model``."""
        return self.float_model if self.float_model is not None else self.model

    def example(self, batch: int | None = None) -> torch.Tensor:
        """An input batch for this sub-network: the target's batch size and shape, or one sample."""
        if self.target is not None and batch is None:
            return example_input(self.supernet, self.config, self.target)
        spec = TargetSpec(name="example", backend="cpu", batch_size=batch or 1)
        return example_input(self.supernet, self.config, spec)

    def accuracy(self) -> dict[str, float]:
        """Top-1 / top-5 on the eval loader, computed once per config."""
        if "accuracy" not in self.cache:
            if self.eval_loader is None:
                raise ConfigError("accuracy needs an evaluation loader (eval_loader or data)")
            self.cache["accuracy"] = evaluate_accuracy(self.model, self.eval_loader, self.eval_batches)
        return self.cache["accuracy"]


# ------------------------------------------------------------------ built-in objective functions
def _describe(name: str) -> tuple[str, bool, str]:
    obj = get_objective(name)
    return obj.direction, obj.per_target, obj.description


def _bind(name: str):
    d, per_target, desc = _describe(name)
    return register_objective(name, d, per_target, desc)


@_bind("accuracy")
def _accuracy(ctx: MeasureContext) -> float:
    return ctx.accuracy()["accuracy"]


@_bind("top5")
def _top5(ctx: MeasureContext) -> float:
    acc = ctx.accuracy()
    return acc.get("top5", acc["accuracy"])  # with <= 5 classes top-5 is top-1 (the case is uninformative)


@_bind("perplexity")
def _perplexity(ctx: MeasureContext) -> float:
    return float(math.exp(min(ctx.accuracy()["loss"], 700.0)))  # exp overflows a float beyond ~709


@_bind("macs")
def _macs(ctx: MeasureContext) -> float:
    return float(count_macs(ctx.counted_model, example=ctx.example(batch=1)))


@_bind("params")
def _params(ctx: MeasureContext) -> float:
    return float(count_params(ctx.counted_model))


@_bind("bytes")
def _bytes(ctx: MeasureContext) -> float:
    return float(count_bytes(ctx.model))


#: ``MeasureContext.cache`` key of a target's timed calls made before the full measurement (by a screen)
TIMED = "latency_times:{target}"


@_bind("latency_ms")
def _latency(ctx: MeasureContext) -> float:
    """Median of the target's ``repeats`` timed calls; calls already made for this model (a screen's, in the
    cache) count towards them, so only the rest are timed."""
    assert ctx.target is not None
    held = list(ctx.cache.get(TIMED.format(target=ctx.target.name), ()))
    more = ctx.target.repeats - len(held)
    if more > 0:
        spec = ctx.target.model_copy(update={"repeats": more})
        held += measure_latency(ctx.model, ctx.example(), spec, ctx.reference).times_ms
    return float(statistics.median(held))


@_bind("peak_mem")
def _peak_mem(ctx: MeasureContext) -> float:
    assert ctx.target is not None
    if isinstance(ctx.model, OnnxModel):
        raise ConfigError("peak_mem is measured on PyTorch models, not on an ONNX Runtime graph")
    return float(peak_memory(ctx.model, ctx.example(), ctx.target))


def _bind_proxy(name: str) -> None:
    @_bind(name)
    def _proxy(ctx: MeasureContext) -> float:
        if ctx.proxy_batch is None:
            raise ConfigError(f"{name} needs a training batch (calib_loader or data)")
        return proxy_score(name, ctx.counted_model, ctx.proxy_batch, ctx.example(batch=1))  # FP32 if deployed


for _name in PROXIES:
    _bind_proxy(_name)


# --------------------------------------------------------------------------------- evaluator
def _loaders_from(data: Any) -> tuple[Any, Any]:
    """(calibration, evaluation) loaders from a ``DataBundle`` or a ``(train, val)`` pair of loaders."""
    from ..data import TrainingData, loaders  # data is an earlier stage than measure

    if isinstance(data, (tuple, list)) and len(data) >= 2:
        return data[0], data[1]
    if isinstance(data, TrainingData):
        train, val, _ = loaders(data)
        return train, val
    raise ConfigError(f"data must be a DataBundle or a (train_loader, val_loader) pair, got {type(data).__name__}")


class Evaluator:
    """Measures the metric ``columns`` (``accuracy``, ``macs``, ``latency_ms@cpu`` ...) of configs of
    ``supernet``. Picklable (so Ray can ship it); it holds no open sessions or handles.

    ``data`` (a ``DataBundle`` or ``(train, val)`` loaders) or ``calib_loader`` / ``eval_loader`` give
    the batches for BN recalibration (``calib_batches`` of them) and accuracy (``eval_batches``, default
    all). ``targets`` maps target names to :class:`TargetSpec` or dicts; the built-ins need no entry.
    Raises :class:`ConfigError` for unknown or malformed columns and :class:`TargetUnavailable` for a
    target this machine lacks (e.g. ``latency_ms@cuda`` without a GPU).

    Latency is drift-corrected against the supernet's median sub-network (see
    :mod:`.latency`); ``latency_baselines`` ``{target: ms}`` fixes the reference's calibrated speed (e.g.
    from an earlier session of the same run), otherwise it is calibrated on first use — and at the latest
    when the evaluator is pickled, so Ray workers share the driver's baselines."""

    def __init__(self, supernet: nn.Module, columns: Sequence[str], *, data: Any = None,
                 calib_loader: Iterable | None = None, eval_loader: Iterable | None = None,
                 targets: Mapping[str, TargetSpec | Mapping[str, Any] | str] | None = None,
                 calib_batches: int = 20, eval_batches: int | None = None,
                 latency_baselines: Mapping[str, float] | None = None, screen_samples: int | None = None,
                 screen_repeats: int | None = None, screen_z: float = 3.0, screen_keep: int = 16) -> None:
        if not columns:
            raise ConfigError("the evaluator needs at least one metric column")
        if data is not None:
            d_calib, d_eval = _loaders_from(data)
            calib_loader = calib_loader if calib_loader is not None else d_calib
            eval_loader = eval_loader if eval_loader is not None else d_eval
        if calib_batches < 0:
            raise ConfigError(f"calib_batches must be >= 0, got {calib_batches}")
        if screen_samples is not None and screen_samples < 1 or screen_repeats is not None and screen_repeats < 3 \
                or not screen_z > 0 or screen_keep < 1:
            raise ConfigError(f"screen_samples must be >= 1, screen_repeats >= 3, screen_z > 0 and screen_keep >= 1, "
                              f"got {screen_samples}, {screen_repeats}, {screen_z} and {screen_keep}")
        self.screen_samples, self.screen_repeats = screen_samples, screen_repeats
        self.screen_z, self.screen_keep = float(screen_z), screen_keep
        self._screens: OrderedDict[str, _Held] = OrderedDict()
        self._space: SearchSpace | None = None
        self._screen_split: ScreenSplit | None = None
        self.supernet, self.columns = supernet, list(dict.fromkeys(columns))
        self.calib_loader, self.eval_loader = calib_loader, eval_loader
        self.calib_batches, self.eval_batches = calib_batches, eval_batches
        names = []
        for col in self.columns:
            obj, target = get_objective(col), split_column(col)[1]
            if obj.per_target and not target:
                raise ConfigError(f"column {col!r} needs a target, e.g. {col}@cpu")
            if not obj.per_target and target:
                raise ConfigError(f"objective {obj.name!r} is not measured per target; use {obj.name!r}")
            if obj.fn is None:
                raise ConfigError(f"objective {obj.name!r} has no measuring function")
            if obj.name in ("accuracy", "top5") and eval_loader is None:
                raise ConfigError(f"column {col!r} needs evaluation data (data= or eval_loader=)")
            if target:
                names.append(target)
        self.targets = resolve_targets(targets, list(dict.fromkeys(names)))
        for spec in self.targets.values():
            require_available(spec)
        self._baselines = dict(latency_baselines or {})
        self._reference: LatencyReference | None = None
        self._proxy_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def _latency_targets(self) -> list[TargetSpec]:
        return [self.targets[t] for c in self.columns for o, t in [split_column(c)]
                if o == "latency_ms" and self.targets[t].drift_correction]

    @property
    def reference(self) -> LatencyReference | None:
        """The drift-correction reference (the supernet's median sub-network), built on first use."""
        if self._reference is None and self._latency_targets():
            self._reference = median_reference(self.supernet, self._baselines)
        return self._reference

    def latency_baselines(self) -> dict[str, float]:
        """``{target: reference ms}`` for every drift-corrected latency column, calibrating what is missing."""
        ref = self.reference
        if ref is None:
            return {}
        for spec in self._latency_targets():
            ref.calibrate(spec)
        return dict(ref.baseline_ms)

    def keep_latency_baselines(self, baselines: Mapping[str, float]) -> None:
        """Use ``baselines`` (e.g. stored by an earlier session of the same run) for the targets they name."""
        self._baselines.update(baselines)
        if self._reference is not None:
            self._reference.baseline_ms.update(baselines)

    def __getstate__(self) -> dict[str, Any]:
        self.latency_baselines()  # every copy measures against the same baselines
        self.proxy_batch()  # and scores its proxies on the same batch
        return {**self.__dict__, "_screens": OrderedDict(), "_screen_split": None}

    def proxy_batch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The first training batch (else evaluation batch), taken once: every config's proxies see it."""
        if self._proxy_batch is None and any(split_column(c)[0] in PROXIES for c in self.columns):
            loader = self.calib_loader if self.calib_loader is not None else self.eval_loader
            if loader is not None:
                self._proxy_batch = first_batch(loader)
        return self._proxy_batch

    @property
    def needs_weights(self) -> bool:
        return any(split_column(c)[0] not in NO_RECALIBRATION for c in self.columns)

    def prepare(self, cfg: Mapping[str, Any]) -> nn.Module:
        """The static sub-network of ``cfg``, BN-recalibrated when the columns depend on weights."""
        was_training = self.supernet.training
        sub = self.supernet.extract(cfg)  # type: ignore[operator]
        self.supernet.train(was_training)
        if self.needs_weights and self.calib_loader is not None and self.calib_batches > 0:
            recalibrate_bn(sub, self.calib_loader, self.calib_batches)
        return sub.eval()

    def model(self, cfg: Mapping[str, Any]) -> tuple[Config, nn.Module, nn.Module | None]:
        """(validated config, the model its columns are measured on, the float model a deployed graph was made
        from or None): here the prepared sub-network."""
        config = self.supernet.space.validate(cfg)  # type: ignore[attr-defined]
        return config, self.prepare(config), None

    def __call__(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        """Every requested column for config ``cfg``. After its :meth:`screen` (in this process), only the
        rest of the evaluation set is scored and pooled with the screen's sample, each latency times only the
        calls its screen did not make, and the columns the screen measured in full are not measured again."""
        held = self._screens.pop(self._key(cfg), None)
        if held is None:
            return self.measure(*self.model(cfg))
        config, model, float_model = held.models
        rest = evaluate_accuracy(model, held.split.rest) if held.split and held.split.rest is not None else None
        cache: dict[str, Any] = {"accuracy": pooled(held.sample, rest)} if held.sample is not None else {}
        cache.update({TIMED.format(target=t): times for t, times in held.timed.items()})
        out = {**held.exact, **self.measure(config, model, float_model, columns=[c for c in self.columns
                                                                                 if c not in held.exact], cache=cache)}
        return {c: out[c] for c in self.columns}

    def screen(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        """Every column of ``cfg`` and ``margin:<column>``, cheaply: with ``screen_samples``, ``accuracy``/``top5``
        on that many evaluation items drawn at random (seeded: the same for every config), margin ``screen_z``
        binomial standard errors (0 when the sample is the whole set); with ``screen_repeats``, each
        ``latency_ms`` column the median of that many timed calls, margin to the order statistics that hold
        the true median at the same confidence; every other column measured in full, margin 0. The prepared
        model and what was measured are held (the last ``screen_keep`` configs) for a full evaluation that
        follows. See :mod:`.screening` and ``supernas.search.tiered``."""
        if self.screen_samples is None and self.screen_repeats is None:
            raise ConfigError("this evaluator has no screen: give it screen_samples or screen_repeats")
        config, model, float_model = models = self.model(cfg)
        sampled = [c for c in self.columns if c in SCREENED] if self.screen_samples is not None else []
        timed = [c for c in self.columns if split_column(c)[0] == "latency_ms"] if self.screen_repeats else []
        exact = self.measure(config, model, float_model, columns=[c for c in self.columns
                                                                  if c not in sampled and c not in timed])
        out = {**exact, **{MARGIN + c: 0.0 for c in exact}}
        sample = split = None
        if sampled:
            split = self.screen_sample()
            sample = evaluate_accuracy(model, split.sample)
            out.update(self.measure(config, model, float_model, columns=sampled, cache={"accuracy": sample}))
            for c in sampled:
                out[MARGIN + c] = binomial_margin(out[c], split.n, split.size, self.screen_z)
        held_times = {}
        for c in timed:
            spec = self.targets[split_column(c)[1]]
            quick = spec.model_copy(update={"repeats": self.screen_repeats, "warmup": min(spec.warmup, 2)})
            times = measure_latency(model, example_input(self.supernet, config, spec), quick,
                                    self.reference).times_ms
            out[c], out[MARGIN + c] = median_interval(times, self.screen_z)
            held_times[spec.name] = times
        self._screens[self._key(cfg)] = _Held(models, exact, sample, split, held_times)
        while len(self._screens) > self.screen_keep:
            self._screens.popitem(last=False)
        return {c: out[c] for c in [*self.columns, *(MARGIN + c for c in self.columns)]}

    @property
    def space(self) -> SearchSpace:
        """The space of the configs it measures: the supernet's unless set (a quantization policy's, say)."""
        return self._space if self._space is not None else self.supernet.space  # type: ignore[attr-defined]

    @space.setter
    def space(self, value: SearchSpace) -> None:
        self._space = value

    def _key(self, cfg: Mapping[str, Any]) -> str:
        return self.space.key(self.space.validate(cfg))

    def screen_sample(self) -> ScreenSplit:
        """The screen's sample of the evaluation set and the rest (drawn once, the same for every config)."""
        if self._screen_split is None:
            self._screen_split = screen_split(self.eval_loader, self.eval_batches, self.screen_samples)  # type: ignore[arg-type]
        return self._screen_split

    def measure(self, config: Config, model: nn.Module, float_model: nn.Module | None = None, *,
                columns: Sequence[str] | None = None, cache: dict[str, Any] | None = None) -> dict[str, float]:
        """The requested ``columns`` (default: all) of ``model`` (sub-network ``config``, prepared; or a graph
        deployed from the prepared ``float_model``, such as an INT8 :class:`OnnxModel`); ``cache`` holds what
        was already computed for this model (e.g. its ``accuracy`` scores)."""
        cache = {} if cache is None else cache
        out: dict[str, float] = {}
        batch = self.proxy_batch()
        for col in self.columns if columns is None else columns:
            obj, target = get_objective(col), split_column(col)[1]
            ctx = MeasureContext(self.supernet, config, model, self.targets.get(target) if target else None,
                                 self.eval_loader, self.eval_batches, cache,
                                 self.reference if obj.name == "latency_ms" else None, float_model, batch)
            out[col] = float(obj.fn(ctx))  # type: ignore[misc]
        return out

    def __repr__(self) -> str:
        return f"Evaluator({type(self.supernet).__name__}, columns={self.columns})"
