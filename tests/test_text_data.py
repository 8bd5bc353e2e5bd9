"""Text classification reader and tokenisation: tiny generated files, SST-2 when present."""
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from supernas.errors import DataError
from supernas.data.text import read_text_classification, text_tensor_dataset, tokenize_texts

SST2 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"


def _tokenizer() -> Tokenizer:
    vocab = {"[PAD]": 0, "[UNK]": 1, "good": 2, "bad": 3, "film": 4, "a": 5, "very": 6}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return tok


def test_tsv_with_header_and_auto_text_column(tmp_path):
    f = tmp_path / "train.tsv"
    f.write_text('label\tsentence\n1\ta "very" good film\n0\tbad , film\n1\tgood\n')
    data = read_text_classification(f)
    assert data.texts == ['a "very" good film', "bad , film", "good"]
    assert data.labels.tolist() == [1, 0, 1] and data.num_classes == 2 and len(data) == 3


def test_csv_named_columns_string_labels_and_no_header(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('id,text,sentiment\n7,"good, very good",pos\n8,bad,neg\n9,fine,neutral\n')
    data = read_text_classification(f, text_column="text", label_column="sentiment")
    assert data.texts[0] == "good, very good"
    assert data.label_names == ["neg", "neutral", "pos"] and data.labels.tolist() == [2, 0, 1]
    ordered = read_text_classification(f, text_column="text", label_column="sentiment",
                                       label_names=["neg", "pos", "neutral"])
    assert ordered.labels.tolist() == [1, 0, 2]
    g = tmp_path / "plain.txt"
    g.write_text("good film;1\nbad film;0\n")
    data = read_text_classification(g, text_column=0, label_column=1, delimiter=";", header=False)
    assert data.texts == ["good film", "bad film"] and data.labels.tolist() == [1, 0]


@pytest.mark.parametrize("content,kwargs,match", [
    (None, {}, "not found"),
    ("", {}, "empty"),
    ("label\tsentence\n", {}, "no data rows"),
    ("label\tsentence\n1\tgood\n", {"text_column": "text"}, "no text column 'text'"),
    ("y\tsentence\n1\tgood\n", {}, "no label column 'label'"),
    ("label\tsentence\n1\tgood\nx\tbad\n", {"label_names": ["0", "1"]}, "line 3: bad label 'x'"),
    ("label\tsentence\n1\tgood\n-1\tbad\n", {}, "line 3: bad label '-1'"),
    ("label\tsentence\n1\tgood\n\tbad\n", {}, "line 3: bad label ''"),
    ("label\ta\tb\n1\tgood\tx\n", {}, "name the text column"),
    ("label\tsentence\n1\tgood\textra\tcols\n", {}, "malformed"),
])
def test_reader_errors_name_the_problem(tmp_path, content, kwargs, match):
    f = tmp_path / "bad.tsv"
    if content is not None:
        f.write_text(content)
    with pytest.raises(DataError, match=match):
        read_text_classification(f, **kwargs)


def test_tokenize_to_fixed_length_and_dataset(tmp_path):
    tok = _tokenizer()
    enc = tokenize_texts(tok, ["a very good film", "bad", "good good good good good good good"], max_length=5)
    assert enc["input_ids"].shape == (3, 5) and enc["input_ids"].dtype == torch.long
    assert enc["input_ids"][0].tolist() == [5, 6, 2, 4, 0]
    assert enc["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert tok.padding is None and tok.truncation is None  # the caller's tokenizer is untouched
    f = tmp_path / "t.tsv"
    f.write_text("label\tsentence\n1\tgood film\n0\tbad film\n1\tvery good\n")
    data = read_text_classification(f)
    ids, mask, labels = text_tensor_dataset(data, tok, max_length=4, limit=2, include_mask=True)[:]
    assert ids.shape == (2, 4) and labels.tolist() == [1, 0] and mask.sum().item() == 4
    ids2, labels2 = text_tensor_dataset(data, tok, max_length=4)[:]
    assert torch.equal(ids2[:2], ids) and labels2.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="max_length"):
        tokenize_texts(tok, ["good"], max_length=1)


@pytest.mark.skipif(not SST2.is_dir(), reason="SST-2 files not present")
def test_sst2_files_read_with_defaults():
    for name in ("train.tsv", "dev.tsv"):
        data = read_text_classification(SST2 / name)
        lines = (SST2 / name).read_text(encoding="utf-8").count("\n")
        assert len(data) == lines - 1
        assert data.label_names == ["0", "1"] and set(data.labels.tolist()) == {0, 1}
