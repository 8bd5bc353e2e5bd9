"""Elastic transformer operators: attention heads, FFN width, hidden (embedding) width, layer norm.

The hidden width of every op is taken from its input (the last dimension), as the CNN ops take their
input channels. Heads keep a fixed ``head_dim``; ``active_heads`` selects the first heads, whose rows of
the Q/K/V projections and columns of the output projection are sliced out. ``reorder_heads`` /
``reorder_neurons`` sort heads and FFN neurons by importance without changing the function.

Attention is written with ``torch.matmul`` (not ``scaled_dot_product_attention``) so that the FLOP
counter sees its two matrix products on every device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .ops import ElasticLinear, permute_in, permute_out

ACTIVATIONS = {"gelu": lambda: nn.GELU(), "gelu_new": lambda: nn.GELU(approximate="tanh"),
               "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"), "relu": lambda: nn.ReLU()}


def make_activation(name: str) -> nn.Module:
    """The activation module for a Hugging Face ``hidden_act`` name."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unsupported activation {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]()


def key_padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """``[batch, seq]`` 1/0 (or bool) mask of real tokens -> bool ``[batch, 1, 1, seq]`` (True = attend)."""
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           prob_dropout: nn.Module | None = None, head_dim: int | None = None) -> torch.Tensor:
    """Scaled dot-product attention over ``[batch, heads, seq, head_dim]`` tensors."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim or q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(-1)
    return torch.matmul(prob_dropout(probs) if prob_dropout is not None else probs, v)


# ------------------------------------------------------------------------------ static modules

def encoder_layer_forward(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention then feed-forward, each with a residual; LayerNorm before (pre-norm) or after (post-norm).
    Shared by the static and the elastic layer so both compute exactly the same thing."""
    if layer.norm_first:
        x = x + layer.attn(layer.attn_norm(x), mask)
        return x + layer.ffn(layer.ffn_norm(x))
    x = layer.attn_norm(x + layer.attn(x, mask))
    return layer.ffn_norm(x + layer.ffn(x))

