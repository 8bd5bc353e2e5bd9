"""The uint8 image cache: one memory-mapped ``[N, C, H, W]`` array per split, decoded once.

A cache entry is named by a fingerprint of what it holds: every file's path, size and modification
time, the stored side and the channels. A changed, added or removed file gives another fingerprint, so
the entry is rebuilt (and the split's older entries are deleted). Entries are written to a temporary
file and renamed, so a killed build leaves no half-written cache behind.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import DataError
from .images import ArrayImages, FileImages, stack_images

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$SUPERNAS_CACHE`` or ``~/.cache/supernas/images``."""
    env = os.environ.get("SUPERNAS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "supernas" / "images"


def fingerprint(paths: Sequence[str], labels: np.ndarray, size: int, channels: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION} {size} {channels}\n".encode())
    for p, y in zip(paths, labels.tolist()):
        try:
            st = os.stat(p)
        except OSError:
            raise DataError(f"image file {p} cannot be read (it vanished or is not accessible)") from None
        # the absolute path: ../data/x and /abs/data/x are one file and one cache entry
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\0{y}\n".encode())
    return h.hexdigest()[:24]


def cached_split(files: FileImages, cache_dir: Path, tag: str, workers: int = 0, progress: bool = True
                 ) -> ArrayImages:
    """The split of ``files`` as a memory-mapped uint8 array, built (decoding every image once, in
    ``workers`` processes) unless an entry with the same fingerprint exists. ``tag`` names the split in
    file names (dataset and split), so a split's stale entries can be removed."""
    if len(files) == 0:
        return ArrayImages(np.zeros((0, files.channels, files.size, files.size), np.uint8), files.labels)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = fingerprint(list(files.paths), files.labels, files.size, files.channels)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in tag)
    path = cache_dir / f"{safe}-{key}.npy"
    if path.is_file():
        try:
            images = np.load(path, mmap_mode="r")
            if images.shape == (len(files), files.channels, files.size, files.size) and images.dtype == np.uint8:
                return ArrayImages(images, files.labels, str(path))
        except (ValueError, OSError):
            pass  # damaged entry: rebuilt below
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                    shape=(len(files), files.channels, files.size, files.size))
    loader = DataLoader(files, batch_size=256, num_workers=workers, collate_fn=stack_images,
                        generator=torch.Generator())
    done = 0
    if progress:
        from rich.progress import track
        batches = track(loader, total=len(loader), description=f"caching {tag} ({len(files)} images)")
    else:
        batches = loader
    for x in batches:
        out[done: done + len(x)] = x.numpy()
        done += len(x)
    out.flush()
    del out
    os.replace(tmp, path)
    (path.with_suffix(".json")).write_text(json.dumps({"tag": tag, "images": len(files), "size": files.size,
                                                       "channels": files.channels, "first": str(files.paths[0])}))
    for old in cache_dir.glob(f"{safe}-*.npy"):  # the split's entries for files that changed since
        if old != path and ".tmp" not in old.name:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
    return ArrayImages(np.load(path, mmap_mode="r"), files.labels, str(path))
