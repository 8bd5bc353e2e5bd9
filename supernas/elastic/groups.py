"""Channel groups and skippable blocks of a traced model: what ``make_elastic`` may shrink or skip.

Every dimension of size > 1 of every tensor in the graph belongs to a *group*: dimensions that must keep
one size together (union-find). Convolutions and linear layers *produce* a group (their output channels);
normalisation layers, activations, pooling and elementwise ops pass groups through; additions and
multiplications couple the groups they broadcast together (residual streams, squeeze-and-excitation
gates); a depthwise convolution keeps its input's group. A group is *searchable* when something produces
it and nothing fixes it: the model's inputs and outputs, reductions, reshapes that merge channels with
other dimensions, and operators this module does not know fix the groups they touch (a known operator
whose groups turn out searchable is refused with one line naming the node, unless the user names it in ``fixed``).

Every weight dimension that shrinks with a group is a ``Slot`` (module path, tensor name, dimension):
slicing and re-ordering channels is done through slots only. A *block* is a residual region
``exit = entry + f(entry)`` whose nodes are used nowhere else: skipping it makes ``exit = entry``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import fx, nn

from .blocks import Block, find_blocks
from .tensor_rules import CONVS, ELEMENTWISE_MODULES, NORMS, SPATIAL_MODULES, Barrier, TensorRules
from .trace import where

__all__ = ["Barrier", "Block", "CONVS", "GraphAnalysis", "Group", "NORMS", "Slot"]


@dataclass(frozen=True)
class Slot:
    """One dimension of a weight tensor that shrinks with a group: ``owner`` module path, tensor ``name``."""

    owner: str
    name: str
    dim: int
    group: int


@dataclass
class Group:
    """Channels that keep one size: ``producers`` (module paths or weight names making them), ``fixed_by``
    (why they cannot shrink; empty for a searchable group with producers)."""

    id: int
    size: int
    producers: list[str] = field(default_factory=list)
    fixed_by: list[str] = field(default_factory=list)
    kind: str = "conv"
    derived: tuple[int, int] | None = None  # (heads group, head size): this group's width is their product

    @property
    def sliced(self) -> bool:
        """Whether its tensors shrink (with a choice of its own, or derived from a heads group)."""
        return bool(self.producers) and not self.fixed_by

    @property
    def searchable(self) -> bool:
        """Whether it has a width choice of its own."""
        return self.sliced and self.derived is None


class GraphAnalysis(TensorRules):
    """Groups, slots and blocks of a traced ``GraphModule`` whose nodes hold values (``trace.trace_model``).

    ``fixed``: node names or module paths (prefixes) whose channels stay fixed instead of being refused.
    """

    def __init__(self, gm: fx.GraphModule, fixed: Sequence[str] = ()) -> None:
        self.gm, self.fixed = gm, list(fixed)
        self._parent: list[int] = []
        self._info: list[Group] = []
        self.dims: dict[fx.Node, list[int | None]] = {}
        self.slots: set[Slot] = set()
        self.barriers: list[Barrier] = []
        self.layer_norm_nodes: list[fx.Node] = []  # F.layer_norm calls whose normalized_shape follows a group
        self.depthwise: set[str] = set()  # conv paths whose groups follow their channels
        self.derived: list[tuple[int, int, int]] = []  # (group, heads group, head size): width = heads x size
        for node in gm.graph.nodes:
            if node.op not in ("placeholder", "get_attr", "output") and self._fixed_by_user(node):
                self._opaque(node, "fixed by the user")
                continue
            try:
                self._visit(node)
            except Exception as e:  # noqa: BLE001 - a rule meeting an operator use it does not expect
                from ..errors import ConfigError
                raise ConfigError(f"cannot make the model elastic: node {node.name!r} {where(node)} is used in a way "
                                  f"make_elastic does not follow ({type(e).__name__}); pass fixed=[{node.name!r}] "
                                  f"to keep its channels as they are") from e
        self.groups = self._finish()
        self.blocks = find_blocks(gm)

    # --------------------------------------------------------------------------- union-find
    def _new(self, size: int, producer: str | None = None, fixed: str | None = None, kind: str = "conv") -> int:
        g = len(self._parent)
        self._parent.append(g)
        self._info.append(Group(g, size, [producer] if producer else [], [fixed] if fixed else [], kind))
        return g

    def find(self, g: int) -> int:
        while self._parent[g] != g:
            self._parent[g] = self._parent[self._parent[g]]
            g = self._parent[g]
        return g

    def _union(self, a: int | None, b: int | None) -> int | None:
        if a is None or b is None:
            return a if b is None else b
        ra, rb = self.find(a), self.find(b)
        if self._info[ra].size != self._info[rb].size:  # tied by a ratio (grouped-query heads): both stay fixed
            self._fix(ra, f"tied to a group of {self._info[rb].size}")
            self._fix(rb, f"tied to a group of {self._info[ra].size}")
            return ra
        if ra != rb:
            self._parent[rb] = ra
            ia, ib = self._info[ra], self._info[rb]
            ia.producers += ib.producers
            ia.fixed_by += ib.fixed_by
            ia.kind = "conv" if "conv" in (ia.kind, ib.kind) and (ia.producers or ib.producers) else ia.kind
        return ra

    def _fix(self, g: int | None, why: str) -> None:
        if g is not None:
            self._info[self.find(g)].fixed_by.append(why)

    # ------------------------------------------------------------------------------ helpers
    def _fresh_dims(self, value: Any, fixed: str | None) -> list[int | None] | None:
        if not isinstance(value, torch.Tensor):
            return None
        return [self._new(s, fixed=fixed) if s > 1 else None for s in value.shape]

    def _tensor_args(self, node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if a in self.dims and self.dims[a] is not None]

    def _fixed_by_user(self, node: fx.Node) -> bool:
        path = str(node.target) if node.op == "call_module" else ""
        return any(f == node.name or (path and (path == f or path.startswith(f + "."))) for f in self.fixed)

    def _opaque(self, node: fx.Node, what: str) -> None:
        """An operator whose effect on channels is unknown: its inputs' groups may not shrink."""
        groups = {g for a in self._tensor_args(node) for g in self.dims[a] if g is not None}  # type: ignore[union-attr]
        if self._fixed_by_user(node):
            for g in groups:
                self._fix(g, f"fixed at {node.name}")
        else:
            self.barriers.append(Barrier(node, groups, what))
        self.dims[node] = self._fresh_dims(node.meta.get("value"), fixed=f"output of {node.name}")

    def _slot(self, owner: str, name: str, dim: int, g: int | None) -> None:
        if g is not None:
            self.slots.add(Slot(owner, name, dim, g))

    # ------------------------------------------------------------------------------ visiting
    def _visit(self, node: fx.Node) -> None:
        value = node.meta.get("value")
        if node.op == "placeholder":
            self.dims[node] = self._fresh_dims(value, fixed="model input")
        elif node.op == "get_attr":
            self.dims[node] = self._fresh_dims(value, fixed=None)
            if isinstance(value, torch.Tensor):
                owner, _, name = str(node.target).rpartition(".")
                for d, g in enumerate(self.dims[node] or []):
                    self._slot(owner, name, d, g)
        elif node.op == "call_module":
            self._module(node, self.gm.get_submodule(str(node.target)))
        elif node.op in ("call_function", "call_method"):
            self._function(node)
        elif node.op == "output":
            for a in node.all_input_nodes:
                for g in self.dims.get(a) or []:
                    self._fix(g, "model output")

    def _in(self, node: fx.Node) -> list[int | None]:
        dims = self.dims.get(node.args[0]) if node.args and isinstance(node.args[0], fx.Node) else None
        return list(dims) if dims is not None else []

    def _module(self, node: fx.Node, m: nn.Module) -> None:
        path, x, value = str(node.target), self._in(node), node.meta.get("value")
        if not isinstance(value, torch.Tensor) or not x:
            return self._opaque(node, f"module {type(m).__name__}")
        if isinstance(m, CONVS) and not getattr(m, "transposed", False):
            gin = x[1]
            if m.groups == 1:
                gout = self._new(m.out_channels, producer=path) if m.out_channels > 1 else None
                self._slot(path, "weight", 1, gin)
            elif m.groups == m.in_channels == m.out_channels:
                gout = gin  # depthwise: one filter per channel
                self.depthwise.add(path)
            else:
                return self._opaque(node, f"grouped convolution ({m.groups} groups)")
            self._slot(path, "weight", 0, gout)
            if m.bias is not None:
                self._slot(path, "bias", 0, gout)
            self.dims[node] = [x[0], gout] + [self._new(s, fixed=f"spatial size of {node.name}") if s > 1 else None
                                              for s in value.shape[2:]]
        elif isinstance(m, nn.Linear):
            gout = self._new(m.out_features, producer=path, kind="linear") if m.out_features > 1 else None
            self._slot(path, "weight", 0, gout)
            self._slot(path, "weight", 1, x[-1])
            if m.bias is not None:
                self._slot(path, "bias", 0, gout)
            self.dims[node] = x[:-1] + [gout]
        elif isinstance(m, nn.Embedding):  # ids in, vectors out: the vector width is produced here
            gout = self._new(m.embedding_dim, producer=path, kind="linear") if m.embedding_dim > 1 else None
            self._slot(path, "weight", 1, gout)
            self.dims[node] = x + [gout]
            return
        elif isinstance(m, NORMS):
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(m, name, None) is not None:
                    self._slot(path, name, 0, x[1])
            self.dims[node] = x
        elif isinstance(m, nn.LayerNorm):
            if len(m.normalized_shape) != 1:
                return self._opaque(node, "LayerNorm over several dimensions")
            for name in ("weight", "bias"):
                if getattr(m, name, None) is not None:
                    self._slot(path, name, 0, x[-1])
            self.dims[node] = x
        elif isinstance(m, ELEMENTWISE_MODULES) and not (isinstance(m, nn.PReLU) and m.num_parameters > 1):
            self.dims[node] = x
        elif isinstance(m, SPATIAL_MODULES):
            self.dims[node] = self._spatial(node, x)
        elif isinstance(m, nn.Flatten):
            self._flatten(node, x, m.start_dim, m.end_dim)
        else:
            self._opaque(node, f"module {type(m).__name__}")

    # ------------------------------------------------------------------------------ results
    def _finish(self) -> dict[int, Group]:
        derived = [(self.find(g), self.find(h), n) for g, h, n in self.derived]
        changed = True
        while changed:  # a derived group and its heads shrink together or not at all
            changed = False
            for g, h, _ in derived:
                for a, b in ((g, h), (h, g)):
                    if self._info[a].fixed_by and not self._info[b].fixed_by:
                        self._fix(b, f"derived from a fixed group ({self._info[a].fixed_by[0]})")
                        changed = True
        for g, h, n in derived:
            self._info[h].producers += [p for p in self._info[g].producers if p not in self._info[h].producers]
            self._info[h].kind = "heads"
        for g, h, n in derived:  # a merge of heads (read by the output projection) shrinks with them too
            self._info[g].producers = list(self._info[h].producers)
            self._info[g].derived = (h, n)
        for b in self.barriers:
            roots = {self.find(g) for g in b.groups}
            if any(self._info[r].sliced for r in roots):
                if self._fixed_by_user(b.node):
                    for r in roots:
                        self._fix(r, f"fixed at {b.node.name}")
                    continue
                from ..errors import ConfigError
                raise ConfigError(f"cannot make the model elastic: node {b.node.name!r} {where(b.node)} ({b.what}) "
                                  f"touches channels that would shrink; pass fixed=[{b.node.name!r}] to keep them as they are")
        self.slots = {Slot(s.owner, s.name, s.dim, self.find(s.group)) for s in self.slots}
        for n, dims in self.dims.items():
            if dims is not None:
                self.dims[n] = [self.find(g) if g is not None else None for g in dims]
        roots = sorted({self.find(g) for g in range(len(self._parent))})
        return {r: self._info[r] for r in roots}

    def searchable(self) -> list[Group]:
        """Searchable groups in graph order of their first producer."""
        return [g for g in self.groups.values() if g.searchable]

    def group_nodes(self, g: int) -> list[fx.Node]:
        return [n for n, dims in self.dims.items() if dims and g in dims]
