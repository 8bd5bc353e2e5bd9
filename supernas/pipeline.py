"""A whole run: train -> search -> export -> report, each step resumable from its run directory.

Run directory layout::

    config.yaml        the validated run file (a run directory belongs to one run file)
    checkpoints/       supernet checkpoints (last.pt is complete after every epoch)
    results.db         every evaluation (SQLite result store)
    front.csv          the Pareto front table; report.html + plots/ the report
    <pick>.onnx/.pt2   exported sub-networks (+ .json with their config and checks)
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from rich.console import Console
from rich.table import Table

from .config import RunConfig, dump_config, load_config
from .errors import CheckpointError, ConfigError, warn
from .measure.objectives import direction
from .pipeline_facts import timed
from .preflight import preflight
from .space import Config
from .supernets import Supernet, create_supernet, supernet_arch

SEARCH_RUN = "search"


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


def default_config() -> RunConfig:
    """The embedded default (``supernas.train.recipes.EMBEDDED_DEFAULT``): scikit-learn digits at 8x8, an
    elastic MobileNetV3 with an input-resolution choice, then LINAS over accuracy, MACs and CPU latency."""
    from .train.recipes import recipe

    r = recipe("embedded-default")
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in r["supernet"].items()
            if k not in ("name", "num_classes", "in_channels", "image_size")}  # those come from the data
    return RunConfig.model_validate({
        "name": "digits-mbv3", "out": "runs/default", "seed": 0,
        "supernet": {"family": r["supernet"]["name"], "args": args},
        "data": {"dataset": r["data"]["name_or_path"], "image_size": r["data"]["image_size"],
                 "channels": r["data"]["channels"]},
        "train": r["train"],
        "targets": {"cpu": {"backend": "cpu", "threads": 1, "batch_size": 1, "warmup": 5, "repeats": 30}},
        "search": {"strategy": "linas", "objectives": ["accuracy", "macs", "latency_ms@cpu"], "evaluations": 60},
        "export": {"picks": ["knee", "best-accuracy"], "formats": ["onnx", "torch"]},
    })


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
    before the run file passes :func:`~supernas.preflight.preflight` (every problem at once)."""
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
    paths = RunPaths(Path(run_dir))
    if not paths.config.exists():
        raise ConfigError(f"{paths.root} is not a supernas run directory (no config.yaml)")
    cfg = load_config(paths.config)
    cfg.out = str(paths.root)
    return cfg, paths


# ----------------------------------------------------------------------------- building blocks
def load_data(cfg: RunConfig, progress: bool = False):
    """The run's data: an image ``DataBundle`` (``progress``: a bar while the image cache is built), or a
    ``TextBundle`` for text data."""
    from .data import load_dataset

    d = cfg.data
    if d.is_text:
        from .pipeline_text import load_text_data
        return load_text_data(cfg)
    if d.is_lm:
        from .data import load_text_lm
        return load_text_lm(d.dataset, d.language_model.seq_len, d.language_model.tokenizer, d.val_fraction,
                            d.val_fraction)
    extra: dict[str, Any] = {"channels": d.channels} if d.channels is not None else {}  # else the reader's default
    if d.dataset != "digits" and d.kind != "digits":
        extra.update(workers=d.workers, cache=d.cache, cache_dir=d.cache_dir, val_fraction=d.val_fraction,
                     progress=progress)
    return load_dataset(d.dataset, kind=d.kind, image_size=d.image_size, seed=cfg.seed, augment=d.augmentation,
                        **extra)


def supernet_args(cfg: RunConfig, bundle: Any) -> dict[str, Any]:
    """The run's supernet constructor arguments; classes, channels and image size default to the data's
    (text: see ``pipeline_text.text_supernet_args``)."""
    if cfg.data.is_text:
        from .pipeline_text import text_supernet_args
        return text_supernet_args(cfg, bundle)
    args = dict(cfg.supernet.args)
    args.setdefault("num_classes", bundle.num_classes)
    if cfg.data.is_lm:  # a decoder: the vocabulary and the window length
        args.setdefault("seq_len", bundle.seq_len)
        return args
    args.setdefault("in_channels", bundle.in_channels)
    args.setdefault("image_size", bundle.image_size)
    return args


def build_supernet(cfg: RunConfig, bundle: Any) -> Supernet:
    """The run's supernet before training (text: from the pretrained model when there is one); its random
    initialisation follows the run's seed."""
    torch.manual_seed(cfg.seed)
    if cfg.data.is_text:
        from .pipeline_text import build_text_supernet
        return build_text_supernet(cfg, supernet_args(cfg, bundle))
    return create_supernet(cfg.supernet.family, **supernet_args(cfg, bundle))


