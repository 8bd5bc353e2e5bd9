"""Validation of sub-networks straight out of the supernet: extract, recalibrate BN, measure top-1."""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from ..data.lm import IGNORE
from ..supernets import Supernet
from .bn import recalibrate_bn
from .losses import per_token


@torch.no_grad()
def top1(model: nn.Module, batches: Iterable, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` in eval mode over (x, y) batches."""
    model.eval()
    correct = total = 0
    for x, y in batches:
        logits, y = per_token(model(x.to(device)).cpu(), y)
        keep = y != IGNORE  # positions without a target (a decoder's last token)
        correct += int((logits.argmax(-1) == y)[keep].sum())
        total += int(keep.sum())
    return correct / max(total, 1)


def subnet_accuracy(net: Supernet, cfg: Mapping, calib: Iterable, val: Iterable, calib_batches: int = 10,
                    device: torch.device | str = "cpu") -> float:
    """Accuracy of sub-network ``cfg`` extracted from ``net`` (weights copied) after BN recalibration on
    ``calib_batches`` batches of ``calib``; the supernet itself is left untouched. The global RNG is
    forked, so evaluating does not change a training run's random stream."""
    with torch.random.fork_rng(devices=[]):
        sub = net.extract(cfg).to(device)
        recalibrate_bn(sub, ((x.to(device), y) for x, y in calib), calib_batches)
        return top1(sub, val, device)
