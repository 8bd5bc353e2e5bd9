"""Named training recipes: supernet constructor arguments, dataset arguments and TrainConfig in one place.

``EMBEDDED_DEFAULT`` (what ``supernas run`` uses) trains on scikit-learn digits at their native 8x8
resolution (1 channel): an mbv3 supernet at width 0.25 with stem stride 1, a 128-wide feature mix, depth
{1, 2} per stage, kernel {3, 5}, expand {2, 4} and input resolution {4, 6, 8} (9.6e6 sub-networks,
63-232 kMACs), 36 epochs of the sandwich rule (largest + smallest + 4 random; students learn half from the
largest's predictions, half from the labels), residual blocks starting as the identity (BigNAS), SGD Nesterov
lr 0.1 with 1 warm-up epoch and cosine decay, label smoothing 0.1, one thread, 20 BN-recalibration batches
(as the search uses). Chosen by benchmarks/no_retrain.py (sub-networks from the supernet vs the same
networks trained from scratch for the same epochs): 24 epochs with 2 random sub-networks and pure KD left
the middle of the space 3.5 points behind on average (worst 4.4); 24 epochs with 3 random and half-label
students 1.5 (worst 2.35); 36 epochs with 4 random 0.5 (worst 1.1, 5 seeds). RESULTS.md has the current
recipe's gaps.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from ..data import DataBundle, load_dataset
from ..supernets import Supernet, create_supernet
from .trainer import TrainResult, train

EMBEDDED_DEFAULT: dict[str, Any] = {
    "data": {"name_or_path": "digits", "image_size": 8, "seed": 0, "channels": 1},
    "supernet": {"name": "mbv3", "num_classes": 10, "image_size": 8, "in_channels": 1, "width_mult": 0.25,
                 "stem_stride": 1, "dropout": 0.0, "last_channels": 128, "depths": (1, 2), "kernel_sizes": (3, 5),
                 "expand_ratios": (2, 4), "resolutions": (4, 6, 8)},
    "train": {"epochs": 36, "rule": "sandwich", "num_random": 4, "distill": True, "distill_label_weight": 0.5,
              "zero_init_residual": True, "optimizer": "sgd", "lr": 0.1, "weight_decay": 4e-5,
              "label_smoothing": 0.1, "warmup_epochs": 1, "batch_size": 64, "seed": 0, "num_threads": 1,
              "eval_every": 0, "bn_calib_batches": 20},
}

RECIPES = {"embedded-default": EMBEDDED_DEFAULT}


def recipe(name: str = "embedded-default") -> dict[str, Any]:
    """A deep copy of a named recipe (``data``, ``supernet`` and ``train`` sections)."""
    if name not in RECIPES:
        from ..errors import ConfigError
        raise ConfigError(f"unknown training recipe {name!r}; known: {', '.join(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def build(name: str = "embedded-default", seed: int | None = None
          ) -> tuple[Supernet, DataBundle, dict[str, Any]]:
    """The supernet and dataset of a recipe, plus its training settings. The supernet's initial weights
    come from ``seed`` (default: the recipe's training seed), so the same seed gives the same run; the
    global RNG is left as it was."""
    r = recipe(name)
    seed = r["train"].get("seed", 0) if seed is None else seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = create_supernet(**r["supernet"])
    return net, load_dataset(**r["data"]), {**r["train"], "seed": seed}


def train_recipe(name: str = "embedded-default", *, checkpoint_dir: str | Path | None = None,
                 resume: bool = False, progress: bool = True, **overrides: Any
                 ) -> tuple[Supernet, DataBundle, TrainResult]:
    """Build and train a recipe end to end; keyword overrides change its training settings."""
    net, data, settings = build(name, overrides.get("seed"))
    result = train(net, data, config={**settings, **overrides}, checkpoint_dir=checkpoint_dir, resume=resume,
                   progress=progress)
    return net, data, result
