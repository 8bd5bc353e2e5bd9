"""Readers: scikit-learn digits (embedded default), image folders in the layouts of ``layouts``, CIFAR
python batches. Each gives a :class:`DataBundle` of uint8 splits; folders stream from their files or from
the uint8 cache."""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import DataError
from .batches import Augment
from .bundle import DataBundle, make_bundle, stratified_split
from .cache import cached_split, default_cache_dir
from .images import ArrayImages, FileImages, ImageDataset, LARGE_IMAGE, decode_image, stored_size
from .layouts import index_folder

DIGITS_IMAGE_SIZE = 16
Cache = Literal["auto", "on", "off"]


def default_workers() -> int:
    """DataLoader processes that decode image files: up to 4, one per core."""
    return min(4, os.cpu_count() or 1)


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of uint8 ``[N, C, H, W]`` images to ``size`` x ``size``."""
    if images.shape[-2:] == (size, size):
        return images
    out = np.empty((len(images), images.shape[1], size, size), dtype=np.uint8)
    for s in range(0, len(images), 2048):
        t = torch.from_numpy(images[s: s + 2048]).float()
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=size < max(images.shape[-2:]))
        out[s: s + 2048] = t.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def _array_bundle(name: str, x: np.ndarray, y: np.ndarray, num_classes: int, image_size: int,
                  fractions: tuple[float, float], seed: int, augment: Augment) -> DataBundle:
    tr, va, te = stratified_split(y, fractions, seed)
    full = ArrayImages(resize_uint8(x, image_size), y)
    return make_bundle(name, {"train": full.subset(tr), "val": full.subset(va), "test": full.subset(te)},
                       num_classes, image_size, augment=augment, seed=seed, layout="arrays")


def load_digits_bundle(image_size: int = DIGITS_IMAGE_SIZE, seed: int = 0,
                       fractions: tuple[float, float] = (0.15, 0.15), augment: Augment = "none") -> DataBundle:
    """The embedded default: scikit-learn's 1,797 8x8 grey digits (values 0-16, kept exactly as uint8
    0-240), bilinearly resized to ``image_size`` (16 by default) and normalised; a seeded stratified
    70/15/15 train/val/test split (1,257/270/270 images)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.uint8) * 15)[:, None]
    return _array_bundle("digits", x, d.target.astype(np.int64), 10, image_size, fractions, seed, augment)


def _carve(files: FileImages, fractions: tuple[float, float], seed: int) -> tuple[FileImages, ...]:
    tr, va, te = stratified_split(files.labels, fractions, seed)
    return files.subset(tr), files.subset(va), files.subset(te)


def load_image_folder(root: str | Path, image_size: int | None = None, channels: int = 3, seed: int = 0,
                      fractions: tuple[float, float] = (0.15, 0.15), val_fraction: float = 0.1,
                      augment: Augment = "none", workers: int | None = None, cache: Cache = "auto",
                      cache_dir: str | Path | None = None, progress: bool = False) -> DataBundle:
    """An image dataset in any layout of :mod:`.layouts` (``train/`` + ``val/`` [+ ``test/``],
    ``train/`` + ``test/``, one class tree, a ``path,label`` CSV/TSV), indexed, not loaded.

    Images are converted to ``channels`` (1 or 3), shorter side resized and centre-cropped to
    ``image_size`` (default: the first image's shorter side; large inputs are kept at
    ``image_size / 0.875`` and cropped per batch). A class tree is split 70/15/15 (``fractions`` =
    val, test); with ``train/`` + ``test/`` a seeded stratified ``val_fraction`` of ``train/`` is the
    validation split. ``cache`` ("auto": when the stored side is at most 64 px) decodes every split once
    into a memory-mapped uint8 array under ``cache_dir`` (default ``$SUPERNAS_CACHE`` or
    ``~/.cache/supernas/images``), rebuilt when a file changes; otherwise images are decoded in
    ``workers`` DataLoader processes (default: up to 4) every time they are read."""
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if cache not in ("auto", "on", "off"):
        raise DataError(f"cache must be auto, on or off, got {cache!r}")
    index = index_folder(root)
    paths, labels = index.train
    if image_size is None:
        first = decode_image(paths[0], channels, None)
        image_size = int(min(first.shape[-2:]))
    side = stored_size(image_size)
    train = FileImages(paths, labels, channels, side)
    given = {k: FileImages(v[0], v[1], channels, side) if v is not None else None
             for k, v in (("val", index.val), ("test", index.test))}
    if given["val"] is None and given["test"] is None:
        train, val, test = _carve(train, fractions, seed)
    elif given["val"] is None:
        train, val, _ = _carve(train, (val_fraction, 0.0), seed)
        test = given["test"]
    else:
        val = given["val"]
        test = given["test"] if given["test"] is not None else train.subset(np.zeros(0, dtype=np.int64))
    splits: dict[str, ImageDataset] = {"train": train, "val": val, "test": test}
    use_cache = cache == "on" or (cache == "auto" and side <= LARGE_IMAGE)
    n_workers = default_workers() if workers is None else workers
    root_path = Path(root).resolve()
    name = root_path.stem if root_path.is_file() else root_path.name
    if use_cache:
        where = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        tag = f"{name}-{hashlib.sha256(str(root_path).encode()).hexdigest()[:8]}"
        try:
            splits = {k: cached_split(v, where, f"{tag}-{k}", n_workers, progress) for k, v in splits.items()}
        except OSError as e:
            raise DataError(f"cannot write the image cache in {where} ({e.strerror or type(e).__name__}); "
                            f"set data.cache_dir or data.cache: off") from None
        if workers is None:
            n_workers = 0  # uint8 arrays need no decoding processes
    return make_bundle(name, splits, len(index.classes), image_size, index.classes, augment, n_workers, seed,
                       index.layout + ("+cache" if use_cache else ""))


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:
        raise DataError(f"cannot read CIFAR batch {path}: {type(e).__name__}") from e
    if not isinstance(d, dict) or b"data" not in d:
        raise DataError(f"{path} is not a CIFAR python batch (no 'data' entry)")
    return d


