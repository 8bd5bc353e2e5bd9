"""The steps of a run: train -> search -> export -> report (and measure, bench table), each resumable from
the run directory (``run.paths``); ``run_all`` chains them."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from ..config import RunConfig
from ..errors import ConfigError
from ..space import Config
from ..supernets import Supernet
from .build import build_supernet, load_data, make_evaluator, quantization, search_space, strategy_options, \
    supernet_args, trained_supernet
from .console import fmt_number, print_front, print_picks
from .facts import run_facts, timed, training_history
from .paths import FP32_RUN, SEARCH_RUN, RunPaths, open_run
from .picks import evaluations_frame, export_pick, exported_picks, reference_frame
from .preflight import preflight
from .tasks import task_of


@timed("train")
def train_step(cfg: RunConfig, paths: RunPaths, progress: bool = True, console: Console | None = None):
    """Train (or resume training) the run's supernet; returns (supernet, data bundle)."""
    from ..train import train as train_supernet
    from ..train.checkpoint import LAST, load_checkpoint, plain, save_checkpoint
    from .text import freeze

    bundle = load_data(cfg, progress=progress)
    if console is not None:
        console.print(f"data: {bundle.describe()}")
    net = build_supernet(cfg, bundle)
    if cfg.train.epochs == 0:  # a pretrained supernet searched as it is
        save_checkpoint(paths.checkpoints / LAST, {"arch": plain(net.arch), "model": net.state_dict()})
        if console is not None:
            console.print(f"supernet: {cfg.supernet.pretrained} as it is (train.epochs 0: no training)")
        return net, bundle
    freeze(net, cfg.supernet.freeze)
    teacher = task_of(cfg).teacher(cfg, bundle, supernet_args(cfg, bundle), paths.checkpoints / "teacher", progress)
    last = paths.checkpoints / LAST  # the weights alone, when the run searched a pretrained supernet before it grew
    resume = not (cfg.supernet.pretrained and last.is_file() and "epoch" not in load_checkpoint(last, mmap=True))
    result = train_supernet(net, bundle, config=cfg.train, checkpoint_dir=paths.checkpoints, resume=resume,
                            progress=progress, teacher=teacher)
    if console is not None:
        console.print(f"trained supernet: {result.epochs_done} of {cfg.train.epochs} epochs, "
                      f"{result.elapsed_s:.0f} s this session"
                      + (f", checkpoint {result.checkpoint}" if result.checkpoint else ""))
    return net, bundle


@timed("search")
def search_step(cfg: RunConfig, paths: RunPaths, resume: bool = True, progress: bool = True,
                console: Console | None = None, net: Supernet | None = None, bundle: Any = None):
    """Search the trained supernet; every evaluation goes to results.db as it is measured."""
    from ..search import search as run_search

    if net is None:
        net, bundle = trained_supernet(cfg, paths)
    net.eval()
    s = cfg.search
    evaluator = make_evaluator(cfg, net, bundle, paths=paths)
    result = run_search(search_space(cfg, net), evaluator, s.objectives, strategy=s.strategy, evaluations=s.evaluations,
                        seed=cfg.seed, store=paths.results, run=SEARCH_RUN, constraints=s.constraints or None,
                        workers=s.workers, ray_address=s.ray_address, progress=progress, resume=resume,
                        strategy_options=strategy_options(s.options, net), tiered=s.tiered)
    tmp = paths.search_json.with_suffix(".tmp")  # atomic: a kill mid-write keeps the previous file
    tmp.write_text(json.dumps({**result.summary(), "hypervolume_history": result.hypervolume}, indent=1, default=str))
    tmp.replace(paths.search_json)
    if console is not None:
        print_front(console, result.front, s.objectives, knee=result.knee)
    if quantization(cfg).enabled:
        fp32_reference_step(cfg, paths, net=net, bundle=bundle, console=console)
    return result


