"""How tensor operations carry channel groups: the rules ``GraphAnalysis`` applies to each function and method
call of a traced graph (elementwise, broadcasting, reductions, reshapes, attention), and the operator tables."""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import fx, nn

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


@dataclass
class Barrier:
    """A node that cannot shrink the groups it touches: refused if any of them ends up searchable."""

    node: fx.Node
    groups: set[int]
    what: str


class TensorRules:
    """The per-operation rules of ``GraphAnalysis`` (a mixin: the union-find and the node bookkeeping are there)."""

    dims: dict[fx.Node, list[int | None] | None]
    barriers: list[Barrier]
    derived: list[tuple[int, int, int]]
    layer_norm_nodes: list[fx.Node]

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
        if i != len(ins) or j != len(outs):
            return self._opaque(node, f"reshape {tuple(src)} -> {tuple(dst)}")
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


def _flat(args: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for a in args:
        out.extend(_flat(a) if isinstance(a, (tuple, list)) else [a])
    return out
