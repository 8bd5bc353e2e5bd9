"""Language-modelling data: a text cut into windows of token ids, next-token targets (a :class:`TrainingData`).

Each example is a window of ``seq_len`` token ids; its targets are the same window shifted by one (the last
position, which has no next token in the window, is ``IGNORE``), so a decoder's ``(batch, length, vocabulary)``
logits are scored token by token: cross-entropy for training, next-token accuracy and perplexity
(``exp`` of the mean cross-entropy) for measurement. The validation and test windows come from the end of the
text (contiguous, never overlapping the training windows). Tokens: a ``tokenizers`` file (``tokenizer.json``)
or, by default, the characters of the training text (id 0 for a character it does not hold).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import DataError
from .batches import SeededBatchSampler, WithBatchSeed
from .bundle import Split, quiet_generator, split_loader

IGNORE = -100  # the target of a position that predicts nothing (torch's cross-entropy ignore_index)


def next_token_batch(rows: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows stacked into ``(batch, length)`` ids and their shifted targets (last position ``IGNORE``)."""
    x = torch.stack([r[0] for r in rows])
    y = torch.full_like(x, IGNORE)
    y[:, :-1] = x[:, 1:]
    return x, y


@dataclass
class TokenBundle:
    """Train/validation/test windows of token ids; ``num_classes`` is the vocabulary size."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    vocab_size: int
    seq_len: int
    vocabulary: list[str] = field(default_factory=list)  # characters, when tokens are characters

    @property
    def num_classes(self) -> int:
        return self.vocab_size

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)}/{len(self.val)}/{len(self.test)} train/val/test windows of "
                f"{self.seq_len} tokens, vocabulary {self.vocab_size}")

    def train_loader(self, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> DataLoader:
        sampler = SeededBatchSampler(len(self.train), batch_size, seed, rank, world_size)
        return DataLoader(WithBatchSeed(self.train), batch_sampler=sampler, collate_fn=next_token_batch,
                          generator=quiet_generator(seed), pin_memory=pin_memory)

    def eval_loader(self, split: Split, batch_size: int, *, shuffle_seed: int | None = None,
                    drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
        return split_loader(self, split, batch_size, shuffle_seed, drop_last, next_token_batch, pin_memory=pin_memory)


def _windows(ids: torch.Tensor, seq_len: int) -> TensorDataset:
    n = len(ids) // seq_len
    return TensorDataset(ids[: n * seq_len].view(n, seq_len).clone())


def token_bundle(ids: torch.Tensor, vocab_size: int, seq_len: int = 64, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, name: str = "tokens", vocabulary: list[str] | None = None) -> TokenBundle:
    """Windows of a 1-D stream of token ids; the last ``val_fraction`` + ``test_fraction`` of the stream are
    the validation and test windows."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if seq_len < 2:
        raise DataError(f"seq_len must be at least 2 (a token and the next), got {seq_len}")
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must leave training text")
    n_val, n_test = int(len(ids) * val_fraction), int(len(ids) * test_fraction)
    train_ids = ids[: len(ids) - n_val - n_test]
    if len(train_ids) < 2 * seq_len or n_val < seq_len:
        raise DataError(f"{name}: {len(ids):,} tokens are too few for windows of {seq_len} "
                        f"(training needs {2 * seq_len}, validation {seq_len})")
    val_ids = ids[len(train_ids): len(train_ids) + n_val]
    test_ids = ids[len(train_ids) + n_val:]
    return TokenBundle(name, _windows(train_ids, seq_len), _windows(val_ids, seq_len), _windows(test_ids, seq_len),
                       vocab_size, seq_len, list(vocabulary or []))


def load_text_lm(source: str | Path, seq_len: int = 64, tokenizer: str | Path | None = None,
                 val_fraction: float = 0.1, test_fraction: float = 0.1) -> TokenBundle:
    """A text file (UTF-8) as language-modelling windows; ``tokenizer`` a ``tokenizer.json`` file, else the
    characters of the text's training part are the vocabulary."""
    path = Path(source)
    if not path.is_file():
        raise DataError(f"text file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start})") from None
    if tokenizer is not None:
        ids, vocab, size = _tokenized(text, tokenizer)
    else:
        cut = len(text) - int(len(text) * (val_fraction + test_fraction))
        vocab = ["<unk>"] + sorted(set(text[:cut]))
        index = {c: i for i, c in enumerate(vocab)}
        ids, size = torch.tensor([index.get(c, 0) for c in text], dtype=torch.long), len(vocab)
    return token_bundle(ids, size, seq_len, val_fraction, test_fraction, name=path.name, vocabulary=vocab)


def _tokenized(text: str, tokenizer: str | Path) -> tuple[torch.Tensor, list[str], int]:
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tokenizer))
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception subclasses
        raise DataError(f"cannot read tokenizer {tokenizer}: {' '.join(str(e).split())[:200]}") from None
    ids: Any = tok.encode(text).ids
    return torch.tensor(ids, dtype=torch.long), [], tok.get_vocab_size()
