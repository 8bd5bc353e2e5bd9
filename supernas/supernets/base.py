"""The Supernet base class and the family registry (``create_supernet(name, **kw)``)."""
from __future__ import annotations

import inspect
import math
import typing
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from pydantic import TypeAdapter, ValidationError
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from ..space import Config, SearchSpace

_FAMILIES: Registry[type["Supernet"]] = Registry("supernet family")
#: family -> loader of a published checkpoint file, ``loader(path, **kwargs) -> Supernet``
_PRETRAINED: Registry[Callable[..., "Supernet"]] = Registry("pretrained checkpoint loader")


class InputResize(nn.Module):
    """Resizes images to a sub-network's resolution (bilinear, antialiased when shrinking); a no-op for
    inputs already at that size, so an exported model traced at its resolution holds no resize."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                             antialias=bool(x.shape[-1] > self.size))

    def extra_repr(self) -> str:
        return f"size={self.size}"


class Supernet(nn.Module):
    """An ``nn.Module`` built from elastic ops.

    Subclasses set ``self.space`` and implement ``_apply_config(cfg)`` (push a full config into the elastic
    ops) and ``_build_static(cfg)`` (a plain module with weights copied for the active config).
    ``arch`` holds the constructor arguments, so a checkpoint can rebuild the same supernet;
    ``trained_epochs`` is the number of finished epochs of the checkpoint it was loaded from (else None).
    """

    family: str = "?"
    space: SearchSpace

    def __init__(self) -> None:
        super().__init__()
        self.arch: dict[str, Any] = {}
        self.trained_epochs: int | None = None
        self._active: Config | None = None

    # ---------------------------------------------------------------- active sub-network
    def set_active(self, cfg: Mapping[str, Any]) -> Config:
        """Make ``cfg`` the sub-network that ``forward`` computes; returns its canonical form."""
        canon = self.space.validate(cfg)
        self._apply_config({c.name: canon.get(c.name, c.options[0]) for c in self.space.choices})
        self._active = canon
        return canon

    @property
    def active(self) -> Config:
        if self._active is None:
            self.set_active(self.space.largest())
        return dict(self._active)  # type: ignore[arg-type]

    def _apply_config(self, cfg: Config) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def resize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images resized to the active resolution when the space has a ``resolution`` choice (families
        call this first in ``forward``, so training and evaluation may feed any image size)."""
        if self._active is None or "resolution" not in self._active:
            return x
        return InputResize(self._active["resolution"])(x)

    def input_resize(self, cfg: Mapping[str, Any] | None = None) -> InputResize | None:
        """What sub-network ``cfg`` does to its inputs first: an ``InputResize`` to its ``resolution`` choice, or
        None (no resolution in the space). A graph exported at that resolution holds no resize, so whoever runs
        it on images of another size applies this first."""
        cfg = self.active if cfg is None else self.space.validate(cfg)
        return InputResize(cfg["resolution"]) if "resolution" in cfg else None

    def input_shape(self, cfg: Mapping[str, Any] | None = None, batch: int = 1) -> tuple[int, ...]:
        """Shape of the input the sub-network ``cfg`` expects: for image families (the default here)
        ``(batch, in_channels, r, r)`` with ``r`` its ``resolution`` choice, else the supernet's ``image_size``;
        other inputs (token ids, a user's model's example) override this."""
        cfg = self.active if cfg is None else self.space.validate(cfg)
        r = cfg.get("resolution", self.image_size)
        return (batch, self.in_channels, r, r)

    def example_input(self, cfg: Mapping[str, Any] | None = None, batch: int = 1) -> torch.Tensor:
        """An input for sub-network ``cfg``: zeros of ``input_shape`` (text families return token ids)."""
        return torch.zeros(self.input_shape(cfg, batch))

    def random_input(self, shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Random inputs of ``shape`` (export checks): standard normal; text families give token ids."""
        return torch.randn(tuple(shape), generator=generator)

    def dynamic_axes(self) -> dict[int, tuple[str, int, int]]:
        """Input axes besides the batch that exported sub-networks keep dynamic: ``{axis: (name, min, max)}``."""
        return {}

    # ---------------------------------------------------------------------- extraction
    @torch.no_grad()
    def extract(self, cfg: Mapping[str, Any] | None = None) -> nn.Module:
        """A static ``nn.Module`` computing sub-network ``cfg`` (default: the active one); weights are
        copied, so later training of the supernet does not change it. Same train/eval mode as self."""
        prev = self._active
        canon = self.set_active(cfg if cfg is not None else self.active)
        full = {c.name: canon.get(c.name, c.options[0]) for c in self.space.choices}
        sub = self._build_static(full)
        resize = self.input_resize(canon)
        if resize is not None:  # the sub-network works at its own resolution, whatever it is fed
            sub = nn.Sequential(resize, sub)
        sub.train(self.training)
        sub.supernas_config = dict(canon)  # type: ignore[attr-defined]
        if prev is not None:
            self.set_active(prev)
        return sub

    def _build_static(self, cfg: Config) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ blocks (quantization policy)
    #: how the family's sub-networks are quantized to INT8: ``static`` (QDQ, calibrated activation ranges:
    #: convolutional families) or ``dynamic`` (weights offline, activations per batch: transformers);
    #: None: the family cannot be quantized
    quantization: str | None = None

    def block_modules(self, cfg: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
        """The blocks of sub-network ``cfg`` a quantization policy chooses a precision for, in network order:
        ``{block name: module paths in extract(cfg)}``. Block names are the space's own prefixes
        (``stage2.block1``, ``layer3``) plus ``stem`` / ``embeddings`` and ``head``."""
        canon = self.space.validate(cfg if cfg is not None else self.active)
        full = {c.name: canon.get(c.name, c.options[0]) for c in self.space.choices}
        blocks = self._block_modules(full)
        if "resolution" in canon:  # extract() wraps the network as Sequential(InputResize, net)
            blocks = {name: [f"1.{p}" for p in paths] for name, paths in blocks.items()}
        return blocks

    def _block_modules(self, cfg: Config) -> dict[str, list[str]]:
        raise ConfigError(f"supernet family {self.family!r} does not name its blocks, so it has no "
                          f"quantization policy (families that do: mbv3, resnet, bert, vit)")

    def reorder_channels(self) -> None:
        """Sort elastic channels by importance (L1 norm) without changing the function, so that the
        first channels kept by a smaller width are the most important ones."""
        raise NotImplementedError

    def sample_active(self, seed: int | None = None) -> Config:
        return self.set_active(self.space.sample(seed=seed))


def register_family(name: str) -> Callable[[type[Supernet]], type[Supernet]]:
    """Class decorator registering a supernet family under ``name``."""

    def deco(cls: type[Supernet]) -> type[Supernet]:
        cls.family = name
        return _FAMILIES.add(name, cls)

    return deco


def register_pretrained(family: str) -> Callable[[Callable[..., Supernet]], Callable[..., Supernet]]:
    """Decorator registering ``fn(path, **kwargs) -> Supernet`` as the checkpoint loader of ``family``."""

    def deco(fn: Callable[..., Supernet]) -> Callable[..., Supernet]:
        return _PRETRAINED.add(family, fn)

    return deco


def list_families() -> list[str]:
    return _FAMILIES.names()


def pretrained_families() -> list[str]:
    """Families with a registered checkpoint loader (``create_supernet(name, pretrained=path)``)."""
    return _PRETRAINED.names()


def loader_arguments(name: str) -> set[str]:
    """The keyword arguments of ``name``'s checkpoint loader that are not the family constructor's (they
    steer the loading, e.g. ``reorder``, and are not part of the supernet's ``arch``)."""
    own = set(inspect.signature(family_class(name).__init__).parameters)
    params = inspect.signature(_PRETRAINED.get(name)).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD} \
        - own - {"path"}


def family_class(name: str) -> type[Supernet]:
    return _FAMILIES.get(name)


MAX_IMAGE_SIDE = 8192  # an input a supernet is measured on is allocated: bound its side
MAX_DEPTH = 128  # blocks per stage or layers (ResNet-152's largest stage has 36): building 6,000 took minutes
DEPTH_ARGUMENTS = ("depths", "base_depths", "depth_deltas", "num_hidden_layers")


def _short(v: Any) -> str:
    """``repr(v)`` on one line, at most 60 characters."""
    text = " ".join(repr(v).split())
    return text if len(text) <= 60 else text[:57] + "..."


def supernet_arch(name: str, **kwargs: Any) -> dict[str, Any]:
    """The ``arch`` dict (family and every constructor argument, defaults filled in) that
    ``create_supernet(name, **kwargs)`` records, without building the network."""
    cls = family_class(name)
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        allowed = [p for p in params if p != "self"]
        raise ConfigError(f"unknown argument {unknown[0]!r} for supernet {name!r}; allowed: {', '.join(allowed)}")
    hints = typing.get_type_hints(cls.__init__)
    for k, v in kwargs.items():  # the constructor's annotations, strictly (no coercion: 1.0 is not an int)
        if k in hints:
            try:
                TypeAdapter(hints[k]).validate_python(v, strict=True)
            except ValidationError as e:
                what = e.errors()[0]["msg"].removeprefix("Input ")
                raise ConfigError(f"supernet {name!r}: {k} {what}, got {_short(v)}") from None
            if hints[k] is int and v < 0:  # sizes and counts (a family refuses its own zeros)
                raise ConfigError(f"supernet {name!r}: {k} must be a non-negative integer, got {v!r}")
            if isinstance(v, (list, tuple)) and not v:  # a list of choices with nothing to choose
                raise ConfigError(f"supernet {name!r}: {k} must not be empty")
    for k, v in kwargs.items():  # value checks every family shares, also run when a run file is loaded
        values = v if isinstance(v, (list, tuple)) else [v]
        if any(isinstance(x, float) and not math.isfinite(x) for x in values):
            raise ConfigError(f"supernet {name!r}: {k} must be finite, got {v!r}")
        if k.endswith("dropout") and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1):
            raise ConfigError(f"supernet {name!r}: {k} must be a number in [0, 1), got {v!r}")
        if k in ("image_size", "resolutions") and any(isinstance(x, int) and x > MAX_IMAGE_SIDE for x in values):
            raise ConfigError(f"supernet {name!r}: {k} {_short(v)} exceeds {MAX_IMAGE_SIDE} pixels a side")
        if k in DEPTH_ARGUMENTS and any(isinstance(x, int) and x > MAX_DEPTH for x in values):
            raise ConfigError(f"supernet {name!r}: {k} {_short(v)} exceeds {MAX_DEPTH} blocks")
    bound = inspect.signature(cls.__init__).bind(None, **kwargs)
    bound.apply_defaults()
    return {"family": name, **{k: v for k, v in bound.arguments.items() if k != "self"}}


