"""The text parts of a run: text data from the run file, the ``bert`` supernet (from a pretrained model
or from scratch), frozen parameters and the original model as a distillation teacher.

A pretrained model is loaded with its function unchanged and then re-ordered by importance (heads, FFN
neurons), so its largest sub-network starts as the original model; fine-tuning makes it elastic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from torch import nn

from ..config import RunConfig, TextDataSection
from ..errors import CheckpointError, ConfigError, DataError
from ..supernets import Supernet, create_supernet
from ..supernets.hf_bert import load_hf_bert, load_hf_tokenizer, read_hf_config, resolve_pretrained
from ..data.text import TextBundle, load_text_bundle

DEV_NAMES = ("dev", "validation", "valid", "val")


def _text(cfg: RunConfig) -> TextDataSection:
    return cfg.data.text or TextDataSection()


def text_files(cfg: RunConfig) -> tuple[Path, Path | None]:
    """(train file, dev file or None): ``data.text.train``/``dev`` (relative to ``data.dataset`` unless
    absolute), else ``train.tsv``/``.csv`` and ``dev``/``validation`` ``.tsv``/``.csv`` in the folder."""
    t, root = _text(cfg), Path(cfg.data.dataset)

    def find(stems: tuple[str, ...]) -> Path | None:
        for stem in stems:
            for ext in (".tsv", ".csv"):
                if (root / f"{stem}{ext}").is_file():
                    return root / f"{stem}{ext}"
        return None

    if t.train is None and not root.is_dir():
        raise DataError(f"text data folder not found: {root}")
    train = root / t.train if t.train is not None else find(("train",))
    if train is None:
        raise DataError(f"no train.tsv or train.csv in {root} (or set data.text.train)")
    if t.dev is not None:
        dev = root / t.dev
        if not dev.is_file():
            raise DataError(f"text data file not found: {dev}")
    else:
        dev = find(DEV_NAMES) if root.is_dir() else None
    return train, dev


def load_tokenizer(cfg: RunConfig) -> Tokenizer:
    """``data.text.tokenizer`` (a tokenizer.json or a folder holding one), else the pretrained model's."""
    given = _text(cfg).tokenizer
    if given is None:
        if cfg.supernet.pretrained is None:
            raise ConfigError("text data needs a tokenizer: set supernet.pretrained or data.text.tokenizer")
        return load_hf_tokenizer(resolve_pretrained(cfg.supernet.pretrained))
    path = Path(given)
    if path.is_dir():
        return load_hf_tokenizer(path)
    if not path.is_file():
        raise DataError(f"tokenizer not found: {path}")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises plain Exception subclasses
        raise DataError(f"cannot read tokenizer {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                        ) from None


def load_text_data(cfg: RunConfig) -> TextBundle:
    t = _text(cfg)
    train, dev = text_files(cfg)
    return load_text_bundle(train, dev, load_tokenizer(cfg), text_column=t.text_column, label_column=t.label_column,
                            delimiter=t.delimiter, max_length=t.max_length, val_rows=t.val_rows,
                            train_rows=t.train_rows, epoch_rows=t.epoch_rows, seed=cfg.seed)


def text_supernet_args(cfg: RunConfig, bundle: TextBundle) -> dict[str, Any]:
    """The ``bert`` constructor arguments of the run: the pretrained model's sizes (its config.json), the
    run file's ``args``, classes from the data, ``seq_len`` = the data's ``max_length``; from scratch,
    ``vocab_size`` and ``pad_token_id`` default to the tokenizer's."""
    args = dict(cfg.supernet.args)
    args.setdefault("num_classes", bundle.num_classes)
    args.setdefault("seq_len", bundle.max_length)
    if cfg.supernet.pretrained is not None:
        args = {**read_hf_config(resolve_pretrained(cfg.supernet.pretrained)), **args}
    else:
        args.setdefault("vocab_size", bundle.vocab_size)
        args.setdefault("pad_token_id", bundle.pad_id)
    positions = args.get("max_position_embeddings", 512)
    if bundle.max_length > positions:
        raise ConfigError(f"data.text.max_length {bundle.max_length} is more than the model's "
                          f"max_position_embeddings {positions}")
    if bundle.vocab_size > args.get("vocab_size", 30522):
        raise ConfigError(f"the tokenizer has {bundle.vocab_size} tokens, more than the model's vocab_size "
                          f"{args.get('vocab_size', 30522)}")
    return args


def build_text_supernet(cfg: RunConfig, args: dict[str, Any]) -> Supernet:
    """The pretrained model made elastic (heads and FFN neurons sorted by importance, function unchanged),
    or a freshly initialised ``bert`` supernet."""
    if cfg.supernet.pretrained is None:
        return create_supernet("bert", **args)
    net = load_hf_bert(resolve_pretrained(cfg.supernet.pretrained), **args)
    net.reorder_channels()
    return net


def freeze(net: nn.Module, prefixes: list[str]) -> None:
    """Leave the parameters named by ``prefixes`` (e.g. ``embeddings.word``) out of training."""
    params = dict(net.named_parameters())
    for prefix in prefixes:
        hits = [p for n, p in params.items() if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
        if not hits:
            roots = sorted({n.split(".")[0] for n in params})
            raise ConfigError(f"supernet.freeze: no parameter is named {prefix!r} or starts with it "
                              f"(top-level names: {', '.join(roots)})")
        for p in hits:
            p.requires_grad_(False)


def original_teacher(cfg: RunConfig, bundle: TextBundle, args: dict[str, Any], checkpoints: Path,
                     progress: bool = True) -> nn.Module | None:
    """With ``supernet.teacher: original``: the pretrained model as a frozen distillation teacher; its own
    task head when it came with one, else its largest sub-network fine-tuned alone for
    ``teacher_epochs`` first (checkpointed in ``checkpoints``, so a killed run resumes it)."""
    s = cfg.supernet
    if s.teacher != "original":
        return None
    from ..train import TrainConfig, train

    net = build_text_supernet(cfg, args)
    if s.teacher_epochs == 0:
        if not getattr(net, "pretrained_head", False):
            raise ConfigError(f"teacher 'original': {s.pretrained} has no task head for {bundle.num_classes} "
                              f"classes; set supernet.teacher_epochs to fine-tune it first")
    else:
        freeze(net, s.freeze)
        t = cfg.train
        settings = TrainConfig.make(t, rule="largest", epochs=s.teacher_epochs, progressive=False, phase_epochs=None,
                                    warmup_epochs=t.warmup_epochs * s.teacher_epochs / t.epochs)
        try:
            train(net, bundle, config=settings, checkpoint_dir=checkpoints, resume=True, progress=progress)
        except CheckpointError as e:
            raise CheckpointError(f"teacher: {e}") from None
    teacher = net.extract(net.space.largest()).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
