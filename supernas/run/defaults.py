"""The embedded default run file, shipped inside the package (``default.yaml``: the single source)."""
from __future__ import annotations

from pathlib import Path

from ..config import RunConfig, load_config

DEFAULT_RUN_FILE = Path(__file__).with_name("default.yaml")


def default_config() -> RunConfig:
    """The embedded default: scikit-learn digits at 8x8, an elastic MobileNetV3 with an input-resolution
    choice, then LINAS over accuracy, MACs and CPU latency (see the comments in ``default.yaml``)."""
    return load_config(DEFAULT_RUN_FILE)
