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

import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from .trace import where

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                       nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Mish, nn.PReLU, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                       nn.Identity, nn.Softmax, nn.LogSoftmax)
SPATIAL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                   nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                   nn.AdaptiveMaxPool2d, nn.Upsample)
UNARY_FUNCTIONS = {torch.relu, F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, torch.sigmoid,
                   F.sigmoid, torch.tanh, F.tanh, F.dropout, F.leaky_relu, F.elu, F.softplus, F.mish,
                   torch.exp, torch.sqrt, torch.rsqrt, torch.abs, torch.neg, operator.neg, torch.erf,
                   torch.clamp, F.softmax, F.log_softmax, torch.softmax}
UNARY_METHODS = {"relu", "sigmoid", "tanh", "exp", "sqrt", "rsqrt", "abs", "neg", "erf", "clamp", "contiguous",
                 "clone", "detach", "float", "half", "double", "to", "type", "type_as", "softmax", "relu_",
                 "sigmoid_", "clamp_", "log_softmax", "cos", "sin", "pow", "square"}
BINARY_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul,
                    operator.isub, operator.itruediv, operator.pow, torch.add, torch.sub, torch.mul, torch.div,
                    torch.pow, torch.maximum, torch.minimum, torch.where}
BINARY_METHODS = {"add", "sub", "mul", "div", "pow", "add_", "mul_", "sub_", "div_", "masked_fill",
                  "masked_fill_", "expand_as"}
ADDS = {operator.add, operator.iadd, torch.add, "add", "add_"}
REDUCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin"}
SPATIAL_FUNCTIONS = {F.adaptive_avg_pool2d, F.adaptive_avg_pool1d, F.avg_pool2d, F.max_pool2d, F.interpolate,
                     F.adaptive_max_pool2d}
NON_TENSOR_METHODS = {"size", "dim", "numel"}
MATMULS = {torch.matmul, operator.matmul, torch.bmm, "matmul", "bmm"}


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


@dataclass
class Block:
    """A skippable residual region: ``exit`` computes ``entry + f(entry)``; ``nodes`` are f's nodes and exit."""

    entry: str
    exit: str
    nodes: list[str]
    stage: int = 0
    inputs: list[str] = field(default_factory=list)  # tensors from before the block that its region reads


@dataclass
class Barrier:
    """A node that cannot shrink the groups it touches: refused if any of them ends up searchable."""

    node: fx.Node
    groups: set[int]
    what: str


