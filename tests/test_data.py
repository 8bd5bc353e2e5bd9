"""Datasets: the embedded digits, image folders in every layout, CIFAR batches, the uint8 cache, augmentation,
seeded and sharded batches (tiny generated files)."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from supernas.data import (ImageBatches, SeededBatchSampler, load_cifar, load_dataset, load_digits_bundle,
                           load_image_folder, loaders)
from supernas.errors import DataError


def everything(bundle, split: str):
    """A whole split as the model sees it at evaluation: (normalised float images, labels)."""
    ds = getattr(bundle, split)
    return next(iter(bundle.eval_loader(split, max(len(ds), 1))))


@pytest.fixture(scope="module")
def digits():
    return load_digits_bundle(image_size=16, seed=0)


def test_digits_shapes_split_and_normalisation(digits):
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 16)
    sizes = (len(digits.train), len(digits.val), len(digits.test))
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] and sizes[0] > 4 * sizes[1]
    x, y = everything(digits, "train")
    assert x.shape[1:] == (1, 16, 16) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    assert digits.train[0][0].dtype == torch.uint8  # pixels stay uint8 until a batch is formed
    for split in ("val", "test"):  # stratified: every class in every split
        assert set(everything(digits, split)[1].tolist()) == set(range(10))


def test_digits_keep_the_seventeen_grey_levels_exactly():
    b = load_digits_bundle(image_size=8, seed=0)
    levels = torch.unique(everything(b, "train")[0])
    assert len(levels) == 17  # values 0..16, each stored as an exact uint8 value
    steps = torch.diff(levels)
    assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-5)


def test_digits_split_is_seeded(digits):
    again = load_digits_bundle(image_size=16, seed=0)
    other = load_digits_bundle(image_size=16, seed=1)
    assert torch.equal(everything(again, "val")[0], everything(digits, "val")[0])
    assert not torch.equal(everything(other, "val")[0], everything(digits, "val")[0])
    assert everything(load_digits_bundle(image_size=8), "train")[0].shape[-1] == 8


def test_loaders_are_seeded_and_drop_ragged_batch(digits):
    first = [next(iter(loaders(digits, 50, seed=s)[0]))[1] for s in (3, 3, 4)]
    assert torch.equal(first[0], first[1]) and not torch.equal(first[0], first[2])
    train, val, test = loaders(digits, 50)
    assert all(len(y) == 50 for _, y in train)
    assert sum(len(y) for _, y in val) == len(digits.val)


def test_calibration_batches_are_the_same_on_every_pass(digits):
    """BN recalibration takes the first batches of the training loader: every pass over it (every
    sub-network evaluated, in any order, in any process) must see the same images."""
    calib = loaders(digits, 50, seed=3)[0]
    passes = [[y for _, y in calib] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*passes))
    copy = pickle.loads(pickle.dumps(calib))  # what a Ray worker or a resumed run gets
    assert torch.equal(next(iter(copy))[1], passes[0][0])
    assert not torch.equal(torch.cat(passes[0]), torch.as_tensor(digits.train.labels[: 50 * len(passes[0])]))  # shuffled


def _write_tree(root, classes=("cat", "dog"), per_class=5, size=6, ext="png", start=0):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            value = 40 + 160 * c  # class 0 dark, class 1 bright
            arr = np.full((size, size, 3), value, dtype=np.uint8)
            arr[0, 0] = i % 256  # images differ
            Image.fromarray(arr).save(root / name / f"{i}.{ext}")


def test_image_folder_reads_classes_channels_and_size(tmp_path):
    _write_tree(tmp_path / "pets", per_class=10)
    b = load_image_folder(tmp_path / "pets", image_size=4, channels=1)
    assert b.classes == ["cat", "dog"] and (b.num_classes, b.in_channels, b.image_size) == (2, 1, 4)
    assert len(b.train) + len(b.val) + len(b.test) == 20 and b.layout.startswith("classes")
    x, y = everything(b, "train")
    means = x.mean(dim=(1, 2, 3))
    assert float(means[y == 0].max()) < float(means[y == 1].min())  # labels follow the folders
    rgb = load_dataset(tmp_path / "pets")
    assert rgb.in_channels == 3 and rgb.image_size == 6


def test_train_and_val_folders(tmp_path):
    _write_tree(tmp_path / "d" / "train", per_class=4)
    _write_tree(tmp_path / "d" / "val", per_class=2)
    b = load_image_folder(tmp_path / "d")
    assert (len(b.train), len(b.val), len(b.test)) == (8, 4, 0) and b.layout.startswith("train+val")
    _write_tree(tmp_path / "d" / "test", per_class=3)
    assert len(load_image_folder(tmp_path / "d").test) == 6


def test_train_and_test_folders_carve_validation_from_train(tmp_path):
    _write_tree(tmp_path / "d" / "train", per_class=20)
    _write_tree(tmp_path / "d" / "test", per_class=3)
    b = load_image_folder(tmp_path / "d", val_fraction=0.25, seed=0)
    assert (len(b.train), len(b.val), len(b.test)) == (30, 10, 6) and b.layout.startswith("train+test")
    assert np.bincount(b.val.labels).tolist() == [5, 5]  # stratified
    again = load_image_folder(tmp_path / "d", val_fraction=0.25, seed=0)
    other = load_image_folder(tmp_path / "d", val_fraction=0.25, seed=1)
    key = lambda bundle: everything(bundle, "val")[0].flatten(1).sum(1).sort().values  # noqa: E731
    assert torch.equal(key(again), key(b)) and not torch.equal(key(other), key(b))


def test_imagenet_style_folders(tmp_path):
    wnids = ("n01440764", "n01443537")
    _write_tree(tmp_path / "train", classes=wnids, per_class=3, size=10, ext="JPEG")
    _write_tree(tmp_path / "val", classes=wnids, per_class=2, size=10, ext="JPEG")
    b = load_dataset(tmp_path, image_size=8)
    assert b.classes == list(wnids) and (len(b.train), len(b.val)) == (6, 4)
    assert everything(b, "val")[0].shape[1:] == (3, 8, 8)


def test_large_images_are_stored_with_a_margin_and_centre_cropped(tmp_path):
    _write_tree(tmp_path / "big", per_class=3, size=90)
    b = load_image_folder(tmp_path / "big", image_size=70)
    assert b.train[0][0].shape[-1] == 80  # 70 / 0.875
    assert everything(b, "val")[0].shape[-1] == 70
    x, _ = next(iter(load_image_folder(tmp_path / "big", image_size=70, augment="standard").train_loader(2)))
    assert x.shape[-1] == 70  # random-resized-crop to the input size


def test_csv_of_paths_and_labels(tmp_path):
    _write_tree(tmp_path / "imgs", per_class=10)
    rows = [f"imgs/{c}/{i}.png,{c}" for c in ("cat", "dog") for i in range(10)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    b = load_dataset(tmp_path / "labels.csv")
    assert b.classes == ["cat", "dog"] and len(b.train) + len(b.val) + len(b.test) == 20
    split = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    rows = [f"imgs/{c}/{i}.png\t{k}\t{split[i]}" for k, c in enumerate(("cat", "dog")) for i in range(10)]
    (tmp_path / "labels.tsv").write_text("\n".join(rows) + "\n")
    b = load_dataset(tmp_path / "labels.tsv")
    assert (len(b.train), len(b.val), len(b.test)) == (12, 4, 4) and b.classes == ["0", "1"]
    (tmp_path / "bad.csv").write_text("imgs/cat/0.png,cat\nimgs/cat/missing.png,cat\n")
    with pytest.raises(DataError, match="missing.png does not exist"):
        load_dataset(tmp_path / "bad.csv")


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no class sub-folders; expected one of: train/ \\+ val/"),
    (lambda p: (p / "a").mkdir(parents=True), "holds no images"),
    (lambda p: ((p / "a").mkdir(parents=True), (p / "a" / "x.png").write_bytes(b"not a png")), "cannot read image"),
    (lambda p: (p.mkdir(), (p / "x.png").write_bytes(b"")), "no class sub-folders"),
    (lambda p: _write_tree(p / "val"), "val/ but no train/"),
    (lambda p: (_write_tree(p / "train"), _write_tree(p / "val", classes=("cat", "cow"))), "'cow' is not among"),
])
def test_image_folder_errors_are_one_line(tmp_path, make, message):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(DataError, match=message) as e:
        load_image_folder(root)
    assert "\n" not in str(e.value)


def test_empty_class_folder_is_named(tmp_path):
    _write_tree(tmp_path / "d", per_class=4)
    (tmp_path / "d" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty holds no images"):
        load_image_folder(tmp_path / "d")


def test_corrupt_image_found_while_streaming_names_the_file(tmp_path):
    _write_tree(tmp_path / "d" / "train", per_class=6, size=80)
    _write_tree(tmp_path / "d" / "val", per_class=2, size=80)
    b = load_image_folder(tmp_path / "d", image_size=80, workers=1, cache="off")
    (tmp_path / "d" / "train" / "dog" / "3.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError) as e:
        for _ in b.train_loader(4, seed=0):
            pass
    assert str(e.value).startswith("cannot read image ") and "3.png" in str(e.value) and "\n" not in str(e.value)


def test_cache_is_built_once_and_rebuilt_when_a_file_changes(tmp_path):
    _write_tree(tmp_path / "d" / "train", per_class=10)
    _write_tree(tmp_path / "d" / "val", per_class=2)
    cache = tmp_path / "cache"
    a = load_image_folder(tmp_path / "d", cache="on", cache_dir=cache)
    entries = sorted(cache.glob("*.npy"))
    assert len(entries) == 2 and a.layout.endswith("+cache") and isinstance(a.train.images, np.memmap)
    streamed = load_image_folder(tmp_path / "d", cache="off")
    assert torch.equal(everything(a, "train")[0], everything(streamed, "train")[0])  # same pixels, same stats
    mtimes = {p: p.stat().st_mtime_ns for p in entries}
    load_image_folder(tmp_path / "d", cache="on", cache_dir=cache)
    assert {p: p.stat().st_mtime_ns for p in sorted(cache.glob("*.npy"))} == mtimes  # reused
    relative = os.path.relpath(tmp_path / "d")
    load_image_folder(relative, cache="on", cache_dir=cache)  # the same folder spelt another way
    assert {p: p.stat().st_mtime_ns for p in sorted(cache.glob("*.npy"))} == mtimes
    assert min(int(a.train[i][0].max()) for i in range(len(a.train))) > 0
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "d" / "train" / "dog" / "7.png")
    b = load_image_folder(tmp_path / "d", cache="on", cache_dir=cache)
    now = sorted(cache.glob("*.npy"))
    assert len(now) == 2 and len(set(now) - set(entries)) == 1  # the train split's entry replaced
    assert min(int(b.train[i][0].max()) for i in range(len(b.train))) == 0  # the new pixels are served


def test_cached_arrays_pickle_by_file_name(tmp_path):
    _write_tree(tmp_path / "d", per_class=10)
    b = load_image_folder(tmp_path / "d", cache="on", cache_dir=tmp_path / "c")
    blob = pickle.dumps(b.train)
    assert len(blob) < 2000  # not the pixels
    assert torch.equal(pickle.loads(blob)[3][0], b.train[3][0])


def test_augmentation_only_in_training_batches(tmp_path):
    _write_tree(tmp_path / "d" / "train", per_class=16, size=16)
    _write_tree(tmp_path / "d" / "val", per_class=4, size=16)
    plain = load_image_folder(tmp_path / "d", cache="off", workers=0)
    aug = load_image_folder(tmp_path / "d", cache="off", workers=0, augment="strong")
    assert torch.equal(everything(plain, "val")[0], everything(aug, "val")[0])
    assert torch.equal(next(iter(loaders(plain, 8)[0]))[0], next(iter(loaders(aug, 8)[0]))[0])
    x_plain, y_plain = next(iter(plain.train_loader(8, seed=0)))
    x_aug, y_aug = next(iter(aug.train_loader(8, seed=0)))
    assert torch.equal(y_plain, y_aug) and not torch.equal(x_plain, x_aug)
    with pytest.raises(DataError, match="unknown augmentation"):
        ImageBatches((0.5,), (0.2,), 8, "heavy")


def test_standard_augmentation_pads_crops_and_flips():
    img = torch.arange(64, dtype=torch.uint8).view(1, 8, 8).expand(3, 8, 8).contiguous()
    collate = ImageBatches((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255), 8, "standard")
    outs = [collate([(img, 0, seed)])[0][0, 0] for seed in range(100)]
    assert all(o.shape == (8, 8) for o in outs)
    same = lambda a, b: torch.allclose(a, b, atol=1e-4)  # noqa: E731  (x / 255 * 255 rounds)
    assert any((o.abs() < 1e-4).sum() > 1 and not same(o, img[0].float()) for o in outs)  # shifted, zero padded
    assert any(same(o, img[0].float().flip(-1)) for o in outs)  # flipped, not shifted
    assert torch.equal(collate([(img, 0, 5)])[0], collate([(img, 0, 5)])[0])  # the batch seed decides


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_mixed_batches_carry_labels_in_the_proportion_of_their_pixels(mix):
    """Black images of class 0 mixed with white images of class 1: every image's share of white equals its
    label's probability of class 1 (MixUp blends pixels, CutMix pastes a box)."""
    black, white = torch.zeros(1, 8, 8, dtype=torch.uint8), torch.full((1, 8, 8), 255, dtype=torch.uint8)
    samples = [(black, 0, 11)] * 6 + [(white, 1, 11)] * 6
    collate = ImageBatches((0.0,), (1.0,), 8, "none", **{mix: 1.0}, num_classes=3)
    x, y = collate(samples)
    assert y.shape == (12, 3) and y.dtype == torch.float32
    assert torch.allclose(y.sum(1), torch.ones(12)) and torch.all(y[:, 2] == 0)
    assert torch.allclose(x.mean((1, 2, 3)), y[:, 1], atol=1e-5)
    assert 0 < int(((y[:, 1] > 0) & (y[:, 1] < 1)).sum())  # some images really are mixed
    if mix == "cutmix":
        assert set(x.unique().tolist()) <= {0.0, 1.0}  # pasted, not blended
    assert torch.equal(collate(samples)[0], x)  # the batch seed decides
    never = ImageBatches((0.0,), (1.0,), 8, "none", mixup=0.0, cutmix=0.0, num_classes=3)(samples)[1]
    assert never.dtype == torch.long  # no mixing: class indices as before
    with pytest.raises(DataError, match="summing to at most 1"):
        ImageBatches((0.5,), (0.2,), 8, "none", mixup=0.7, cutmix=0.5, num_classes=3)