@timed("train")
def train_step(cfg: RunConfig, paths: RunPaths, progress: bool = True, console: Console | None = None):
    """Train (or resume training) the run's supernet; returns (supernet, data bundle)."""
    from .pipeline_text import freeze, original_teacher
    from .train import train as train_supernet

    bundle = load_data(cfg, progress=progress)
    if console is not None:
        console.print(f"data: {bundle.describe()}")
    net = build_supernet(cfg, bundle)
    freeze(net, cfg.supernet.freeze)
    teacher = (original_teacher(cfg, bundle, supernet_args(cfg, bundle), paths.checkpoints / "teacher", progress)
               if cfg.data.is_text else None)
    result = train_supernet(net, bundle, config=cfg.train, checkpoint_dir=paths.checkpoints, resume=True,
                            progress=progress, teacher=teacher)
    if console is not None:
        console.print(f"trained supernet: {result.summary()}" if hasattr(result, "summary") else "trained supernet")
    return net, bundle


def trained_supernet(cfg: RunConfig, paths: RunPaths):
    """The run's trained supernet from its last checkpoint, and the data; the checkpoint must hold the
    supernet the run file describes."""
    from .train import load_supernet
    from .train.checkpoint import plain

    last = paths.checkpoints / "last.pt"
    if not last.exists():
        raise CheckpointError(f"no trained supernet in {paths.checkpoints}; run `supernas train` first")
    bundle = load_data(cfg)
    net = load_supernet(last)
    if plain(net.arch) != plain(supernet_arch(cfg.supernet.family, **supernet_args(cfg, bundle))):
        raise CheckpointError(f"{last} belongs to another supernet ({net.arch.get('family')}) than the run file's "
                              f"({cfg.supernet.family} {cfg.supernet.args}); train it again or use --out")
    if net.trained_epochs is not None and net.trained_epochs < cfg.train.epochs:
        raise CheckpointError(f"the supernet in {last} has trained {net.trained_epochs} of {cfg.train.epochs} epochs; "
                              f"run `supernas train` (or `supernas run`) to finish its training first")
    return net, bundle


def quantization(cfg: RunConfig):
    """The run's :class:`~supernas.quantize.QuantizationSpec` (policy ``none`` when not set)."""
    from .quantize import quantization_spec

    return quantization_spec(cfg.search.quantization)


def search_space(cfg: RunConfig, net: Supernet):
    """The space the run searches: the supernet's, plus a precision per block with ``quantization.policy:
    per-block``."""
    from .quantize import policy_space

    spec = quantization(cfg)
    return policy_space(net, spec) if spec.enabled else net.space


def make_evaluator(cfg: RunConfig, net: Supernet, bundle: Any, columns: Sequence[str] | None = None,
                   paths: RunPaths | None = None):
    """The run's evaluator; with ``search.quantization`` it measures INT8 graphs in ONNX Runtime (calibrated
    ranges cached in the run's ``calibration/`` folder when ``paths`` are given)."""
    from .data import loaders
    from .measure import Evaluator

    cols = list(columns or cfg.search.objectives)
    train_loader, val_loader = loaders(bundle, batch_size=cfg.train.batch_size, seed=cfg.seed)[:2]
    kw = dict(calib_loader=train_loader, eval_loader=val_loader, targets=dict(cfg.targets),
              calib_batches=cfg.search.calib_batches)
    spec = quantization(cfg)
    if spec.enabled:
        from .quantize import QuantizedEvaluator

        return QuantizedEvaluator(net, cols, quantization=spec, cache_dir=paths.root / "calibration" if paths else None,
                                  **kw)
    return Evaluator(net, cols, **kw)


def strategy_options(options: dict[str, Any], net: Supernet) -> dict[str, Any]:
    """The config's ``search.options`` for the strategy; ``features`` (names of
    :class:`~supernas.predict.FeatureMap` parts) becomes a feature map of the supernet's space, with a cost table
    counted from the supernet when ``costs`` is among them."""
    out = dict(options)
    if out.get("features") is not None:
        from .predict import as_feature_map

        out["features"] = as_feature_map(net.space, out["features"], supernet=net)
    return out


