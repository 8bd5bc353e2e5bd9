"""Tracing a user's model into a ``torch.fx`` graph whose every node also holds its value on example inputs.

``torch.fx.symbolic_trace`` refuses Python control flow on tensors (``if x.shape[1] != self.channels``),
which Hugging Face models and many user models have. The tracer here records the graph symbolically *and*
runs every recorded operation on the example inputs as it goes (``node.meta["value"]``), so a branch on a
shape or a configuration value is taken as it would be on those inputs and the shapes of every tensor are
known. A branch on tensor *values* (data-dependent control flow) is refused, naming the line of the model's
code. The model is traced in eval mode under ``torch.no_grad``; its output may be a tensor, a tuple (the
first entry is kept) or a mapping/``ModelOutput`` with ``logits``.
"""
from __future__ import annotations

import inspect
import operator
import traceback
from typing import Any, Sequence

import torch
from torch import fx, nn
from torch.fx.node import map_aggregate

from ..errors import ConfigError


class TracedRoot(nn.Module):
    """The traced root: the user's model as ``self.model`` and its output reduced to one tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Any) -> Any:
        out = self.model(*inputs)
        if isinstance(out, fx.Proxy):
            return out
        if isinstance(out, dict) or hasattr(out, "logits"):
            return out["logits"]
        if isinstance(out, (tuple, list)):
            return out[0]
        return out


def _value(a: Any) -> Any:
    if isinstance(a, fx.Proxy):
        return a.node.meta.get("value")
    if isinstance(a, fx.Node):
        return a.meta.get("value")
    return a


class DataDependentError(ConfigError):
    """The model branches on tensor values, which one static graph cannot hold."""


class ConcreteTracer(fx.Tracer):
    """``fx.Tracer`` that evaluates each recorded node on the example inputs (see the module docstring)."""

    def __init__(self, inputs: dict[str, Any], defaults: dict[str, Any]) -> None:
        super().__init__()
        self.record_stack_traces = True
        self.inputs, self.defaults = inputs, defaults
        self._concrete = False  # True while a node's value is computed: no proxies may be made then
        self._root_module: nn.Module | None = None
        self._own_modules: set[int] = set()

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        self._root_module = root
        self._own_modules = {id(m) for m in root.modules()} if isinstance(root, nn.Module) else set()
        return super().trace(root, concrete_args)

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, name: str | None = None,
                     type_expr: Any = None, proxy_factory_fn: Any = None) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        self._concrete = True
        try:
            proxy.node.meta["value"] = self._evaluate(kind, target, map_aggregate(args, _value),
                                                      map_aggregate(kwargs, _value))
        finally:
            self._concrete = False
        return proxy

    def _evaluate(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
        root = self._root_module
        assert root is not None
        if kind == "placeholder":
            name = str(target).lstrip("*")
            if name in self.inputs:
                return self.inputs[name]
            return self.defaults.get(name, {} if str(target).startswith("**") else ())
        if kind == "get_attr":
            return operator.attrgetter(target)(root)
        if kind == "call_module":
            return root.get_submodule(target)(*args, **kwargs)
        if kind == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        if kind == "call_function":
            if getattr(target, "__name__", "") in ("_assert_is_none", "_assert"):
                return None  # fx's own guards for arguments fixed at trace time
            return target(*args, **kwargs)
        return None

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if self._concrete or id(m) not in self._own_modules:
            # a module the model does not hold (a function wrapped as one, as Hugging Face's kernel hub does
            # for rotary embeddings) is traced through
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._concrete:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def to_bool(self, obj: fx.Proxy) -> bool:
        value = obj.node.meta.get("value")
        if isinstance(value, torch.Tensor) and not _is_shape_derived(obj.node):
            at = _user_frame(traceback.extract_stack())
            raise DataDependentError(f"the model branches on tensor values {at}; one static graph cannot hold "
                                     f"that: compute the condition from shapes or the configuration")
        return bool(value)

    def iter(self, obj: fx.Proxy) -> Any:
        return iter([obj[i] for i in range(len(obj.node.meta["value"]))])


def reads_metadata(node: fx.Node) -> bool:
    """``x.shape``, ``x.size()``, ``x.dim()``, ``x.dtype``, ``x.device``: a use of a tensor that is not its values."""
    return (node.op == "call_method" and node.target in ("size", "dim")) or (
        node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "dtype", "device", "ndim"))


def _is_shape_derived(node: fx.Node) -> bool:
    """Whether a node's value depends on tensors only through their shapes (``x.shape[1] != 3``)."""
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if reads_metadata(n):
            continue
        if n.op in ("placeholder", "get_attr", "call_module"):
            return False
        todo.extend(n.all_input_nodes)
    return True


