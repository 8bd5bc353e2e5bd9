"""Once-for-All's published MobileNetV3 supernets (``ofa_mbv3_d234_e346_k357_w1.0`` / ``_w1.2``) loaded into the
``mbv3`` family, and Once-for-All's sub-network descriptions converted: ``ks``/``e``/``d`` lists both ways, the
``net.config`` of its specialised networks to a config.

The user downloads a checkpoint once; nothing here downloads. Parameter names are mapped one by one
(``blocks.<i>.conv.depth_conv.conv.conv.weight`` -> ``stages.<s>.blocks.<b>.dw.weight``, ...); the width,
classes and space maxima are read from the tensors and every tensor's shape is checked, so a checkpoint that
does not fit names the first tensor that disagrees. Loading is ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..elastic import make_divisible
from ..errors import CheckpointError, ConfigError
from ..space import Config
from .base import create_supernet, register_pretrained
from .mbv3 import STAGE_WIDTHS, MobileNetV3Supernet
from .pretrained import Adapted, NameMap, read_state_dict

WIDTHS = (1.0, 1.2)  # the published ones; others are tried after them (with Once-for-All's feature-mix rule)
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RULES = [  # Once-for-All name (regex) -> supernas name (blocks.<i> is filled in by _block_name)
    (rf"first_conv\.conv\.weight", "stem.0.weight"),
    (rf"first_conv\.bn\.{_BN}", r"stem.1.\1"),
    (rf"blocks\.0\.conv\.depth_conv\.conv\.weight", "first_block.dw.0.weight"),
    (rf"blocks\.0\.conv\.depth_conv\.bn\.{_BN}", r"first_block.dw.1.\1"),
    (rf"blocks\.0\.conv\.point_linear\.conv\.weight", "first_block.project.0.weight"),
    (rf"blocks\.0\.conv\.point_linear\.bn\.{_BN}", r"first_block.project.1.\1"),
    (rf"blocks\.(\d+)\.conv\.inverted_bottleneck\.conv\.conv\.weight", "{block}.expand.weight"),
    (rf"blocks\.(\d+)\.conv\.inverted_bottleneck\.bn\.bn\.{_BN}", r"{block}.expand_bn.\2"),
    (rf"blocks\.(\d+)\.conv\.depth_conv\.conv\.conv\.weight", "{block}.dw.weight"),
    (rf"blocks\.(\d+)\.conv\.depth_conv\.conv\.(\d)to(\d)_matrix", r"{block}.dw.transform_\2to\3"),
    (rf"blocks\.(\d+)\.conv\.depth_conv\.bn\.bn\.{_BN}", r"{block}.dw_bn.\2"),
    (rf"blocks\.(\d+)\.conv\.depth_conv\.se\.fc\.(reduce|expand)\.(weight|bias)", r"{block}.se.\2.\3"),
    (rf"blocks\.(\d+)\.conv\.point_linear\.conv\.conv\.weight", "{block}.project.weight"),
    (rf"blocks\.(\d+)\.conv\.point_linear\.bn\.bn\.{_BN}", r"{block}.project_bn.\2"),
    (rf"final_expand_layer\.conv\.weight", "final_expand.0.weight"),
    (rf"final_expand_layer\.bn\.{_BN}", r"final_expand.1.\1"),
    (rf"feature_mix_layer\.conv\.weight", "feature_mix.0.weight"),
    (rf"classifier\.linear\.(weight|bias)", r"classifier.\1"),
]


def ofa_names(state: Mapping[str, torch.Tensor], max_depth: int) -> dict[str, str]:
    """``{Once-for-All name: supernas name}`` for every tensor; a name no rule knows is a CheckpointError."""
    def block(template: str):
        def target(m: re.Match) -> str:
            i = int(m.group(1)) - 1
            return m.expand(template).replace("{block}", f"stages.{i // max_depth}.blocks.{i % max_depth}")
        return target

    rules = NameMap([(p, block(t) if "{block}" in t else t) for p, t in _RULES])
    return rules.all(state, "a Once-for-All MobileNetV3 supernet")


def _max_depth(state: Mapping[str, torch.Tensor]) -> int:
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not blocks or (max(blocks) % len(STAGE_WIDTHS)):
        raise CheckpointError(f"the checkpoint has {max(blocks, default=-1) + 1} blocks; a Once-for-All MobileNetV3 "
                              f"has 1 + {len(STAGE_WIDTHS)} stages x the largest depth")
    return max(blocks) // len(STAGE_WIDTHS)


@register_pretrained("mbv3")
def load_ofa_mbv3(path: str | Path, width_mult: float | None = None, kernel_sizes: Sequence[int] = (3, 5, 7),
                  expand_ratios: Sequence[float] = (3, 4, 6), depths: Sequence[int] | None = None,
                  allow_new_head: bool = True, **args: Any) -> MobileNetV3Supernet:
    """An ``mbv3`` supernet holding a Once-for-All MobileNetV3 checkpoint. ``width_mult`` is found from the
    tensors when not given (1.0 and 1.2 are the published ones); the classes come from the classifier and
    the largest depth from the number of blocks (``depths`` default: 2 up to it); the kernel and expand
    lists must end at the checkpoint's largest. ``args``: further ``mbv3`` arguments (e.g. ``dropout``);
    ``num_classes`` other than the checkpoint's gives a new classifier, ``in_channels=1`` sums the first
    convolution's RGB filters (:class:`~supernas.supernets.pretrained.Adapted`)."""
    state = read_state_dict(path)
    max_depth = _max_depth(state)
    names = ofa_names(state, max_depth)
    if "classifier.linear.weight" not in state:
        raise CheckpointError(f"{path}: no classifier.linear.weight (not a Once-for-All MobileNetV3 checkpoint)")
    args = {"num_classes": int(state["classifier.linear.weight"].shape[0]), "kernel_sizes": tuple(kernel_sizes),
            "expand_ratios": tuple(expand_ratios), "depths": tuple(depths or range(2, max_depth + 1)),
            "dropout": 0.0, "feature_mix_rule": "ofa", **args}
    widths = [width_mult] if width_mult is not None else [*WIDTHS, 0.75, 0.5, 1.5, 2.0]
    first_problem = None
    for w in widths:
        try:
            with torch.device("meta"):
                probe = create_supernet("mbv3", width_mult=w, **args)
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from None
        fitted = Adapted(state, names, probe.state_dict(), "classifier", "stem.0.weight", allow_new_head)
        if fitted.problem is None:
            return fitted.load_into(create_supernet("mbv3", width_mult=w, **args)).eval()
        first_problem = first_problem or fitted.problem
    tried = f"width {width_mult:g}" if width_mult is not None else "widths " + ", ".join(f"{w:g}" for w in widths)
    raise CheckpointError(f"{path} does not fit the mbv3 family at {tried}: {first_problem}")


