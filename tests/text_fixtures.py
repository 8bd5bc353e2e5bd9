"""Tiny generated text-classification data, tokenizer and run files for the text pipeline tests."""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing

POSITIVE = ["good", "great", "fine", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "dull"]
FILLER = ["the", "a", "film", "plot", "was", "very", "and", "actors", "story", "quite"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]

TINY_BERT = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
             "max_position_embeddings": 32, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
             "initializer_range": 0.1, "pooling": "mean", "layer_choices": [1, 2], "head_choices": [1, 2], "ffn_choices": [16, 32], "hidden_choices": [8, 16]}


def write_tokenizer(path: Path) -> Path:
    """A word-level BERT-style tokenizer ([CLS] text [SEP]) saved as tokenizer.json."""
    vocab = {w: i for i, w in enumerate(SPECIAL + POSITIVE + NEGATIVE + FILLER)}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def sentences(n: int, seed: int) -> list[tuple[int, str]]:
    """(label, sentence): the label is whether the sentence's one sentiment word is positive."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=rng.randint(1, 9))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append((label, " ".join(words)))
    return rows


def write_tsv(path: Path, rows: list[tuple[int, str]], header: str = "label\tsentence") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    return path


def text_run_file(root: Path, name: str = "text", **override) -> Path:
    """A run file over ``root/data`` (train.tsv 200 rows, dev.tsv 40 rows, header ``label content`` like
    SST-2's dev) with a tiny randomly initialised bert: 12 epochs of 80 rows (60 steps) learn the task.
    ``override``: ``section=value`` replaces a section, ``section__key=value`` one key of it."""
    data = root / "data"
    if not (data / "train.tsv").exists():
        write_tsv(data / "train.tsv", sentences(200, 0))
        write_tsv(data / "dev.tsv", sentences(40, 1), header="label\tcontent")
        write_tokenizer(data / "tokenizer.json")
    doc = {"name": name, "out": str(root / name), "seed": 0,
           "supernet": {"family": "bert", "args": dict(TINY_BERT)},
           "data": {"kind": "text", "dataset": str(data),
                    "text": {"max_length": 16, "val_rows": 40, "epoch_rows": 80,
                             "tokenizer": str(data / "tokenizer.json")}},
           "train": {"epochs": 12, "batch_size": 16, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01,
                     "warmup_epochs": 1, "label_smoothing": 0.0, "num_random": 1, "num_threads": 1,
                     "eval_every": 4},
           "targets": {"cpu": {"backend": "cpu", "threads": 1, "batch_size": 1, "warmup": 1, "repeats": 3}},
           "search": {"strategy": "random", "objectives": ["accuracy", "latency_ms@cpu", "params"],
                      "evaluations": 5},
           "export": {"picks": ["largest"], "formats": ["onnx"]}}
    for key, value in override.items():
        section, _, sub = key.partition("__")
        if sub:
            doc[section] = {**doc.get(section, {}), sub: value}
        else:
            doc[section] = value
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def random_hf_tensors(cfg: dict, seed: int = 0, prefix: str = "") -> dict:
    """Random tensors under Hugging Face BertModel names (scaled so that layers do real work)."""
    g = torch.Generator().manual_seed(seed)
    h, inner = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {"embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
              "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
              "embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
              "pooler.dense.weight": (h, h), "pooler.dense.bias": (h,)}
    for i in range(cfg["num_hidden_layers"]):
        L = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes.update({L + n + ".weight": (h, h), L + n + ".bias": (h,)})
        shapes.update({L + "intermediate.dense.weight": (inner, h), L + "intermediate.dense.bias": (inner,),
                       L + "output.dense.weight": (h, inner), L + "output.dense.bias": (h,)})
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes.update({L + n + ".weight": (h,), L + n + ".bias": (h,)})
    out = {prefix + k: 0.4 * torch.randn(s, generator=g) for k, s in shapes.items()}
    out[prefix + "embeddings.position_ids"] = torch.arange(cfg["max_position_embeddings"])[None]
    return out


def write_hf_folder(path: Path, cfg: dict, tensors: dict) -> Path:
    """A Hugging Face BERT folder: config.json + model.safetensors."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg))
    save_file(tensors, str(path / "model.safetensors"))
    return path
