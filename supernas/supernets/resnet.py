"""``resnet``: ResNet space (Once-for-All ResNet choices on a torchvision-style network).

Per stage: depth = base + delta (defaults: base 2/2/4/2, delta in {0,1,2}), output width multiplier in
{0.65, 0.8, 1.0}; per block: expand ratio (hidden = out x ratio). The stem width is elastic too.
``block="bottleneck"`` (default; ratios {0.2, 0.25, 0.35}, stage widths 256/512/1024/2048): preset
``resnet50`` (depths 3/4/6/3, ratio 0.25, width 1.0) is exactly torchvision's ResNet-50 (v1.5: stride on
the 3x3 conv). ``block="basic"`` (ratios {0.5, 0.75, 1.0} of the first 3x3 conv's width, stage widths
64/128/256/512): ResNet-18/34-style two-conv blocks, dense 3x3 convolutions that a CPU runs several times
faster per MAC than depthwise ones; every stage's first block has a 1x1 projection (the stem and stage
widths are chosen independently), unless ``tie_stem`` gives the stem stage 1's width (torchvision's ResNet-18/34).
"""
from __future__ import annotations

import copy
from typing import Literal, Sequence

import torch
from torch import nn

from ..elastic import (ElasticBatchNorm2d, ElasticConv2d, ElasticDepth, ElasticLinear, importance_order,
                       make_divisible, permute_in, permute_out)
from ..errors import ConfigError
from ..space import Choice, Config, SearchSpace
from .base import Supernet, register_family

STAGE_STRIDES = (1, 2, 2, 2)
BLOCK_DEFAULTS = {"bottleneck": ((256, 512, 1024, 2048), (0.2, 0.25, 0.35)),
                  "basic": ((64, 128, 256, 512), (0.5, 0.75, 1.0))}


def projection(cin: int, cout: int, stride: int, avg_down: bool) -> nn.Sequential:
    """The shortcut's 1x1 projection (+ BN): strided, or after a ``stride x stride`` average pool (ResNet-D)."""
    pool = [nn.AvgPool2d(stride, stride, ceil_mode=True)] if avg_down and stride > 1 else []
    return nn.Sequential(*pool, nn.Conv2d(cin, cout, 1, 1 if avg_down else stride, bias=False), nn.BatchNorm2d(cout))