# ------------------------------------------------------------------------ sub-network descriptions
def _depth_limit(net: MobileNetV3Supernet) -> int:
    return max(net.space["stage1.depth"].options)


def from_ofa(net: MobileNetV3Supernet, ks: Sequence[int], e: Sequence[float], d: Sequence[int],
             resolution: int | None = None) -> Config:
    """A config of ``net`` from Once-for-All's ``ks``/``e`` (one per block slot, 5 x largest depth) and
    ``d`` (one per stage) lists (``set_active_subnet(ks, e, d)``); entries of skipped blocks are ignored."""
    slots = len(STAGE_WIDTHS) * _depth_limit(net)
    if len(ks) != slots or len(e) != slots or len(d) != len(STAGE_WIDTHS):
        raise ConfigError(f"Once-for-All lists need {slots} kernel sizes, {slots} expand ratios and "
                          f"{len(STAGE_WIDTHS)} depths; got {len(ks)}, {len(e)}, {len(d)}")
    cfg: dict[str, Any] = {}
    for s in range(len(STAGE_WIDTHS)):
        cfg[f"stage{s + 1}.depth"] = int(d[s])
        for b in range(int(d[s])):
            i = s * _depth_limit(net) + b
            cfg[f"stage{s + 1}.block{b + 1}.kernel"] = int(ks[i])
            cfg[f"stage{s + 1}.block{b + 1}.expand"] = e[i]
    if resolution is not None:
        cfg["resolution"] = int(resolution)
    return net.space.validate(cfg)


