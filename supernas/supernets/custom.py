"""Any PyTorch model made elastic: ``make_elastic(model, example_inputs)`` and the ``custom`` family.

The model is traced (``elastic.trace``), its channel groups and skippable residual blocks found
(``elastic.groups``), and a search space built from ``rules``: per searchable group a width choice
(``ratios`` of its channels, by the kind of layer producing it), per stage of consecutive skippable blocks
a depth choice (how many of them run, the first ones kept). A choice that lives inside a block is active
only when the block runs. Channels are re-ordered by importance (L1 norm of the filters producing them),
which does not change the function, so the largest sub-network *is* the original model and the smaller
ones keep its most important channels. ``check()`` proves every choice changes the extracted network and
the elastic forward equals the extracted one.

In a run file: ``supernet: {family: custom, args: {model: "package.module:factory", args: {...},
weights: path}}``; the factory gets ``num_classes`` (and ``in_channels``) when it takes them.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..elastic.graph_ops import ChannelState, elastic_program, extract_graph
from ..elastic.groups import GraphAnalysis, Group
from ..elastic.trace import trace_model
from ..errors import ConfigError
from ..space import Choice, Config, SearchSpace
from .base import Supernet, register_family
from .pretrained import read_state_dict, shape_problem

DEFAULT_RULES: dict[str, Any] = {"conv": [0.5, 0.75, 1.0], "linear": [0.5, 0.75, 1.0], "heads": [0.5, 0.75, 1.0],
                                 "skip": True,
                                 "min_blocks": 0, "divisor": 1}


@dataclass
class WidthChoice:
    name: str
    group: Group


def _rules(rules: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(DEFAULT_RULES)
    for k, v in dict(rules or {}).items():
        if k not in DEFAULT_RULES:
            raise ConfigError(f"unknown make_elastic rule {k!r}; known: {', '.join(DEFAULT_RULES)}")
        out[k] = v
    for kind in ("conv", "linear", "heads"):
        ratios = out[kind]
        if not isinstance(ratios, (list, tuple)) or not ratios or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in ratios):
            raise ConfigError(f"rule {kind!r} must be a list of ratios in (0, 1], got {ratios!r}")
    if not isinstance(out["divisor"], int) or out["divisor"] < 1:
        raise ConfigError(f"rule 'divisor' must be a positive integer, got {out['divisor']!r}")
    return out


def _options(size: int, ratios: Sequence[float], divisor: int) -> tuple[int, ...]:
    opts = {max(divisor, int(round(r * size / divisor)) * divisor) for r in ratios}
    return tuple(sorted({min(o, size) for o in opts} | {size}))


def _strip(path: str) -> str:
    return path.removeprefix("model.")


def _common_prefix(paths: Sequence[str]) -> str:
    parts = [p.split(".") for p in paths]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


@register_family("custom")
class CustomSupernet(Supernet):
    """A user's model made elastic (see the module docstring). Built from ``model``
    (``"package.module:factory"`` or ``"file.py:factory"``) called with ``args``, optional ``weights`` (a state dict file of that
    model), ``rules`` and ``fixed``; traced on a batch of ``in_channels x image_size x image_size`` images, or
    with ``seq_len`` (a decoder) on token ids of ``num_classes`` (the vocabulary)."""

    def __init__(self, model: str, args: Mapping[str, Any] | None = None, weights: str | None = None,
                 rules: Mapping[str, Any] | None = None, fixed: Sequence[str] = (), in_channels: int = 3,
                 image_size: int = 32, num_classes: int | None = None, seq_len: int | None = None) -> None:
        super().__init__()
        module = build_user_model(model, args, num_classes, None if seq_len else in_channels, bool(seq_len))
        if weights is not None and not any(p.is_meta for p in module.parameters()):
            load_user_weights(module, weights)
        gen = torch.Generator().manual_seed(0)
        if seq_len:  # a decoder: traced on token ids of the vocabulary (num_classes)
            self._in_shape: tuple[int, ...] = (seq_len,)
            example = torch.randint(0, max(2, num_classes or 2), (2, seq_len), generator=gen)
        else:
            self._in_shape = (in_channels, image_size, image_size)
            example = torch.randn(2, *self._in_shape, generator=gen)
        self._setup(module, (example,), rules, fixed)

    @classmethod
    def from_module(cls, model: nn.Module, example_inputs: Sequence[torch.Tensor], rules: Mapping[str, Any] | None
                    = None, fixed: Sequence[str] = ()) -> "CustomSupernet":
        net = cls.__new__(cls)
        Supernet.__init__(net)
        net._in_shape = tuple(example_inputs[0].shape[1:])
        net._setup(model, tuple(example_inputs), rules, fixed)
        net.arch = {"family": "custom", "model": f"<in-memory {type(model).__name__}>", "args": None,
                    "weights": None, "rules": dict(rules or {}), "fixed": list(fixed)}
        return net

    # ------------------------------------------------------------------------------ building
    _DERIVED = ("_traced", "_analysis", "_state", "_program")  # rebuilt from the model, never pickled

    def _setup(self, model: nn.Module, example_inputs: tuple, rules: Mapping[str, Any] | None,
               fixed: Sequence[str], reorder: bool = True) -> None:
        self.rules = _rules(rules)
        self.model = model
        self._example, self._fixed = tuple(example_inputs), list(fixed)
        if any(p.is_meta for p in model.parameters()):  # a meta build only counts the weights
            self.space = SearchSpace([])
            return
        traced = trace_model(model, example_inputs)
        analysis = GraphAnalysis(traced, fixed)
        state = ChannelState()
        object.__setattr__(self, "_traced", traced)  # held outside the module tree (the model owns the weights)
        object.__setattr__(self, "_analysis", analysis)
        object.__setattr__(self, "_state", state)
        self.stages = self._stages(analysis)
        self.widths = self._width_choices(analysis)
        self.space = self._space(analysis)
        if reorder:
            self.reorder_channels()
        object.__setattr__(self, "_program", elastic_program(traced, analysis, state))

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__getstate__().items() if k not in self._DERIVED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a Ray worker): the graph is traced again from the model, whose channels are in order."""
        super().__setstate__(state)
        active = self._active
        self._setup(self.model, self._example, self.rules, self._fixed, reorder=False)
        if active is not None:
            self.set_active(active)

    def _stages(self, analysis: GraphAnalysis) -> list[tuple[str, list[int]]]:
        """(``stage<s>.depth``, block indices) per stage of consecutive skippable blocks."""
        return [(f"stage{s}.depth", idx) for s, idx in self._stage_blocks(analysis)] if self.rules["skip"] else []

    def _width_choices(self, analysis: GraphAnalysis) -> list[WidthChoice]:
        """One choice per searchable group with more than one option: named after the layer producing it, or
        ``stage<s>.width`` for the residual stream a stage's blocks add to (several producers)."""
        nodes = {n.name: n for n in self._traced.graph.nodes}
        stream = {}
        for s, idx in self._stage_blocks(analysis):
            for g in analysis.dims.get(nodes[analysis.blocks[idx[0]].entry]) or []:
                if g is not None:
                    stream.setdefault(g, f"stage{s}.width")
        out, used = [], set()
        for g in analysis.searchable():
            producers = [_strip(p) for p in g.producers]
            if g.kind == "heads":  # attention heads of the projections reading and writing them
                name = f"{_common_prefix(producers) or producers[0]}.heads"
            else:
                name = stream.get(g.id) if len(producers) > 1 and g.id in stream else f"{producers[0]}.width"
            if name in used:
                name = f"{name}{sum(u.startswith(name) for u in used)}"
            used.add(name)
            if len(_options(g.size, self.rules[g.kind], self.rules["divisor"])) > 1:
                out.append(WidthChoice(name, g))
        return out

    @staticmethod
    def _stage_blocks(analysis: GraphAnalysis) -> list[tuple[int, list[int]]]:
        stages: dict[int, list[int]] = {}
        for i, b in enumerate(analysis.blocks):
            stages.setdefault(b.stage, []).append(i)
        return sorted(stages.items())

    def _space(self, analysis: GraphAnalysis) -> SearchSpace:
        choices, block_choice = [], {}
        for name, idx in self.stages:
            low = min(len(idx), max(0, int(self.rules["min_blocks"])))
            choices.append(Choice(name, tuple(range(low, len(idx) + 1))))
            for k, i in enumerate(idx):
                block_choice[i] = (name, k)
        for w in self.widths:
            inside = self._owning_block(analysis, w.group)
            choices.append(Choice(w.name, _options(w.group.size, self.rules[w.group.kind], self.rules["divisor"]),
                                  block_choice.get(inside) if inside is not None else None))
        return SearchSpace(choices)

    @staticmethod
    def _owning_block(analysis: GraphAnalysis, group: Group) -> int | None:
        """The block all tensors of ``group`` live in, if one does (its width matters only when it runs)."""
        names = {n.name for n in analysis.group_nodes(group.id) if n.op != "get_attr"}
        for i, b in enumerate(analysis.blocks):
            if names and names <= set(b.nodes) - {b.exit}:
                return i
        return None

    # ------------------------------------------------------------------------------ Supernet API
    def _apply_config(self, cfg: Config) -> None:
        state: ChannelState = self._state
        state.width.clear()  # in place: the elastic ops hold these containers
        state.width.update({w.group.id: int(cfg[w.name]) for w in self.widths})
        for g in self._analysis.groups.values():  # attention projections: heads x head size
            if g.derived is not None and g.derived[0] in state.width:
                state.width[g.id] = state.width[g.derived[0]] * g.derived[1]
        state.version += 1
        state.skip.clear()
        state.skip.update(i for name, idx in self.stages for k, i in enumerate(idx) if k >= int(cfg[name]))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._active is None:
            self.set_active(self.space.largest())
        return self._program(*inputs)

    def _build_static(self, cfg: Config) -> nn.Module:
        self._apply_config(cfg)
        return extract_graph(self._traced, self._analysis, self._state)

    def input_shape(self, cfg: Mapping[str, Any] | None = None, batch: int = 1) -> tuple[int, ...]:
        return (batch, *self._in_shape)

    def example_input(self, cfg: Mapping[str, Any] | None = None, batch: int = 1) -> torch.Tensor:
        """Zeros shaped and typed like the traced example (token ids stay integers)."""
        return torch.zeros(self.input_shape(cfg, batch), dtype=self._example[0].dtype)

    def random_input(self, shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal inputs, or for integer inputs (token ids) ids up to the traced example's largest."""
        e = self._example[0]
        if e.is_floating_point():
            return torch.randn(tuple(shape), generator=generator, dtype=e.dtype)
        return torch.randint(0, int(e.max()) + 1, tuple(shape), generator=generator, dtype=e.dtype)

    @torch.no_grad()
    def reorder_channels(self) -> None:
        """Sort every searchable group's channels by the L1 norm of the weights producing them, and every
        attention layer's heads by the L1 norm of their projections' rows (whole heads move), so the first
        channels and heads that a smaller sub-network keeps are the important ones; the function is unchanged."""
        analysis: GraphAnalysis = self._analysis
        done: set[tuple[int, int]] = set()
        slots: dict[int, list] = {}
        for sl in analysis.slots:
            slots.setdefault(sl.group, []).append(sl)
        for g in analysis.searchable():
            if g.kind != "heads":
                score = self._importance(g, slots.get(g.id, []), g.size)
                self._permute(slots.get(g.id, []), torch.argsort(-score, stable=True), done)
                continue
            members = [m for m in analysis.groups.values() if m.derived is not None and m.derived[0] == g.id]
            score = sum((self._importance(m, slots.get(m.id, []), g.size) for m in members),
                        torch.zeros(g.size, dtype=torch.float64))
            heads = torch.argsort(-score, stable=True)
            for m in members:
                size = m.derived[1]  # type: ignore[index]
                rows = (heads[:, None] * size + torch.arange(size)).reshape(-1)
                self._permute(slots.get(m.id, []), rows, done)

    def _importance(self, group: Group, slots: list, units: int) -> torch.Tensor:
        """Per-unit L1 norm (units: channels, or heads of ``size / units`` channels) of the producers' weights."""
        producers = set(group.producers)
        score = torch.zeros(units, dtype=torch.float64)
        for sl in slots:
            if sl.owner in producers and sl.name == "weight":
                w = getattr(self._traced.get_submodule(sl.owner), sl.name).detach().double()
                l1 = w.abs().transpose(0, sl.dim).reshape(units, -1).sum(1)
                score += l1 / l1.mean().clamp_min(1e-12)
        return score

    def _permute(self, slots: list, order: torch.Tensor, done: set[tuple[int, int]]) -> None:
        for sl in slots:
            t = getattr(self._traced.get_submodule(sl.owner), sl.name)
            if (id(t), sl.dim) in done:  # a tensor shared by two modules (tied embeddings) moves once
                continue
            done.add((id(t), sl.dim))
            t.data = t.data.index_select(sl.dim, order.to(t.device))

    # ------------------------------------------------------------------------------ inspection
    def describe_groups(self) -> list[dict[str, Any]]:
        """The searchable groups and blocks found: what each width and depth choice shrinks."""
        out = [{"choice": w.name, "channels": w.group.size, "options": list(self.space[w.name].options),
                "producers": [_strip(p) for p in w.group.producers]} for w in self.widths]
        for name, idx in self.stages:
            out.append({"choice": name, "blocks": [self._analysis.blocks[i].exit for i in idx],
                        "options": list(self.space[name].options)})
        return out

    def check(self, atol: float = 1e-5) -> list[dict[str, Any]]:
        """Proof that the elastic supernet is sound, or a ConfigError naming what is not: the largest
        sub-network equals the original model, every option of every choice changes the extracted network
        (parameter count), and the elastic forward equals the extracted sub-network on the smallest and a
        random sub-network. Returns ``describe_groups()``."""
        from ..measure.counting import count_params

        was = self.training
        self.eval()
        x = self._example[0]
        try:
            largest = self.space.largest()
            reference = self._traced(x)
            for cfg in (largest, self.space.smallest(), self.space.sample(seed=0)):
                self.set_active(cfg)
                elastic, sub = self(x), self.extract(cfg)(x)
                if elastic.shape != reference.shape or sub.shape != reference.shape:
                    raise ConfigError(f"sub-network {self.space.key(cfg)} gives outputs of shape {tuple(sub.shape)}, "
                                      f"the model {tuple(reference.shape)}")
                if (elastic - sub).abs().max().item() > atol:
                    raise ConfigError(f"the elastic forward differs from the extracted sub-network {self.space.key(cfg)}")
            if (self.extract(largest)(x) - reference).abs().max().item() > atol:
                raise ConfigError("the largest sub-network differs from the original model")
            full = count_params(self.extract(largest))
            for c in self.space.choices:
                for opt in c.options[:-1]:
                    n = count_params(self.extract({**largest, c.name: opt}))
                    if n == full:
                        raise ConfigError(f"choice {c.name}={opt!r} does not change the extracted network")
        finally:
            self.set_active(self.space.largest())
            self.train(was)
        return self.describe_groups()


def make_elastic(model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor],
                 rules: Mapping[str, Any] | None = None, fixed: Sequence[str] = ()) -> CustomSupernet:
    """``model`` as an elastic supernet (see the module docstring). ``example_inputs``: one batch (or a tuple of
    inputs) it is traced on; ``rules`` e.g. ``{"conv": [0.5, 0.75, 1.0], "linear": [0.25, 0.5, 1.0],
    "skip": True, "min_blocks": 0, "divisor": 8}``; ``fixed``: node names or module paths whose channels stay
    fixed (an operator make_elastic cannot slice through, named by its error).
    The model's weights become the supernet's (channels re-ordered in place)."""
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    return CustomSupernet.from_module(model, inputs, rules, fixed)


