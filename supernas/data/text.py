"""Text classification data: TSV/CSV files of (text, label) rows, tokenised to fixed-length tensors.

``read_text_classification`` reads a delimited file with pandas (tab for ``.tsv``, comma otherwise,
or as given) and checks it; ``tokenize_texts`` turns texts into ``input_ids`` / ``attention_mask``
tensors with a ``tokenizers.Tokenizer``; ``text_tensor_dataset`` gives a ``TensorDataset`` of
``(input_ids, labels)`` (or ``(input_ids, attention_mask, labels)``) batches for training and evaluation.
``load_text_bundle`` (below) turns a train file and an optional dev file into a :class:`TextBundle`
that the trainer, the evaluator and the pipeline use like an image ``DataBundle``.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, TensorDataset

from .bundle import quiet_generator, split_loader
from ..errors import DataError


@dataclass
class TextClassificationData:
    """Texts, integer labels (``0..len(label_names)-1``) and the label names, from one file."""

    texts: list[str]
    labels: torch.Tensor
    label_names: list[str]
    path: Path

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def _read_table(file: Path, delimiter: str, header: bool) -> pd.DataFrame:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # GLUE TSVs carry bare quotes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # rows longer than the header
            return pd.read_csv(file, sep=delimiter, header=0 if header else None, dtype=str,
                               keep_default_na=False, quoting=quoting, index_col=False)
    except pd.errors.ParserWarning:
        raise DataError(f"{file} is malformed: a row has more fields than the header") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{file} is empty") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{file} is malformed: {str(e).strip().splitlines()[-1]}") from None
    except UnicodeDecodeError:
        raise DataError(f"{file} is not UTF-8 text") from None


def _column(table: pd.DataFrame, wanted: str | int, file: Path, what: str) -> str | int:
    if wanted in table.columns:
        return wanted
    known = ", ".join(map(str, table.columns))
    raise DataError(f"{file} has no {what} column {wanted!r}; columns: {known}")


def _labels(raw: list[str], label_names: Sequence[str] | None, file: Path, first_line: int
            ) -> tuple[list[int], list[str]]:
    values = [v.strip() for v in raw]
    if label_names is not None:
        names = [str(n) for n in label_names]
        index = {n: i for i, n in enumerate(names)}
    elif all(v.lstrip("-").isdigit() for v in values):
        ints = [int(v) for v in values]
        bad = next((i for i, v in enumerate(ints) if v < 0), None)
        if bad is not None:
            raise DataError(f"{file} line {first_line + bad}: bad label {values[bad]!r} (labels must be >= 0)")
        return ints, [str(i) for i in range(max(ints) + 1)]
    else:
        names = sorted(set(values))
        index = {n: i for i, n in enumerate(names)}
    for i, v in enumerate(values):
        if v not in index or v == "":
            raise DataError(f"{file} line {first_line + i}: bad label {v!r}; expected one of "
                            f"{', '.join(names[:10])}")
    return [index[v] for v in values], names


def read_text_classification(path: str | Path, text_column: str | int | None = None,
                             label_column: str | int | None = None, delimiter: str | None = None,
                             header: bool = True, label_names: Sequence[str] | None = None
                             ) -> TextClassificationData:
    """Read a text classification file.

    ``delimiter`` defaults to a tab for ``.tsv`` files and a comma otherwise. With ``header`` the columns
    are named by the first line (``label_column`` defaults to ``"label"``); without, they are numbered
    from 0 (``label_column`` defaults to 0). ``text_column`` defaults to the one column that is not the
    label when the file has exactly two. Integer labels are kept as they are; other labels are mapped to
    ``0..n-1`` in sorted order, or in the order of ``label_names`` when given.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"text data file not found: {file}")
    sep = delimiter if delimiter is not None else ("\t" if file.suffix.lower() == ".tsv" else ",")
    table = _read_table(file, sep, header)
    if label_column is None:
        label_column = "label" if header else 0
    label_col = _column(table, label_column, file, "label")
    if text_column is None:
        others = [c for c in table.columns if c != label_col]
        if len(others) != 1:
            raise DataError(f"{file} has {len(table.columns)} columns; name the text column "
                            f"(columns: {', '.join(map(str, table.columns))})")
        text_col = others[0]
    else:
        text_col = _column(table, text_column, file, "text")
    if len(table) == 0:
        raise DataError(f"{file} has no data rows")
    labels, names = _labels(table[label_col].tolist(), label_names, file, 2 if header else 1)
    return TextClassificationData(table[text_col].tolist(), torch.tensor(labels, dtype=torch.long), names, file)


