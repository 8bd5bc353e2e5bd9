"""Datasets: the embedded digits default, image-folder trees and CIFAR python batches (tiny generated files)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from supernas.data import load_cifar, load_dataset, load_digits_bundle, load_image_folder, loaders
from supernas.errors import DataError


@pytest.fixture(scope="module")
def digits():
    return load_digits_bundle(image_size=16, seed=0)


def test_digits_shapes_split_and_normalisation(digits):
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 16)
    sizes = (len(digits.train), len(digits.val), len(digits.test))
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] and sizes[0] > 4 * sizes[1]
    x, y = digits.train.tensors
    assert x.shape[1:] == (1, 16, 16) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    for ds in (digits.val, digits.test):  # stratified: every class in every split
        assert set(ds.tensors[1].tolist()) == set(range(10))


def test_digits_split_is_seeded(digits):
    again = load_digits_bundle(image_size=16, seed=0)
    other = load_digits_bundle(image_size=16, seed=1)
    assert torch.equal(again.val.tensors[0], digits.val.tensors[0])
    assert not torch.equal(other.val.tensors[0], digits.val.tensors[0])
    assert load_digits_bundle(image_size=8).train.tensors[0].shape[-1] == 8


def test_loaders_are_seeded_and_drop_ragged_batch(digits):
    first = [next(iter(loaders(digits, 50, seed=s)[0]))[1] for s in (3, 3, 4)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])
    train, val, test = loaders(digits, 50)
    assert all(len(y) == 50 for _, y in train)
    assert sum(len(y) for _, y in val) == len(digits.val)


def _write_tree(root, classes=("cat", "dog"), per_class=5, size=6):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            value = 40 + 160 * c  # class 0 dark, class 1 bright
            arr = np.full((size, size, 3), value, dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{i}.png")


def test_image_folder_reads_classes_channels_and_size(tmp_path):
    _write_tree(tmp_path / "pets", per_class=10)
    b = load_image_folder(tmp_path / "pets", image_size=4, channels=1)
    assert b.classes == ["cat", "dog"] and (b.num_classes, b.in_channels, b.image_size) == (2, 1, 4)
    assert len(b.train) + len(b.val) + len(b.test) == 20
    x, y = b.train.tensors
    means = x.mean(dim=(1, 2, 3))
    assert float(means[y == 0].max()) < float(means[y == 1].min())  # labels follow the folders
    rgb = load_dataset(tmp_path / "pets")
    assert rgb.in_channels == 3 and rgb.image_size == 6


def test_image_folder_with_given_splits(tmp_path):
    _write_tree(tmp_path / "d" / "train", per_class=4)
    _write_tree(tmp_path / "d" / "val", per_class=2)
    b = load_image_folder(tmp_path / "d")
    assert (len(b.train), len(b.val), len(b.test)) == (8, 4, 0)


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no class sub-folders"),
    (lambda p: (p / "a").mkdir(parents=True), "holds no images"),
    (lambda p: ((p / "a").mkdir(parents=True), (p / "a" / "x.png").write_bytes(b"not a png")), "cannot read image"),
])
def test_image_folder_errors_are_one_line(tmp_path, make, message):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(DataError, match=message) as e:
        load_image_folder(root)
    assert "\n" not in str(e.value)


def _cifar_batch(path, n, num_classes, key=b"labels", seed=0):
    rng = np.random.default_rng(seed)
    d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: rng.integers(0, num_classes, n).tolist()}
    with open(path, "wb") as f:
        pickle.dump(d, f)


def test_cifar10_and_cifar100_batches(tmp_path):
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for i in (1, 2):
        _cifar_batch(c10 / f"data_batch_{i}", 30, 10, seed=i)
    _cifar_batch(c10 / "test_batch", 12, 10, seed=9)
    b = load_dataset(tmp_path)  # kind guessed, sub-folder found
    assert b.name == "cifar10" and (b.num_classes, b.in_channels, b.image_size) == (10, 3, 32)
    assert len(b.train) + len(b.val) == 60 and len(b.test) == 12
    c100 = tmp_path / "c100"
    c100.mkdir()
    _cifar_batch(c100 / "train", 40, 100, key=b"fine_labels")
    _cifar_batch(c100 / "test", 10, 100, key=b"fine_labels")
    b = load_cifar(c100, image_size=16)
    assert b.name == "cifar100" and b.num_classes == 100 and b.train.tensors[0].shape[-1] == 16


def test_cifar_errors(tmp_path):
    with pytest.raises(DataError, match="no CIFAR python batches"):
        load_cifar(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(b"garbage")
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read CIFAR batch"):
        load_cifar(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, f)
    _cifar_batch(tmp_path / "test_batch", 2, 10)
    with pytest.raises(DataError, match="N x 3072"):
        load_cifar(tmp_path)


def test_load_dataset_bad_names(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset kind"):
        load_dataset("digits", kind="mnist")
