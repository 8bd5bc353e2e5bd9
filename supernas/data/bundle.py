"""The DataBundle (train/val/test uint8 image splits plus shape facts), the data contract the trainer and
the evaluator rely on (:class:`TrainingData`), seeded splits and loaders."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import DataError
from .batches import Augment, ImageBatches, SeededBatchSampler, WithBatchSeed, describe_mixing
from .images import ImageDataset, stack_images

Split = Literal["train", "val", "test"]
STATS_IMAGES = 5000  # normalisation statistics come from at most this many training images


@runtime_checkable
class TrainingData(Protocol):
    """What training and measurement need of a dataset (images: :class:`DataBundle`; text:
    ``supernas.data.text.TextBundle``): the splits, the number of classes and two kinds of loaders."""

    train: Dataset
    val: Dataset
    test: Dataset

    @property
    def num_classes(self) -> int: ...

    def train_loader(self, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> DataLoader:
        """Training batches (augmented, rank ``rank``'s shard); ``loader.batch_sampler.set_epoch(e)``
        reshuffles for epoch ``e``."""

    def eval_loader(self, split: Split, batch_size: int, *, shuffle_seed: int | None = None,
                    drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
        """Batches of a split as the model sees it at evaluation (never augmented); ``shuffle_seed`` gives a
        fixed random order, the same on every pass (BN recalibration on the training split)."""


@dataclass
class DataBundle:
    """Train/validation/test splits of one image-classification dataset. Images stay uint8 ``[C, H, W]``
    in the splits (decoded from files, or in a uint8 array) until a batch is formed; batches are
    augmented (training only, ``augment``) and normalised with the training split's per-channel
    ``mean``/``std`` (pixel values scaled to [0, 1]). ``workers`` DataLoader processes decode and augment."""

    name: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    num_classes: int
    in_channels: int
    image_size: int
    classes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    augment: Augment = "none"
    workers: int = 0
    layout: str = ""
    mixup: float = 0.0  # probability that a training batch is mixed up (labels become probabilities)
    cutmix: float = 0.0  # probability that a training batch is cut-mixed

    def describe(self) -> str:
        mixing = describe_mixing(self.mixup, self.cutmix)
        return (f"{self.name}: {len(self.train)}/{len(self.val)}/{len(self.test)} train/val/test images, "
                f"{self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes"
                f"{', augment ' + self.augment if self.augment != 'none' else ''}{', ' + mixing if mixing else ''}")

    @property
    def collate_fn(self) -> ImageBatches:
        return ImageBatches(self.mean, self.std, self.image_size, "none")

    def _options(self, pin_memory: bool, persistent: bool) -> dict[str, Any]:
        w = self.workers
        return {"num_workers": w, "pin_memory": pin_memory, "persistent_workers": persistent and w > 0,
                **({"prefetch_factor": 4} if w > 0 else {})}

    def train_loader(self, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> DataLoader:
        sampler = SeededBatchSampler(len(self.train), batch_size, seed, rank, world_size)
        collate = ImageBatches(self.mean, self.std, self.image_size, self.augment, self.mixup, self.cutmix,
                               self.num_classes)
        return DataLoader(WithBatchSeed(self.train), batch_sampler=sampler, collate_fn=collate,
                          generator=quiet_generator(seed), **self._options(pin_memory, persistent=True))

    def eval_loader(self, split: Split, batch_size: int, *, shuffle_seed: int | None = None,
                    drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
        return split_loader(self, split, batch_size, shuffle_seed, drop_last, self.collate_fn,
                            **self._options(pin_memory, persistent=False))


def split_loader(data: Any, split: str, batch_size: int, shuffle_seed: int | None = None, drop_last: bool = False,
                 collate_fn: Any = None, **options: Any) -> DataLoader:
    """The ``eval_loader`` of every :class:`TrainingData`: split ``split`` of ``data`` in order, or with
    ``shuffle_seed`` in one random order of that seed, the same on every pass (a single-replica
    ``DistributedSampler`` whose epoch never moves: the same batches however often, in whichever process, the
    loader is iterated); ``options`` go to the DataLoader."""
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown split {split!r}; use train, val or test")
    ds = getattr(data, split)
    if ds is None:
        ds = torch.utils.data.TensorDataset(torch.zeros(0))
    order = None if shuffle_seed is None else DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True,
                                                                 seed=shuffle_seed)
    return DataLoader(ds, batch_size, sampler=order, generator=quiet_generator(shuffle_seed),
                      drop_last=drop_last, collate_fn=collate_fn, **options)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of uint8 ``[N, C, H, W]`` images, pixel values scaled to [0, 1]."""
    x = images.double().div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-6).tolist())


