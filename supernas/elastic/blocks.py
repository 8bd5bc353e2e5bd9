"""Skippable residual blocks of a traced graph: regions ``exit = entry + f(entry)`` whose nodes are used nowhere
else, grouped into stages of consecutive blocks (``make_elastic``'s depth choices)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx, nn

from .tensor_rules import ADDS, ELEMENTWISE_MODULES, UNARY_FUNCTIONS, UNARY_METHODS
from .trace import reads_metadata


@dataclass
class Block:
    """A skippable residual region: ``exit`` computes ``entry + f(entry)``; ``nodes`` are f's nodes and exit."""

    entry: str
    exit: str
    nodes: list[str]
    stage: int = 0
    inputs: list[str] = field(default_factory=list)  # tensors from before the block that its region reads


def _alias_root(node: fx.Node, gm: fx.GraphModule) -> tuple[fx.Node, list[fx.Node]]:
    """Follow ``nn.Identity`` calls back to the tensor they return (a residual's skip path)."""
    chain = []
    while node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), nn.Identity):
        chain.append(node)
        node = node.args[0]  # type: ignore[assignment]
    return node, chain


def find_blocks(gm: fx.GraphModule) -> list[Block]:
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
            region = _region(gm, a, short, long)
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


def _region(gm: fx.GraphModule, exit_: fx.Node, short: fx.Node,
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
    below, todo = set(), [u for u in entry.users if not reads_metadata(u)]  # masks made from its shape: outside
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
