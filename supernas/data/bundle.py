"""The DataBundle (train/val/test tensor datasets plus shape facts) and its seeded loaders."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from ..errors import DataError


@dataclass
class DataBundle:
    """Train/validation/test splits of one image-classification dataset, images as float tensors
    ``[N, C, H, W]`` normalised with the training split's per-channel mean and std."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    in_channels: int
    image_size: int
    classes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)}/{len(self.val)}/{len(self.test)} train/val/test images, "
                f"{self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes")


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Bilinear resize of ``[N, C, H, W]`` float images to ``image_size`` (antialiased when shrinking)."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    shrink = image_size < max(images.shape[-2:])
    return torch.nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear",
                                           align_corners=False, antialias=shrink)


def stratified_split(labels: np.ndarray, fractions: tuple[float, float], seed: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a seeded, stratified train/val/test split; ``fractions`` = (val, test) of the whole."""
    val_f, test_f = fractions
    if not (0 <= val_f < 1 and 0 <= test_f < 1 and val_f + test_f < 1):
        raise DataError(f"split fractions must be in [0, 1) and sum below 1, got val={val_f}, test={test_f}")
    idx = np.arange(len(labels))
    strat = labels if len(labels) and np.bincount(labels).min() >= 3 else None
    try:
        return _split_indices(idx, labels, strat, val_f, test_f, seed)
    except ValueError:  # some split too small to hold every class: split without stratification
        try:
            return _split_indices(idx, labels, None, val_f, test_f, seed)
        except ValueError as e:
            raise DataError(f"cannot split {len(labels)} examples into train/val/test ({e})") from None


def _split_indices(idx: np.ndarray, labels: np.ndarray, strat: np.ndarray | None, val_f: float, test_f: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rest, test = (idx, idx[:0]) if test_f == 0 else train_test_split(
        idx, test_size=test_f, random_state=seed, stratify=strat)
    if val_f == 0:
        return rest, idx[:0], test
    train, val = train_test_split(rest, test_size=val_f / (1 - test_f), random_state=seed,
                                  stratify=None if strat is None else labels[rest])
    return train, val, test


def make_bundle(name: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                image_size: int, classes: list[str] | None = None) -> DataBundle:
    """Resize every split, normalise with the train split's statistics and wrap them as tensor datasets.
    ``splits`` maps "train"/"val"/"test" to (uint8-range or [0,1] float images [N,C,H,W], int labels)."""
    x_train = resize(splits["train"][0].float(), image_size)
    if len(x_train) == 0:
        raise DataError(f"dataset {name!r} has no training images")
    mean = x_train.mean(dim=(0, 2, 3))
    std = x_train.std(dim=(0, 2, 3)).clamp_min(1e-6)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return ((resize(x.float(), image_size) - mean[:, None, None]) / std[:, None, None]).contiguous()

    sets = {k: TensorDataset(norm(x), y.long()) for k, (x, y) in splits.items()}
    return DataBundle(name, sets["train"], sets["val"], sets["test"], num_classes, x_train.shape[1], image_size,
                      classes or [str(i) for i in range(num_classes)], tuple(mean.tolist()), tuple(std.tolist()))


def loaders(bundle: DataBundle, batch_size: int = 64, seed: int = 0, eval_batch_size: int | None = None
            ) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) loaders: train shuffled by a seeded generator and without a ragged last batch
    (batch norm needs more than one sample), val/test in order. A bundle with a ``collate_fn`` (text:
    trims padding) gets it in all three."""
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    eval_bs = eval_batch_size or max(batch_size, 256)
    drop = len(bundle.train) > batch_size
    collate = getattr(bundle, "collate_fn", None)
    return (DataLoader(bundle.train, batch_size, shuffle=True, generator=g, drop_last=drop, collate_fn=collate),
            DataLoader(bundle.val, eval_bs, collate_fn=collate), DataLoader(bundle.test, eval_bs, collate_fn=collate))
