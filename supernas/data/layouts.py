"""The layouts of image datasets on disk, indexed into (paths, labels) per split without reading images.

- ``root/train/<class>/*`` + ``root/val/<class>/*`` (+ ``root/test/<class>/*``); ``valid/`` and
  ``validation/`` count as ``val/``; ImageNet's ``train/<wnid>/*.JPEG`` + ``val/<wnid>/*.JPEG`` is this layout;
- ``root/train/<class>/*`` + ``root/test/<class>/*``: validation carved out of ``train/`` (seeded,
  stratified), ``test/`` stays the test split;
- ``root/<class>/*``: one class tree, split 70/15/15 (seeded, stratified);
- a CSV/TSV file of ``path,label`` rows (optional header, optional third column ``split`` with
  train/val/test); paths are relative to the file's folder.

CIFAR python batches are read by ``readers.load_cifar``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .images import IMAGE_SUFFIXES

VAL_NAMES = ("val", "valid", "validation")
LAYOUTS = ("train/ + val/ (+ test/) class folders", "train/ + test/ class folders", "<class>/ folders",
           "a .csv/.tsv of path,label", "CIFAR python batches")


@dataclass
class FileSplits:
    """Image files and labels of each split given on disk (``None``: to be carved out of train)."""

    classes: list[str]
    train: tuple[list[str], np.ndarray]
    val: tuple[list[str], np.ndarray] | None = None
    test: tuple[list[str], np.ndarray] | None = None
    layout: str = ""


def expected_layouts() -> str:
    return "; ".join(LAYOUTS)


def _images_under(folder: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames)
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    return out


def class_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def index_class_tree(root: Path, classes: list[str] | None = None, require_all: bool = True
                     ) -> tuple[list[str], np.ndarray, list[str]]:
    """(paths, labels, classes) of ``root/<class>/**/<image>``; with ``classes`` given (the training
    split's) every folder must be one of them and a class may be absent unless ``require_all``."""
    found = class_folders(root)
    if not found:
        raise DataError(f"{root} has no class sub-folders; expected one of: {expected_layouts()}")
    if classes is not None:
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise DataError(f"{root / unknown[0]}: class {unknown[0]!r} is not among the training classes")
    classes = classes or found
    paths: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = _images_under(root / cls) if (root / cls).is_dir() else []
        if not files and (require_all or (root / cls).is_dir()):
            raise DataError(f"class folder {root / cls} holds no images ({', '.join(IMAGE_SUFFIXES[:3])}, ...)")
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64), classes


def _read_table(path: Path) -> FileSplits:
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep, header=None, dtype=str, keep_default_na=False)
    except Exception as e:
        raise DataError(f"cannot read {path} as a {'TSV' if sep == chr(9) else 'CSV'} file: {type(e).__name__}") from None
    if df.shape[1] < 2:
        raise DataError(f"{path}: expected path,label[,split] columns, found {df.shape[1]} column(s)")
    first = [str(v).strip().lower() for v in df.iloc[0, :3]]
    if first[0] in ("path", "file", "filename", "image", "filepath") or first[1] in ("label", "class"):
        df = df.iloc[1:]
    if df.empty:
        raise DataError(f"{path} lists no images")
    paths = [str((path.parent / p.strip()) if not os.path.isabs(p.strip()) else p.strip()) for p in df.iloc[:, 0]]
    missing = next((p for p in paths if not os.path.isfile(p)), None)
    if missing is not None:
        raise DataError(f"{path}: image file {missing} does not exist")
    names = [str(v).strip() for v in df.iloc[:, 1]]
    if all(n.isdigit() for n in names):
        k = max(int(n) for n in names) + 1
        classes, labels = [str(i) for i in range(k)], np.asarray([int(n) for n in names], dtype=np.int64)
    else:
        classes = sorted(set(names))
        pos = {c: i for i, c in enumerate(classes)}
        labels = np.asarray([pos[n] for n in names], dtype=np.int64)
    splits = ([str(v).strip().lower() for v in df.iloc[:, 2]] if df.shape[1] > 2
              else ["train"] * len(paths))
    bad = next((s for s in splits if s not in ("train", "test", *VAL_NAMES)), None)
    if bad is not None:
        raise DataError(f"{path}: unknown split {bad!r} (use train, val or test)")
    part = np.asarray(["val" if s in VAL_NAMES else s for s in splits])

    def pick(name: str) -> tuple[list[str], np.ndarray] | None:
        idx = np.flatnonzero(part == name)
        return ([paths[i] for i in idx], labels[idx]) if len(idx) else None

    train = pick("train")
    if train is None:
        raise DataError(f"{path}: no rows of the train split")
    return FileSplits(classes, train, pick("val"), pick("test"), layout="table")


def index_folder(root: str | Path) -> FileSplits:
    """Index an image dataset in one of the layouts above; anything else is one DataError line that
    names the layouts expected."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in (".csv", ".tsv", ".txt"):
            return _read_table(root)
        raise DataError(f"{root} is a file but not a .csv/.tsv of path,label; expected one of: {expected_layouts()}")
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    subdirs = set(class_folders(root))
    val_dir = next((root / n for n in VAL_NAMES if n in subdirs), None)
    if "train" in subdirs:
        tr_paths, tr_labels, classes = index_class_tree(root / "train")
        train = (tr_paths, tr_labels)
        splits = {}
        for name, folder in (("val", val_dir), ("test", root / "test" if "test" in subdirs else None)):
            if folder is not None:
                p, y, _ = index_class_tree(folder, classes, require_all=False)
                splits[name] = (p, y)
        layout = "train+val" if "val" in splits else ("train+test" if "test" in splits else "train")
        return FileSplits(classes, train, splits.get("val"), splits.get("test"), layout)
    if val_dir is not None:
        raise DataError(f"{root} has {val_dir.name}/ but no train/; expected one of: {expected_layouts()}")
    paths, labels, classes = index_class_tree(root)
    return FileSplits(classes, (paths, labels), layout="classes")