class ConvResidual(nn.Module):
    """``x + relu(bn(conv(x)))``: the skippable middle convolution of a deep stem."""

    def __init__(self, conv: nn.Module, bn: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Static bottleneck block: 1x1 -> 3x3 (stride) -> 1x1, plus identity or 1x1 projection."""

    residual = True

    def __init__(self, cin: int, mid: int, cout: int, stride: int, downsample: bool, avg_down: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, cout, stride, avg_down) if downsample else None

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class BasicBlock(nn.Module):
    """Static basic block: 3x3 (stride) -> 3x3, plus identity or 1x1 projection."""

    residual = True

    def __init__(self, cin: int, mid: int, cout: int, stride: int, downsample: bool, avg_down: bool = False) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, cout, stride, avg_down) if downsample else None

    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    """Static ResNet: stem, bottleneck layers, global pooling, fully connected classifier."""

    def __init__(self, stem: nn.Sequential, layers: nn.Sequential, fc: nn.Linear) -> None:
        super().__init__()
        self.stem, self.layers, self.fc = stem, layers, fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


class ElasticResidualBlock(nn.Module):
    """An elastic ResNet block: a chain of conv + BN layers (``KERNELS``, ReLU between them, the stride on
    layer ``STRIDE_AT``) whose inner widths are ``cout x ratio`` and whose last width is ``cout``, added to
    the identity or to a 1x1 projection. ``extract`` gives the static ``STATIC`` block (torchvision names:
    ``conv1``/``bn1`` ... and ``downsample``)."""

    KERNELS: tuple[int, ...]
    STRIDE_AT: int
    STATIC: type[Bottleneck] | type[BasicBlock]
    residual = True  # the last BatchNorm of the main path closes a residual branch (zero_init_residual)

    def __init__(self, cin: int, cout: int, max_ratio: float, stride: int, downsample: bool,
                 avg_down: bool = False) -> None:
        super().__init__()
        self.stride, self.avg_down = stride, avg_down
        mid = make_divisible(round(cout * max_ratio))
        widths = [mid] * (len(self.KERNELS) - 1) + [cout]
        for i, (k, c_in, c_out) in enumerate(zip(self.KERNELS, [cin, *widths[:-1]], widths), 1):
            setattr(self, f"conv{i}", ElasticConv2d(c_in, c_out, k, stride if i - 1 == self.STRIDE_AT else 1))
            setattr(self, f"bn{i}", ElasticBatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)
        self.down_pool = (nn.AvgPool2d(stride, stride, ceil_mode=True) if downsample and avg_down and stride > 1
                          else nn.Identity())
        self.down_conv = ElasticConv2d(cin, cout, 1, 1 if avg_down else stride) if downsample else None
        self.down_bn = ElasticBatchNorm2d(cout) if downsample else None

    def layers(self) -> list[tuple[ElasticConv2d, ElasticBatchNorm2d]]:
        return [(getattr(self, f"conv{i}"), getattr(self, f"bn{i}")) for i in range(1, len(self.KERNELS) + 1)]

    def set_active(self, cout: int, ratio: float) -> None:
        convs = [conv for conv, _ in self.layers()]
        for conv in convs[:-1]:
            conv.active_out = make_divisible(round(cout * ratio))
        convs[-1].active_out = cout
        if self.down_conv is not None:
            self.down_conv.active_out = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, layers = x, self.layers()
        for conv, bn in layers[:-1]:
            y = self.relu(bn(conv(y)))
        conv, bn = layers[-1]
        skip = self.down_bn(self.down_conv(self.down_pool(x))) if self.down_conv is not None else x
        return self.relu(bn(conv(y)) + skip)

    def extract(self, cin: int) -> Bottleneck | BasicBlock:
        layers = self.layers()
        mid, cout = layers[0][0].active_out, layers[-1][0].active_out
        blk = self.STATIC(cin, mid, cout, self.stride, self.down_conv is not None, self.avg_down)
        c_in = cin
        for i, (conv, bn) in enumerate(layers, 1):
            setattr(blk, f"conv{i}", conv.extract(c_in))
            setattr(blk, f"bn{i}", bn.extract(conv.active_out))
            c_in = conv.active_out
        if blk.downsample is not None:
            blk.downsample[-2], blk.downsample[-1] = self.down_conv.extract(cin), self.down_bn.extract(cout)
        return blk

    def last_norm(self) -> nn.Module:
        return self.layers()[-1][1]

    @torch.no_grad()
    def reorder_channels(self) -> None:
        """Inner channels sorted by importance to the next layer, last layer first (the function is kept)."""
        layers = self.layers()
        for (conv, bn), (nxt, _) in reversed(list(zip(layers[:-1], layers[1:]))):
            perm = importance_order(nxt.weight, dim=1)
            permute_out(conv, perm), permute_out(bn, perm), permute_in(nxt, perm)


class ElasticBottleneck(ElasticResidualBlock):
    """Bottleneck 1x1 -> 3x3 (stride) -> 1x1; hidden width = output width x expand ratio."""

    KERNELS, STRIDE_AT, STATIC = (1, 3, 1), 1, Bottleneck


class ElasticBasicBlock(ElasticResidualBlock):
    """Basic block 3x3 (stride) -> 3x3; the first conv's width = output width x expand ratio."""

    KERNELS, STRIDE_AT, STATIC = (3, 3), 0, BasicBlock


BLOCKS: dict[str, type[ElasticBottleneck] | type[ElasticBasicBlock]] = {
    "bottleneck": ElasticBottleneck, "basic": ElasticBasicBlock}


@register_family("resnet")
class ResNetSupernet(Supernet):
    """Elastic ResNet of bottleneck or basic blocks. ``small_input=True`` uses a 3x3 stride-1 stem
    without max-pooling (CIFAR-style) for small images; ``stage_widths`` and ``stem_width`` are the widths
    at multiplier 1.0 (defaults: the block type's, stem 64). ``tie_stem=True``: the stem takes stage 1's
    width choice and stage 1's first block has no projection (torchvision's ResNet-18/34 layout).
    ``stem="deep"`` with ``avg_down=True`` is Once-for-All's ResNet-50 supernet (ResNet-D): three 3x3 stem
    convolutions (the middle one a skippable residual, ``stem.depth`` 2 or 3; ``stem.mid_width`` for the first
    two) and projections after an average pool."""

    def __init__(self, num_classes: int = 1000, image_size: int = 224, in_channels: int = 3,
                 base_depths: Sequence[int] = (2, 2, 4, 2), depth_deltas: Sequence[int] = (0, 1, 2),
                 expand_ratios: Sequence[float] | None = None,
                 width_mults: Sequence[float] = (0.65, 0.8, 1.0), small_input: bool = False,
                 resolutions: Sequence[int] | None = None, block: Literal["bottleneck", "basic"] = "bottleneck",
                 stage_widths: Sequence[int] | None = None, stem_width: int = 64, tie_stem: bool = False,
                 stem: Literal["torchvision", "deep"] = "torchvision", avg_down: bool = False) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        if len(base_depths) != 4 or min(base_depths) + min(depth_deltas) < 1:
            raise ValueError("base_depths needs 4 entries and every stage at least one block")
        default_widths, default_ratios = BLOCK_DEFAULTS[block]
        self.stage_widths = tuple(int(w) for w in (stage_widths or default_widths))
        if len(self.stage_widths) != 4 or min(self.stage_widths) < 1 or stem_width < 1:
            raise ValueError("stage_widths needs 4 positive entries and stem_width must be positive")
        if stem not in ("torchvision", "deep"):
            raise ValueError(f"stem must be 'torchvision' or 'deep', got {stem!r}")
        if tie_stem and (stem_width != self.stage_widths[0] or stem == "deep"):
            raise ValueError(f"tie_stem needs the torchvision stem and stem_width == stage_widths[0], got {stem} "
                             f"{stem_width} and {self.stage_widths[0]}")
        self.num_classes, self.image_size, self.in_channels = num_classes, image_size, in_channels
        self.small_input, self.block, self.stem_width, self.tie_stem = small_input, block, int(stem_width), tie_stem
        self.deep_stem = stem == "deep"
        self.width_mults = tuple(sorted(width_mults))
        self.expand_ratios = tuple(sorted(expand_ratios or default_ratios))
        wmax = self.width_mults[-1]
        stem_c = make_divisible(self.stem_width * wmax)
        stride = 1 if small_input else 2
        choices = [] if tie_stem else [Choice("stem.width", self.width_mults)]
        if self.deep_stem:  # ResNet-D / Once-for-All: 3x3 convs to half the width, a skippable one, to the width
            mid = self._mid(wmax)
            self.stem_conv, self.stem_bn = ElasticConv2d(in_channels, mid, 3, stride), ElasticBatchNorm2d(mid)
            self.stem_conv2, self.stem_bn2 = ElasticConv2d(mid, mid, 3), ElasticBatchNorm2d(mid)
            self.stem_conv3, self.stem_bn3 = ElasticConv2d(mid, stem_c, 3), ElasticBatchNorm2d(stem_c)
            choices.append(Choice("stem.mid_width", self.width_mults))
            if len(depth_deltas) > 1:
                choices.append(Choice("stem.depth", (2, 3)))
        else:
            self.stem_conv = ElasticConv2d(in_channels, stem_c, 3 if small_input else 7, stride)
            self.stem_bn = ElasticBatchNorm2d(stem_c)
        self.stem_pool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)
        self.stages = nn.ModuleList()
        cin = stem_c
        for i, (w, stride) in enumerate(zip(self.stage_widths, STAGE_STRIDES), 1):
            cout = make_divisible(w * wmax)
            depths = tuple(sorted({base_depths[i - 1] + d for d in depth_deltas}))
            project = not (tie_stem and i == 1)  # tied: stage 1's first block adds the stem's output as it is
            blocks = [BLOCKS[block](cin if b == 0 else cout, cout, self.expand_ratios[-1], stride if b == 0 else 1,
                                    b == 0 and project, avg_down) for b in range(depths[-1])]
            self.stages.append(ElasticDepth(blocks))
            choices += [Choice(f"stage{i}.depth", depths), Choice(f"stage{i}.width", self.width_mults)]
            choices += [Choice(f"stage{i}.block{b}.expand", self.expand_ratios, (f"stage{i}.depth", b - 1))
                        for b in range(1, depths[-1] + 1)]
            cin = cout
        self.fc = ElasticLinear(cin, num_classes)
        if resolutions:
            choices.append(Choice("resolution", tuple(sorted(int(r) for r in resolutions))))
        r50: Config = {"stem.width": 1.0, **({"resolution": max(resolutions)} if resolutions else {})}
        for i, d in enumerate((3, 4, 6, 3), 1):
            r50.update({f"stage{i}.depth": d, f"stage{i}.width": 1.0})
            r50.update({f"stage{i}.block{b}.expand": 0.25 for b in range(1, d + 1)})
        presets = {}
        torchvision = not (self.deep_stem or avg_down or tie_stem) and block == "bottleneck"  # the preset is
        if torchvision and self.stage_widths == default_widths and self.stem_width == 64:  # torchvision's network
            try:
                presets = {"resnet50": SearchSpace(choices).validate(r50)}
            except ConfigError:  # a custom space that does not contain ResNet-50
                pass
        self.space = SearchSpace(choices, presets)
        self.set_active(self.space.largest())

    def _mid(self, mult: float) -> int:
        """A deep stem's first width: half its output width at ``mult``, rounded as Once-for-All does."""
        return make_divisible(make_divisible(self.stem_width * mult) // 2)

    def _widths(self, cfg: Config) -> tuple[int, list[int]]:
        stem = make_divisible(self.stem_width * cfg["stage1.width" if self.tie_stem else "stem.width"])
        return stem, [make_divisible(w * cfg[f"stage{i}.width"]) for i, w in enumerate(self.stage_widths, 1)]

    def _apply_config(self, cfg: Config) -> None:
        stem, widths = self._widths(cfg)
        if self.deep_stem:
            self.stem_conv.active_out = self.stem_conv2.active_out = self._mid(cfg["stem.mid_width"])
            self.stem_conv3.active_out = stem
            self._stem_skip = cfg.get("stem.depth", 3) == 2
        else:
            self.stem_conv.active_out = stem
        for i, (stage, cout) in enumerate(zip(self.stages, widths), 1):
            stage.active_depth = cfg[f"stage{i}.depth"]
            for b, blk in enumerate(stage.blocks, 1):
                blk.set_active(cout, cfg[f"stage{i}.block{b}.expand"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem_conv(self.resize_input(x))))
        if self.deep_stem:
            if not self._stem_skip:
                x = x + torch.relu(self.stem_bn2(self.stem_conv2(x)))
            x = torch.relu(self.stem_bn3(self.stem_conv3(x)))
        x = self.stem_pool(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(x.mean((2, 3)))

    def _build_static(self, cfg: Config) -> ResNet:
        stem_c, widths = self._widths(cfg)
        first = self.stem_conv.active_out
        parts = [self.stem_conv.extract(self.in_channels), self.stem_bn.extract(first), nn.ReLU(inplace=True)]
        if self.deep_stem:
            if cfg.get("stem.depth", 3) == 3:
                parts.append(ConvResidual(self.stem_conv2.extract(first), self.stem_bn2.extract(first)))
            parts += [self.stem_conv3.extract(first), self.stem_bn3.extract(stem_c), nn.ReLU(inplace=True)]
        stem = nn.Sequential(*parts, copy.deepcopy(self.stem_pool))
        layers, cin = [], stem_c
        for stage, cout in zip(self.stages, widths):
            for blk in stage.active_blocks():
                layers.append(blk.extract(cin))
                cin = cout
        return ResNet(stem, nn.Sequential(*layers), self.fc.extract(cin))

    quantization = "static"

    def _block_modules(self, cfg: Config) -> dict[str, list[str]]:
        names = [f"stage{s}.block{b}" for s in range(1, len(self.stages) + 1)
                 for b in range(1, cfg[f"stage{s}.depth"] + 1)]
        return {"stem": ["stem"], **{n: [f"layers.{i}"] for i, n in enumerate(names)}, "head": ["fc"]}

    def reorder_channels(self) -> None:
        for stage in self.stages:
            for blk in stage.blocks:
                blk.reorder_channels()
