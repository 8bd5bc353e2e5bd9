"""Exact cost counts of a static model: multiply-accumulates, parameters, bytes.

MACs are read from PyTorch's own operator-level counter (``torch.utils.flop_counter``), which sees
every convolution, linear layer and matrix product on the traced path (FLOPs = 2 x MACs). Like the
published figures (ResNet-50: 4.1 G, MobileNetV3-Large: 217 M), they leave out element-wise work
(normalisation, activations, pooling, additions).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .onnx_model import OnnxModel


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Sequence[int] | None = None,
               example: torch.Tensor | None = None) -> int:
    """MACs of one forward pass at ``input_shape`` (or on ``example``)."""
    if example is None:
        if input_shape is None:
            raise ValueError("give input_shape or example")
        example = torch.zeros(tuple(input_shape))
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def count_bytes(model: nn.Module) -> int:
    """Bytes of the model's state: parameters and persistent buffers, at their stored dtypes (for an
    :class:`~supernas.measure.onnx_model.OnnxModel`, its graph's initialisers)."""
    if isinstance(model, OnnxModel):
        return model.weight_bytes
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def count(model: nn.Module, input_shape: Sequence[int] | None = None,
          example: torch.Tensor | None = None) -> dict[str, int]:
    """``{"macs", "params", "bytes"}`` of a static model."""
    return {"macs": count_macs(model, input_shape, example), "params": count_params(model),
            "bytes": count_bytes(model)}
