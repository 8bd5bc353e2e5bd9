"""``bert``: an elastic BERT encoder for text classification (Hugging Face BERT names and layout).

Choices: ``hidden`` (embedding width; layer norms are sliced), ``layers`` (the first k layers run),
``layer{i}.heads`` (attention heads, head dim fixed) and ``layer{i}.ffn`` (FFN width). The largest
sub-network is the full model; at BERT-base sizes with ``num_classes=0`` it has exactly BERT-base's
109,482,240 parameters (embeddings, 12 layers, pooler).

Inputs are token ids, a LongTensor ``[batch, seq]``, plus an optional ``attention_mask`` (1 = real
token, 0 = padding) and ``token_type_ids``. ``input_shape(cfg, batch)`` is ``(batch, seq_len)`` and
``example_input(cfg, batch)`` gives matching ids, e.g. for ``supernas.count(sub, example=...)``.
Without an explicit mask, [PAD] tokens (``pad_token_id``) are masked, so right-padded ``(ids, labels)``
batches train and evaluate like images (``supernas.train.train`` works unchanged).
``forward`` returns class logits ``[batch, num_classes]``, or the pooled ``[batch, hidden]`` features when
``num_classes=0``; ``encode`` returns the last hidden states ``[batch, seq, hidden]``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..elastic import ElasticLinear
from ..elastic.ops import permute_in, permute_out
from ..elastic.transformer import ElasticEmbedding, ElasticLayerNorm, key_padding_mask
from ..space import Config, SearchSpace
from .base import Supernet, register_family
from .encoder import ElasticEncoder, StaticEncoder, encoder_choices, encoder_options


class BertEmbeddings(nn.Module):
    """Static word + position + token-type embeddings, layer norm and dropout."""

    def __init__(self, word: nn.Embedding, position: nn.Embedding, token_type: nn.Embedding, norm: nn.Module,
                 dropout: float) -> None:
        super().__init__()
        self.word, self.position, self.token_type, self.norm = word, position, token_type, norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)[None, :]
        types = token_type_ids if token_type_ids is not None else torch.zeros_like(ids)
        return self.dropout(self.norm(self.word(ids) + self.position(pos) + self.token_type(types)))


class ElasticBertEmbeddings(BertEmbeddings):
    """Embeddings whose width is ``active_dim`` (the ``hidden`` choice)."""

    def __init__(self, vocab: int, hidden: int, positions: int, types: int, pad: int | None, eps: float,
                 dropout: float) -> None:
        super().__init__(ElasticEmbedding(vocab, hidden, pad), ElasticEmbedding(positions, hidden),
                         ElasticEmbedding(types, hidden), ElasticLayerNorm(hidden, eps=eps), dropout)

    def set_width(self, width: int) -> None:
        self.word.active_dim = self.position.active_dim = self.token_type.active_dim = width

    def extract(self, width: int) -> BertEmbeddings:
        self.set_width(width)
        return BertEmbeddings(self.word.extract(), self.position.extract(), self.token_type.extract(),
                              self.norm.extract(width), self.dropout.p)


POOLINGS = ("cls", "mean")


class Bert(nn.Module):
    """Static BERT sub-network: embeddings, encoder, tanh pooler on [CLS] (or on the mean of the real
    tokens' states), optional classifier."""

    def __init__(self, embeddings: BertEmbeddings, encoder: StaticEncoder, pooler: nn.Linear,
                 classifier: nn.Linear | None, dropout: float, pad_token_id: int | None = 0,
                 pooling: str = "cls") -> None:
        super().__init__()
        self.embeddings, self.encoder, self.pooler, self.classifier = embeddings, encoder, pooler, classifier
        self.dropout = nn.Dropout(dropout)
        self.pad_token_id, self.pooling = pad_token_id, pooling

    def _mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        if attention_mask is None and self.pad_token_id is not None:
            return input_ids != self.pad_token_id
        return attention_mask

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states ``[batch, seq, hidden]``. Without ``attention_mask``, [PAD] tokens
        (``pad_token_id``) are masked, so ``(ids, labels)`` batches of right-padded text need no mask."""
        mask = self._mask(input_ids, attention_mask)
        return self.encoder(self.embeddings(input_ids, token_type_ids), key_padding_mask(mask))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        mask = self._mask(input_ids, attention_mask)
        hidden = self.encode(input_ids, mask, token_type_ids)
        if self.pooling == "mean":
            m = (mask if mask is not None else torch.ones_like(input_ids)).to(hidden.dtype)[..., None]
            features = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        else:
            features = hidden[:, 0]
        pooled = torch.tanh(self.pooler(features))
        return pooled if self.classifier is None else self.classifier(self.dropout(pooled))

    def example_input(self, batch: int = 1, seq_len: int = 128) -> torch.Tensor:
        """Token ids ``[batch, seq_len]`` without padding (every position is attended)."""
        return torch.full((batch, seq_len), 1 if self.pad_token_id == 0 else 0, dtype=torch.long)


@register_family("bert")
class BertSupernet(Supernet):
    """Elastic BERT. Constructor names follow Hugging Face ``BertConfig`` (defaults: BERT-base).

    ``seq_len`` (default ``min(128, max_position_embeddings)``) only fixes ``input_shape``, the sequence
    length at which costs and latency are measured; any length up to ``max_position_embeddings`` runs.
    ``pooling``: the pooler reads the [CLS] state (``cls``, BERT) or the mean of the real tokens' states
    (``mean``, sentence-transformers models; it also works at any depth, where [CLS] often carries nothing).
    """

    def __init__(self, vocab_size: int = 30522, hidden_size: int = 768, num_hidden_layers: int = 12,
                 num_attention_heads: int = 12, intermediate_size: int = 3072, max_position_embeddings: int = 512,
                 type_vocab_size: int = 2, num_classes: int = 2, hidden_act: str = "gelu",
                 layer_norm_eps: float = 1e-12, hidden_dropout_prob: float = 0.1,
                 attention_probs_dropout_prob: float = 0.1, pad_token_id: int | None = 0,
                 initializer_range: float = 0.02, pooling: str = "cls", seq_len: int | None = None,
                 layer_choices: Sequence[int] | None = None, head_choices: Sequence[int] | None = None,
                 ffn_choices: Sequence[int] | None = None, hidden_choices: Sequence[int] | None = None) -> None:
        super().__init__()
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}")
        seq_len = min(128, max_position_embeddings) if seq_len is None else seq_len
        if not 1 <= seq_len <= max_position_embeddings:
            raise ValueError(f"seq_len must be in 1..{max_position_embeddings}, got {seq_len}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.num_classes, self.seq_len, self.hidden_size = num_classes, seq_len, hidden_size
        self.pad_token_id, self.pooling = pad_token_id, pooling
        self.embeddings = ElasticBertEmbeddings(vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
                                                pad_token_id, layer_norm_eps, hidden_dropout_prob)
        self.encoder = ElasticEncoder(hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                                      hidden_act, hidden_dropout_prob, attention_probs_dropout_prob,
                                      layer_norm_eps, norm_first=False)
        self.pooler = ElasticLinear(hidden_size, hidden_size)
        self.classifier = ElasticLinear(hidden_size, num_classes) if num_classes else None
        self.dropout = nn.Dropout(hidden_dropout_prob)
        opts = encoder_options(hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                               hidden_choices, layer_choices, head_choices, ffn_choices)
        self.space = SearchSpace(encoder_choices(opts))
        self._init_weights(initializer_range)
        self.set_active(self.space.largest())

    @torch.no_grad()
    def _init_weights(self, std: float) -> None:
        """Hugging Face BERT initialisation: N(0, std) weights, zero biases, unit layer norms."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()

    _mask = Bert._mask
    encode = Bert.encode
    forward = Bert.forward

    def _apply_config(self, cfg: Config) -> None:
        width = cfg["hidden"]
        self.embeddings.set_width(width)
        self.encoder.apply_config(cfg)
        self.pooler.active_out = width

    def input_shape(self, cfg: Mapping[str, Any] | None = None, batch: int = 1) -> tuple[int, ...]:
        """``(batch, seq_len)``: the shape of the token-id tensor (the same for every sub-network)."""
        return (batch, self.seq_len)

    def example_input(self, cfg: Mapping[str, Any] | None = None, batch: int = 1) -> torch.Tensor:  # type: ignore[override]
        """Token ids of shape ``input_shape(cfg, batch)``, none of them [PAD] (all positions attended)."""
        return Bert.example_input(self, batch, self.seq_len)

    def random_input(self, shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Random token ids of ``shape`` ``(batch, seq)``, none of them [PAD] except a random right-padded
        tail in every row after the first (so export checks exercise the padding mask)."""
        b, s = int(shape[0]), int(shape[1])
        vocab = self.arch.get("vocab_size", self.embeddings.word.num_embeddings)
        ids = torch.randint(0, vocab, (b, s), generator=generator)
        if self.pad_token_id is not None:
            ids[ids == self.pad_token_id] = (self.pad_token_id + 1) % vocab
            keep = torch.randint(1, s + 1, (b,), generator=generator)
            keep[0] = s
            ids[torch.arange(s)[None, :] >= keep[:, None]] = self.pad_token_id
        return ids

    def dynamic_axes(self) -> dict[int, tuple[str, int, int]]:
        """The sequence axis: exported sub-networks take any length from 2 to ``max_position_embeddings``."""
        return {1: ("sequence", 2, self.arch.get("max_position_embeddings", self.embeddings.position.num_embeddings))}

    def _build_static(self, cfg: Config) -> Bert:
        width = cfg["hidden"]
        self.pooler.active_out = width
        return Bert(self.embeddings.extract(width), self.encoder.extract(width), self.pooler.extract(width),
                    self.classifier.extract(width) if self.classifier is not None else None, self.dropout.p,
                    self.pad_token_id, self.pooling)

    quantization = "dynamic"

    def _block_modules(self, cfg: Config) -> dict[str, list[str]]:
        layers = {f"layer{i + 1}": [f"encoder.layers.{i}"] for i in range(cfg["layers"])}
        return {"embeddings": ["embeddings"], **layers, "head": ["pooler", "classifier"]}

    def reorder_channels(self) -> None:
        """Sort the hidden dimensions and every layer's heads and FFN neurons by importance (the function
        is unchanged)."""
        self.reorder_hidden()
        self.encoder.reorder()

    @torch.no_grad()
    def reorder_hidden(self) -> torch.Tensor:
        """Sort the hidden (embedding) dimensions by importance so that a narrower ``hidden`` keeps the
        most important ones; the function is unchanged. Importance: the summed |weight| of every layer norm,
        i.e. the scale of each dimension in the residual stream. Returns the order used."""
        norms = [self.embeddings.norm] + [n for blk in self.encoder.blocks for n in (blk.attn_norm, blk.ffn_norm)]
        order = torch.argsort(sum(n.weight.detach().abs() for n in norms), descending=True, stable=True)
        for emb in (self.embeddings.word, self.embeddings.position, self.embeddings.token_type):
            permute_in(emb, order)
        for n in norms:
            permute_out(n, order)
        for blk in self.encoder.blocks:
            for lin in (blk.attn.query, blk.attn.key, blk.attn.value, blk.ffn.fc1):
                permute_in(lin, order)
            permute_out(blk.attn.out, order)
            permute_out(blk.ffn.fc2, order)
        permute_in(self.pooler, order)
        permute_out(self.pooler, order)
        if self.classifier is not None:
            permute_in(self.classifier, order)
        return order
