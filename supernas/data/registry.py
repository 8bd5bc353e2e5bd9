"""``load_dataset``: one entry point for every dataset kind."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .bundle import DataBundle
from .layouts import index_folder
from .readers import DIGITS_IMAGE_SIZE, cifar_files, load_cifar, load_digits_bundle, load_image_folder

KINDS = ("digits", "folder", "cifar")


def _guess_kind(path: Path) -> str:
    for sub in ("", "cifar-10-batches-py", "cifar-100-python"):
        d = path / sub
        if (d / "test_batch").is_file() or ((d / "train").is_file() and (d / "test").is_file()):
            return "cifar"
    return "folder"


def _resolve_kind(name_or_path: str | Path, kind: str | None) -> str:
    if kind is not None and kind not in KINDS:
        raise DataError(f"unknown dataset kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "digits" or (kind is None and str(name_or_path) == "digits"):
        return "digits"
    path = Path(name_or_path)
    if not path.exists():
        raise DataError(f"dataset {str(name_or_path)!r} not found: neither 'digits' nor an existing folder or file")
    return kind or _guess_kind(path)


def check_dataset(name_or_path: str | Path = "digits", kind: str | None = None) -> str:
    """The dataset's kind once its path and layout are known to be readable (files indexed, nothing decoded);
    otherwise the DataError line ``load_dataset`` would give."""
    kind = _resolve_kind(name_or_path, kind)
    if kind == "cifar":
        cifar_files(name_or_path)
    elif kind == "folder":
        index_folder(name_or_path)
    return kind


def load_dataset(name_or_path: str | Path = "digits", kind: str | None = None, image_size: int | None = None,
                 seed: int = 0, channels: int = 3, augment: str = "none", **folder: Any) -> DataBundle:
    """Load ``"digits"`` (the embedded default), an image folder / ``path,label`` table (any layout of
    ``supernas.data.layouts``) or a CIFAR batch folder. ``kind`` ("digits", "folder", "cifar") is guessed
    from the path when omitted; ``image_size`` defaults to 16 for digits, 32 for CIFAR and the first
    image's size for folders; ``channels`` and the keyword arguments of ``load_image_folder``
    (``workers``, ``cache``, ``cache_dir``, ``val_fraction``, ``progress``) apply to folders;
    ``augment`` (none, standard, strong) to the training batches of every kind."""
    kind = _resolve_kind(name_or_path, kind)
    if kind == "digits":
        return load_digits_bundle(image_size or DIGITS_IMAGE_SIZE, seed, augment=augment)
    path = Path(name_or_path)
    if kind == "cifar":
        return load_cifar(path, image_size or 32, seed, folder.get("val_fraction", 0.1), augment=augment,
                          workers=folder.get("workers") or 0)
    return load_image_folder(path, image_size, channels, seed, augment=augment, **folder)
