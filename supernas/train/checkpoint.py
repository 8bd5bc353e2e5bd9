"""Atomic checkpoints (temp file + ``os.replace``) that load with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and containers: ``format``, ``version``, ``arch`` (the supernet's
constructor arguments, so :func:`load_supernet` rebuilds it), ``model``, ``optimizer``, ``scheduler``,
``scaler``, ``rng`` (torch CPU/CUDA generator states), ``epoch`` (last finished, 0-based), ``config``
(the TrainConfig as a dict) and ``history`` (per-epoch metrics).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from ..supernets import Supernet, create_supernet, supernet_arch

FORMAT = "supernas-checkpoint"
VERSION = 1
LAST = "last.pt"
METRICS = "metrics.jsonl"  # the per-epoch log written beside the checkpoints


def plain(obj: Any) -> Any:
    """Tuples become lists and other non-container leaves stay as they are (all weights_only-safe)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format/version) atomically: a temp file in the same folder, fsync, rename.
    A crash mid-write leaves the previous checkpoint intact (and a temp file the next save removes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing, truncated, corrupt or foreign file raises
    CheckpointError with one line. ``mmap``: tensors are mapped, not read (to look at the other entries)."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # zip/pickle/EOF errors of a damaged file
        raise CheckpointError(f"{path} is not a readable supernas checkpoint (truncated or corrupt: "
                              f"{type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a supernas checkpoint")
    problem = structure_problem(state)
    if problem:
        raise CheckpointError(f"{path} is damaged: {problem}; delete it to train again from scratch")
    if state["version"] > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state['version']}; this supernas reads <= {VERSION}")
    return state


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# entry -> (check, what it must be); 'arch' and 'model' are required, the others checked when present
_ENTRIES = {
    "version": (_is_int, "an integer"),
    "arch": (lambda v: isinstance(v, dict) and isinstance(v.get("family"), str), "a dict naming a 'family'"),
    "model": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor)
                                                    for k, t in v.items()), "a dict of named tensors"),
    "optimizer": (lambda v: isinstance(v, dict), "a dict"),
    "scheduler": (lambda v: isinstance(v, dict), "a dict"),
    "scaler": (lambda v: isinstance(v, dict), "a dict"),
    "rng": (lambda v: isinstance(v, dict) and isinstance(v.get("torch"), torch.Tensor), "a dict of generator states"),
    "epoch": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "config": (lambda v: isinstance(v, dict), "a dict"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v), "a list of dicts"),
}


def structure_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the structure of a loaded checkpoint (None when nothing is)."""
    for key in ("version", "arch", "model"):
        if key not in state:
            return f"no {key!r} entry"
    for key, (ok, what) in _ENTRIES.items():
        if key in state and not ok(state[key]):
            return f"its {key!r} entry is {type(state[key]).__name__}, not {what}"
    return None


def with_defaults(arch: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's ``arch`` with the constructor defaults it was saved without (an argument added by a
    later supernas) filled in, so it compares equal to the supernet it describes; as it is when it does not
    describe one."""
    try:
        return supernet_arch(arch["family"], **{k: v for k, v in arch.items() if k != "family"})
    except (ConfigError, KeyError, TypeError):
        return arch


def build_from_arch(arch: dict[str, Any]) -> Supernet:
    """A fresh supernet from a checkpoint's ``arch`` dict (``family`` plus constructor arguments)."""
    if not isinstance(arch, dict) or "family" not in arch:
        raise CheckpointError("checkpoint's 'arch' entry does not name a supernet family")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in arch.items() if k != "family"}
    return create_supernet(arch["family"], **kwargs)


def load_supernet(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Supernet:
    """Rebuild the supernet saved in a checkpoint (file or checkpoint folder) with its trained weights."""
    state = load_checkpoint(path, map_location)
    try:
        net = build_from_arch(state["arch"])
    except ConfigError as e:  # absurd or foreign constructor arguments
        raise CheckpointError(f"{path} is damaged: its 'arch' does not build ({e})") from None
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "shape mismatch"
        raise CheckpointError(f"{path}: weights do not fit supernet {state['arch'].get('family')!r} ({first})") from None
    net.trained_epochs = state["epoch"] + 1 if "epoch" in state else None
    return net.eval()
