"""Models as ONNX graphs: in-memory export, ONNX Runtime sessions, and :class:`OnnxModel` — a deployed graph
(an INT8 sub-network, say) that every objective measures like a PyTorch sub-network.

An ``OnnxModel`` is an ``nn.Module`` whose ``forward`` runs the graph in ONNX Runtime (CPU provider), so
accuracy is evaluated by the same loop as for PyTorch models; ``latency_ms`` on an ``onnxruntime`` target
times the graph itself and ``bytes`` counts its initialisers (weights, scales, zero points) at their stored
types. MACs and parameters are counted on the PyTorch model it came from (``float_model``).
"""
from __future__ import annotations

import io
import warnings
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import SupernasError


class NonFiniteOutput(SupernasError):
    """A deployed model produced NaN or infinite outputs (e.g. an INT8 model whose ranges collapsed)."""


def onnx_bytes(model: nn.Module, example: torch.Tensor, opset: int | None = None,
               dynamic: Mapping[int, str] | None = None) -> bytes:
    """The model exported to ONNX in memory (eval mode, the model's own mode restored): the TorchScript
    exporter, whose node names carry the module path (``/blocks/blocks.0/conv/Conv``), falling back to the
    dynamo exporter. ``dynamic`` ``{axis: name}`` keeps those input axes dynamic (axis 0 of the output too when the
    input's is: the batch)."""
    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    dynamic = dict(dynamic or {})
    axes = {"input": dynamic, **({"output": {0: dynamic[0]}} if 0 in dynamic else {})} if dynamic else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=["output"], dynamic_axes=axes)
            except Exception:  # noqa: BLE001 - models the TorchScript exporter cannot handle
                buf = io.BytesIO()
                shapes = ({ax: torch.export.Dim(n, min=1, max=1 << 16) for ax, n in dynamic.items()},) if dynamic else None
                torch.onnx.export(model, (example,), buf, dynamo=True, opset_version=opset,
                                  input_names=["input"], output_names=["output"], dynamic_shapes=shapes)
    finally:
        model.train(was_training)
    return buf.getvalue()


def ort_session(model_bytes: bytes, threads: int = 1, cpu_only: bool = False, **options: Any):
    """An ONNX Runtime session with ``threads`` intra-op threads: CUDA execution provider when present (and
    not ``cpu_only``), else CPU; ``options`` set further ``SessionOptions`` attributes (e.g.
    ``enable_profiling=True``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    for name, value in options.items():
        setattr(opts, name, value)
    wanted = ("CPUExecutionProvider",) if cpu_only else ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()]
    return ort.InferenceSession(model_bytes, opts, providers=providers)


def initializer_bytes(model_bytes: bytes) -> int:
    """Bytes of a graph's initialisers (weights, biases, scales, zero points) at their stored types."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes).graph
    return int(sum(numpy_helper.to_array(t).nbytes for t in graph.initializer))


class OnnxModel(nn.Module):
    """A deployed ONNX graph (``model_bytes``) run by ONNX Runtime on the CPU with ``threads`` threads.

    ``precision`` names what it is (``fp32``, ``int8``, ``mixed``); ``float_model`` is the PyTorch module
    it was made from (MACs and parameters are counted there); ``info`` holds how it was made (the
    quantization settings, the blocks kept in FP32). Outputs with NaN or inf raise :class:`NonFiniteOutput`.
    Picklable: the session is rebuilt on demand."""

    def __init__(self, model_bytes: bytes, float_model: nn.Module, precision: str = "fp32", threads: int = 1,
                 info: dict[str, Any] | None = None, input_adapter: nn.Module | None = None) -> None:
        super().__init__()
        self.model_bytes, self.precision, self.threads = model_bytes, precision, int(threads)
        self.input_adapter = input_adapter  # applied to inputs before the graph (a resolution's resize)
        self.info = dict(info or {})
        self.__dict__["float_model"] = float_model  # not a submodule: its weights are not this model's
        self._session: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None}

    @property
    def session(self):
        if self._session is None:
            self._session = ort_session(self.model_bytes, self.threads, cpu_only=True)
        return self._session

    @property
    def weight_bytes(self) -> int:
        return initializer_bytes(self.model_bytes)

    def run(self, x: np.ndarray) -> np.ndarray:
        sess = self.session
        out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        if not np.isfinite(out).all():
            raise NonFiniteOutput(f"the {self.precision} model gives non-finite outputs "
                                  f"({int((~np.isfinite(out)).sum())} of {out.size} values)")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_adapter is not None:
            x = self.input_adapter(x)
        return torch.from_numpy(self.run(x.detach().cpu().numpy()))

    def extra_repr(self) -> str:
        return f"precision={self.precision}, bytes={len(self.model_bytes)}"