def fp32_reference_step(cfg: RunConfig, paths: RunPaths, net: Supernet | None = None, bundle: Any = None,
                        console: Console | None = None) -> int:
    """A quantized run's FP32 reference: the architectures of its INT8 front (the feasible front of every
    objective), each measured once more in FP32 on the same objectives and targets (PyTorch accuracy, the FP32
    ONNX graph's latency and bytes) and stored as run ``search:fp32`` of results.db, so the report draws both
    fronts on one plot. Resumable: nothing stored is measured again; its time counts in the search step's.
    Returns how many architectures it holds."""
    from ..quantize import split_config
    from ..report import front_table
    from ..search.session import EvaluationSession

    front = front_table(evaluations_frame(cfg, paths), cfg.search.objectives, cfg.search.constraints or None)
    if net is None:
        net, bundle = trained_supernet(cfg, paths)
    archs: dict[str, Config] = {}
    for text in front["config"]:
        arch = net.space.validate(split_config(net, json.loads(text))[0])
        archs.setdefault(net.space.key(arch), arch)
    evaluator = make_evaluator(cfg, net, bundle, paths=paths, quantized=False)
    with EvaluationSession(net.space, evaluator, cfg.search.objectives, store=paths.results, run=FP32_RUN,
                           meta={"of": SEARCH_RUN, "precision": "fp32"}) as session:
        todo = sum(not session.measured(k) for k in archs)
        if console is not None and todo:
            console.print(f"FP32 reference: measuring {todo} of the INT8 front's {len(archs)} architectures in FP32")
        outcomes = list(session.evaluate_many(list(archs.values())))
    failed = [o for o in outcomes if not o.outcome.ok]
    if console is not None and failed:
        console.print(f"FP32 reference: {len(failed)} architecture(s) failed ({failed[0].outcome.error})")
    return len(outcomes) - len(failed)


def run_all(cfg: RunConfig, fresh: bool = False, progress: bool = True, console: Console | None = None) -> Path:
    """train -> search -> export the configured picks -> report; every step resumes."""
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
    from ..bench import build_table

    net, bundle = trained_supernet(cfg, paths)
    net.eval()
    path = Path(out) if out is not None else paths.root / "table.csv"
    table = build_table(net, make_evaluator(cfg, net, bundle), cfg.search.objectives, path,
                        workers=cfg.search.workers, ray_address=cfg.search.ray_address, progress=progress,
                        meta={"run": cfg.name, "supernet": cfg.supernet.model_dump()})
    return path.with_suffix(".csv"), table


@timed("report")
def report_step(cfg: RunConfig, paths: RunPaths, exports: Sequence[Path] | None = None) -> Path:
    from ..report import write_report

    df = evaluations_frame(cfg, paths)
    hv = []
    if paths.search_json.exists():
        try:
            hv = list(enumerate(json.loads(paths.search_json.read_text()).get("hypervolume_history", []), 1))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise ConfigError(f"{paths.search_json} is corrupt; run `supernas search` again to rewrite it "
                              f"(its evaluations are kept in the store)") from None
    if exports is None:
        exports = sorted(p for p in paths.root.iterdir() if p.suffix in (".onnx", ".pt2"))
    facts = run_facts(cfg, paths.root)
    summary = {"run file": str(paths.config), "supernet": f"{cfg.supernet.family} {cfg.supernet.args}"
               + (f" from {cfg.supernet.pretrained}" if cfg.supernet.pretrained else ""),
               "data": cfg.data.dataset, "strategy": cfg.search.strategy,
               **({"constraints": facts["search"]["constraints"]} if "constraints" in facts["search"] else {})}
    reference = reference_frame(cfg, paths)
    if reference is not None:
        summary["FP32 reference"] = (f"{len(reference[1])} architectures of the INT8 front measured in FP32 "
                                     f"(hollow points, dashed front in the plots)")
    for info in exported_picks(paths):
        values = ", ".join(f"{c} {fmt_number(v)}" for c, v in info["metrics"].items())
        test = f"; test accuracy {info['test_accuracy']:.4f}" if info.get("test_accuracy") is not None else ""
        summary[f"export {info['name']}"] = f"{info['pick']}: {values}{test}"
    return write_report(paths.root, df, cfg.search.objectives, hv_history=hv, exports=exports,
                        title=f"supernas report: {cfg.name}", summary=summary,
                        constraints=cfg.search.constraints or None, facts=facts,
                        training=training_history(paths.root), reference=reference)
