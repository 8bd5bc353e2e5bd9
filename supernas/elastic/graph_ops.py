"""The elastic forward and the extraction of a traced model, from its ``GraphAnalysis``.

The user's modules keep their weights at their own paths (the supernet's state dict is the model's). The
elastic *program* is a ``GraphModule`` over the traced graph in which every module and weight with slots
is read through a weight-free op that narrows it to the active widths (``ChannelState``), and every
skippable block is a ``SkipBlock`` running its region or returning its entry. The program is held outside
the module tree, and reads the user's modules live (device moves, train/eval, loaded weights all apply).
``extract_graph`` copies the traced graph without the skipped regions and with sliced copies of the
modules and weights: plain ``torch.nn`` modules and ``torch`` functions, nothing elastic on its path.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .groups import CONVS, NORMS, GraphAnalysis


@dataclass
class ChannelState:
    """The active sub-network: channels per group (absent: all) and the skipped block indices."""

    width: dict[int, int] = field(default_factory=dict)
    skip: set[int] = field(default_factory=set)
    version: int = 0  # bumped whenever the widths change (the ops' cached slices follow it)


Dims = list[tuple[int, int]]  # (tensor dim, group) pairs


def narrow(t: torch.Tensor, dims: Dims, width: dict[int, int]) -> torch.Tensor:
    """``t`` narrowed to the first ``width[g]`` entries along each of its grouped dims."""
    for d, g in dims:
        k = width.get(g)
        if k is not None and k < t.shape[d]:
            t = t.narrow(d, 0, k)
    return t


def dynamic_layer_norm(x: torch.Tensor, normalized_shape: Any, weight: torch.Tensor | None = None,
                       bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """``F.layer_norm`` over the last dimension at whatever width it has now."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


class _Hidden(nn.Module):
    """A weight-free op holding references it does not own (no parameters of its own to register)."""

    def __init__(self, **refs: Any) -> None:
        super().__init__()
        for k, v in refs.items():
            object.__setattr__(self, k, v)


