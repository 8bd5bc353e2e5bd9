"""supernas: hardware-aware neural architecture search over elastic super-networks.

The names below are imported on first use (PEP 562), so ``import supernas`` and ``supernas --help`` do not
pay for torch, scikit-learn and the tokenisers until something needs them."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ConfigError, DataError, StoreError, SupernasError

__version__ = "0.1.0"
_LAZY = {"count": "measure", "Choice": "space", "Config": "space", "SearchSpace": "space",
         "Supernet": "supernets", "create_supernet": "supernets", "list_families": "supernets",
         "make_elastic": "supernets"}
_SUBMODULES = ("data", "elastic", "measure", "space", "supernets", "train", "search", "predict", "report",
               "store", "export", "quantize", "bench", "config", "run")
__all__ = ["CheckpointError", "Choice", "Config", "ConfigError", "DataError", "SearchSpace", "StoreError",
           "Supernet", "SupernasError", "count", "create_supernet", "list_families", "make_elastic"]

if TYPE_CHECKING:
    from .measure import count
    from .space import Choice, Config, SearchSpace
    from .supernets import Supernet, create_supernet, list_families, make_elastic


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'supernas' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
