"""Image datasets that keep pixels as uint8 ``[C, H, W]`` tensors until a batch is formed.

``ArrayImages`` holds a uint8 array ``[N, C, H, W]`` (in memory, or memory-mapped from the cache);
``FileImages`` holds only paths and labels and decodes one image per ``__getitem__`` (in DataLoader
worker processes), so memory does not grow with the number of images.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
CROP_FRACTION = 0.875  # large images are stored at image_size / 0.875 and centre-cropped for evaluation
LARGE_IMAGE = 64  # above this input size images count as large (random-resized-crop, no default cache)


def stored_size(image_size: int) -> int:
    """The side at which images of network input ``image_size`` are decoded and kept: the input size for
    small images, ``image_size / 0.875`` for large ones (256 for 224: resize + centre crop, the usual
    ImageNet evaluation, and room for random-resized crops)."""
    return image_size if image_size <= LARGE_IMAGE else int(round(image_size / CROP_FRACTION))


def decode_image(path: str | Path, channels: int, size: int | None) -> np.ndarray:
    """One image file as a uint8 ``[C, H, W]`` array: converted to ``channels`` (1 or 3) and, given
    ``size``, its shorter side resized to ``size`` and centre-cropped to a square. An unreadable file
    raises a DataError naming it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size, size):
                im = ImageOps.fit(im, (size, size), method=Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # PIL raises many types for unreadable or truncated files
        raise DataError(f"cannot read image {path}: {type(e).__name__}") from None
    return np.ascontiguousarray(arr.reshape(arr.shape[0], arr.shape[1], -1).transpose(2, 0, 1))


class ImageDataset(Dataset, ABC):
    """A split of labelled images: ``ds[i]`` is ``(uint8 tensor [C, H, W], int label)``; ``labels`` holds
    every label (for stratified splits and class counts) without decoding anything."""

    labels: np.ndarray

    @abstractmethod
    def subset(self, indices: np.ndarray) -> "ImageDataset":
        """The images at ``indices`` (same storage, no decoding)."""

    def __len__(self) -> int:
        return len(self.labels)


class ArrayImages(ImageDataset):
    """Images in a uint8 array ``[N, C, H, W]``; a memory-mapped array is pickled by its file name (Ray
    workers and DataLoader processes reopen it instead of copying it)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, path: str | None = None,
                 rows: np.ndarray | None = None) -> None:
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(f"image arrays must be uint8 [N, C, H, W], got {images.dtype} {images.shape}")
        if (len(images) if rows is None else len(rows)) != len(labels):
            raise DataError(f"{len(images) if rows is None else len(rows)} images but {len(labels)} labels")
        self.images, self.labels, self.path = images, np.asarray(labels, dtype=np.int64), path
        self._rows = rows  # a subset of a memory-mapped file: its row numbers

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row = int(self._rows[i]) if self._rows is not None else int(i)
        return torch.from_numpy(np.array(self.images[row])), int(self.labels[i])

    def subset(self, indices: np.ndarray) -> "ArrayImages":
        idx = np.asarray(indices, dtype=np.int64)
        if self.path is None:
            return ArrayImages(self.images[idx], self.labels[idx])
        return ArrayImages(self.images, self.labels[idx], self.path, idx if self._rows is None else self._rows[idx])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:
            state["images"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.images is None:
            self.images = np.load(self.path, mmap_mode="r")


class FileImages(ImageDataset):
    """Images read from their files on every access (paths and labels only in memory)."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, channels: int, size: int) -> None:
        if len(paths) != len(labels):
            raise DataError(f"{len(paths)} image files but {len(labels)} labels")
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        self.labels, self.channels, self.size = np.asarray(labels, dtype=np.int64), channels, size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(decode_image(self.paths[i], self.channels, self.size)), int(self.labels[i])

    def subset(self, indices: np.ndarray) -> "FileImages":
        idx = np.asarray(indices, dtype=np.int64)
        return FileImages(list(self.paths[idx]), self.labels[idx], self.channels, self.size)


def stack_images(samples: Sequence[tuple]) -> torch.Tensor:
    """Collate function: the uint8 images of ``(image, label, ...)`` samples as one ``[B, C, H, W]`` tensor."""
    return torch.stack([s[0] for s in samples])