class MultiHeadAttention(nn.Module):
    """Static multi-head self-attention with separate Q/K/V/output projections (BERT layout)."""

    def __init__(self, hidden: int, heads: int, head_dim: int, dropout: float = 0.0,
                 attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.query, self.key, self.value = (nn.Linear(hidden, inner) for _ in range(3))
        self.out = nn.Linear(inner, hidden)
        self.attn_dropout, self.dropout = nn.Dropout(attn_dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, s, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, s, self.heads, self.head_dim).transpose(1, 2)

        ctx = attend(split(self.query(x)), split(self.key(x)), split(self.value(x)), mask, self.attn_dropout, self.head_dim)
        return self.dropout(self.out(ctx.transpose(1, 2).reshape(b, s, -1)))


class FeedForward(nn.Module):
    """Static position-wise feed-forward block: linear -> activation -> linear."""

    def __init__(self, hidden: int, inner: int, act: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(hidden, inner), make_activation(act), nn.Linear(inner, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class TransformerLayer(nn.Module):
    """Static encoder layer; post-norm (BERT) or pre-norm (ViT) residual layout."""

    def __init__(self, attn: MultiHeadAttention, attn_norm: nn.LayerNorm, ffn: FeedForward,
                 ffn_norm: nn.LayerNorm, norm_first: bool) -> None:
        super().__init__()
        self.attn, self.attn_norm, self.ffn, self.ffn_norm = attn, attn_norm, ffn, ffn_norm
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return encoder_layer_forward(self, x, mask)


# ------------------------------------------------------------------------------ elastic ops
class ElasticLayerNorm(nn.LayerNorm):
    """LayerNorm over the first ``C`` features of its input (C = the input's last dimension)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        return F.layer_norm(x, (c,), self.weight[:c], self.bias[:c], self.eps)

    @torch.no_grad()
    def extract(self, width: int) -> nn.LayerNorm:
        ln = nn.LayerNorm(width, eps=self.eps)
        ln.weight.copy_(self.weight[:width])
        ln.bias.copy_(self.bias[:width])
        return ln


class ElasticEmbedding(nn.Embedding):
    """Embedding table whose vectors are cut to their first ``active_dim`` features."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.active_dim = embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight[:, : self.active_dim], self.padding_idx)

    @torch.no_grad()
    def extract(self) -> nn.Embedding:
        emb = nn.Embedding(self.num_embeddings, self.active_dim, self.padding_idx)
        emb.weight.copy_(self.weight[:, : self.active_dim])
        return emb


class ElasticMultiHeadAttention(nn.Module):
    """Self-attention with an elastic number of heads (``active_heads``; head_dim fixed) and an elastic
    hidden width (taken from the input; the output has the input's width)."""

    def __init__(self, hidden: int, heads: int, head_dim: int | None = None, dropout: float = 0.0,
                 attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim or hidden // heads
        inner = heads * self.head_dim
        self.query, self.key, self.value = (ElasticLinear(hidden, inner) for _ in range(3))
        self.out = ElasticLinear(inner, hidden)
        self.attn_dropout, self.dropout = nn.Dropout(attn_dropout), nn.Dropout(dropout)
        self.active_heads = heads

    def _set_widths(self, hidden: int) -> None:
        inner = self.active_heads * self.head_dim
        self.query.active_out = self.key.active_out = self.value.active_out = inner
        self.out.active_out = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, s, hidden = x.shape
        self._set_widths(hidden)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, s, self.active_heads, self.head_dim).transpose(1, 2)

        ctx = attend(split(self.query(x)), split(self.key(x)), split(self.value(x)), mask, self.attn_dropout, self.head_dim)
        return self.dropout(self.out(ctx.transpose(1, 2).reshape(b, s, -1)))

    @torch.no_grad()
    def extract(self, hidden: int) -> MultiHeadAttention:
        self._set_widths(hidden)
        with torch.device("meta"):  # skip a random init of layers replaced just below
            m = MultiHeadAttention(hidden, self.active_heads, self.head_dim, self.dropout.p, self.attn_dropout.p)
        m.query, m.key, m.value = (lin.extract(hidden) for lin in (self.query, self.key, self.value))
        m.out = self.out.extract(self.active_heads * self.head_dim)
        return m

    def head_importance(self) -> torch.Tensor:
        """L1 norm per head of the output projection's columns (how much each head feeds the output)."""
        return self.out.weight.detach().abs().view(self.out.out_features, self.heads, self.head_dim).sum((0, 2))

    @torch.no_grad()
    def reorder_heads(self) -> torch.Tensor:
        """Sort heads by descending importance (function unchanged); returns the head order used."""
        order = torch.argsort(self.head_importance(), descending=True, stable=True)
        perm = (order[:, None] * self.head_dim + torch.arange(self.head_dim)).reshape(-1)
        for lin in (self.query, self.key, self.value):
            permute_out(lin, perm)
        permute_in(self.out, perm)
        return order


class ElasticFeedForward(nn.Module):
    """Feed-forward block with an elastic inner width (``active_inner``) and elastic hidden width."""

    def __init__(self, hidden: int, inner: int, act: str = "gelu", dropout: float = 0.0) -> None:
        super().__init__()
        self.act_name = act
        self.fc1, self.act, self.fc2 = ElasticLinear(hidden, inner), make_activation(act), ElasticLinear(inner, hidden)
        self.dropout = nn.Dropout(dropout)
        self.active_inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fc1.active_out, self.fc2.active_out = self.active_inner, x.shape[-1]
        return self.dropout(self.fc2(self.act(self.fc1(x))))

    @torch.no_grad()
    def extract(self, hidden: int) -> FeedForward:
        self.fc1.active_out, self.fc2.active_out = self.active_inner, hidden
        with torch.device("meta"):
            m = FeedForward(hidden, self.active_inner, self.act_name, self.dropout.p)
        m.fc1, m.fc2 = self.fc1.extract(hidden), self.fc2.extract(self.active_inner)
        return m

    @torch.no_grad()
    def reorder_neurons(self) -> torch.Tensor:
        """Sort inner neurons by descending L1 norm of their fc2 column (function unchanged)."""
        order = torch.argsort(self.fc2.weight.detach().abs().sum(0), descending=True, stable=True)
        permute_out(self.fc1, order)
        permute_in(self.fc2, order)
        return order


class ElasticTransformerLayer(nn.Module):
    """Encoder layer built from elastic attention, FFN and layer norms (post- or pre-norm)."""

    def __init__(self, hidden: int, heads: int, inner: int, act: str = "gelu", dropout: float = 0.0,
                 attn_dropout: float = 0.0, eps: float = 1e-12, norm_first: bool = False) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = ElasticMultiHeadAttention(hidden, heads, dropout=dropout, attn_dropout=attn_dropout)
        self.attn_norm = ElasticLayerNorm(hidden, eps=eps)
        self.ffn = ElasticFeedForward(hidden, inner, act, dropout)
        self.ffn_norm = ElasticLayerNorm(hidden, eps=eps)

    def set_active(self, heads: int, inner: int) -> None:
        self.attn.active_heads, self.ffn.active_inner = heads, inner

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return encoder_layer_forward(self, x, mask)

    @torch.no_grad()
    def extract(self, hidden: int) -> TransformerLayer:
        return TransformerLayer(self.attn.extract(hidden), self.attn_norm.extract(hidden),
                                self.ffn.extract(hidden), self.ffn_norm.extract(hidden), self.norm_first)

    def reorder(self) -> None:
        self.attn.reorder_heads()
        self.ffn.reorder_neurons()


class PatchEmbed(nn.Module):
    """Static patch embedding: non-overlapping ``patch x patch`` conv, flattened to ``[batch, tokens, dim]``."""

    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ElasticPatchEmbed(nn.Module):
    """Patch embedding producing the first ``active_dim`` features."""

    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.patch, self.in_channels = patch, in_channels
        self.weight = nn.Parameter(torch.empty(dim, in_channels, patch, patch))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.weight, std=0.02)
        self.active_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.active_dim
        return F.conv2d(x, self.weight[:d], self.bias[:d], self.patch).flatten(2).transpose(1, 2)

    @torch.no_grad()
    def extract(self) -> PatchEmbed:
        m = PatchEmbed(self.in_channels, self.active_dim, self.patch)
        m.proj.weight.copy_(self.weight[: self.active_dim])
        m.proj.bias.copy_(self.bias[: self.active_dim])
        return m