def _user_frame(frames: Sequence[traceback.FrameSummary]) -> str:
    """``at file.py:42 (in forward)`` for the innermost frame of the model's own code (not torch's, not ours)."""
    own = [f for f in frames if "/torch/" not in f.filename and "/supernas/elastic/" not in f.filename]
    if not own:
        return ""
    f = own[-1]
    return f"at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} (in {f.name})"


def where(node: fx.Node) -> str:
    """Where in the model's code ``node`` comes from (``at model.py:42 (in forward)``), from its stack trace."""
    frames = []
    lines = (node.stack_trace or "").splitlines()
    for line in lines:
        line = line.strip()
        if line.startswith("File "):
            path, _, rest = line[5:].replace('"', "").partition(", line ")
            lineno, _, func = rest.partition(", in ")
            frames.append(traceback.FrameSummary(path, int(lineno) if lineno.isdigit() else 0, func))
    return _user_frame(frames) or f"at node {node.name!r}"


def trace_model(model: nn.Module, example_inputs: Sequence[Any]) -> fx.GraphModule:
    """A ``GraphModule`` of ``TracedRoot(model)`` with every node's value on ``example_inputs``
    (``node.meta["value"]``) and ``model`` itself as its ``model``; the model is put in eval mode. Any
    tracing failure is one ConfigError."""
    params = list(inspect.signature(model.forward).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(example_inputs) > len(positional):
        raise ConfigError(f"{type(model).__name__}.forward takes {len(positional)} positional inputs, "
                          f"got {len(example_inputs)} example inputs")
    names = [f"input{i}" for i in range(len(example_inputs))]
    inputs = dict(zip(names, example_inputs))
    root = _root_class(names)(model.eval())
    tracer = ConcreteTracer(inputs, {})
    length = fx.Proxy.__len__
    fx.Proxy.__len__ = lambda self: len(self.node.meta["value"])  # type: ignore[assignment]
    try:
        with torch.no_grad():
            graph = tracer.trace(root)
    except ConfigError:  # DataDependentError and the tracer's own one-line errors
        raise
    except Exception as e:  # noqa: BLE001 - whatever the user's forward raises while traced
        at = _user_frame(traceback.extract_tb(e.__traceback__))
        at = f" {at}" if at else ""
        first = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(f"cannot trace {type(model).__name__}{at}: {first}") from e
    finally:
        fx.Proxy.__len__ = length  # type: ignore[method-assign]
    for node in reversed(list(graph.nodes)):  # shape checks whose branch was taken at trace time
        if node.op in ("call_function", "call_method") and not node.users and \
                not isinstance(node.meta.get("value"), torch.Tensor):
            graph.erase_node(node)
    gm = fx.GraphModule(root, graph, class_name=f"Traced{type(model).__name__}")
    gm.model = model  # the user's own module (GraphModule made a skeleton of it): weights and buffers read live
    return gm


def _root_class(names: list[str]) -> type[TracedRoot]:
    """``TracedRoot`` whose forward takes exactly the example inputs by name (fx makes one placeholder
    per argument of the class's forward)."""
    args = ", ".join(names)
    src = f"def forward(self, {args}):\n    return TracedRoot.forward(self, {args})\n"
    scope: dict[str, Any] = {"TracedRoot": TracedRoot}
    exec(src, scope)  # noqa: S102 - a fixed template over generated argument names
    return type("TracedRoot", (TracedRoot,), {"forward": scope["forward"]})
