"""Corrupt and mismatched inputs through the CLI: each is one clear error line on stderr and exit code 2,
never a traceback (truncated/foreign checkpoints, random bytes as a store, empty or malformed datasets,
corrupt YAML)."""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cli_helpers import assert_one_line, cli
import supernas as sn
from supernas.config import parse_config
from supernas.run import open_run
from supernas.train.checkpoint import plain, save_checkpoint

TINY_ARGS = {"width_mult": 0.25, "stem_stride": 1, "dropout": 0.0, "depths": [1, 2], "kernel_sizes": [3, 5],
             "expand_ratios": [2, 4]}


def run_file(root: Path, name: str, **sections) -> Path:
    doc = {"name": name, "out": str(root / name), "supernet": {"family": "mbv3", "args": TINY_ARGS},
           "data": {"dataset": "digits", "image_size": 8},
           "train": {"epochs": 1, "batch_size": 32, "num_threads": 1, "eval_every": 0},
           "search": {"strategy": "random", "objectives": ["accuracy", "macs"], "evaluations": 4}, **sections}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def tiny_mbv3() -> sn.Supernet:
    torch.manual_seed(0)
    return sn.create_supernet("mbv3", num_classes=10, in_channels=1, image_size=8,
                              **{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_ARGS.items()})


def write_checkpoint(net: sn.Supernet, path: Path) -> None:
    save_checkpoint(path, {"arch": plain(net.arch), "model": net.state_dict(), "epoch": 0})


@pytest.fixture
def run(tmp_path):
    """A run directory (config.yaml written) with a valid checkpoint of the run file's supernet."""
    cfgfile = run_file(tmp_path, "r")
    paths = open_run(parse_config(yaml.safe_load(cfgfile.read_text())))
    write_checkpoint(tiny_mbv3(), paths.checkpoints / "last.pt")
    return cfgfile, paths


@pytest.mark.parametrize("command", ["train", "search", "measure"])
def test_truncated_checkpoint(run, command, capsys):
    cfgfile, paths = run
    last = paths.checkpoints / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: random.Random(1).randrange(1, len(data) - 1)])
    assert_one_line(*cli([command, cfgfile, "-q"] if command != "measure" else [command, cfgfile], capsys),
                    str(last), "truncated or corrupt")


@pytest.mark.parametrize("command", ["train", "search", "measure"])
def test_checkpoint_of_another_family(run, command, capsys):
    cfgfile, paths = run
    resnet = sn.create_supernet("resnet", num_classes=10, image_size=8, small_input=True, base_depths=(1, 1, 1, 1),
                                depth_deltas=(0, 1), width_mults=(0.25,))
    write_checkpoint(resnet, paths.checkpoints / "last.pt")
    argv = [command, cfgfile, "-q"] if command != "measure" else [command, cfgfile]
    assert_one_line(*cli(argv, capsys), "belongs to another supernet", "resnet")


@pytest.mark.parametrize("entry, value, needle", [
    ("arch", ["mbv3"], "its 'arch' entry is list"),
    ("model", 3, "its 'model' entry is int"),
    ("history", 7, "its 'history' entry is int"),
    ("version", "1", "its 'version' entry is str"),
    ("epoch", -2, "its 'epoch' entry is int, not a non-negative integer"),
    ("arch", {"family": "mbv3", "width_mult": 1e39}, "its 'arch' does not build"),
])
@pytest.mark.parametrize("command", ["search", "measure"])
def test_damaged_checkpoint_structure_is_named(run, command, entry, value, needle, capsys):
    cfgfile, paths = run
    last = paths.checkpoints / "last.pt"
    state = torch.load(last, weights_only=True)
    state[entry] = value
    torch.save(state, last)
    argv = [command, cfgfile, "-q"] if command != "measure" else [command, cfgfile]
    assert_one_line(*cli(argv, capsys), str(last), needle)


def test_checkpoint_of_same_family_other_shape(run, capsys):
    cfgfile, paths = run
    wide = sn.create_supernet("mbv3", num_classes=10, in_channels=1, image_size=8,
                              **{**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_ARGS.items()},
                                 "width_mult": 0.5})
    write_checkpoint(wide, paths.checkpoints / "last.pt")
    assert_one_line(*cli(["measure", cfgfile], capsys), "belongs to another supernet")


@pytest.mark.parametrize("argv", [["search", "{cfg}", "-q"], ["report", "{dir}"], ["export", "{dir}"]])
def test_random_bytes_as_the_store(run, argv, capsys):
    cfgfile, paths = run
    paths.results.write_bytes(np.random.default_rng(0).bytes(4096))
    argv = [a.format(cfg=cfgfile, dir=paths.root) for a in argv]
    assert_one_line(*cli(argv, capsys), str(paths.results), "not a supernas result store")


def test_empty_dataset_folder(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    cfgfile = run_file(tmp_path, "empty", data={"dataset": str(tmp_path / "images")})
    assert_one_line(*cli(["train", cfgfile, "-q"], capsys), "no class sub-folders")
    (tmp_path / "images" / "cat").mkdir()
    assert_one_line(*cli(["train", cfgfile, "-q"], capsys), "holds no images")


def test_unreadable_image(tmp_path, capsys):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / cls / "0.png")
    bad = tmp_path / "images" / "b" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))  # a PNG header, then garbage
    cfgfile = run_file(tmp_path, "img", data={"dataset": str(tmp_path / "images")})
    assert_one_line(*cli(["train", cfgfile, "-q"], capsys), "cannot read image", str(bad))


