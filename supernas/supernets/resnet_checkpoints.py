"""ResNet checkpoints for the ``resnet`` family, told apart by their tensor names: Once-for-All's ResNet-50
supernet (``ofa_resnet50``: ``input_stem.*``, ``blocks.*``; the ResNet-D layout of ``resnet(stem="deep",
avg_down=True)``) or a torchvision-layout ResNet (``conv1``, ``layer1..4``, ``fc``; see ``pretrained.py``),
and Once-for-All's ResNet sub-network descriptions (``d``/``e``/``w`` lists) converted both ways.

Once-for-All's lists: ``d`` has 5 entries (the stem: its middle convolution is kept only at the largest
depth; then one depth delta per stage), ``e`` one expand ratio per block slot, ``w`` 6 indices into the width
multipliers (the stem's first two convolutions, its last, then one per stage).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..errors import CheckpointError, ConfigError
from ..space import Config
from .base import Supernet, create_supernet, register_pretrained
from .pretrained import Adapted, NameMap, load_torchvision_resnet, read_state_dict
from .resnet import ResNetSupernet

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_C, _B = r"conv(?:\.conv)*", r"bn(?:\.bn)*"  # a Dynamic* layer nests its tensor one or two levels deeper
_STEM = [(rf"input_stem\.0\.{_C}\.weight", "stem_conv.weight"), (rf"input_stem\.0\.{_B}\.{_BN}", r"stem_bn.\1"),
         (rf"input_stem\.1\.conv\.{_C}\.weight", "stem_conv2.weight"),
         (rf"input_stem\.1\.conv\.{_B}\.{_BN}", r"stem_bn2.\1"),
         (rf"input_stem\.2\.{_C}\.weight", "stem_conv3.weight"), (rf"input_stem\.2\.{_B}\.{_BN}", r"stem_bn3.\1"),
         (r"classifier\.linear(?:\.linear)*\.(weight|bias)", r"fc.\1")]
_BLOCK = [(rf"blocks\.(\d+)\.(conv\d)\.{_C}\.weight", r"\2.weight"), (rf"blocks\.(\d+)\.conv(\d)\.{_B}\.{_BN}", r"bn\2.\3"),
          (rf"blocks\.(\d+)\.downsample\.{_C}\.weight", "down_conv.weight"),
          (rf"blocks\.(\d+)\.downsample\.{_B}\.{_BN}", r"down_bn.\2")]
WIDTH_MULTS, EXPAND_RATIOS, DEPTH_DELTAS = (0.65, 0.8, 1.0), (0.2, 0.25, 0.35), (0, 1, 2)


def _stage_slots(state: Mapping[str, torch.Tensor]) -> list[tuple[int, int]]:
    """(stage, block) of every block index: a stage starts at each block with a projection."""
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    starts = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.downsample\.", k))}
    if not blocks or blocks != list(range(len(blocks))) or 0 not in starts or len(starts) != 4:
        raise CheckpointError("not a Once-for-All ResNet supernet: it needs blocks.0.. with 4 stages that each "
                              "start with a downsample")
    slots, stage, b = [], -1, 0
    for i in blocks:
        stage, b = (stage + 1, 0) if i in starts else (stage, b + 1)
        slots.append((stage, b))
    return slots


def ofa_resnet_names(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{Once-for-All name: supernas name}`` for every tensor of an ``ofa_resnet50`` checkpoint."""
    slots = _stage_slots(state)

    def block(template: str):
        def target(m: re.Match) -> str:
            s, b = slots[int(m.group(1))]
            return f"stages.{s}.blocks.{b}." + m.expand(template)
        return target

    return NameMap(_STEM + [(p, block(t)) for p, t in _BLOCK]).all(state, "a Once-for-All ResNet supernet")


