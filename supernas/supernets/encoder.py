"""The elastic transformer encoder shared by the ``bert`` and ``vit`` families, and their choices.

Choices (smallest option first): ``hidden`` (embedding width), ``layers`` (depth: the first ``layers``
layers run), and per layer ``layer{i}.heads`` / ``layer{i}.ffn`` for ``i = 1..max layers``, active only
when ``layers >= i``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..elastic import ElasticDepth
from ..elastic.transformer import ElasticTransformerLayer, TransformerLayer
from ..space import Choice, Config


def _options(given: Sequence[int] | None, default: Sequence[int], name: str, upper: int) -> tuple[int, ...]:
    opts = tuple(sorted({int(v) for v in (given if given is not None else default)}))
    if not opts or opts[0] < 1 or opts[-1] > upper:
        raise ValueError(f"{name} must be integers in 1..{upper}, got {list(given or default)}")
    return opts


def encoder_options(hidden: int, layers: int, heads: int, inner: int, hidden_choices: Sequence[int] | None,
                    layer_choices: Sequence[int] | None, head_choices: Sequence[int] | None,
                    ffn_choices: Sequence[int] | None) -> dict[str, tuple[int, ...]]:
    """Option lists with defaults: hidden {3/4, 1} x H, layers {L/2..L}, heads {1/4..1} x A, FFN {1/4..1} x I."""
    return {
        "hidden": _options(hidden_choices, {hidden * 3 // 4, hidden}, "hidden_choices", hidden),
        "layers": _options(layer_choices, range(max(1, layers // 2), layers + 1), "layer_choices", layers),
        "heads": _options(head_choices, {max(1, heads * f // 4) for f in (1, 2, 3, 4)}, "head_choices", heads),
        "ffn": _options(ffn_choices, {max(1, inner * f // 4) for f in (1, 2, 3, 4)}, "ffn_choices", inner),
    }


def encoder_choices(opts: dict[str, tuple[int, ...]]) -> list[Choice]:
    choices = [Choice("hidden", opts["hidden"]), Choice("layers", opts["layers"])]
    for i in range(1, opts["layers"][-1] + 1):
        choices += [Choice(f"layer{i}.heads", opts["heads"], ("layers", i - 1)),
                    Choice(f"layer{i}.ffn", opts["ffn"], ("layers", i - 1))]
    return choices


class StaticEncoder(nn.Module):
    """Static stack of transformer layers taking ``(x, mask)``."""

    def __init__(self, layers: list[TransformerLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class ElasticEncoder(ElasticDepth):
    """Elastic depth over :class:`ElasticTransformerLayer` blocks, passing the attention mask along."""

    def __init__(self, hidden: int, layers: int, heads: int, inner: int, act: str, dropout: float,
                 attn_dropout: float, eps: float, norm_first: bool) -> None:
        super().__init__([ElasticTransformerLayer(hidden, heads, inner, act, dropout, attn_dropout, eps, norm_first)
                          for _ in range(layers)])

    def apply_config(self, cfg: Config) -> None:
        self.active_depth = cfg["layers"]
        for i, layer in enumerate(self.blocks, 1):
            layer.set_active(cfg[f"layer{i}.heads"], cfg[f"layer{i}.ffn"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        for layer in self.active_blocks():
            x = layer(x, mask)
        return x

    def extract(self, hidden: int) -> StaticEncoder:
        return StaticEncoder([layer.extract(hidden) for layer in self.active_blocks()])

    def reorder(self) -> None:
        for layer in self.blocks:
            layer.reorder()