class GraphAnalysis:
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
            self._visit(node)
        self.groups = self._finish()
        self.blocks = find_blocks(gm, self)

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

    def _spatial(self, node: fx.Node, x: list[int | None]) -> list[int | None]:
        value = node.meta["value"]
        return x[:2] + [self._new(s, fixed=f"spatial size of {node.name}") if s > 1 else None for s in value.shape[2:]]

    def _function(self, node: fx.Node) -> None:
        t, value = node.target, node.meta.get("value")
        if not isinstance(value, torch.Tensor):
            if node.op == "call_method" and t in NON_TENSOR_METHODS or t is getattr or t is operator.getitem \
                    and not isinstance(getattr(node.args[0], "meta", {}).get("value"), torch.Tensor):
                self.dims[node] = None  # sizes, shapes and entries of tuples
                return
            return self._opaque(node, f"{node.op} {getattr(t, '__name__', t)} returning {type(value).__name__}")
        x = self._in(node)
        if t in UNARY_FUNCTIONS or (node.op == "call_method" and t in UNARY_METHODS):
            self.dims[node] = x if len(x) == value.dim() else self._fresh_dims(value, fixed=f"output of {node.name}")
        elif t in BINARY_FUNCTIONS or (node.op == "call_method" and t in BINARY_METHODS):
            self._broadcast(node)
        elif t in REDUCTIONS:
            self._reduce(node, x)
        elif t in SPATIAL_FUNCTIONS:
            self.dims[node] = self._spatial(node, x)
        elif t in (torch.flatten, "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self._flatten(node, x, start, end)
        elif t in (torch.permute, "permute"):
            order = node.args[1:] if not isinstance(node.args[1], (tuple, list)) else node.args[1]
            self.dims[node] = [x[int(d) % len(x)] for d in order]
        elif t in (torch.transpose, "transpose"):
            a, b = (int(d) % len(x) for d in node.args[1:3])
            x[a], x[b] = x[b], x[a]
            self.dims[node] = x
        elif t in ("view", "reshape", torch.reshape, "unsqueeze", "squeeze", torch.unsqueeze, torch.squeeze):
            self._reshape(node, x)
        elif t is operator.getitem:
            self._getitem(node, x)
        elif t is F.layer_norm:
            self._layer_norm(node, x)
        elif t is torch.cat:
            self._cat(node)
        elif t in ("expand", torch.Tensor.expand):
            self._expand(node, x)
        elif t in MATMULS:
            self._matmul(node)
        elif t is F.scaled_dot_product_attention:
            self._attention(node)
        else:
            self._opaque(node, f"{node.op} {getattr(t, '__name__', t)}")

    def _broadcast(self, node: fx.Node) -> None:
        out = node.meta["value"]
        dims: list[int | None] = [None] * out.dim()
        for a in self._tensor_args(node):
            ad, shape = self.dims[a], a.meta["value"].shape
            for k in range(1, len(shape) + 1):  # aligned from the right, as broadcasting does
                if shape[-k] > 1:
                    dims[-k] = self._union(dims[-k], ad[-k])  # type: ignore[index]
        for k, s in enumerate(out.shape):
            if s > 1 and dims[k] is None:
                dims[k] = self._new(s, fixed=f"output of {node.name}")
        self.dims[node] = dims

    def _reduce(self, node: fx.Node, x: list[int | None]) -> None:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if dim is None:
            self.dims[node] = []
            return
        reduced = {int(d) % len(x) for d in (dim if isinstance(dim, (tuple, list)) else [dim])}
        self.dims[node] = [None if d in reduced else g for d, g in enumerate(x) if keep or d not in reduced]

    def _flatten(self, node: fx.Node, x: list[int | None], start: int, end: int) -> None:
        start, end = start % len(x), end % len(x)
        merged = [g for g in x[start:end + 1] if g is not None]
        if len(merged) > 1:  # spatial dims into one: fine; channels with anything: refused if they shrink
            self.barriers.append(Barrier(node, set(merged), "flatten of channels with other dimensions"))
            size = node.meta["value"].shape[start]
            merged = [self._new(size, fixed=f"flattened at {node.name}")]
        self.dims[node] = x[:start] + [merged[0] if merged else None] + x[end + 1:]

    def _reshape(self, node: fx.Node, x: list[int | None]) -> None:
        """1:1 dims keep their group; a dim split into (heads, head size) makes its group *derived* from a new
        heads group (width = heads x head size, the head size fixed), and such a pair merged back makes a new
        derived group (attention's split and merge of heads); any other regrouping is opaque."""
        src, dst = node.args[0].meta["value"].shape, node.meta["value"].shape  # type: ignore[union-attr]
        ins = [(g, s) for g, s in zip(x, src) if s > 1]
        outs = [s for s in dst if s > 1]
        mapped: list[int | None] = []
        i = j = 0
        while i < len(ins) and j < len(outs):
            a, b = [ins[i]], [outs[j]]
            pa, pb = ins[i][1], outs[j]
            while pa != pb:
                if pa < pb and i + len(a) < len(ins):
                    a.append(ins[i + len(a)])
                    pa *= a[-1][1]
                elif pb < pa and j + len(b) < len(outs):
                    b.append(outs[j + len(b)])
                    pb *= b[-1]
                else:
                    return self._opaque(node, f"reshape {tuple(src)} -> {tuple(dst)}")
            if len(a) == 1 and len(b) == 1:
                mapped.append(a[0][0])
            elif len(a) == 1:  # split: (heads, head size, ...)
                heads = self._new(b[0], kind="heads")
                mapped += [heads] + [self._new(s, fixed=f"head size at {node.name}") for s in b[1:]]
                if a[0][0] is not None:
                    self.derived.append((a[0][0], heads, pb // b[0]))
            elif len(b) == 1:  # merge: heads x head size
                merged = self._new(b[0])
                for g, _ in a[1:]:
                    self._fix(g, f"merged into one dimension at {node.name}")
                if a[0][0] is not None:
                    self.derived.append((merged, a[0][0], pb // a[0][1]))
                mapped.append(merged)
            else:
                return self._opaque(node, f"reshape {tuple(src)} -> {tuple(dst)}")
            i, j = i + len(a), j + len(b)
        literals = [v for v in _flat(node.args[1:]) if isinstance(v, int) and v > 1]
        for g, s in ins:
            if g is not None and s in literals and g in mapped:  # a hard-coded size would not follow a width
                self.barriers.append(Barrier(node, {g}, f"reshape to a fixed size {s}"))
        it = iter(mapped)
        self.dims[node] = [next(it) if s > 1 else None for s in dst]

    def _cat(self, node: fx.Node) -> None:
        parts = [a for a in node.args[0] if isinstance(a, fx.Node)]  # type: ignore[union-attr]
        out = node.meta["value"]
        d = int(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)) % out.dim()
        dims: list[int | None] = [None] * out.dim()
        for a in parts:
            for k, g in enumerate(self.dims.get(a) or []):
                if k == d:
                    if g is not None:
                        self.barriers.append(Barrier(node, {g}, "concatenation along channels"))
                elif a.meta["value"].shape[k] > 1:
                    dims[k] = self._union(dims[k], g)
        self.dims[node] = [g if g is not None or s == 1 else self._new(s, fixed=f"output of {node.name}")
                           for g, s in zip(dims, out.shape)]

    def _expand(self, node: fx.Node, x: list[int | None]) -> None:
        src, out = node.args[0].meta["value"].shape, node.meta["value"].shape  # type: ignore[union-attr]
        dims: list[int | None] = []
        for k, s in enumerate(out):
            j = k - (len(out) - len(src))
            same = j >= 0 and src[j] == s
            dims.append(x[j] if same else self._new(s, fixed=f"expanded at {node.name}") if s > 1 else None)
        self.dims[node] = dims

    def _matmul(self, node: fx.Node) -> None:
        a, b = node.args[0], node.args[1]
        da, db = self.dims.get(a), self.dims.get(b)
        if not (isinstance(a, fx.Node) and isinstance(b, fx.Node) and da and db and len(da) >= 2 and len(db) >= 2):
            return self._opaque(node, "matmul of vectors")
        self._union(da[-1], db[-2])
        if b.op == "get_attr" and db[-1] is not None:  # a weight: the product's columns are produced here
            self._info[self.find(db[-1])].producers.append(str(b.target))
        out = node.meta["value"]
        batch = [None] * (out.dim() - 2)
        for dd, t in ((da, a), (db, b)):
            shape = t.meta["value"].shape
            for k in range(3, len(shape) + 1):
                if shape[-k] > 1:
                    batch[-k + 2] = self._union(batch[-k + 2], dd[-k])
        self.dims[node] = batch + [da[-2], db[-1]]

    def _attention(self, node: fx.Node) -> None:
        names = ("query", "key", "value")
        q, k, v = (node.args[i] if len(node.args) > i else node.kwargs.get(n) for i, n in enumerate(names))
        dq, dk, dv = (self.dims.get(t) for t in (q, k, v))
        if not (dq and dk and dv) or len(dq) != 4:
            return self._opaque(node, "attention over inputs that are not (batch, heads, length, size)")
        self._union(self._union(dq[-3], dk[-3]), dv[-3])  # heads
        self._union(dq[-1], dk[-1])  # the size queries and keys are compared in
        self._union(dk[-2], dv[-2])
        self.dims[node] = dq[:-1] + dv[-1:]

    def _getitem(self, node: fx.Node, x: list[int | None]) -> None:
        index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
        if any(i is Ellipsis for i in index):
            k = index.index(Ellipsis)
            fill = len(x) - sum(1 for i in index if i is not None and i is not Ellipsis)
            index = index[:k] + (slice(None),) * fill + index[k + 1:]
        out: list[int | None] = []
        d = 0
        for i in index:
            if i is None:
                out.append(None)
                continue
            g = x[d] if d < len(x) else None
            if isinstance(i, slice) and i == slice(None):
                out.append(g)
            elif isinstance(i, (int, slice)):
                if g is not None:
                    self.barriers.append(Barrier(node, {g}, "indexing into channels"))
                if isinstance(i, slice):
                    s = node.meta["value"].shape[len(out)]
                    out.append(self._new(s, fixed=f"slice at {node.name}") if s > 1 else None)
            else:
                return self._opaque(node, "indexing with tensors")
            d += 1
        self.dims[node] = out + x[d:]

    def _layer_norm(self, node: fx.Node, x: list[int | None]) -> None:
        shape = node.args[1] if len(node.args) > 1 else node.kwargs["normalized_shape"]
        if len(shape) != 1:
            return self._opaque(node, "layer_norm over several dimensions")
        for a in list(node.args[2:4]) + [node.kwargs.get("weight"), node.kwargs.get("bias")]:
            if isinstance(a, fx.Node) and self.dims.get(a):
                self._union(self.dims[a][0], x[-1])  # type: ignore[index]
        self.layer_norm_nodes.append(node)
        self.dims[node] = x

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


def _flat(args: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for a in args:
        out.extend(_flat(a) if isinstance(a, (tuple, list)) else [a])
    return out


def _alias_root(node: fx.Node, gm: fx.GraphModule) -> tuple[fx.Node, list[fx.Node]]:
    """Follow ``nn.Identity`` calls back to the tensor they return (a residual's skip path)."""
    chain = []
    while node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), nn.Identity):
        chain.append(node)
        node = node.args[0]  # type: ignore[assignment]
    return node, chain


def find_blocks(gm: fx.GraphModule, analysis: GraphAnalysis) -> list[Block]:
    """Residual regions ``exit = entry + f(entry)`` that can be skipped, in graph order, non-overlapping;
    consecutive ones joined by activations only form one stage (numbered from 0)."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    taken: set[fx.Node] = set()
    blocks: list[Block] = []
    for a in gm.graph.nodes:
        if a.target not in ADDS or a.op not in ("call_function", "call_method") or len(a.args) < 2:
            continue
        p, q = a.args[0], a.args[1]
        if not (isinstance(p, fx.Node) and isinstance(q, fx.Node)):
            continue
        for short, long in ((p, q), (q, p)):
            region = _region(gm, analysis, a, short, long)
            if region is not None and not (set(region[1]) & taken):
                entry, nodes, extras = region
                taken |= set(nodes)
                blocks.append(Block(entry.name, a.name, [n.name for n in sorted(nodes, key=order.get)],
                                    inputs=[n.name for n in sorted(extras, key=order.get)]))
                break
    by_name = {n.name: n for n in gm.graph.nodes}
    stage = -1
    for i, b in enumerate(blocks):
        if i == 0 or not _chained(by_name[blocks[i - 1].exit], by_name[b.entry], gm):
            stage += 1
        b.stage = stage
    return blocks


def _region(gm: fx.GraphModule, analysis: GraphAnalysis, exit_: fx.Node, short: fx.Node,
            long: fx.Node) -> tuple[fx.Node, list[fx.Node], list[fx.Node]] | None:
    """(entry, region nodes, other inputs) when ``exit_ = short + long`` skips a region computed from ``short``'s
    alias root: the region is what lies between the entry and ``long``, used nowhere else; it may also read
    tensors computed before it (attention masks, rotary tables), which become extra inputs of the block."""
    entry, chain = _alias_root(short, gm)
    value = exit_.meta.get("value")
    if not isinstance(value, torch.Tensor) or not isinstance(entry.meta.get("value"), torch.Tensor):
        return None
    if tuple(entry.meta["value"].shape) != tuple(value.shape):
        return None
    below, todo = set(), [u for u in entry.users if not _reads_metadata(u)]  # masks made from its shape: outside
    while todo:
        n = todo.pop()
        if n in below:
            continue
        below.add(n)
        todo.extend(n.users)
    if long not in below:
        return None
    body, todo = set(), [long]
    while todo:
        n = todo.pop()
        if n in body or n is entry or n not in below:
            continue
        body.add(n)
        todo.extend(n.all_input_nodes)
    if not any(n.op == "call_module" for n in body):
        return None
    nodes = body | set(chain) | {exit_}
    inside = nodes | {entry}
    extras: list[fx.Node] = []
    for n in body | set(chain):
        if any(u not in nodes for u in n.users):
            return None
        extras += [i for i in n.all_input_nodes if i not in inside and i.op != "get_attr" and i not in extras]
    return entry, list(nodes), extras


def _reads_metadata(node: fx.Node) -> bool:
    """``x.shape``, ``x.size()``, ``x.dtype``, ``x.device``: a use of a tensor that is not its values."""
    return (node.op == "call_method" and node.target in ("size", "dim")) or (
        node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "dtype", "device", "ndim"))


def _chained(prev_exit: fx.Node, entry: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether ``entry`` is ``prev_exit`` or follows it through single-input, weight-free elementwise ops."""
    n = entry
    for _ in range(8):
        if n is prev_exit:
            return True
        inputs = n.all_input_nodes
        if len(inputs) != 1:
            return False
        if n.op == "call_module" and not isinstance(gm.get_submodule(str(n.target)), ELEMENTWISE_MODULES):
            return False
        if n.op in ("call_function", "call_method") and not (n.target in UNARY_FUNCTIONS or n.target in UNARY_METHODS):
            return False
        n = inputs[0]
    return False
