"""Readers: scikit-learn digits (embedded default), ``root/class_x/*.png`` folders, CIFAR python batches."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .bundle import DataBundle, make_bundle, stratified_split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
DIGITS_IMAGE_SIZE = 16


def _split(name: str, x: torch.Tensor, y: np.ndarray, num_classes: int, image_size: int,
           fractions: tuple[float, float], seed: int, classes: list[str] | None = None) -> DataBundle:
    tr, va, te = stratified_split(y, fractions, seed)
    yt = torch.as_tensor(y)
    return make_bundle(name, {"train": (x[tr], yt[tr]), "val": (x[va], yt[va]), "test": (x[te], yt[te])},
                       num_classes, image_size, classes)


def load_digits_bundle(image_size: int = DIGITS_IMAGE_SIZE, seed: int = 0,
                       fractions: tuple[float, float] = (0.15, 0.15)) -> DataBundle:
    """The embedded default: scikit-learn's 1,797 8x8 grey digits as 1-channel images, scaled to [0, 1],
    bilinearly upsampled to ``image_size`` (16 by default) and normalised; a seeded stratified
    70/15/15 train/val/test split (1,257/270/270 images)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    return _split("digits", x, d.target.astype(np.int64), 10, image_size, fractions, seed)


def _read_image(path: Path, mode: str) -> np.ndarray:
    """HxWxC uint8 array of one image file converted to PIL ``mode`` ("L" or "RGB")."""
    from PIL import Image  # Pillow comes with matplotlib

    try:
        with Image.open(path) as im:
            return np.array(im.convert(mode), dtype=np.uint8).reshape(im.size[1], im.size[0], -1)
    except Exception as e:  # PIL raises many types for unreadable files
        raise DataError(f"cannot read image {path}: {type(e).__name__}") from e


def _read_class_tree(root: Path, mode: str, image_size: int | None, classes: list[str] | None
                     ) -> tuple[torch.Tensor, np.ndarray, list[str], int]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = classes or found
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders (expected {root}/<class>/*.png)")
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {root / cls} holds no images ({', '.join(IMAGE_SUFFIXES[:3])}, ...)")
        for f in files:
            images.append(_read_image(f, mode))
            labels.append(label)
    size = image_size or images[0].shape[0]
    tensors = []
    for img in images:
        t = torch.as_tensor(img).permute(2, 0, 1).float()[None] / 255.0
        if t.shape[-2:] != (size, size):
            t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                                antialias=True)
        tensors.append(t)
    return torch.cat(tensors), np.asarray(labels, dtype=np.int64), classes, size


def load_image_folder(root: str | Path, image_size: int | None = None, channels: int = 3, seed: int = 0,
                      fractions: tuple[float, float] = (0.15, 0.15)) -> DataBundle:
    """Images in ``root/<class>/*.png`` (any PIL-readable format), converted to ``channels`` (1 or 3) and
    resized to ``image_size`` (default: the first image's height). When ``root`` holds ``train/`` and
    ``val/`` (and optionally ``test/``) class trees those splits are used as given; otherwise one class
    tree is split 70/15/15 by a seeded stratified split."""
    root = Path(root)
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    mode = "L" if channels == 1 else "RGB"
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    if (root / "train").is_dir() and (root / "val").is_dir():
        x, y, classes, size = _read_class_tree(root / "train", mode, image_size, None)
        splits = {"train": (x, torch.as_tensor(y))}
        for part in ("val", "test"):
            if (root / part).is_dir():
                xs, ys, _, _ = _read_class_tree(root / part, mode, size, classes)
                splits[part] = (xs, torch.as_tensor(ys))
            else:
                splits[part] = (x[:0], torch.as_tensor(y[:0]))
        return make_bundle(root.name, splits, len(classes), size, classes)
    x, y, classes, size = _read_class_tree(root, mode, image_size, None)
    return _split(root.name, x, y, len(classes), size, fractions, seed, classes)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:
        raise DataError(f"cannot read CIFAR batch {path}: {type(e).__name__}") from e
    if not isinstance(d, dict) or b"data" not in d:
        raise DataError(f"{path} is not a CIFAR python batch (no 'data' entry)")
    return d


def _cifar_arrays(batches: list[Path]) -> tuple[torch.Tensor, np.ndarray]:
    xs, ys = [], []
    for p in batches:
        d = _unpickle(p)
        labels = d.get(b"labels", d.get(b"fine_labels"))
        data = np.asarray(d[b"data"], dtype=np.uint8)
        if labels is None or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DataError(f"{p} is not a CIFAR python batch (expected N x 3072 data and N labels)")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    return torch.as_tensor(np.concatenate(xs)).float() / 255.0, np.concatenate(ys)


def load_cifar(root: str | Path, image_size: int = 32, seed: int = 0, val_fraction: float = 0.1) -> DataBundle:
    """CIFAR-10 (``data_batch_1..5`` + ``test_batch``) or CIFAR-100 (``train`` + ``test``) python-format
    batch files in ``root`` (or its ``cifar-10-batches-py`` / ``cifar-100-python`` sub-folder). The test
    batch is the test split; ``val_fraction`` of the training images (seeded, stratified) is validation."""
    root = Path(root)
    for sub in ("cifar-10-batches-py", "cifar-100-python"):
        if (root / sub).is_dir():
            root = root / sub
    if not root.is_dir():
        raise DataError(f"CIFAR folder {root} does not exist or is not a directory")
    train_files = sorted(root.glob("data_batch_*"))
    if train_files and (root / "test_batch").is_file():
        name, num_classes, test_files = "cifar10", 10, [root / "test_batch"]
    elif (root / "train").is_file() and (root / "test").is_file():
        name, num_classes, train_files, test_files = "cifar100", 100, [root / "train"], [root / "test"]
    else:
        raise DataError(f"{root} holds no CIFAR python batches (data_batch_1..5 + test_batch, or train + test)")
    x, y = _cifar_arrays(train_files)
    x_test, y_test = _cifar_arrays(test_files)
    if max(y.max(), y_test.max()) >= num_classes:
        raise DataError(f"{root}: labels exceed the {num_classes} classes of {name}")
    tr, va, _ = stratified_split(y, (val_fraction, 0.0), seed)
    yt = torch.as_tensor(y)
    splits = {"train": (x[tr], yt[tr]), "val": (x[va], yt[va]), "test": (x_test, torch.as_tensor(y_test))}
    return make_bundle(name, splits, num_classes, image_size)
