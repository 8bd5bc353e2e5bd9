"""Accuracy of a classifier or decoder on held-out batches (the one definition, also what ``measure`` reports),
and of sub-networks straight out of the supernet: extract, recalibrate BN, measure."""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..data.lm import IGNORE
from ..errors import DataError
from ..supernets import Supernet
from .bn import recalibrate_bn
from .losses import per_token


@torch.inference_mode()
def evaluate_accuracy(model: nn.Module, batches: Iterable, max_batches: int | None = None,
                      device: torch.device | str | None = None) -> dict[str, float]:
    """``{"accuracy": top-1, "top5": top-5, "loss": mean cross-entropy, "count": samples scored}`` over
    ``(x, y)`` batches (``top5`` only when the model has more than 5 classes). A decoder's ``(batch, length, vocabulary)`` logits are scored
    per token (next-token accuracy; targets ``-100`` are skipped), so ``exp(loss)`` is its perplexity. The
    model is evaluated in eval mode, its mode restored."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = total = 0
    loss = 0.0
    num_classes = 0
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise DataError("accuracy needs (inputs, labels) batches")
            x, y = batch[0], batch[1]
            if device is not None:
                x, y = x.to(device), y.to(device)
            logits, y = per_token(model(x), y)
            num_classes = logits.shape[-1]
            if (y == IGNORE).any():
                logits, y = logits[y != IGNORE], y[y != IGNORE]
            top = logits.topk(min(5, num_classes), dim=-1).indices
            hit = top == y.view(-1, 1)
            correct1 += int(hit[:, 0].sum())
            correct5 += int(hit.any(dim=1).sum())
            loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            total += int(y.numel())
    finally:
        model.train(was_training)
    if total == 0:
        raise DataError("the evaluation loader yielded no samples")
    out = {"accuracy": correct1 / total, "loss": loss / total, "count": float(total)}
    if num_classes > 5:
        out["top5"] = correct5 / total
    return out


def subnet_accuracy(net: Supernet, cfg: Mapping, calib: Iterable, val: Iterable, calib_batches: int = 10,
                    device: torch.device | str = "cpu") -> float:
    """Accuracy of sub-network ``cfg`` extracted from ``net`` (weights copied) after BN recalibration on
    ``calib_batches`` batches of ``calib``; the supernet itself is left untouched. The global RNG is
    forked, so evaluating does not change a training run's random stream."""
    with torch.random.fork_rng(devices=[]):
        sub = net.extract(cfg).to(device)
        recalibrate_bn(sub, ((x.to(device), y) for x, y in calib), calib_batches)
        return evaluate_accuracy(sub, val, device=device)["accuracy"]
