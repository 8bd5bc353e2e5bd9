"""Batch-norm recalibration: a sub-network's running statistics re-estimated on training data."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..elastic import ResidualBlock


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, num_batches: int = 20) -> nn.Module:
    """Reset every BatchNorm's running stats and re-estimate them as an exact cumulative average over
    ``num_batches`` batches (inputs are the first element of each batch, or the batch itself).
    The model is left in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches seen
    model.train()
    try:
        for i, batch in enumerate(batches):
            if i >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
    return model.eval()


@torch.no_grad()
def zero_init_residual(model: nn.Module) -> int:
    """Zero the scale of the last normalisation of every residual block
    (:class:`~supernas.elastic.ResidualBlock`, elastic or static), so each block starts as its skip path: a deeper sub-network
    then starts out computing what the shallower one does (BigNAS). Returns the number of blocks changed."""
    changed = 0
    for m in model.modules():
        if isinstance(m, ResidualBlock) and m.residual:
            m.last_norm().weight.zero_()
            changed += 1
    return changed
