"""A run directory: its paths, opening (or growing) it from a run file, reopening it from disk.

Run directory layout::

    config.yaml        the validated run file (a run directory belongs to one run file)
    checkpoints/       supernet checkpoints (last.pt is complete after every epoch)
    results.db         every evaluation (SQLite result store)
    search.json        the search's summary and hypervolume history
    front.csv          the Pareto front table; report.html + plots/ the report
    <pick>.onnx/.pt2   exported sub-networks (+ .json with their config and checks)
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ..config import RunConfig, dump_config, load_config
from ..errors import ConfigError, warn
from .preflight import preflight

SEARCH_RUN = "search"
FP32_RUN = "search:fp32"  # a quantized run's INT8 front, measured again in FP32 for the report


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def results(self) -> Path:
        return self.root / "results.db"

    @property
    def search_json(self) -> Path:
        return self.root / "search.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"


# what may change between two invocations on one run directory: the run grows (more evaluations, more
# epochs) or exports/reports differently; anything else would mix results of different runs
GROWABLE = ("search.evaluations", "train.epochs", "search.workers", "search.ray_address", "export.picks",
            "export.formats")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict) or not d:
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def run_changes(old: RunConfig, new: RunConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for every run-file setting that differs (``out`` and ``name`` excluded)."""
    a, b = _flat(old.model_dump(mode="json")), _flat(new.model_dump(mode="json"))
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if k not in ("out", "name") and a.get(k) != b.get(k)}


def open_run(cfg: RunConfig, fresh: bool = False, console: Console | None = None) -> RunPaths:
    """Create (or reopen) the run directory. A reopened run may grow: more (or fewer) ``search.evaluations``
    continue the stored search, more ``train.epochs`` resume training at the next epoch (the search results
    of the shorter training move to ``archive/epochs-<n>/``, since they measured other weights); export
    settings may change. Any other change is refused, naming the first key that differs. Nothing is created
    before the run file passes :func:`~supernas.run.preflight.preflight` (every problem at once)."""
    paths = RunPaths(Path(cfg.out))
    for line in preflight(cfg, paths.root):
        warn(line)
    if fresh and paths.root.exists():
        if not paths.config.exists():
            raise ConfigError(f"{paths.root} exists and is not a supernas run directory; not deleting it")
        shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    fresh_dir = not paths.config.exists()
    if not fresh_dir:
        changes = run_changes(load_config(paths.config), cfg)
        fixed = {k: v for k, v in changes.items() if k not in GROWABLE}
        if fixed:
            key, (was, now) = next(iter(fixed.items()))
            raise ConfigError(f"{paths.root} holds a run made with another run file ({key}: {was!r} -> {now!r}); "
                              f"use --fresh to start over or --out to choose another directory")
        if "train.epochs" in changes:
            was, now = changes["train.epochs"]
            if now < was:
                raise ConfigError(f"{paths.root} was trained for {was} epochs; a run can grow (train.epochs >= "
                                  f"{was}), not shrink; use --fresh or --out")
            _archive_search(paths, was, console)
        if changes and console is not None:
            console.print("run grows: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items()))
    if fresh_dir or changes:  # the run file of record is the grown one
        tmp = paths.config.with_suffix(".tmp")
        tmp.write_text(dump_config(cfg))
        tmp.replace(paths.config)
    return paths


def _archive_search(paths: RunPaths, epochs: int, console: Console | None) -> None:
    """Move the search results of a ``epochs``-epoch training out of the way (kept, not deleted)."""
    done = [f for f in (paths.results, paths.search_json) if f.exists()]
    if not done:
        return
    dest = paths.root / "archive" / f"epochs-{epochs}"
    dest.mkdir(parents=True, exist_ok=True)
    for f in done:
        f.replace(dest / f.name)
    if console is not None:
        console.print(f"the search of the {epochs}-epoch supernet is kept in {dest}; the grown one searches anew")


def run_from_dir(run_dir: str | Path) -> tuple[RunConfig, RunPaths]:
    """The run file of record and the paths of an existing run directory."""
    paths = RunPaths(Path(run_dir))
    if not paths.config.exists():
        raise ConfigError(f"{paths.root} is not a supernas run directory (no config.yaml)")
    cfg = load_config(paths.config)
    cfg.out = str(paths.root)
    return cfg, paths
