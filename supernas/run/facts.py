"""Run facts for the report: what the run is (data, supernet, training, search), where and with what it ran
(machine, library versions), how its training went (the metrics log) and how long each step took.

Every finished step of a run (train, search, export, report) appends one line to ``steps.jsonl`` in the run
directory: its wall time and the machine it ran on, so a run trained on a GPU and searched on a CPU says so.
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..config import RunConfig
from ..measure.machine import describe_machine, library_versions
from ..search import parse_constraints
from ..train.checkpoint import METRICS
from .tasks import task_of

STEPS = "steps.jsonl"
F = TypeVar("F", bound=Callable[..., Any])


def record_step(root: Path, step: str, wall_s: float) -> None:
    """Append a finished step's wall time (and the machine) to the run's ``steps.jsonl``."""
    line = json.dumps({"step": step, "wall_s": round(wall_s, 3), "time": time.time(), "machine": describe_machine()})
    with open(Path(root) / STEPS, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def timed(step: str) -> Callable[[F], F]:
    """Decorate a pipeline step ``fn(cfg, paths, ...)``: its wall time is recorded when it returns."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(cfg: RunConfig, paths: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(cfg, paths, *args, **kwargs)
            record_step(paths.root, step, time.perf_counter() - t0)
            return out
        return run  # type: ignore[return-value]
    return wrap


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file that parse as mappings (a line cut by a kill is skipped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def step_times(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """From ``steps.jsonl``: ``{step: "<total wall time>[ in <n> invocations]"}`` and ``{"machine[ i]":
    "<machine> (ran <steps>)"}``."""
    totals: dict[str, tuple[float, int]] = {}
    machines: dict[str, list[str]] = {}
    for row in _jsonl(Path(root) / STEPS):
        step, wall = row.get("step"), row.get("wall_s")
        if isinstance(step, str) and isinstance(wall, (int, float)):
            total, n = totals.get(step, (0.0, 0))
            totals[step] = (total + float(wall), n + 1)
            where = machines.setdefault(str(row.get("machine", "unknown")), [])
            where += [step] * (step not in where)
    times = {step: _duration(total) + (f" in {n} invocations" if n > 1 else "") for step, (total, n) in totals.items()}
    label = (lambda i: "machine") if len(machines) == 1 else (lambda i: f"machine {i}")
    return times, {label(i): f"{machine} (ran {', '.join(steps)})" for i, (machine, steps) in enumerate(machines.items(), 1)}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def training_history(root: Path) -> list[dict[str, Any]]:
    """The training metrics log (one row per epoch: losses, learning rate, images/s, validation accuracy)."""
    return _jsonl(Path(root) / "checkpoints" / METRICS)


def run_facts(cfg: RunConfig, root: Path) -> dict[str, dict[str, str]]:
    """The report's "Run facts": sections of (label, value) lines."""
    d, t, s = cfg.data, cfg.train, cfg.search
    data = {"dataset": d.dataset, "kind": d.kind or ("digits" if d.dataset == "digits" else "guessed from the path")}
    data.update(task_of(cfg).data_facts(cfg))
    supernet = {"family": cfg.supernet.family, "arguments": json.dumps(cfg.supernet.args, sort_keys=True) or "{}"}
    if cfg.supernet.pretrained:
        supernet["pretrained"] = cfg.supernet.pretrained
    history = training_history(root)
    times, machines = step_times(root)
    training = {"epochs": f"{len(history)} of {t.epochs} logged", "batch size": str(t.batch_size),
                "optimizer": f"{t.optimizer}, lr {t.lr:g}"}
    speeds = [r["images_per_s"] for r in history if isinstance(r.get("images_per_s"), (int, float))]
    if speeds:
        training["throughput"] = f"{sum(speeds) / len(speeds):,.0f} examples/s (mean over epochs)"
    search = {"strategy": s.strategy, "evaluations": str(s.evaluations), "objectives": ", ".join(s.objectives),
              "seed": str(cfg.seed)}
    if s.constraints:
        search["constraints"] = ", ".join(str(c) for c in parse_constraints(s.constraints))
    if s.options:
        search["options"] = json.dumps(s.options, sort_keys=True, default=str)
    if s.quantization:
        search["quantization"] = json.dumps(s.quantization, sort_keys=True)
    search["targets"] = ", ".join(f"{n} ({x.backend}, {x.threads} threads, batch {x.batch_size})"
                                  for n, x in cfg.targets.items())
    return {"data": data, "supernet": supernet, "training": training, "search": search,
            "wall time per step": times or {"(none recorded)": "steps record their time as they finish"},
            "machine": machines or {"machine": f"{describe_machine()} (this report)"},
            "library versions": library_versions()}