def tokenize_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int = 128) -> dict[str, torch.Tensor]:
    """``input_ids`` / ``attention_mask`` / ``token_type_ids`` LongTensors ``[len(texts), max_length]``:
    truncated and right-padded (with the tokenizer's pad token, else ``[PAD]``, else id 0)."""
    if max_length < 2:
        raise DataError(f"max_length must be at least 2, got {max_length}")
    tok = Tokenizer.from_str(tokenizer.to_str())  # the caller's tokenizer keeps its own settings
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=pad_id_of(tokenizer),
                       pad_token=(tokenizer.padding or {}).get("pad_token", "[PAD]"))
    enc = tok.encode_batch(list(texts))
    return {"input_ids": torch.tensor([e.ids for e in enc], dtype=torch.long).reshape(len(enc), max_length),
            "attention_mask": torch.tensor([e.attention_mask for e in enc], dtype=torch.long).reshape(len(enc), max_length),
            "token_type_ids": torch.tensor([e.type_ids for e in enc], dtype=torch.long).reshape(len(enc), max_length)}


def text_tensor_dataset(data: TextClassificationData, tokenizer: Tokenizer, max_length: int = 128,
                        limit: int | None = None, include_mask: bool = False) -> TensorDataset:
    """``TensorDataset`` of ``(input_ids, labels)``, or ``(input_ids, attention_mask, labels)`` with
    ``include_mask``; ``limit`` keeps the first rows only. The two-tensor form suits
    ``supernas.train.train``: the ``bert`` family masks [PAD] ids itself (same pad id as the tokenizer)."""
    n = len(data) if limit is None else min(limit, len(data))
    enc = tokenize_texts(tokenizer, data.texts[:n], max_length)
    if include_mask:
        return TensorDataset(enc["input_ids"], enc["attention_mask"], data.labels[:n])
    return TensorDataset(enc["input_ids"], data.labels[:n])


# ------------------------------------------------------------------------------ bundles for training
class TrimCollate:
    """Stack ``(input_ids, label)`` rows and cut the batch after its longest row (dynamic padding):
    the right-padded columns it drops are masked anyway, so outputs are unchanged and work shrinks."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        ids, *rest = (torch.stack(parts) for parts in zip(*rows))
        used = (ids != self.pad_id).any(0).nonzero()
        n = int(used.max()) + 1 if len(used) else 1
        return (ids[:, :n], *rest)


class LengthGroupedBatchSampler(torch.utils.data.Sampler):
    """Batches of rows of similar length (length bucketing), reshuffled every epoch.

    Each epoch takes ``rows_per_epoch`` rows (default: all) of an endless stream of seeded permutations
    of the rows, so consecutive short epochs walk through the data without repeating it; the rows are
    cut into windows of ``window`` batches, sorted by length inside a window and batched, and the
    batches are shuffled. Rank ``rank`` of ``world_size`` (DDP) gets every ``world_size``-th batch.
    The batches depend only on (seed, epoch), so a resumed run sees the same ones."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 rows_per_epoch: int | None = None, window: int = 50) -> None:
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.rows = min(rows_per_epoch or len(self.lengths), len(self.lengths))
        self.window, self.epoch = window, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.rows // self.batch_size) // self.world_size

    def _rows(self) -> torch.Tensor:
        n, start = len(self.lengths), self.epoch * self.rows
        parts, pos = [], start
        while pos < start + self.rows:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + pos // n))
            take = min(n - pos % n, start + self.rows - pos)
            parts.append(perm[pos % n: pos % n + take])
            pos += take
        return torch.cat(parts)

    def __iter__(self):
        rows, bs = self._rows(), self.batch_size
        batches = []
        for w in range(0, len(rows), bs * self.window):
            chunk = rows[w: w + bs * self.window]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [chunk[i: i + bs] for i in range(0, len(chunk) - bs + 1, bs)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * (self.epoch + 1))
        order = torch.randperm(len(batches), generator=g).tolist()
        mine = [batches[i] for i in order][self.rank::self.world_size][: len(self)]
        return iter([b.tolist() for b in mine])