@timed("search")
def search_step(cfg: RunConfig, paths: RunPaths, resume: bool = True, progress: bool = True,
                console: Console | None = None, net: Supernet | None = None, bundle: Any = None):
    """Search the trained supernet; every evaluation goes to results.db as it is measured."""
    from .search import search as run_search

    if net is None:
        net, bundle = trained_supernet(cfg, paths)
    net.eval()
    s = cfg.search
    evaluator = make_evaluator(cfg, net, bundle, paths=paths)
    result = run_search(search_space(cfg, net), evaluator, s.objectives, strategy=s.strategy, evaluations=s.evaluations,
                        seed=cfg.seed, store=paths.results, run=SEARCH_RUN, constraints=s.constraints or None,
                        workers=s.workers, ray_address=s.ray_address, progress=progress, resume=resume,
                        strategy_options=strategy_options(s.options, net))
    tmp = paths.search_json.with_suffix(".tmp")  # atomic: a kill mid-write keeps the previous file
    tmp.write_text(json.dumps({**result.summary(), "hypervolume_history": result.hypervolume}, indent=1, default=str))
    tmp.replace(paths.search_json)
    if console is not None:
        print_front(console, result.front, s.objectives, knee=result.knee)
    return result


def print_front(console: Console, front: Sequence[Any], columns: Sequence[str], knee: Any = None) -> None:
    table = Table(title=f"Pareto front ({len(front)} sub-networks)")
    table.add_column("#")
    for c in columns:
        table.add_column(f"{c} ({'max' if direction(c) == 'max' else 'min'})", justify="right")
    for i, p in enumerate(front):
        mark = " knee" if knee is not None and p.key == knee.key else ""
        table.add_row(f"{i}{mark}", *(fmt_number(p.values[c]) for c in columns))
    console.print(table)


def fmt_number(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"


def run_all(cfg: RunConfig, fresh: bool = False, progress: bool = True, console: Console | None = None) -> Path:
    """train -> search -> export the configured picks -> report; every step resumes."""
    from .pipeline_export import export_pick, print_picks, report_step

    console = console or Console()
    t0 = time.perf_counter()
    paths = open_run(cfg, fresh=fresh, console=console)
    console.print(f"[bold]supernas run[/bold] {cfg.name} -> {paths.root}")
    net, bundle = train_step(cfg, paths, progress=progress, console=console)
    search_step(cfg, paths, resume=True, progress=progress, console=console, net=net, bundle=bundle)
    exported: list[Path] = []
    picks = []
    for pick in cfg.export.picks:
        res = export_pick(cfg, paths, pick, cfg.export.formats, net=net, bundle=bundle)
        console.print(res.summary)
        exported += [p for k, p in res.files.items() if k in ("onnx", "torch", "torchscript")]
        picks.append(json.loads(res.files["config"].read_text()))
    print_picks(console, cfg, picks)
    report = report_step(cfg, paths, exports=exported)
    console.print(f"done in {time.perf_counter() - t0:.0f} s. Report: [bold]{report}[/bold]")
    return report


def measure_step(cfg: RunConfig, names: Sequence[str], columns: Sequence[str] | None = None,
                 untrained: bool = False, console: Console | None = None) -> list[dict[str, float]]:
    """Measure presets / JSON config files of the run's supernet and print a table."""
    console = console or Console()
    paths = RunPaths(Path(cfg.out))
    preflight(cfg, paths.root, training=False)
    if untrained:
        bundle = load_data(cfg)
        net = build_supernet(cfg, bundle).eval()
        columns = columns or [c for c in cfg.search.objectives if c not in ("accuracy", "top5")]
    else:
        net, bundle = trained_supernet(cfg, paths)
    cols = list(columns or cfg.search.objectives)
    evaluator = make_evaluator(cfg, net, bundle, cols)
    table = Table(title="measurements")
    table.add_column("config")
    for c in cols:
        table.add_column(c, justify="right")
    rows = []
    for name in names:
        config = _named_config(net, name)
        values = evaluator(config)
        rows.append(values)
        table.add_row(name, *(fmt_number(values[c]) for c in cols))
    console.print(table)
    return rows


def _named_config(net: Supernet, name: str) -> Config:
    p = Path(name)
    if p.suffix == ".json":
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            return net.space.validate(json.loads(p.read_text()))
        except json.JSONDecodeError:
            raise ConfigError(f"{p} is not valid JSON") from None
    return net.space.preset(name)


def bench_table_step(cfg: RunConfig, paths: RunPaths, out: Path | None = None, progress: bool = True):
    """Evaluate every sub-network of the run's (small) space with its trained supernet; resumable."""
    from .bench import build_table

    net, bundle = trained_supernet(cfg, paths)
    net.eval()
    path = Path(out) if out is not None else paths.root / "table.csv"
    table = build_table(net, make_evaluator(cfg, net, bundle), cfg.search.objectives, path,
                        workers=cfg.search.workers, ray_address=cfg.search.ray_address, progress=progress,
                        meta={"run": cfg.name, "supernet": cfg.supernet.model_dump()})
    return path.with_suffix(".csv"), table
