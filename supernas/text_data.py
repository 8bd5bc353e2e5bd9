"""Text classification data: TSV/CSV files of (text, label) rows, tokenised to fixed-length tensors.

``read_text_classification`` reads a delimited file with pandas (tab for ``.tsv``, comma otherwise,
or as given) and checks it; ``tokenize_texts`` turns texts into ``input_ids`` / ``attention_mask``
tensors with a ``tokenizers.Tokenizer``; ``text_tensor_dataset`` gives a ``TensorDataset`` of
``(input_ids, labels)`` (or ``(input_ids, attention_mask, labels)``) batches for training and evaluation.
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
from torch.utils.data import TensorDataset

from .errors import DataError


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
    pad = tokenizer.padding or {}
    pad_token = pad.get("pad_token", "[PAD]")
    pad_id = pad.get("pad_id", tok.token_to_id(pad_token) or 0)
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
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
