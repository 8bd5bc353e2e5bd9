"""Elastic operators: one set of weights, many active shapes.

Each op takes the number of *input* channels from its input tensor and the rest of its active shape
from attributes set by its block (``active_out``, ``active_kernel``). ``extract(...)`` returns the
plain ``torch.nn`` module computing exactly what the op computes with that shape, weights copied.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


@runtime_checkable
class ResidualBlock(Protocol):
    """A block whose main path is added to a skip path when ``residual`` is true; ``last_norm()`` is the
    normalisation that closes the main path (zeroed by zero-init-residual so the block starts as the skip)."""

    residual: bool

    def last_norm(self) -> nn.Module: ...


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` not below 90% of it (MobileNet rule)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _crop(w: torch.Tensor, k: int) -> torch.Tensor:
    """Centre ``k x k`` crop of the last two dims."""
    kmax = w.shape[-1]
    s = (kmax - k) // 2
    return w[..., s:s + k, s:s + k]


class ElasticConv2d(nn.Module):
    """Conv with elastic kernel size (centre crop + learned transformation, as in Once-for-All),
    elastic output width (first ``active_out`` filters) and input width (first C_in channels).

    ``depthwise=True`` makes it a depthwise conv: groups = channels = active input width.
    Kernel transformation matrices (one ``k^2 x k^2`` matrix per smaller kernel, shared by all
    channels, identity at init) are used when ``transform_kernel`` is true.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: int | tuple[int, ...] = 1,
                 stride: int = 1, depthwise: bool = False, bias: bool = False,
                 transform_kernel: bool | None = None) -> None:
        super().__init__()
        ks = (kernel_sizes,) if isinstance(kernel_sizes, int) else tuple(sorted(set(kernel_sizes)))
        if any(k % 2 == 0 for k in ks):
            raise ValueError(f"kernel sizes must be odd, got {ks}")
        if depthwise and in_channels != out_channels:
            raise ValueError("a depthwise conv has as many output as input channels")
        self.kernel_sizes, self.stride, self.depthwise = ks, stride, depthwise
        self.in_channels, self.out_channels = in_channels, out_channels
        kmax = ks[-1]
        self.weight = nn.Parameter(torch.empty(out_channels, 1 if depthwise else in_channels, kmax, kmax))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.transform_kernel = depthwise if transform_kernel is None else transform_kernel
        if self.transform_kernel:
            for big, small in zip(ks[::-1][:-1], ks[::-1][1:]):
                self.register_parameter(f"transform_{big}to{small}", nn.Parameter(torch.eye(small * small)))
        self.active_kernel = kmax
        self.active_out = out_channels

    def active_weight(self, in_channels: int) -> torch.Tensor:
        """The weight of the active shape. Without autograd (evaluation, search) the sliced, transformed
        and contiguous weight is cached, keyed by the shape and the parameters' version counters and storage,
        so an optimizer step, any in-place change or a move to another device or dtype invalidates it."""
        if torch.is_grad_enabled():
            return self._compute_weight(in_channels)
        key = (in_channels, self.active_out, self.active_kernel,
               *[(id(p), p._version, p.data_ptr(), p.device, p.dtype) for p in self._parameters.values()
                 if p is not None])
        cache = self.__dict__.get("_weight_cache")
        if cache is None or cache[0] != key:
            cache = (key, self._compute_weight(in_channels).contiguous())
            self.__dict__["_weight_cache"] = cache
        return cache[1]

    def _compute_weight(self, in_channels: int) -> torch.Tensor:
        out = in_channels if self.depthwise else self.active_out
        w = self.weight[:out] if self.depthwise else self.weight[:out, :in_channels]
        k = self.active_kernel
        if k == w.shape[-1]:
            return w
        if not self.transform_kernel:
            return _crop(w, k)
        ks = self.kernel_sizes
        cur = w
        for big, small in zip(ks[::-1][:-1], ks[::-1][1:]):
            if big <= k:
                continue
            cur = _crop(cur, small)
            shape = cur.shape
            cur = F.linear(cur.reshape(-1, small * small), getattr(self, f"transform_{big}to{small}"))
            cur = cur.reshape(shape)
            if small == k:
                break
        return cur

    def active_bias(self, in_channels: int) -> torch.Tensor | None:
        if self.bias is None:
            return None
        return self.bias[: in_channels if self.depthwise else self.active_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.active_weight(c)
        return F.conv2d(x, w, self.active_bias(c), self.stride, w.shape[-1] // 2, 1, c if self.depthwise else 1)

    @torch.no_grad()
    def extract(self, in_channels: int) -> nn.Conv2d:
        w = self.active_weight(in_channels)
        out = w.shape[0]
        conv = nn.Conv2d(in_channels, out, w.shape[-1], self.stride, w.shape[-1] // 2,
                         groups=in_channels if self.depthwise else 1, bias=self.bias is not None)
        conv.weight.copy_(w)
        if self.bias is not None:
            conv.bias.copy_(self.active_bias(in_channels))
        return conv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}, stride={self.stride}"
                f", depthwise={self.depthwise}, active=(k={self.active_kernel}, out={self.active_out})")


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels of its input, with the matching slice of running stats
    (updated in place in training)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = self.momentum or 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        use_stats = self.running_mean is not None and (not self.training or self.track_running_stats)
        return F.batch_norm(
            x, self.running_mean[:c] if use_stats else None, self.running_var[:c] if use_stats else None,
            self.weight[:c] if self.affine else None, self.bias[:c] if self.affine else None,
            self.training or self.running_mean is None, factor, self.eps)

    @torch.no_grad()
    def extract(self, channels: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(channels, self.eps, self.momentum, self.affine, self.track_running_stats)
        if self.affine:
            bn.weight.copy_(self.weight[:channels])
            bn.bias.copy_(self.bias[:channels])
        if self.track_running_stats:
            bn.running_mean.copy_(self.running_mean[:channels])
            bn.running_var.copy_(self.running_var[:channels])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class ElasticLinear(nn.Linear):
    """Linear over the first ``in`` input features (taken from the input) producing ``active_out``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.active_out = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i, o = x.shape[-1], self.active_out
        return F.linear(x, self.weight[:o, :i], self.bias[:o] if self.bias is not None else None)

    @torch.no_grad()
    def extract(self, in_features: int) -> nn.Linear:
        o = self.active_out
        lin = nn.Linear(in_features, o, self.bias is not None)
        lin.weight.copy_(self.weight[:o, :in_features])
        if self.bias is not None:
            lin.bias.copy_(self.bias[:o])
        return lin


class SqueezeExcite(nn.Module):
    """Static squeeze-and-excitation (MobileNetV3 style: ReLU then hard-sigmoid)."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class ElasticSqueezeExcite(nn.Module):
    """Squeeze-excite whose width follows its input; hidden width = make_divisible(C / reduction)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.reduction = reduction
        mid = make_divisible(channels // reduction)
        self.reduce = ElasticConv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = ElasticConv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def mid(self, channels: int) -> int:
        return make_divisible(channels // self.reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        self.reduce.active_out, self.expand.active_out = self.mid(c), c
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))

    def extract(self, channels: int) -> SqueezeExcite:
        mid = self.mid(channels)
        self.reduce.active_out, self.expand.active_out = mid, channels
        se = SqueezeExcite(channels, mid)
        se.reduce, se.expand = self.reduce.extract(channels), self.expand.extract(mid)
        return se


class ElasticDepth(nn.Module):
    """A list of blocks of which the first ``active_depth`` run (depth as an active prefix)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.active_depth = len(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks[: self.active_depth]:
            x = b(x)
        return x

    def active_blocks(self) -> list[nn.Module]:
        return list(self.blocks[: self.active_depth])


# ------------------------------------------------------------------------ channel re-ordering
@torch.no_grad()
def permute_out(m: nn.Module, perm: torch.Tensor) -> None:
    """Re-order the output channels of a conv / linear / batch norm (and their stats) by ``perm``."""
    if isinstance(m, nn.BatchNorm2d):
        for t in (m.weight, m.bias, m.running_mean, m.running_var):
            if t is not None:
                t.copy_(t[perm])
        return
    m.weight.copy_(m.weight[perm])
    if getattr(m, "bias", None) is not None:
        m.bias.copy_(m.bias[perm])


@torch.no_grad()
def permute_in(m: nn.Module, perm: torch.Tensor) -> None:
    """Re-order the input channels of a (non-depthwise) conv or a linear layer by ``perm``."""
    m.weight.copy_(m.weight[:, perm])


def importance_order(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """Channel order by descending L1 norm of ``weight`` along every dim except ``dim``."""
    dims = [d for d in range(weight.dim()) if d != dim]
    return torch.argsort(weight.detach().abs().sum(dim=dims), descending=True, stable=True)