def from_ofa_net_config(net: MobileNetV3Supernet, net_config: Mapping[str, Any] | str | Path,
                        image_size: int | None = None) -> Config:
    """A config of ``net`` from a Once-for-All specialised network's ``net.config`` (a file or its JSON
    mapping; the published format with ``mobile_inverted_conv`` layers and the ``ofa`` package's
    ``get_active_subnet().config`` with ``conv`` layers both read). The blocks after the first are grouped into
    stages at each block without a shortcut; kernel sizes, expand ratios and depths are read from them, and
    ``image_size`` (the net's ``run.config``) sets the resolution when the space has that choice. A network
    of another width or layout is a ConfigError naming what disagrees."""
    if not isinstance(net_config, Mapping):
        try:
            net_config = json.loads(Path(net_config).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{net_config}: not a readable net.config ({type(e).__name__})") from None
    if not isinstance(net_config, Mapping) or net_config.get("name") != "MobileNetV3" \
            or not isinstance(net_config.get("blocks"), list):
        raise ConfigError("not a Once-for-All MobileNetV3 net.config (it needs name 'MobileNetV3' and blocks)")
    stages: list[list[Mapping[str, Any]]] = []
    for i, block in enumerate(net_config["blocks"][1:], 1):
        layer = block.get("mobile_inverted_conv") or block.get("conv") if isinstance(block, Mapping) else None
        if not isinstance(layer, Mapping) or not {"kernel_size", "expand_ratio", "out_channels"} <= set(layer):
            raise ConfigError(f"net.config block {i} has no inverted-residual layer")
        if block.get("shortcut") is None or not stages:
            stages.append([])
        stages[-1].append(layer)
    widths = [make_divisible(w * net.arch.get("width_mult", 1.0)) for w in STAGE_WIDTHS]
    found = [int(stage[0]["out_channels"]) for stage in stages]
    if found != widths:
        raise ConfigError(f"the net.config's stages are {found} channels wide, this supernet's {widths} "
                          f"(another width_mult?)")
    cfg: dict[str, Any] = {}
    for s, layers in enumerate(stages, 1):
        cfg[f"stage{s}.depth"] = len(layers)
        for b, layer in enumerate(layers, 1):
            cfg[f"stage{s}.block{b}.kernel"] = int(layer["kernel_size"])
            cfg[f"stage{s}.block{b}.expand"] = layer["expand_ratio"]
    if image_size is not None and "resolution" in net.space:
        cfg["resolution"] = int(image_size)
    return net.space.validate(cfg)


def to_ofa(net: MobileNetV3Supernet, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Once-for-All's ``{"ks": [...], "e": [...], "d": [...]}`` (plus ``"r"`` with a resolution choice) of a
    config; skipped block slots carry the smallest options, as Once-for-All ignores them."""
    cfg = net.space.validate(cfg)
    ks, e, d = [], [], []
    for s in range(1, len(STAGE_WIDTHS) + 1):
        d.append(cfg[f"stage{s}.depth"])
        for b in range(1, _depth_limit(net) + 1):
            ks.append(cfg.get(f"stage{s}.block{b}.kernel", net.space[f"stage{s}.block{b}.kernel"].options[0]))
            e.append(cfg.get(f"stage{s}.block{b}.expand", net.space[f"stage{s}.block{b}.expand"].options[0]))
    out: dict[str, Any] = {"ks": ks, "e": e, "d": d}
    if "resolution" in cfg:
        out["r"] = cfg["resolution"]
    return out