def test_only_training_batches_are_mixed(digits):
    mixed = load_digits_bundle(image_size=16, seed=0)
    mixed.mixup, mixed.cutmix = 0.5, 0.5
    x, y = next(iter(mixed.train_loader(16, seed=0)))
    assert y.shape == (16, 10) and torch.allclose(y.sum(1), torch.ones(16))
    assert torch.equal(everything(mixed, "val")[1], everything(digits, "val")[1])  # evaluation: class indices
    assert "mixup 0.5, cutmix 0.5" in mixed.describe()


def test_training_batches_do_not_depend_on_the_worker_count(tmp_path):
    _write_tree(tmp_path / "d" / "train", per_class=24, size=12)
    _write_tree(tmp_path / "d" / "val", per_class=2, size=12)

    def epoch_batches(workers: int, seed: int, epoch: int):
        b = load_image_folder(tmp_path / "d", cache="off", workers=workers, augment="standard")
        loader = b.train_loader(8, seed=seed)
        loader.batch_sampler.set_epoch(epoch)
        return [x for x, _ in loader]

    zero, two = epoch_batches(0, 3, 1), epoch_batches(2, 3, 1)
    assert len(zero) == 6 and all(torch.equal(a, b) for a, b in zip(zero, two))
    assert not torch.equal(torch.cat(zero), torch.cat(epoch_batches(0, 3, 2)))  # epochs reshuffle
    assert not torch.equal(torch.cat(zero), torch.cat(epoch_batches(0, 4, 1)))  # seeds differ


