"""What a run learns, behind one small contract: image classification, text classification, language modelling.

A :class:`Task` says how the run file's data is checked and loaded, which supernet arguments come from
the data, how the supernet is built (from scratch or from a pretrained model), whether a teacher is
trained first and which data facts the report shows. The steps (``run.steps``) ask the run's task and
never branch on the kind of data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch import nn

from ..config import RunConfig
from ..errors import DataError
from ..supernets import Supernet, create_supernet


class Task(Protocol):
    name: str

    def check_data(self, cfg: RunConfig) -> None:
        """The data's path and layout, read without decoding anything (a DataError names the problem)."""

    def load_data(self, cfg: RunConfig, progress: bool = False) -> Any:
        """The run's data bundle (``progress``: a bar while a cache is built)."""

    def supernet_args(self, cfg: RunConfig, bundle: Any) -> dict[str, Any]:
        """The supernet constructor's arguments: the run file's, completed from the data."""

    def build_supernet(self, cfg: RunConfig, args: dict[str, Any]) -> Supernet:
        """The supernet before training (the caller seeds the RNG)."""

    def teacher(self, cfg: RunConfig, bundle: Any, args: dict[str, Any], checkpoints: Path,
                progress: bool = True) -> nn.Module | None:
        """A frozen distillation teacher trained or loaded before the supernet, or None."""

    def data_facts(self, cfg: RunConfig) -> dict[str, str]:
        """The report's data lines beyond the dataset and its kind."""


class FromScratch:
    """A task whose supernet is the run file's family built from its arguments, with no separate teacher."""

    def build_supernet(self, cfg: RunConfig, args: dict[str, Any]) -> Supernet:
        return create_supernet(cfg.supernet.family, **args)

    def teacher(self, cfg: RunConfig, bundle: Any, args: dict[str, Any], checkpoints: Path,
                progress: bool = True) -> nn.Module | None:
        return None


class ImageClassification(FromScratch):
    """Folders of images (any layout ``supernas.data`` reads) or the embedded digits; any image family."""

    name = "image classification"

    def check_data(self, cfg: RunConfig) -> None:
        from ..data import check_dataset

        check_dataset(cfg.data.dataset, kind=cfg.data.kind)

    def load_data(self, cfg: RunConfig, progress: bool = False) -> Any:
        from ..data import load_dataset

        d = cfg.data
        extra: dict[str, Any] = {"channels": d.channels} if d.channels is not None else {}  # else the reader's
        if d.dataset != "digits" and d.kind != "digits":
            extra.update(workers=d.workers, cache=d.cache, cache_dir=d.cache_dir, val_fraction=d.val_fraction,
                         progress=progress)
        bundle = load_dataset(d.dataset, kind=d.kind, image_size=d.image_size, seed=cfg.seed,
                              augment=d.augmentation, **extra)
        bundle.mixup, bundle.cutmix = d.mixup, d.cutmix
        return bundle

    def supernet_args(self, cfg: RunConfig, bundle: Any) -> dict[str, Any]:
        args = dict(cfg.supernet.args)
        args.setdefault("num_classes", bundle.num_classes)
        args.setdefault("in_channels", bundle.in_channels)
        args.setdefault("image_size", bundle.image_size)
        return args

    def build_supernet(self, cfg: RunConfig, args: dict[str, Any]) -> Supernet:
        """From scratch, or from ``supernet.pretrained`` (a checkpoint the family loads: its sizes from the
        file, a new classifier when the data has other classes, which ``train.epochs: 0`` refuses)."""
        if cfg.supernet.pretrained is None:
            return super().build_supernet(cfg, args)
        return create_supernet(cfg.supernet.family, pretrained=cfg.supernet.pretrained,
                               allow_new_head=cfg.train.epochs > 0, **args)

    def data_facts(self, cfg: RunConfig) -> dict[str, str]:
        from ..data import describe_mixing

        mixing = describe_mixing(cfg.data.mixup, cfg.data.cutmix)
        return {"image size": str(cfg.data.image_size or "the data's"),
                "augmentation": cfg.data.augmentation + (f" ({mixing})" if mixing else "")}


class TextClassification:
    """A TSV/CSV folder of labelled sentences for the ``bert`` family (see ``run.text``)."""

    name = "text classification"

    def check_data(self, cfg: RunConfig) -> None:
        from .text import text_files

        text_files(cfg)

    def load_data(self, cfg: RunConfig, progress: bool = False) -> Any:
        from .text import load_text_data

        return load_text_data(cfg)

    def supernet_args(self, cfg: RunConfig, bundle: Any) -> dict[str, Any]:
        from .text import text_supernet_args

        return text_supernet_args(cfg, bundle)

    def build_supernet(self, cfg: RunConfig, args: dict[str, Any]) -> Supernet:
        from .text import build_text_supernet

        return build_text_supernet(cfg, args)

    def teacher(self, cfg: RunConfig, bundle: Any, args: dict[str, Any], checkpoints: Path,
                progress: bool = True) -> nn.Module | None:
        from .text import original_teacher

        return original_teacher(cfg, bundle, args, checkpoints, progress)

    def data_facts(self, cfg: RunConfig) -> dict[str, str]:
        return {"max length": str(cfg.data.text.max_length)} if cfg.data.text is not None else {}


class LanguageModelling(FromScratch):
    """One text file as windows of tokens with next-token targets, for a decoder (the ``custom`` family)."""

    name = "language modelling"

    def check_data(self, cfg: RunConfig) -> None:
        path = Path(cfg.data.dataset)
        if not path.is_file():
            raise DataError(f"language-modelling text {path} is not a file")

    def load_data(self, cfg: RunConfig, progress: bool = False) -> Any:
        from ..data import load_text_lm

        d = cfg.data
        return load_text_lm(d.dataset, d.language_model.seq_len, d.language_model.tokenizer, d.val_fraction,
                            d.val_fraction)

    def supernet_args(self, cfg: RunConfig, bundle: Any) -> dict[str, Any]:
        args = dict(cfg.supernet.args)
        args.setdefault("num_classes", bundle.num_classes)  # the vocabulary
        args.setdefault("seq_len", bundle.seq_len)
        return args

    def data_facts(self, cfg: RunConfig) -> dict[str, str]:
        lm = cfg.data.language_model
        return {"window": f"{lm.seq_len} tokens", "tokens": lm.tokenizer or "characters"}


def task_of(cfg: RunConfig) -> Task:
    """The run's task, from its data section (``data.kind``, or the section it fills)."""
    if cfg.data.is_text:
        return TextClassification()
    if cfg.data.is_lm:
        return LanguageModelling()
    return ImageClassification()
