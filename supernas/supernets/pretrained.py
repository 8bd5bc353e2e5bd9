"""Ordinary (non-elastic) pretrained checkpoints made elastic: a torchvision-layout ResNet state dict becomes
a ``resnet`` supernet whose largest sub-network is that network, its channels then re-ordered by importance
so that smaller widths keep the most important ones (the BootstrapNAS / InstaTune idea; fine-tune it with
the sandwich rule afterwards). Also the one checkpoint reader both this and the Once-for-All loader use.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..errors import CheckpointError, ConfigError, warn
from .base import Supernet, create_supernet

RATIO_STEPS = (0.6, 0.8, 1.0)  # default expand choices: these fractions of the checkpoint's own ratio
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_TORCHVISION = [
    (rf"conv1\.weight", "stem_conv.weight"),
    (rf"bn1\.{_BN}", r"stem_bn.\1"),
    (rf"layer(\d)\.(\d+)\.conv(\d)\.weight", r"stages.{s}.blocks.\2.conv\3.weight"),
    (rf"layer(\d)\.(\d+)\.bn(\d)\.{_BN}", r"stages.{s}.blocks.\2.bn\3.\4"),
    (rf"layer(\d)\.(\d+)\.downsample\.0\.weight", r"stages.{s}.blocks.\2.down_conv.weight"),
    (rf"layer(\d)\.(\d+)\.downsample\.1\.{_BN}", r"stages.{s}.blocks.\2.down_bn.\3"),
    (rf"fc\.(weight|bias)", r"fc.\1"),
]


class NameMap:
    """Tensor names of a foreign checkpoint -> a family's: the first rule whose regex matches the whole name
    gives the target, a template (``\\1`` groups) or a function of the match."""

    def __init__(self, rules: Sequence[tuple[str, str | Callable[[re.Match], str]]]) -> None:
        self.rules = [(re.compile(pattern), target) for pattern, target in rules]

    def __call__(self, name: str) -> str | None:
        for pattern, target in self.rules:
            m = pattern.fullmatch(name)
            if m is not None:
                return target(m) if callable(target) else m.expand(target)
        return None

    def all(self, names: Iterable[str], what: str) -> dict[str, str]:
        """``{name: target}`` for every name; one a rule does not know is a CheckpointError."""
        out = {}
        for name in names:
            target = self(name)
            if target is None:
                raise CheckpointError(f"tensor {name!r} is not part of {what}")
            out[name] = target
        return out


def _stage(template: str) -> Callable[[re.Match], str]:
    return lambda m: m.expand(template).replace("{s}", str(int(m.group(1)) - 1))


TORCHVISION_RESNET = NameMap([(p, _stage(t) if "{s}" in t else t) for p, t in _TORCHVISION])


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``{"state_dict": ...}``, ``{"model": ...}`` or a bare state dict; a
    DataParallel ``module.`` prefix is dropped), read with ``weights_only=True``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"pretrained checkpoint {p} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - zip/pickle/EOF errors of a damaged or foreign file
        raise CheckpointError(f"{p} is not a readable PyTorch checkpoint ({type(e).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{p} holds no state dict of named tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def shape_problem(state: Mapping[str, torch.Tensor], names: Mapping[str, str],
                  expected: Mapping[str, torch.Tensor]) -> str | None:
    """The first tensor of ``state`` whose shape disagrees with its place (``names``) in the supernet's state
    dict ``expected`` (or that has none), or the first supernet tensor it lacks; None when all fit."""
    for name, tensor in state.items():
        want = expected.get(names[name])
        if want is None:
            return f"{name} has no place in this supernet"
        if tuple(want.shape) != tuple(tensor.shape):
            return f"{name} is {tuple(tensor.shape)}, the supernet's {names[name]} is {tuple(want.shape)}"
    missing = sorted(set(expected) - set(names.values()))
    return f"the checkpoint has no tensor for {missing[0]}" if missing else None


class Adapted:
    """A foreign checkpoint fitted to a supernet that may differ from it in two places only: a classifier
    (the supernet's tensors under ``head``) for another number of classes is left as initialised, to be
    fine-tuned (refused unless ``allow_new_head``), and a first convolution (``first_conv``) over one input
    channel where the checkpoint has three takes the sum of the RGB filters (timm's rule). ``problem`` is the
    first other disagreement (None when the checkpoint fits); ``notes`` say what was adapted."""

    def __init__(self, state: Mapping[str, torch.Tensor], names: Mapping[str, str],
                 expected: Mapping[str, torch.Tensor], head: str, first_conv: str, allow_new_head: bool) -> None:
        self.names, self.notes = names, []
        theirs = {names[k]: k for k in state}
        head_keys = {k for k in expected if k.startswith(head + ".")}
        if any(k in theirs and tuple(state[theirs[k]].shape) != tuple(expected[k].shape) for k in head_keys):
            weight = f"{head}.weight"
            old, new = int(state[theirs[weight]].shape[0]), int(expected[weight].shape[0])
            if not allow_new_head:
                self.state, self.problem = dict(state), (
                    f"the checkpoint classifies {old} classes, the supernet {new}; a new classifier must be trained "
                    f"(train.epochs >= 1)")
                return
            self.notes.append(f"the classifier is new ({old} -> {new} classes): fine-tune it")
            state = {k: v for k, v in state.items() if names[k] not in head_keys}
            expected = {k: v for k, v in expected.items() if k not in head_keys}
        self.state = dict(state)
        conv = theirs.get(first_conv)
        if conv is not None and first_conv in expected and self.state[conv].dim() == 4 \
                and self.state[conv].shape[1] == 3 and expected[first_conv].shape[1] == 1:
            self.state[conv] = self.state[conv].sum(1, keepdim=True)
            self.notes.append("the first convolution's RGB filters are summed for one input channel")
        self.problem = shape_problem(self.state, names, expected)

    def load_into(self, net: Supernet) -> Supernet:
        """``net`` holding the checkpoint's tensors (its new classifier, if any, as initialised)."""
        net.load_state_dict({self.names[k]: v for k, v in self.state.items()}, strict=False)
        for note in self.notes:
            warn(note)
        return net


def resnet_arch(state: Mapping[str, torch.Tensor], depth_deltas: Sequence[int] = (0, 1, 2),
                width_mults: Sequence[float] = (0.65, 0.8, 1.0), expand_ratios: Sequence[float] | None = None,
                **args: Any) -> dict[str, Any]:
    """``resnet`` arguments whose largest sub-network has the checkpoint's layout: depths, block type, stem
    and stage widths, expand ratio and classes read from the tensors."""
    depths = [1 + max((int(m.group(1)) for k in state if (m := re.match(rf"layer{s}\.(\d+)\.", k))), default=-1)
              for s in range(1, 5)]
    if min(depths) < 1 or "conv1.weight" not in state or "fc.weight" not in state:
        raise CheckpointError("not a torchvision-layout ResNet: it needs conv1, layer1..layer4 and fc")
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    last = "conv3" if block == "bottleneck" else "conv2"
    widths = [int(state[f"layer{s}.0.{last}.weight"].shape[0]) for s in range(1, 5)]
    ratio = state["layer1.0.conv1.weight"].shape[0] / widths[0]
    deltas = tuple(sorted(int(d) for d in depth_deltas))
    if min(depths) - deltas[-1] + deltas[0] < 1:
        raise ConfigError(f"depth_deltas {deltas} would leave a stage of the checkpoint's depths {depths} without "
                          f"a block")
    ratios = tuple(expand_ratios) if expand_ratios else tuple(round(ratio * f, 4) for f in RATIO_STEPS)
    if abs(max(ratios) - ratio) > 1e-6:
        raise ConfigError(f"expand_ratios {ratios} must end at the checkpoint's ratio {ratio:g}")
    return {"num_classes": int(state["fc.weight"].shape[0]), "in_channels": int(state["conv1.weight"].shape[1]),
            "base_depths": tuple(d - deltas[-1] for d in depths), "depth_deltas": deltas,
            "expand_ratios": ratios, "width_mults": tuple(width_mults), "block": block,
            "stage_widths": tuple(widths), "stem_width": int(state["conv1.weight"].shape[0]),
            "tie_stem": "layer1.0.downsample.0.weight" not in state, **args}


def load_torchvision_resnet(path: str | Path, reorder: bool = True, allow_new_head: bool = True,
                            state: Mapping[str, torch.Tensor] | None = None, **kwargs: Any) -> Supernet:
    """A ``resnet`` supernet from a torchvision-layout ResNet checkpoint (ResNet-18/34/50/101/152 and
    widened variants): its largest sub-network is the checkpoint's network; ``reorder`` sorts the inner
    channels by importance (the function is kept). ``kwargs``: the space (``depth_deltas``, ``width_mults``,
    ``expand_ratios``) and other ``resnet`` arguments; ``num_classes`` other than the checkpoint's gives a new
    classifier (see :class:`Adapted`), ``in_channels=1`` sums the first convolution's RGB filters. ``state``:
    the file's tensors when already read."""
    state = read_state_dict(path) if state is None else state
    names = TORCHVISION_RESNET.all(state, "a torchvision-layout ResNet")
    net = create_supernet("resnet", **resnet_arch(state, **kwargs))
    fitted = Adapted(state, names, net.state_dict(), "fc", "stem_conv.weight", allow_new_head)
    if fitted.problem:
        raise CheckpointError(f"{path}: {fitted.problem}")
    fitted.load_into(net)
    if reorder:
        net.reorder_channels()
    return net.eval()