def _cifar_arrays(batches: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in batches:
        d = _unpickle(p)
        labels = d.get(b"labels", d.get(b"fine_labels"))
        data = np.asarray(d[b"data"], dtype=np.uint8)
        if labels is None or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DataError(f"{p} is not a CIFAR python batch (expected N x 3072 data and N labels)")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def cifar_files(root: str | Path) -> tuple[Path, str, int, list[Path], list[Path]]:
    """(folder, name, classes, training batch files, test batch files) of a CIFAR-10/100 python-batch folder
    (or its ``cifar-10-batches-py`` / ``cifar-100-python`` sub-folder); a DataError line when it holds none."""
    root = Path(root)
    for sub in ("cifar-10-batches-py", "cifar-100-python"):
        if (root / sub).is_dir():
            root = root / sub
    if not root.is_dir():
        raise DataError(f"CIFAR folder {root} does not exist or is not a directory")
    train_files = sorted(root.glob("data_batch_*"))
    if train_files and (root / "test_batch").is_file():
        return root, "cifar10", 10, train_files, [root / "test_batch"]
    if (root / "train").is_file() and (root / "test").is_file():
        return root, "cifar100", 100, [root / "train"], [root / "test"]
    raise DataError(f"{root} holds no CIFAR python batches (data_batch_1..5 + test_batch, or train + test)")


def load_cifar(root: str | Path, image_size: int = 32, seed: int = 0, val_fraction: float = 0.1,
               augment: Augment = "none", workers: int = 0) -> DataBundle:
    """CIFAR-10 (``data_batch_1..5`` + ``test_batch``) or CIFAR-100 (``train`` + ``test``) python-format
    batch files in ``root`` (or its ``cifar-10-batches-py`` / ``cifar-100-python`` sub-folder), held as
    uint8. The test batch is the test split; ``val_fraction`` of the training images (seeded,
    stratified) is validation; ``workers`` DataLoader processes augment the training batches."""
    root, name, num_classes, train_files, test_files = cifar_files(root)
    x, y = _cifar_arrays(train_files)
    x_test, y_test = _cifar_arrays(test_files)
    if max(y.max(), y_test.max()) >= num_classes:
        raise DataError(f"{root}: labels exceed the {num_classes} classes of {name}")
    tr, va, _ = stratified_split(y, (val_fraction, 0.0), seed)
    full = ArrayImages(resize_uint8(x, image_size), y)
    splits = {"train": full.subset(tr), "val": full.subset(va),
              "test": ArrayImages(resize_uint8(x_test, image_size), y_test)}
    return make_bundle(name, splits, num_classes, image_size, augment=augment, workers=workers, seed=seed,
                       layout="cifar-batches")
