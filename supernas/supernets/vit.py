"""``vit``: an elastic Vision Transformer (patch embedding, [CLS] token, pre-norm encoder, classifier).

Same choices as ``bert``: ``hidden``, ``layers``, ``layer{i}.heads``, ``layer{i}.ffn``. Defaults are small,
sized for the embedded default data (8x8 grey digits, 10 classes, 2x2 patches).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..elastic import ElasticLinear
from ..elastic.transformer import ElasticLayerNorm, ElasticPatchEmbed, PatchEmbed
from ..space import Config, SearchSpace
from .base import Supernet, register_family
from .encoder import ElasticEncoder, StaticEncoder, encoder_choices, encoder_options


class ViT(nn.Module):
    """Static Vision Transformer sub-network."""

    def __init__(self, patch_embed: PatchEmbed, cls_token: torch.Tensor, pos_embed: torch.Tensor,
                 encoder: StaticEncoder, norm: nn.LayerNorm, head: nn.Linear, dropout: float) -> None:
        super().__init__()
        self.patch_embed, self.encoder, self.norm, self.head = patch_embed, encoder, norm, head
        self.cls_token, self.pos_embed = nn.Parameter(cls_token.clone()), nn.Parameter(pos_embed.clone())
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], 1) + self.pos_embed
        return self.head(self.norm(self.encoder(self.dropout(tokens)))[:, 0])


@register_family("vit")
class ViTSupernet(Supernet):
    """Elastic ViT; ``image_size`` must be a multiple of ``patch_size``."""

    def __init__(self, num_classes: int = 10, image_size: int = 8, in_channels: int = 1, patch_size: int = 2,
                 hidden_size: int = 64, num_hidden_layers: int = 4, num_attention_heads: int = 4,
                 intermediate_size: int = 128, hidden_act: str = "gelu", layer_norm_eps: float = 1e-6,
                 dropout: float = 0.0, layer_choices: Sequence[int] | None = None,
                 head_choices: Sequence[int] | None = None, ffn_choices: Sequence[int] | None = None,
                 hidden_choices: Sequence[int] | None = None) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}")
        self.num_classes, self.image_size, self.in_channels = num_classes, image_size, in_channels
        tokens = (image_size // patch_size) ** 2 + 1
        self.patch_embed = ElasticPatchEmbed(in_channels, hidden_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.pos_embed = nn.Parameter(torch.empty(1, tokens, hidden_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.encoder = ElasticEncoder(hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                                      hidden_act, dropout, dropout, layer_norm_eps, norm_first=True)
        self.norm = ElasticLayerNorm(hidden_size, eps=layer_norm_eps)
        self.head = ElasticLinear(hidden_size, num_classes)
        for m in self.encoder.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        opts = encoder_options(hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                               hidden_choices, layer_choices, head_choices, ffn_choices)
        self.space = SearchSpace(encoder_choices(opts))
        self.set_active(self.space.largest())

    def _apply_config(self, cfg: Config) -> None:
        self.patch_embed.active_dim = cfg["hidden"]
        self.encoder.apply_config(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        d = tokens.shape[-1]
        cls = self.cls_token[..., :d].expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], 1) + self.pos_embed[..., :d]
        return self.head(self.norm(self.encoder(self.dropout(tokens)))[:, 0])

    def _build_static(self, cfg: Config) -> ViT:
        d = cfg["hidden"]
        self.patch_embed.active_dim = d
        return ViT(self.patch_embed.extract(), self.cls_token[..., :d], self.pos_embed[..., :d],
                   self.encoder.extract(d), self.norm.extract(d), self.head.extract(d), self.dropout.p)

    quantization = "dynamic"

    def _block_modules(self, cfg: Config) -> dict[str, list[str]]:
        layers = {f"layer{i + 1}": [f"encoder.layers.{i}"] for i in range(cfg["layers"])}
        return {"embeddings": ["patch_embed"], **layers, "head": ["norm", "head"]}

    def reorder_channels(self) -> None:
        """Sort every layer's heads and FFN neurons by importance (the function is unchanged)."""
        self.encoder.reorder()
