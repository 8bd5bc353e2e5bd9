"""Batches of images: uint8 samples stacked, augmented (kornia, on the whole batch) and normalised.

Augmentation (``augment``):

- ``none``: nothing (validation, test and BN recalibration always see this);
- ``standard``: small images (<= 64 px) are zero-padded by 1/8 of their side and randomly cropped back,
  large ones random-resized-cropped (scale 0.08-1); then a horizontal flip with probability 0.5;
- ``strong``: standard, then TrivialAugment (RGB images) and random erasing (p 0.25).

Mixing (``mixup``, ``cutmix``: the probability that a training batch is mixed that way, 0 = never): kornia's
MixUp (pixels blended) or CutMix (a box pasted) pairs each image with another of the batch, and the labels
become class probabilities in proportion (``(B, classes)`` floats for every batch of such a loader, mixed or
not; cross-entropy takes them as they are).

Stored large images (``images.stored_size``) are centre-cropped to the input size when not augmented.

The training batches of a split come from :class:`SeededBatchSampler`: a shard of a seeded shuffle per
rank (each epoch reshuffled), and one random seed per batch derived from (seed, epoch, rank, batch
number); the batch's augmentation draws from that seed alone, so the same seed gives the same batches
whatever the number of DataLoader workers, and a resumed run sees the batches it would have seen.
"""
from __future__ import annotations

from typing import Iterator, Literal, Sequence, get_args

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..errors import DataError

Augment = Literal["none", "standard", "strong"]
AUGMENTS: tuple[str, ...] = get_args(Augment)


def _augmentation(kind: str, image_size: int, stored: int, channels: int) -> torch.nn.Module | None:
    if kind == "none":
        return None
    import kornia.augmentation as K

    if stored <= 64 and stored == image_size:
        crop = K.RandomCrop((image_size, image_size), padding=max(image_size // 8, 1))
    else:
        crop = K.RandomResizedCrop((image_size, image_size))
    ops: list[torch.nn.Module] = [crop, K.RandomHorizontalFlip()]
    if kind == "strong":
        if channels == 3:
            ops.append(K.auto.TrivialAugment())
        ops.append(K.RandomErasing(p=0.25))
    return K.AugmentationSequential(*ops)


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float, cutmix: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp with probability ``mixup``, else CutMix with probability ``cutmix`` (kornia), else nothing;
    labels returned as ``(B, num_classes)`` probabilities. Draws from torch's global generator."""
    import kornia.augmentation as K

    soft = torch.nn.functional.one_hot(y, num_classes).float()
    draw = float(torch.rand(()))
    if draw >= mixup + cutmix:
        return x, soft
    if draw < mixup:  # rows (label, partner's label, partner's share of the pixels)
        x, pairs = K.RandomMixUpV2(data_keys=["input", "class"])(x, y)
        share = pairs[:, 2:]
    else:  # (mixes = 1, B, 3); rows (label, partner's label, the image's own share): the CutMix paper's lambda
        x, pairs = K.RandomCutMixV2(data_keys=["input", "class"], use_correct_lambda=True)(x, y)
        pairs = pairs.reshape(-1, 3)
        share = 1 - pairs[:, 2:]
    return x, (1 - share) * soft + share * torch.nn.functional.one_hot(pairs[:, 1].long(), num_classes).float()


def describe_mixing(mixup: float, cutmix: float) -> str:
    """``"mixup 0.5, cutmix 0.2"`` for the mixings switched on; ``""`` for none."""
    return ", ".join(f"{k} {v:g}" for k, v in (("mixup", mixup), ("cutmix", cutmix)) if v)


class ImageBatches:
    """Collate function: ``[(uint8 [C,H,W], label[, seed]), ...]`` -> ``(float [B,C,h,w], labels)``,
    augmented as ``augment`` says and mixed as ``mixup``/``cutmix`` say (seeded by the samples' batch seed
    when they carry one), normalised with ``mean``/``std`` (per channel, pixel values scaled to [0, 1]).
    Picklable, so it runs in DataLoader worker processes."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], image_size: int, augment: Augment = "none",
                 mixup: float = 0.0, cutmix: float = 0.0, num_classes: int = 0) -> None:
        if augment not in AUGMENTS:
            raise DataError(f"unknown augmentation {augment!r}; known: {', '.join(AUGMENTS)}")
        if not (0 <= mixup <= 1 and 0 <= cutmix <= 1 and mixup + cutmix <= 1):
            raise DataError(f"mixup and cutmix are probabilities per batch summing to at most 1, "
                            f"got {mixup} and {cutmix}")
        if (mixup or cutmix) and num_classes < 2:
            raise DataError("mixing labels needs the number of classes")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.image_size, self.augment = image_size, augment
        self.mixup, self.cutmix, self.num_classes = float(mixup), float(cutmix), int(num_classes)
        self._ops: torch.nn.Module | None = None
        self._built = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_ops": None, "_built": False}  # kornia modules are rebuilt where used

    def _transform(self, x: torch.Tensor, y: torch.Tensor, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._built:
            self._ops = _augmentation(self.augment, self.image_size, x.shape[-1], x.shape[1])
            self._built = True
        if self._ops is None and (x.shape[-1] != self.image_size or x.shape[-2] != self.image_size):
            top, left = (x.shape[-2] - self.image_size) // 2, (x.shape[-1] - self.image_size) // 2
            x = x[..., top: top + self.image_size, left: left + self.image_size]  # stored larger: centre crop
        mixing = bool(self.mixup or self.cutmix)
        if self._ops is not None or mixing:
            with torch.random.fork_rng(devices=[]):  # the caller's random stream is left untouched
                if seed is not None:
                    torch.manual_seed(seed)
                if self._ops is not None:
                    x = self._ops(x)
                if mixing:
                    x, y = mix_batch(x, y, self.num_classes, self.mixup, self.cutmix)
        return x, y

    def __call__(self, samples: Sequence[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([s[0] for s in samples]).float().div_(255.0)
        y = torch.tensor([int(s[1]) for s in samples], dtype=torch.long)
        seed = int(samples[0][2]) if len(samples[0]) > 2 else None
        x, y = self._transform(x, y, seed)
        return ((x - self.mean) / self.std).contiguous(), y


class WithBatchSeed(Dataset):
    """``ds[(i, seed)]`` = ``(*ds[i], seed)``: carries the batch seed of :class:`SeededBatchSampler` to the
    collate function."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> tuple:
        i, seed = item
        return (*self.dataset[i], seed)


class SeededBatchSampler(Sampler):
    """Batches of ``(index, batch seed)`` pairs: rank ``rank`` of ``world_size`` takes its shard of a
    seeded shuffle (``DistributedSampler``, drop_last: every rank the same number of batches), cut into
    ``batch_size`` batches (a ragged last batch is dropped when there is more than one batch)."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        if size < world_size:
            raise DataError(f"{size} training examples cannot be shared by {world_size} processes")
        self.shard = DistributedSampler(range(size), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                        drop_last=True)
        self.batch_size = min(batch_size, len(self.shard))
        self.seed, self.rank, self.epoch = seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.shard.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.shard)
        return n // self.batch_size if n > self.batch_size else 1

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = list(self.shard)
        seeds = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(len(self))
        for b in range(len(self)):
            batch = order[b * self.batch_size: (b + 1) * self.batch_size]
            yield [(i, int(seeds[b])) for i in batch]