def available_memory() -> int | None:
    """Bytes of memory this machine can still hand out (``MemAvailable``), None where unknown."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require_memory(name: str, weight_bytes: int) -> None:
    """Refuse a supernet whose weights and their gradients would not fit in the memory available now."""
    free = available_memory()
    if free is not None and 2 * weight_bytes > free:  # weights + their gradients, before the optimizer's
        raise ConfigError(f"supernet {name!r} with these arguments holds {weight_bytes / 2**30:,.1f} GiB of "
                          f"weights; this machine has {free / 2**30:,.1f} GiB available")


def create_supernet(name: str, pretrained: str | None = None, **kwargs: Any) -> Supernet:
    """Build supernet family ``name`` with its constructor arguments (timm-style factory). The network is
    first built on the ``meta`` device (no memory): bad arguments and a supernet whose weights would not fit
    in this machine's available memory are refused before anything is allocated. ``pretrained``: a local
    checkpoint file the family can load (``mbv3``: a Once-for-All MobileNetV3 supernet; ``resnet``: a
    torchvision-layout ResNet), its sizes read from the file and ``kwargs`` the remaining arguments (other
    ``num_classes`` than the checkpoint's: a new classifier)."""
    if pretrained is not None:
        family_class(name)  # an unknown family is named as such
        if name not in _PRETRAINED:
            raise ConfigError(f"supernet family {name!r} cannot load a pretrained checkpoint file (families that "
                              f"can: {', '.join(_PRETRAINED.names())})")
        return _PRETRAINED.get(name)(pretrained, **kwargs)
    arch = supernet_arch(name, **kwargs)
    require_memory(name, _meta_weight_bytes(name, kwargs))
    net = family_class(name)(**kwargs)
    net.arch = arch
    return net


def supernet_weight_bytes(name: str, **kwargs: Any) -> int:
    """Bytes of the weights and buffers ``create_supernet(name, **kwargs)`` would allocate, counted on a copy
    built on the ``meta`` device (nothing allocated); bad arguments are one ConfigError line."""
    supernet_arch(name, **kwargs)
    return _meta_weight_bytes(name, kwargs)


def _meta_weight_bytes(name: str, kwargs: Mapping[str, Any]) -> int:
    """``supernet_weight_bytes`` for arguments ``supernet_arch`` has checked already."""
    try:
        with torch.device("meta"):
            probe = family_class(name)(**kwargs)
        return sum(t.numel() * t.element_size() for t in (*probe.parameters(), *probe.buffers()))
    except Exception as e:  # noqa: BLE001 - whatever a constructor raises on its arguments, built on meta
        first = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(f"bad arguments for supernet {name!r}: {first}") from e