class ElasticLeaf(_Hidden):
    """A convolution, linear layer or normalisation of the user's model run at the active widths (what can be
    decided once is decided here: this runs once per layer per forward)."""

    def __init__(self, module: nn.Module, slots: dict[str, Dims], state: ChannelState, depthwise: bool) -> None:
        kind = ("conv" if isinstance(module, CONVS) else "linear" if isinstance(module, nn.Linear)
                else "layer_norm" if isinstance(module, nn.LayerNorm) else "embedding"
                if isinstance(module, nn.Embedding) else "batch_norm")
        conv = (F.conv1d, F.conv2d, F.conv3d)[CONVS.index(type(module))] if kind == "conv" else None
        super().__init__(module=module, width=state.width, state=state, depthwise=depthwise, kind=kind, conv=conv,
                         weight_dims=slots.get("weight", []), bias_dims=slots.get("bias", []),
                         stat_dims=slots.get("running_mean", []))

    def _sliced(self) -> tuple[Any, Any]:
        """The narrowed weight and bias; without autograd, contiguous copies kept until the widths or the
        weights change (a strided slice would slow the kernel down)."""
        m, w = self.module, self.width
        weight, bias = m.weight, getattr(m, "bias", None)
        if torch.is_grad_enabled():
            return (narrow(weight, self.weight_dims, w) if weight is not None else None,
                    narrow(bias, self.bias_dims, w) if bias is not None else None)
        key = (self.state.version, weight._version if weight is not None else None,
               weight.data_ptr() if weight is not None else None, bias._version if bias is not None else None,
               bias.data_ptr() if bias is not None else None)
        cached = self.__dict__.get("_cache")
        if cached is None or cached[0] != key:
            cached = (key, narrow(weight, self.weight_dims, w).contiguous() if weight is not None else None,
                      narrow(bias, self.bias_dims, w).contiguous() if bias is not None else None)
            object.__setattr__(self, "_cache", cached)
        return cached[1], cached[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, w = self.module, self.width
        weight, bias = self._sliced()
        if self.kind == "conv":
            groups = weight.shape[0] if self.depthwise else 1
            if m.padding_mode != "zeros":
                x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
                return self.conv(x, weight, bias, m.stride, 0, m.dilation, groups)
            return self.conv(x, weight, bias, m.stride, m.padding, m.dilation, groups)
        if self.kind == "linear":
            return F.linear(x, weight, bias)
        if self.kind == "embedding":
            return F.embedding(x, weight, m.padding_idx, m.max_norm, m.norm_type, m.scale_grad_by_freq, m.sparse)
        if self.kind == "layer_norm":
            return F.layer_norm(x, x.shape[-1:], weight, bias, m.eps)
        mean = narrow(m.running_mean, self.stat_dims, w) if m.running_mean is not None else None
        var = narrow(m.running_var, self.stat_dims, w) if m.running_var is not None else None
        return _batch_norm(m, x, weight, bias, mean, var)


def _batch_norm(m: nn.Module, x: torch.Tensor, weight: Any, bias: Any, mean: Any, var: Any) -> torch.Tensor:
    """``nn.BatchNorm*.forward`` with narrowed tensors (views: running statistics update in place)."""
    factor = 0.0 if m.momentum is None else m.momentum
    if m.training and m.track_running_stats and m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        factor = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
    use_batch = m.training or (m.running_mean is None and m.running_var is None)
    keep = not m.training or m.track_running_stats
    return F.batch_norm(x, mean if keep else None, var if keep else None, weight, bias, use_batch, factor, m.eps)


class NarrowWeight(_Hidden):
    """A weight read directly by the model's code (``self.gamma * x``), narrowed to the active widths."""

    def __init__(self, owner: nn.Module, name: str, dims: Dims, state: ChannelState) -> None:
        super().__init__(owner=owner, name=name, dims=dims, state=state)

    def forward(self) -> torch.Tensor:
        return narrow(getattr(self.owner, self.name), self.dims, self.state.width)


class SkipBlock(_Hidden):
    """A residual block: its region when active, its entry when skipped."""

    def __init__(self, body: fx.GraphModule, index: int, state: ChannelState) -> None:
        super().__init__(body=body, index=index, state=state)

    def forward(self, x: torch.Tensor, *inputs: Any) -> torch.Tensor:
        return x if self.index in self.state.skip else self.body.forward(x, *inputs)


def _slots_by_owner(analysis: GraphAnalysis) -> dict[str, dict[str, Dims]]:
    out: dict[str, dict[str, Dims]] = {}
    for s in analysis.slots:
        if analysis.groups[s.group].sliced:
            out.setdefault(s.owner, {}).setdefault(s.name, []).append((s.dim, s.group))
    return out


class _Emitter:
    """Copies traced nodes into new graphs, replacing sliced modules, weights and layer norms by elastic ops."""

    def __init__(self, gm: fx.GraphModule, analysis: GraphAnalysis, state: ChannelState) -> None:
        self.gm, self.analysis, self.state = gm, analysis, state
        self.slots = _slots_by_owner(analysis)
        self.layer_norms = {n.name for n in analysis.layer_norm_nodes}
        self.modules: dict[str, Any] = {}

    def _add(self, prefix: str, obj: Any) -> str:
        name = f"{prefix}{len(self.modules)}"
        self.modules[name] = obj
        return name

    def emit(self, graph: fx.Graph, node: fx.Node, env: dict[fx.Node, fx.Node]) -> fx.Node:
        args = fx.node.map_arg(node.args, lambda a: env[a])
        kwargs = fx.node.map_arg(node.kwargs, lambda a: env[a])
        if node.op == "call_module":
            path = str(node.target)
            module = self.gm.get_submodule(path)
            slots = self.slots.get(path)
            if slots and isinstance(module, (*CONVS, nn.Linear, nn.LayerNorm, nn.Embedding, *NORMS)):
                op = ElasticLeaf(module, slots, self.state, path in self.analysis.depthwise)
                self._add("_leaf", op)
                return graph.call_function(op.forward, args, kwargs)  # no nn.Module call machinery per layer
            self.modules[path] = module
            return graph.call_module(path, args, kwargs)
        if node.op == "get_attr":
            owner_path, _, name = str(node.target).rpartition(".")
            owner = self.gm.get_submodule(owner_path)
            dims = self.slots.get(owner_path, {}).get(name)
            if dims and isinstance(getattr(owner, name), torch.Tensor):
                return graph.call_module(self._add("_weight", NarrowWeight(owner, name, dims, self.state)))
            self.modules[owner_path or "_root"] = owner
            return graph.call_function(getattr, (graph.get_attr(owner_path or "_root"), name))
        if node.op == "call_function" and node.name in self.layer_norms:
            return graph.call_function(dynamic_layer_norm, args, kwargs)
        return graph.node_copy(node, lambda a: env[a])


def elastic_program(gm: fx.GraphModule, analysis: GraphAnalysis, state: ChannelState) -> fx.GraphModule:
    """The elastic forward of the traced model (see the module docstring)."""
    emitter = _Emitter(gm, analysis, state)
    nodes = {n.name: n for n in gm.graph.nodes}
    block_of = {name: i for i, b in enumerate(analysis.blocks) for name in b.nodes}
    graph, env = fx.Graph(), {}
    for node in gm.graph.nodes:
        i = block_of.get(node.name)
        if i is None:
            env[node] = emitter.emit(graph, node, env)
        elif node.name == analysis.blocks[i].exit:
            block = analysis.blocks[i]
            body = _block_body(emitter, nodes, block.entry, block.nodes, block.inputs)
            name = f"_block{i}"
            emitter.modules[name] = SkipBlock(body, i, state)
            env[node] = graph.call_function(emitter.modules[name].forward,
                                            (env[nodes[block.entry]], *(env[nodes[n]] for n in block.inputs)))
    return fx.GraphModule(emitter.modules, graph, class_name="ElasticProgram")


def _block_body(emitter: _Emitter, nodes: dict[str, fx.Node], entry: str, names: list[str],
                inputs: list[str]) -> fx.GraphModule:
    graph = fx.Graph()
    env = {nodes[entry]: graph.placeholder("x")}
    for k, name in enumerate(inputs):
        env[nodes[name]] = graph.placeholder(f"input{k}")
    before = dict(emitter.modules)
    for name in names:
        node = nodes[name]
        for a in node.all_input_nodes:  # weights read by the region are read inside it
            if a not in env and a.op == "get_attr":
                env[a] = emitter.emit(graph, a, env)
        env[node] = emitter.emit(graph, node, env)
    graph.output(env[nodes[names[-1]]])
    used = {k: v for k, v in emitter.modules.items() if k not in before or _targets(graph, k)}
    return fx.GraphModule(used, graph, class_name="ElasticBlock")


def _targets(graph: fx.Graph, name: str) -> bool:
    return any(n.op in ("call_module", "get_attr") and n.target == name for n in graph.nodes)


# ------------------------------------------------------------------------------ extraction
def sliced_module(module: nn.Module, slots: dict[str, Dims], width: dict[int, int], depthwise: bool) -> nn.Module:
    """A copy of ``module`` with its grouped tensors cut to ``width`` and its size attributes to match."""
    m = copy.deepcopy(module)
    for name, dims in slots.items():
        t = getattr(module, name)
        if t is None:
            continue
        cut = narrow(t.detach(), dims, width).clone()
        if isinstance(t, nn.Parameter):
            setattr(m, name, nn.Parameter(cut, requires_grad=t.requires_grad))
        else:
            m._buffers[name] = cut
    if isinstance(m, CONVS):
        m.out_channels, m.in_channels = m.weight.shape[0], m.weight.shape[1] * (m.weight.shape[0] if depthwise else 1)
        if depthwise:
            m.groups = m.weight.shape[0]
    elif isinstance(m, nn.Linear):
        m.out_features, m.in_features = m.weight.shape
    elif isinstance(m, NORMS):
        m.num_features = m.running_mean.shape[0] if m.running_mean is not None else m.weight.shape[0]
    elif isinstance(m, nn.LayerNorm):
        m.normalized_shape = (m.weight.shape[0],) if m.weight is not None else m.normalized_shape
    elif isinstance(m, nn.Embedding):
        m.embedding_dim = m.weight.shape[1]
    return m


IDEMPOTENT = {F.relu: "relu", torch.relu: "relu", "relu": "relu", nn.ReLU: "relu", F.relu6: "relu6",
              nn.ReLU6: "relu6"}


def _activation(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """``relu``/``relu6`` when ``node`` applies that idempotent activation to one tensor, else None."""
    if node.op == "call_module":
        return IDEMPOTENT.get(type(gm.get_submodule(str(node.target))))  # type: ignore[call-overload]
    if node.op in ("call_function", "call_method") and len(node.all_input_nodes) == 1:
        try:
            return IDEMPOTENT.get(node.target)  # type: ignore[call-overload]
        except TypeError:
            return None
    return None


def extract_graph(gm: fx.GraphModule, analysis: GraphAnalysis, state: ChannelState) -> fx.GraphModule:
    """The sub-network ``state`` as a plain ``GraphModule`` (weights copied, skipped blocks removed)."""
    slots = _slots_by_owner(analysis)
    skipped = {name for i in state.skip for name in analysis.blocks[i].nodes}
    exits = {analysis.blocks[i].exit: analysis.blocks[i].entry for i in state.skip}
    nodes = {n.name: n for n in gm.graph.nodes}
    layer_norms = {n.name for n in analysis.layer_norm_nodes}
    graph, env, root = fx.Graph(), {}, {}
    for node in gm.graph.nodes:
        if node.name in exits:
            env[node] = env[nodes[exits[node.name]]]
            continue
        if node.name in skipped:
            continue
        source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        if source is not None and source.name in exits and _activation(gm, node) is not None and \
                _activation(gm, nodes[exits[source.name]]) == _activation(gm, node):
            env[node] = env[source]  # relu(relu(x)) after a skipped block: the activation is already applied
            continue
        new = graph.node_copy(node, lambda a: env[a])
        env[node] = new
        if node.op == "call_module":
            path = str(node.target)
            module = gm.get_submodule(path)
            root[path] = (sliced_module(module, slots[path], state.width, path in analysis.depthwise)
                          if path in slots else copy.deepcopy(module))
        elif node.op == "get_attr":
            owner_path, _, name = str(node.target).rpartition(".")
            t = getattr(gm.get_submodule(owner_path), name)
            dims = slots.get(owner_path, {}).get(name)
            if isinstance(t, torch.Tensor):
                cut = (narrow(t.detach(), dims, state.width) if dims else t.detach()).clone()
                root[str(node.target)] = nn.Parameter(cut, t.requires_grad) if isinstance(t, nn.Parameter) else cut
            else:
                root[str(node.target)] = copy.deepcopy(t)
        elif node.name in layer_norms:
            width = node.meta["value"].shape[-1]
            k = state.width.get(analysis.dims[node][-1], width) if analysis.dims.get(node) else width
            new.args = (new.args[0], (k,), *new.args[2:])
    names = _flat_names(graph, root)
    sub = fx.GraphModule({names[k]: v for k, v in root.items()}, graph, class_name="Subnetwork")
    sub.graph.eliminate_dead_code()
    sub.graph.lint()
    sub.delete_all_unused_submodules()
    sub.recompile()
    keys = OriginalNames({flat: path for path, flat in names.items()})
    sub.register_state_dict_post_hook(keys)
    sub.register_load_state_dict_pre_hook(keys.to_flat)
    return sub


def _flat_names(graph: fx.Graph, root: dict[str, Any]) -> dict[str, str]:
    """One attribute per module and weight (``model.layer1.0.conv1`` -> ``model_layer1_0_conv1``): the generated
    forward then reads ``self.<name>`` once instead of walking the hierarchy (3-4 % of a small model's eager
    latency); the graph's targets are renamed to match."""
    names: dict[str, str] = {}
    for path in root:
        flat = path.replace(".", "_")
        while flat in names.values():
            flat += "_"
        names[path] = flat
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr"):
            node.target = names[str(node.target)]
    return names


class OriginalNames:
    """State-dict hooks of an extracted sub-network: its keys are the user's model's own (``model.layer1.0.
    conv1.weight``) although its attributes are flat; loading accepts those keys (and the flat ones)."""

    def __init__(self, original: dict[str, str]) -> None:
        self.original = original
        self.flat = {v: k for k, v in original.items()}

    def __call__(self, module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
        items = list(state_dict.items())
        state_dict.clear()
        for key, value in items:
            rest = key[len(prefix):] if key.startswith(prefix) else None
            head, dot, tail = (rest or "").partition(".")
            name = self.original.get(head) if rest is not None else None
            state_dict[prefix + name + dot + tail if name is not None else key] = value

    def to_flat(self, module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            owner, _, leaf = rest.rpartition(".")
            if rest in self.flat:
                state_dict[prefix + self.flat[rest]] = state_dict.pop(key)
            elif owner in self.flat:
                state_dict[prefix + self.flat[owner] + "." + leaf] = state_dict.pop(key)

