"""The image run files end to end on generated folders: examples/cifar10_cpu.yaml's shape of data (train/ +
test/ JPEG folders, augmentation, cache) through train -> search -> export -> report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cli_helpers import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def jpeg_folders(root: Path, classes=("plane", "car", "bird"), train=16, test=4, size=32) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                base = np.zeros((size, size, 3), np.uint8)
                base[..., c] = 200  # each class its own colour, plus noise
                noise = rng.integers(0, 50, (size, size, 3), dtype=np.uint8)
                Image.fromarray(base + noise).save(root / split / name / f"{i:04d}.jpg")
    return root


@pytest.mark.slow
def test_cifar10_cpu_example_runs_end_to_end_on_a_jpeg_folder(tmp_path, capsys):
    doc = yaml.safe_load((EXAMPLES / "cifar10_cpu.yaml").read_text())
    doc["out"] = str(tmp_path / "run")
    doc["data"].update(dataset=str(jpeg_folders(tmp_path / "jpegs")), val_fraction=0.25,
                       cache_dir=str(tmp_path / "cache"))
    doc["supernet"]["args"].update(stem_width=8, stage_widths=[8, 16, 16, 16], width_mults=[0.5, 1.0],
                                   expand_ratios=[0.5, 1.0])  # the example's space, shrunk
    doc["train"].update(epochs=1, batch_size=8, num_threads=1, warmup_epochs=0, eval_every=0)
    doc["targets"]["cpu"].update(warmup=1, repeats=3)
    doc["search"].update(evaluations=4)
    doc["export"]["formats"] = ["onnx"]
    path = tmp_path / "cifar.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, err = cli(["run", "--config", path], capsys)
    assert code == 0, err
    run = tmp_path / "run"
    assert (run / "report.html").is_file() and (run / "front.csv").is_file()
    pick = json.loads((run / "knee.json").read_text())
    assert 0 <= pick["test_accuracy"] <= 1  # measured on the test/ folder
    assert (run / "knee.onnx").is_file() and sorted((tmp_path / "cache").glob("*.npy"))
