"""Zero-cost proxies: scores of a sub-network from one batch, without evaluating its accuracy.

Computed on the sub-network with the weights it inherits from the supernet (not re-initialised), on a copy,
so the model measured is left as it was. Each is deterministic for a given batch: dropout is off, any other
randomness is drawn from a fixed seed.

* ``grad_norm`` — sum over weight tensors of the L2 norm of the cross-entropy gradient (Abdelfattah et al.
  2021);
* ``snip`` — sum of |w * dL/dw| over weight tensors (connection sensitivity, Lee et al. 2019);
* ``synflow`` — natural log of sum |w * dR/dw| with R the sum of the outputs of the network with |weights|,
  normalisation layers removed, on an all-ones input in float64 (Tanaka et al. 2020);
* ``naswot`` — log |det K| of the Hamming kernel of the batch's binary ReLU-family activation codes
  (Mellor et al. 2021);
* ``zen`` — log of the mean absolute change of the last feature map (before pooling) under a small Gaussian
  perturbation of a Gaussian input, plus the sum of log BN batch standard deviations (Lin et al. 2021).

The gradient proxies use batch statistics (train mode), so they need no BN recalibration.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterator

import torch
from torch import nn

from ..errors import ConfigError
from ..train.losses import token_cross_entropy

PROXIES = ("grad_norm", "snip", "synflow", "naswot", "zen")
#: activations whose binary code (input > 0) NASWOT reads
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.GELU, nn.SiLU, nn.ELU)
NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
ZEN_ALPHA = 0.01
SEED = 0


def _copy_for_proxy(model: nn.Module, train: bool = True) -> nn.Module:
    """A deep copy in ``train`` mode (batch statistics) with dropout switched off."""
    m = copy.deepcopy(model).train(train)
    for mod in m.modules():
        if isinstance(mod, nn.modules.dropout._DropoutNd):
            mod.eval()
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def _weights(model: nn.Module) -> Iterator[nn.Parameter]:
    """Weight tensors of convolutions, linear layers and embeddings (matrices and kernels, not biases/norms)."""
    for mod in model.modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Embedding)) and mod.weight.requires_grad:
            yield mod.weight


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    m = _copy_for_proxy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        token_cross_entropy(m(x), y).backward()
    return m


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite ({value}) for this sub-network")
    return value


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    m = _loss_gradients(model, x, y)
    return _finite("grad_norm", float(sum(w.grad.norm() for w in _weights(m) if w.grad is not None)))


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    m = _loss_gradients(model, x, y)
    with torch.no_grad():
        return _finite("snip", float(sum((w * w.grad).abs().sum() for w in _weights(m) if w.grad is not None)))


def _without_norms(model: nn.Module) -> nn.Module:
    """``model`` with every normalisation layer replaced by the identity (in place)."""
    for mod in list(model.modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, NORMS):
                setattr(mod, child_name, nn.Identity())
    return model


def synflow(model: nn.Module, example: torch.Tensor) -> float:
    if not example.is_floating_point():
        raise ConfigError("synflow needs a model with floating-point inputs (images), not token ids")
    m = _without_norms(_copy_for_proxy(model, train=False)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    out = m(torch.ones_like(example, dtype=torch.float64))
    out.sum().backward()
    with torch.no_grad():
        score = sum(float((w * w.grad).abs().sum()) for w in _weights(m) if w.grad is not None)
    if score <= 0:
        raise ValueError("synflow is 0 for this sub-network (no signal reaches the output)")
    return _finite("synflow", math.log(score))


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    m = _copy_for_proxy(model, train=False)
    codes: list[torch.Tensor] = []

    def hook(_mod: nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
        codes.append((inputs[0] > 0).flatten(1).double())

    handles = [mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, ACTIVATIONS)]
    if not handles:
        raise ConfigError("naswot needs activation modules (nn.ReLU, nn.Hardswish, ...); this model has none")
    try:
        with torch.no_grad():
            m(x)
    finally:
        for h in handles:
            h.remove()
    c = torch.cat(codes, dim=1)
    k = c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = torch.linalg.slogdet(k)
    return _finite("naswot", float(logdet) if float(sign) > 0 else float("-inf"))


def _last_feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last module output with more than two dimensions (the feature map before pooling)."""
    seen: list[torch.Tensor] = []

    def hook(_mod: nn.Module, _inp: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.dim() > 2:
            seen.append(out)

    handles = [mod.register_forward_hook(hook) for mod in model.modules() if not list(mod.children())]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ConfigError("zen needs a feature map (an output with more than 2 dimensions) before the head")
    return seen[-1]


def zen(model: nn.Module, example: torch.Tensor, batch: int = 16) -> float:
    if not example.is_floating_point():
        raise ConfigError("zen needs a model with floating-point inputs (images), not token ids")
    m = _copy_for_proxy(model)
    bns = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.momentum = 1.0  # running statistics = the last batch's
    gen = torch.Generator().manual_seed(SEED)
    shape = (batch, *example.shape[1:])
    x = torch.randn(shape, generator=gen)
    noise = torch.randn(shape, generator=gen)
    with torch.no_grad():
        diff = (_last_feature_map(m, x) - _last_feature_map(m, x + ZEN_ALPHA * noise)).abs()
        change = float(diff.flatten(1).sum(1).mean())
        bn_term = sum(float(torch.log(torch.sqrt(bn.running_var.mean()))) for bn in bns
                      if bn.running_var is not None)
    if change <= 0:
        raise ValueError("zen: the feature map does not change with the input for this sub-network")
    return _finite("zen", math.log(change) + bn_term)


def proxy_score(name: str, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                example: torch.Tensor) -> float:
    """Proxy ``name`` of ``model`` on the labelled ``batch`` (``example``: one input of the model's shape)."""
    x, y = batch
    fns: dict[str, Callable[[], float]] = {
        "grad_norm": lambda: grad_norm(model, x, y), "snip": lambda: snip(model, x, y),
        "synflow": lambda: synflow(model, example), "naswot": lambda: naswot(model, x),
        "zen": lambda: zen(model, example)}
    if name not in fns:
        raise ConfigError(f"unknown zero-cost proxy {name!r}; known: {', '.join(PROXIES)}")
    return fns[name]()


def first_batch(loader: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The first (inputs, labels) batch of ``loader``, as tensors."""
    for batch in loader:  # type: ignore[attr-defined]
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ConfigError("zero-cost proxies need (inputs, labels) batches")
        return batch[0], batch[1]
    raise ConfigError("zero-cost proxies need a batch, and the training loader is empty")


__all__ = ["PROXIES", "first_batch", "grad_norm", "naswot", "proxy_score", "snip", "synflow", "zen"]