def test_cifar_batch_of_the_wrong_shape(tmp_path, capsys):
    root = tmp_path / "cifar"
    root.mkdir()
    for name in ("data_batch_1", "test_batch"):  # 1000 values per image instead of 3 x 32 x 32
        with open(root / name, "wb") as f:
            pickle.dump({b"data": np.zeros((4, 1000), np.uint8), b"labels": [0, 1, 2, 3]}, f)
    cfgfile = run_file(tmp_path, "cifar", data={"dataset": str(root), "image_size": 8})
    assert_one_line(*cli(["train", cfgfile, "-q"], capsys), "is not a CIFAR python batch")


def test_image_folder_without_channels_setting_loads(tmp_path, capsys):
    """A folder dataset with ``channels`` left unset uses the reader's default (was: 'got None')."""
    from PIL import Image

    from supernas.run import load_data

    for cls in ("a", "b"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((6, 4, 3), 40 * i, np.uint8)).save(tmp_path / "images" / cls / f"{i}.png")
    cfg = parse_config(yaml.safe_load(run_file(tmp_path, "f", data={"dataset": str(tmp_path / "images")})
                                      .read_text()))
    bundle = load_data(cfg)
    assert bundle.in_channels == 3 and bundle.num_classes == 2


@pytest.mark.parametrize("text, needle", [
    ("train: [epochs: 1\n  :: {", "not valid YAML"),
    ("\tseed: 1\n", "not valid YAML"),
    ("- 1\n- 2\n", "must be a YAML mapping"),
    ("train:\n  epochs: -3\n", "train.epochs"),
    ("search: {objectives: [accuracy, latency_ms@gpu9]}\n", "gpu9"),
])
def test_corrupt_run_file(tmp_path, text, needle, capsys):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    for argv in (["train", p], ["run", "--config", p], ["search", p]):
        assert_one_line(*cli(argv, capsys), needle)
    p.write_bytes(b"\xff\xfe\x00garbage")
    assert_one_line(*cli(["train", p], capsys), "not valid YAML")


def test_too_few_images_to_split(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "images" / "only").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "only" / "0.png")
    cfgfile = run_file(tmp_path, "one", data={"dataset": str(tmp_path / "images")})
    assert_one_line(*cli(["train", cfgfile, "-q"], capsys), "cannot split 1 examples")


def test_corrupt_search_summary(run, capsys):
    from supernas.store import Store

    cfgfile, paths = run
    space = tiny_mbv3().space
    with Store(paths.results) as st:
        for seed in range(3):
            c = space.sample(seed=seed)
            st.put("search", space.key(c), c, {"accuracy": 0.5 + seed / 10, "macs": 1000.0 - seed})
    paths.search_json.write_text('{"hypervolume": [0.1, 0.')  # as a kill mid-write used to leave it
    assert_one_line(*cli(["report", paths.root], capsys), str(paths.search_json), "is corrupt")


def test_weights_only_checkpoint_cannot_resume_training(run, capsys):
    cfgfile, paths = run  # the fixture's checkpoint holds arch and weights, no optimizer/RNG state
    assert_one_line(*cli(["train", cfgfile, "-q"], capsys), "cannot resume this training", "optimizer")


def test_search_options_reach_the_strategy(tmp_path, capsys):
    """``search.options`` configure the strategy: a misspelt one is a one-line error; LINAS with the
    supernet's cost-table features (MACs then computed, not predicted) runs and stores every evaluation."""
    from supernas.store import Store

    search = {"strategy": "linas", "objectives": ["accuracy", "macs"], "evaluations": 6}
    bad = run_file(tmp_path, "bad", search={**search, "options": {"populaton": 2}})
    assert_one_line(*cli(["search", bad, "-q"], capsys), "bad option for strategy 'linas'", "populaton")
    assert not (tmp_path / "bad").exists()  # refused when the run file is loaded, before any work
    good = run_file(tmp_path, "good", search={**search, "options": {
        "initial": 3, "population": 2, "models": ["ridge"], "features": ["base", "lookup", "costs"]}})
    paths = open_run(parse_config(yaml.safe_load(good.read_text())))
    write_checkpoint(tiny_mbv3(), paths.checkpoints / "last.pt")
    code, err = cli(["search", good, "-q"], capsys)
    assert code == 0, err
    with Store(paths.results) as st:
        rows = st.records("search")
    assert len({r.key for r in rows if r.status == "ok"}) == 6


def test_a_checkpoint_saved_before_an_argument_existed_describes_the_same_supernet(tmp_path):
    """An ``arch`` without an argument a later version added (here mbv3's feature_mix_rule) describes the
    supernet built with that argument's default."""
    from supernas.train.checkpoint import with_defaults

    net = tiny_mbv3()
    old = {k: v for k, v in plain(net.arch).items() if k != "feature_mix_rule"}
    assert plain(with_defaults(old)) == plain(net.arch)
    assert with_defaults({"family": "nope"}) == {"family": "nope"}