@dataclass
class TextBundle:
    """Tokenised train / validation / test splits of a text classification task, used like an image
    ``DataBundle`` (``supernas.train.train``, the evaluator, the pipeline). Rows are token ids padded to
    ``max_length`` with ``pad_id``; ``collate_fn`` trims every batch to its longest row and
    ``batch_sampler`` groups training rows of similar length. ``val`` is held out from the training
    file (validation during training, accuracy during the search); ``test`` is the dev file (may be
    empty), reported for the exported sub-networks only. val/test rows are sorted by length."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    classes: list[str]
    tokenizer: Tokenizer
    max_length: int
    pad_id: int
    train_lengths: torch.Tensor
    epoch_rows: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def collate_fn(self) -> TrimCollate:
        return TrimCollate(self.pad_id)

    def batch_sampler(self, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
                      ) -> LengthGroupedBatchSampler:
        return LengthGroupedBatchSampler(self.train_lengths, batch_size, seed, rank, world_size, self.epoch_rows)

    def train_loader(self, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> DataLoader:
        """Length-grouped training batches (see :class:`LengthGroupedBatchSampler`), trimmed."""
        sampler = self.batch_sampler(min(batch_size, len(self.train)), seed, rank, world_size)
        return DataLoader(self.train, batch_sampler=sampler, collate_fn=self.collate_fn, pin_memory=pin_memory,
                          generator=quiet_generator(seed))

    def eval_loader(self, split: str, batch_size: int, *, shuffle_seed: int | None = None,
                    drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
        return split_loader(self, split, batch_size, shuffle_seed, drop_last, self.collate_fn, pin_memory=pin_memory)

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)}/{len(self.val)}/{len(self.test)} train/val/test texts, "
                f"max {self.max_length} tokens, {self.num_classes} classes")


def pad_id_of(tokenizer: Tokenizer) -> int:
    """The tokenizer's padding id (its padding setting, else ``[PAD]``, else 0)."""
    pad = tokenizer.padding or {}
    return int(pad.get("pad_id", tokenizer.token_to_id(pad.get("pad_token", "[PAD]")) or 0))


def _tensors(data: TextClassificationData, rows: Sequence[int], tokenizer: Tokenizer, max_length: int,
             by_length: bool) -> tuple[TensorDataset, torch.Tensor]:
    enc = tokenize_texts(tokenizer, [data.texts[i] for i in rows], max_length)
    ids, lengths = enc["input_ids"], enc["attention_mask"].sum(1)
    labels = data.labels[list(rows)] if len(rows) else torch.zeros(0, dtype=torch.long)
    if by_length:
        order = torch.argsort(lengths, stable=True)
        ids, labels, lengths = ids[order], labels[order], lengths[order]
    return TensorDataset(ids, labels), lengths


def load_text_bundle(train_file: str | Path, dev_file: str | Path | None, tokenizer: Tokenizer, *,
                     text_column: str | None = None, label_column: str = "label", delimiter: str | None = None,
                     max_length: int = 128, val_rows: int = 1000, train_rows: int | None = None,
                     epoch_rows: int | None = None, seed: int = 0) -> TextBundle:
    """Read, split and tokenise a text classification task.

    The training file's rows are shuffled (``seed``); the first ``val_rows`` become the validation split,
    the next ``train_rows`` (default: all the rest) the training split. ``dev_file`` (optional) becomes
    the test split; its labels must be among the training file's. ``epoch_rows`` makes an epoch that many
    training rows (default: all of them; see :class:`LengthGroupedBatchSampler`)."""
    train_data = read_text_classification(train_file, text_column, label_column, delimiter)
    n_val = val_rows
    if n_val < 1 or len(train_data) - n_val < 2:
        raise DataError(f"{train_data.path} has {len(train_data)} rows: too few to hold out val_rows={val_rows} "
                        f"and keep at least 2 for training")
    perm = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx = perm[:n_val]
    train_idx = perm[n_val:] if train_rows is None else perm[n_val: n_val + train_rows]
    if len(train_idx) < 2:
        raise DataError(f"train_rows={train_rows} leaves fewer than 2 training rows")
    if epoch_rows is not None and epoch_rows > len(train_idx):
        raise DataError(f"epoch_rows={epoch_rows} is more than the {len(train_idx)} training rows")
    train, lengths = _tensors(train_data, train_idx, tokenizer, max_length, by_length=False)
    val, _ = _tensors(train_data, val_idx, tokenizer, max_length, by_length=True)
    if dev_file is not None:
        dev_data = read_text_classification(dev_file, text_column, label_column, delimiter,
                                            label_names=train_data.label_names)
        test, _ = _tensors(dev_data, range(len(dev_data)), tokenizer, max_length, by_length=True)
    else:
        test, _ = _tensors(train_data, [], tokenizer, max_length, by_length=False)
    if train_data.num_classes < 2:
        raise DataError(f"{train_data.path} has a single label ({train_data.label_names[0]!r}); need at least 2")
    return TextBundle(Path(train_file).parent.name or str(train_file), train, val, test, train_data.label_names,
                      tokenizer, max_length, pad_id_of(tokenizer), lengths, epoch_rows)
