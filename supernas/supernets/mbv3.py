"""``mbv3``: the Once-for-All MobileNetV3 space.

Five elastic stages (widths 24/40/80/112/160 x width_mult, strides 2/2/2/1/2), depth in {2,3,4} per
stage, kernel in {3,5,7} and expand ratio in {3,4,6} per block, squeeze-excite and h-swish where
MobileNetV3-Large has them. With the defaults the space holds (9^2+9^3+9^4)^5 ~ 2.18e19 sub-networks.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from ..elastic import (ElasticBatchNorm2d, ElasticConv2d, ElasticDepth, ElasticSqueezeExcite, SqueezeExcite,
                       importance_order, make_divisible, permute_in, permute_out)
from ..space import Choice, Config, SearchSpace
from .base import Supernet, register_family

STAGE_WIDTHS = (24, 40, 80, 112, 160)
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_HSWISH = (False, False, True, True, True)
STAGE_SE = (False, True, False, True, True)


def _act(hswish: bool) -> nn.Module:
    return nn.Hardswish(inplace=True) if hswish else nn.ReLU(inplace=True)


def conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, hswish: bool = True, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), _act(hswish))


class MBConv(nn.Module):
    """Static inverted-residual block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ skip)."""

    def __init__(self, cin: int, mid: int, cout: int, kernel: int, stride: int, hswish: bool, se: bool,
                 expand: bool = True) -> None:
        super().__init__()
        self.expand = conv_bn_act(cin, mid, 1, hswish=hswish) if expand else nn.Identity()
        self.dw = conv_bn_act(mid, mid, kernel, stride, hswish, groups=mid)
        self.se = SqueezeExcite(mid, make_divisible(mid // 4)) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def last_norm(self) -> nn.Module:
        return self.project[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    """Static MobileNetV3: stem, blocks, final 1x1 expand, pooling, feature mix, classifier."""

    def __init__(self, stem: nn.Module, blocks: nn.Sequential, final_expand: nn.Module,
                 feature_mix: nn.Module, classifier: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem, self.blocks, self.final_expand = stem, blocks, final_expand
        self.feature_mix, self.dropout, self.classifier = feature_mix, nn.Dropout(dropout), classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(self.blocks(self.stem(x)))
        x = self.feature_mix(x.mean((2, 3), keepdim=True)).flatten(1)
        return self.classifier(self.dropout(x))


class ElasticMBConv(nn.Module):
    """MBConv with elastic kernel size and expand ratio (hidden width)."""

    def __init__(self, cin: int, cout: int, kernel_sizes: Sequence[int], expand_ratios: Sequence[float],
                 stride: int, hswish: bool, se: bool) -> None:
        super().__init__()
        self.cin, self.cout, self.stride, self.hswish, self.use_se = cin, cout, stride, hswish, se
        mid = self.mid(max(expand_ratios))
        self.expand = ElasticConv2d(cin, mid, 1)
        self.expand_bn = ElasticBatchNorm2d(mid)
        self.dw = ElasticConv2d(mid, mid, tuple(kernel_sizes), stride, depthwise=True)
        self.dw_bn = ElasticBatchNorm2d(mid)
        self.se = ElasticSqueezeExcite(mid) if se else None
        self.project = ElasticConv2d(mid, cout, 1)
        self.project_bn = ElasticBatchNorm2d(cout)
        self.act = _act(hswish)
        self.residual = stride == 1 and cin == cout

    def mid(self, expand_ratio: float) -> int:
        return make_divisible(round(self.cin * expand_ratio))

    def last_norm(self) -> nn.Module:
        return self.project_bn

    def set_active(self, kernel: int, expand_ratio: float) -> None:
        self.dw.active_kernel = kernel
        self.expand.active_out = self.mid(expand_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.expand_bn(self.expand(x)))
        y = self.act(self.dw_bn(self.dw(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project(y))
        return x + y if self.residual else y

    def extract(self) -> MBConv:
        mid = self.expand.active_out
        blk = MBConv(self.cin, mid, self.cout, self.dw.active_kernel, self.stride, self.hswish, self.use_se)
        blk.expand[0], blk.expand[1] = self.expand.extract(self.cin), self.expand_bn.extract(mid)
        blk.dw[0], blk.dw[1] = self.dw.extract(mid), self.dw_bn.extract(mid)
        if self.se is not None:
            blk.se = self.se.extract(mid)
        blk.project[0], blk.project[1] = self.project.extract(mid), self.project_bn.extract(self.cout)
        return blk

    @torch.no_grad()
    def reorder_channels(self) -> None:
        perm = importance_order(self.project.weight, dim=1)
        for m in (self.expand, self.expand_bn, self.dw, self.dw_bn):
            permute_out(m, perm)
        permute_in(self.project, perm)
        if self.se is not None:
            permute_in(self.se.reduce, perm)
            permute_out(self.se.expand, perm)
            se_perm = importance_order(self.se.expand.weight, dim=1)
            permute_out(self.se.reduce, se_perm)
            permute_in(self.se.expand, se_perm)


@register_family("mbv3")
class MobileNetV3Supernet(Supernet):
    """Once-for-All MobileNetV3 supernet. ``resolutions`` (optional) adds an input-resolution choice;
    ``stem_stride=1`` keeps more spatial resolution for small images (e.g. 32x32); ``last_channels``
    replaces the 1280-wide feature-mix layer (which dominates the cost of networks for tiny inputs).
    ``feature_mix_rule``: below width 1.0 the feature-mix layer stays 1,280 wide by default (torchvision's
    and timm's MobileNetV3 rule: the classifier keeps its capacity where the network is narrowest); ``ofa``
    scales it with the width as Once-for-All does (at 0.75: 960 channels). At 1.0 and above both agree."""

    def __init__(self, num_classes: int = 1000, image_size: int = 224, in_channels: int = 3,
                 width_mult: float = 1.0, kernel_sizes: Sequence[int] = (3, 5, 7),
                 expand_ratios: Sequence[float] = (3, 4, 6), depths: Sequence[int] = (2, 3, 4),
                 resolutions: Sequence[int] | None = None, dropout: float = 0.1, stem_stride: int = 2,
                 last_channels: int | None = None,
                 feature_mix_rule: Literal["torchvision", "ofa"] = "torchvision") -> None:
        super().__init__()
        if num_classes < 1 or image_size < 1 or in_channels < 1 or width_mult <= 0:
            raise ValueError("num_classes, image_size, in_channels and width_mult must be positive")
        self.num_classes, self.image_size, self.in_channels = num_classes, image_size, in_channels
        self.dropout = dropout
        kernel_sizes, expand_ratios = tuple(sorted(kernel_sizes)), tuple(sorted(expand_ratios))
        depths = tuple(sorted(depths))
        if not depths or depths[0] < 1:
            raise ValueError(f"depths must be positive integers, got {depths}")
        c = make_divisible(16 * width_mult)
        self.stem = conv_bn_act(in_channels, c, 3, stem_stride, hswish=True)
        self.first_block = MBConv(c, c, c, 3, 1, hswish=False, se=False, expand=False)
        self.stages = nn.ModuleList()
        choices: list[Choice] = []
        for s, (w, stride, hs, se) in enumerate(zip(STAGE_WIDTHS, STAGE_STRIDES, STAGE_HSWISH, STAGE_SE), 1):
            cout = make_divisible(w * width_mult)
            blocks = [ElasticMBConv(c if b == 0 else cout, cout, kernel_sizes, expand_ratios,
                                    stride if b == 0 else 1, hs, se) for b in range(depths[-1])]
            self.stages.append(ElasticDepth(blocks))
            choices.append(Choice(f"stage{s}.depth", depths))
            for b in range(1, depths[-1] + 1):
                dep = (f"stage{s}.depth", b - 1)
                choices.append(Choice(f"stage{s}.block{b}.kernel", kernel_sizes, dep))
                choices.append(Choice(f"stage{s}.block{b}.expand", expand_ratios, dep))
            c = cout
        final = make_divisible(960 * width_mult)
        self.final_expand = conv_bn_act(c, final, 1, hswish=True)
        scaled = width_mult > 1.0 or feature_mix_rule == "ofa"
        last = last_channels or (make_divisible(1280 * width_mult) if scaled else 1280)
        self.feature_mix = nn.Sequential(nn.Conv2d(final, last, 1, bias=False), nn.Hardswish(inplace=True))
        self.classifier = nn.Linear(last, num_classes)
        if resolutions:
            choices.append(Choice("resolution", tuple(sorted(int(r) for r in resolutions))))
        self.space = SearchSpace(choices)
        self.set_active(self.space.largest())

    def _apply_config(self, cfg: Config) -> None:
        for s, stage in enumerate(self.stages, 1):
            stage.active_depth = cfg[f"stage{s}.depth"]
            for b, blk in enumerate(stage.blocks, 1):
                blk.set_active(cfg[f"stage{s}.block{b}.kernel"], cfg[f"stage{s}.block{b}.expand"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resize_input(x)
        x = self.first_block(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        x = self.feature_mix(self.final_expand(x).mean((2, 3), keepdim=True)).flatten(1)
        return self.classifier(nn.functional.dropout(x, self.dropout, self.training))

    def _build_static(self, cfg: Config) -> MobileNetV3:
        import copy

        blocks = [blk.extract() for stage in self.stages for blk in stage.active_blocks()]
        stem = nn.Sequential(copy.deepcopy(self.stem), copy.deepcopy(self.first_block))
        return MobileNetV3(stem, nn.Sequential(*blocks), copy.deepcopy(self.final_expand),
                           copy.deepcopy(self.feature_mix), copy.deepcopy(self.classifier), self.dropout)

    quantization = "static"

    def _block_modules(self, cfg: Config) -> dict[str, list[str]]:
        names = [f"stage{s}.block{b}" for s in range(1, len(self.stages) + 1)
                 for b in range(1, cfg[f"stage{s}.depth"] + 1)]
        return {"stem": ["stem"], **{n: [f"blocks.{i}"] for i, n in enumerate(names)},
                "head": ["final_expand", "feature_mix", "classifier"]}

    def reorder_channels(self) -> None:
        for stage in self.stages:
            for blk in stage.blocks:
                blk.reorder_channels()