def build_user_model(spec: str, args: Mapping[str, Any] | None, num_classes: int | None,
                     in_channels: int | None, decoder: bool = False) -> nn.Module:
    """``"package.module:factory"`` called with ``args`` (plus ``num_classes``/``in_channels`` when it takes
    them and ``args`` does not set them; a ``decoder``'s factory gets the vocabulary as ``vocab_size``)."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ConfigError(f"custom model {spec!r} must be 'package.module:factory' or 'path/to/file.py:factory'")
    try:
        factory = getattr(_import(module_name), attr)
    except (ImportError, AttributeError, OSError, SyntaxError) as e:
        raise ConfigError(f"cannot import custom model {spec!r}: {' '.join(str(e).split())[:200]}") from None
    kwargs = dict(args or {})
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    for k, v in (("num_classes", num_classes), ("in_channels", in_channels),
                 ("vocab_size", num_classes if decoder else None)):
        if v is not None and k in params and k not in kwargs:
            kwargs[k] = v
    try:
        model = factory(**kwargs)
    except Exception as e:  # noqa: BLE001 - whatever the user's factory raises on these arguments
        raise ConfigError(f"custom model {spec!r} failed to build with {kwargs}: {' '.join(str(e).split())[:200]}") from e
    if not isinstance(model, nn.Module):
        raise ConfigError(f"custom model {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _import(name: str) -> Any:
    """A module by dotted name, or a Python file by path (relative to the current directory)."""
    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = Path(name).resolve()
    if not path.is_file():
        raise ImportError(f"no such file {name}")
    spec = importlib.util.spec_from_file_location(f"supernas_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  (pickling its classes finds them)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def load_user_weights(model: nn.Module, path: str) -> None:
    """An ordinary state dict of the user's model (``weights_only``); the first tensor that disagrees named."""
    state = read_state_dict(path)
    own = model.state_dict()
    problem = shape_problem({k: v for k, v in state.items() if k in own} or state, {k: k for k in state}, own)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    model.load_state_dict({k: state[k] for k in own})