def test_distributed_shards_cover_the_split_once():
    size = 103
    shards = [SeededBatchSampler(size, 10, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        seen = []
        for s in shards:
            s.set_epoch(epoch)
            seen.append([i for batch in s for i, _ in batch])
        assert not set(seen[0]) & set(seen[1])  # disjoint
        assert len(seen[0]) == len(seen[1]) == 50  # each rank 5 full batches of its 51
    whole = SeededBatchSampler(size, 1, seed=1, rank=0, world_size=2)
    other = SeededBatchSampler(size, 1, seed=1, rank=1, world_size=2)
    union = {i for batch in whole for i, _ in batch} | {i for batch in other for i, _ in batch}
    assert len(union) == 102  # the whole split but one (the ranks get equal shares)
    seeds = {seed for batch in shards[0] for _, seed in batch} | {seed for batch in shards[1] for _, seed in batch}
    assert len(seeds) == 10  # one augmentation seed per batch, different on each rank


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
    assert b.name == "cifar100" and b.num_classes == 100 and everything(b, "train")[0].shape[-1] == 16


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
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(DataError, match="not a .csv/.tsv"):
        load_dataset(tmp_path / "notes.json")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads resident memory from /proc")
def test_streaming_twenty_thousand_images_keeps_memory_flat(tmp_path):
    """Indexing and streaming a folder of 20,000 images grows resident memory by less than 200 MB, where
    decoding them all up front would take 553 MB (20,000 x 3 x 48 x 48 float32; 138 MB as uint8)."""
    root = tmp_path / "many"
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(5000):
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.jpg")
    before = _rss_mb()
    b = load_image_folder(root, cache="off", workers=0, augment="standard")
    seen = sum(len(y) for _, y in b.train_loader(256, seed=0))
    grown = _rss_mb() - before
    assert seen == len(b.train) // 256 * 256 and len(b.train) == 14000
    assert grown < 200, f"resident memory grew by {grown:.0f} MB"
    cached = load_image_folder(root, cache="on", cache_dir=tmp_path / "cache", workers=0)
    seen = sum(len(y) for _, y in cached.train_loader(256, seed=0))
    cache_mb = sum(p.stat().st_size for p in (tmp_path / "cache").glob("*.npy")) / 2 ** 20
    assert _rss_mb() - before < 200 + cache_mb


def test_subsets_of_a_cached_split_read_the_right_rows(tmp_path):
    _write_tree(tmp_path / "d", per_class=10)
    b = load_image_folder(tmp_path / "d", cache="on", cache_dir=tmp_path / "c", fractions=(0.0, 0.0))
    idx = np.array([7, 2, 11])
    sub = b.train.subset(idx).subset(np.array([2, 0]))
    assert len(sub) == 2 and torch.equal(sub[0][0], b.train[11][0]) and torch.equal(sub[1][0], b.train[7][0])
    assert sub[0][1] == b.train[11][1]