def load_ofa_resnet(path: str | Path, state: Mapping[str, torch.Tensor] | None = None,
                    depth_deltas: Sequence[int] = DEPTH_DELTAS, width_mults: Sequence[float] = WIDTH_MULTS,
                    expand_ratios: Sequence[float] = EXPAND_RATIOS, allow_new_head: bool = True,
                    **args: Any) -> ResNetSupernet:
    """A ``resnet`` supernet holding Once-for-All's ResNet-50 supernet (``ofa_resnet50``): stage widths, stem
    width and blocks per stage read from the tensors, the space Once-for-All's unless given (the lists must end
    at the checkpoint's largest); other ``num_classes`` give a new classifier."""
    state = read_state_dict(path) if state is None else state
    names = ofa_resnet_names(state)
    theirs = {ours: name for name, ours in names.items()}
    slots = _stage_slots(state)
    blocks = [1 + max(b for s, b in slots if s == stage) for stage in range(4)]
    deltas, wmax = tuple(sorted(depth_deltas)), max(width_mults)
    widths = [int(state[theirs[f"stages.{s}.blocks.0.conv3.weight"]].shape[0]) for s in range(4)]
    arch = {"num_classes": int(state[theirs["fc.weight"]].shape[0]),
            "base_depths": tuple(d - deltas[-1] for d in blocks), "depth_deltas": deltas,
            "expand_ratios": tuple(expand_ratios), "width_mults": tuple(width_mults), "block": "bottleneck",
            "stage_widths": tuple(round(w / wmax) for w in widths),
            "stem_width": round(int(state[theirs["stem_conv3.weight"]].shape[0]) / wmax),
            "stem": "deep", "avg_down": True, **args}
    try:
        with torch.device("meta"):
            probe = create_supernet("resnet", **arch)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    fitted = Adapted(state, names, probe.state_dict(), "fc", "stem_conv.weight", allow_new_head)
    if fitted.problem:
        raise CheckpointError(f"{path} does not fit the resnet family's Once-for-All layout: {fitted.problem}")
    return fitted.load_into(create_supernet("resnet", **arch)).eval()


@register_pretrained("resnet")
def load_resnet(path: str | Path, reorder: bool = True, allow_new_head: bool = True, **kwargs: Any) -> Supernet:
    """A ``resnet`` supernet from a checkpoint file: Once-for-All's ResNet-50 supernet (used as trained, its
    channels already in Once-for-All's importance order) or a torchvision-layout ResNet made elastic
    (``reorder``: its inner channels sorted by importance)."""
    state = read_state_dict(path)
    if any(k.startswith("input_stem.") for k in state):
        return load_ofa_resnet(path, state=state, allow_new_head=allow_new_head, **kwargs)
    return load_torchvision_resnet(path, reorder=reorder, allow_new_head=allow_new_head, state=state, **kwargs)


# ------------------------------------------------------------------------ sub-network descriptions
def _slots(net: ResNetSupernet) -> list[tuple[int, int]]:
    return [(s, b) for s, stage in enumerate(net.stages, 1) for b in range(1, len(stage.blocks) + 1)]


def _depth_rule(net: ResNetSupernet) -> tuple[list[int], tuple[int, ...]]:
    return list(net.arch["base_depths"]), tuple(sorted(net.arch["depth_deltas"]))


def from_ofa_resnet(net: ResNetSupernet, d: Sequence[int], e: Sequence[float], w: Sequence[int]) -> Config:
    """A config of a deep-stem ``resnet`` supernet from Once-for-All's ResNet lists
    (``set_active_subnet(d=, e=, w=)``; see the module docstring); entries of skipped blocks are ignored."""
    slots, mults = _slots(net), net.width_mults
    if not net.deep_stem or len(d) != 5 or len(e) != len(slots) or len(w) != 6:
        raise ConfigError(f"Once-for-All ResNet lists need a deep-stem supernet and 5 depths, {len(slots)} expand "
                          f"ratios and 6 width indices; got {len(d)}, {len(e)}, {len(w)}")
    base, deltas = _depth_rule(net)
    cfg: dict[str, Any] = {"stem.mid_width": mults[w[0]], "stem.width": mults[w[1]]}
    if "stem.depth" in net.space:
        cfg["stem.depth"] = 3 if d[0] == deltas[-1] else 2
    for s in range(1, 5):
        cfg[f"stage{s}.depth"], cfg[f"stage{s}.width"] = base[s - 1] + int(d[s]), mults[w[s + 1]]
    for (s, b), ratio in zip(slots, e):
        if b <= cfg[f"stage{s}.depth"]:
            cfg[f"stage{s}.block{b}.expand"] = ratio
    return net.space.validate(cfg)


def to_ofa_resnet(net: ResNetSupernet, cfg: Mapping[str, Any]) -> dict[str, list]:
    """Once-for-All's ``{"d": [...], "e": [...], "w": [...]}`` of a config (skipped blocks: the smallest ratio)."""
    cfg, mults = net.space.validate(cfg), list(net.width_mults)
    base, deltas = _depth_rule(net)
    d = [deltas[-1] if cfg.get("stem.depth", 3) == 3 else deltas[0]]
    d += [cfg[f"stage{s}.depth"] - base[s - 1] for s in range(1, 5)]
    e = [cfg.get(f"stage{s}.block{b}.expand", net.expand_ratios[0]) for s, b in _slots(net)]
    w = [mults.index(cfg["stem.mid_width"]), mults.index(cfg["stem.width"])]
    return {"d": d, "e": e, "w": w + [mults.index(cfg[f"stage{s}.width"]) for s in range(1, 5)]}