def sample_stats(train: ImageDataset, seed: int, workers: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation statistics of the training split from at most ``STATS_IMAGES`` of its images (a seeded
    sample; all of them when fewer), the same whether the split streams from files or sits in an array."""
    if len(train) == 0:
        raise DataError("the training split has no images")
    n = len(train)
    idx = np.arange(n) if n <= STATS_IMAGES else np.sort(np.random.default_rng(seed).choice(n, STATS_IMAGES, False))
    sub = train.subset(idx)
    loader = DataLoader(sub, batch_size=500, num_workers=workers if len(sub) > 2000 else 0,
                        collate_fn=stack_images, generator=quiet_generator())
    return channel_stats(torch.cat([x for x in loader]))


def quiet_generator(seed: int | None = None) -> torch.Generator:
    """A generator for a DataLoader: its shuffle (given ``seed``) and its workers' base seed come from it, so
    iterating the loader leaves the global random stream (dropout, sampling) as it was."""
    return torch.Generator().manual_seed(0 if seed is None else seed)


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


def make_bundle(name: str, splits: dict[str, ImageDataset], num_classes: int, image_size: int,
                classes: list[str] | None = None, augment: Augment = "none", workers: int = 0, seed: int = 0,
                layout: str = "") -> DataBundle:
    """A bundle of uint8 image splits ("train", "val", "test"), normalised with statistics of the train split."""
    if len(splits["train"]) == 0:
        raise DataError(f"dataset {name!r} has no training images")
    mean, std = sample_stats(splits["train"], seed, workers)
    x0, _ = splits["train"][0]
    return DataBundle(name, splits["train"], splits["val"], splits["test"], num_classes, int(x0.shape[0]),
                      image_size, classes or [str(i) for i in range(num_classes)], mean, std, augment, workers,
                      layout)


def loaders(data: TrainingData, batch_size: int = 64, seed: int = 0, eval_batch_size: int | None = None
            ) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) evaluation loaders (no augmentation): train in the fixed random order of ``seed``
    (:func:`split_loader`) and without a ragged last batch: BN recalibration takes its first batches, so every
    sub-network is calibrated on the same images whatever was evaluated before it (batch norm needs more than
    one sample per batch); val/test in order."""
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    eval_bs = eval_batch_size or max(batch_size, 256)
    return (data.eval_loader("train", batch_size, shuffle_seed=seed, drop_last=len(data.train) > batch_size),
            data.eval_loader("val", eval_bs), data.eval_loader("test", eval_bs))


def collate_without_seed(samples: list) -> Any:
    """Default collation of ``(*sample, batch seed)`` items, dropping the seed (plain datasets)."""
    return torch.utils.data.default_collate([s[:-1] for s in samples])


@dataclass
class DatasetPair:
    """A ``(train_dataset, val_dataset)`` pair of ready tensors as :class:`TrainingData` (no augmentation,
    default collation)."""

    train: Dataset
    val: Dataset | None
    test: Dataset | None = None
    num_classes: int = 0  # unknown

    def train_loader(self, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> DataLoader:
        sampler = SeededBatchSampler(len(self.train), batch_size, seed, rank, world_size)  # type: ignore[arg-type]
        return DataLoader(WithBatchSeed(self.train), batch_sampler=sampler, collate_fn=collate_without_seed,
                          generator=quiet_generator(seed), pin_memory=pin_memory)

    def eval_loader(self, split: Split, batch_size: int, *, shuffle_seed: int | None = None,
                    drop_last: bool = False, pin_memory: bool = False) -> DataLoader:
        return split_loader(self, split, batch_size, shuffle_seed, drop_last, pin_memory=pin_memory)
