"""Sub-networks taken from the trained supernet (extracted + BN-recalibrated, no retraining) vs the same
architectures trained from scratch with the same recipe for the same number of epochs (goal: every
reported sub-network within 1.5 accuracy points).

The validation split has 270 images (one image = 0.37 points) and one training run is one draw, so the
comparison is repeated over seeds: seed s trains the supernet (initial weights, data order, sampled
sub-networks) and, for every sub-network, a from-scratch copy (initial weights, data order) with the same
recipe (initialisation, optimizer, schedule, label smoothing, weight decay, batch size, epochs). Sub-networks: largest,
smallest and ``--random`` ones drawn uniformly over distinct sub-networks (what a search draws). A gap is
scratch - supernet, averaged over seeds; the goal holds when every sub-network's mean gap is <= 1.5
(the worst random one included).
Run: ``.venv/bin/python benchmarks/no_retrain.py [--seeds 0,1,2,3,4] [--random 4] [--workers 2]``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from supernas import count  # noqa: E402
from supernas.data import loaders  # noqa: E402
from supernas.train import (TrainConfig, evaluate_accuracy, make_optimizer, make_scheduler, subnet_accuracy,  # noqa: E402
                            train, zero_init_residual)
from supernas.run import build_supernet, default_config, load_data  # noqa: E402

GOAL = 1.5
RECIPE = "the embedded default (supernas/run/default.yaml)"


def build(seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """The default run's supernet with initial weights from ``seed``, its data (split with the run's own
    seed, the same for every training seed) and its training settings with ``seed``."""
    cfg = default_config()
    data = load_data(cfg)
    net = build_supernet(cfg.model_copy(update={"seed": seed}), data)
    return net, data, {**cfg.train.model_dump(), "seed": seed}


def sub_networks(space, num_random: int) -> dict[str, dict]:
    """largest, smallest and ``num_random`` distinct uniform draws (seed 7: the first is the single random
    sub-network earlier versions of this benchmark used)."""
    picks = {"largest": space.largest(), "smallest": space.smallest()}
    for i, cfg in enumerate(space.sample_many(num_random, seed=7), 1):
        picks[f"random {i}"] = cfg
    return picks


def train_static(model: torch.nn.Module, data, cfg: TrainConfig) -> float:
    """Plain training of one static network with the recipe's optimizer, schedule and label smoothing."""
    train_loader, val_loader, _ = loaders(data, cfg.batch_size, seed=cfg.seed)
    opt, model = make_optimizer(model, cfg), model.train()
    sched = make_scheduler(opt, cfg, len(train_loader))
    for _ in range(cfg.epochs):
        for x, y in train_loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing).backward()
            opt.step()
            sched.step()
    return evaluate_accuracy(model, val_loader)["accuracy"]


def supernet_job(seed: int, epochs: int, num_random: int) -> dict[str, Any]:
    """Train the recipe's supernet with ``seed``; validation accuracy of every picked sub-network."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    net, data, settings = build(seed)
    result = train(net, data, config={**settings, "epochs": epochs, "eval_every": 0}, progress=False)
    elapsed = time.perf_counter() - t0
    cfg = result.config
    acc = {}
    for name, sub in sub_networks(net.space, num_random).items():
        calib = loaders(data, cfg.batch_size, seed=seed)[0]  # the same calibration batches for every pick
        acc[name] = subnet_accuracy(net, sub, calib, loaders(data, cfg.batch_size)[1], cfg.bn_calib_batches)
    return {"seed": seed, "elapsed_s": elapsed, "load": Path("/proc/loadavg").read_text().split()[:3]
            if Path("/proc/loadavg").exists() else [], "acc": acc}


def scratch_job(name: str, seed: int, epochs: int, num_random: int) -> tuple[str, int, float]:
    """Train sub-network ``name`` from fresh weights (drawn with ``seed``) with the recipe's settings."""
    torch.set_num_threads(1)
    net, data, settings = build(seed)  # fresh weights from the seed, like the supernet's
    sub = sub_networks(net.space, num_random)[name]
    cfg = TrainConfig.make(settings, epochs=epochs, seed=seed)
    model = net.extract(sub).train()
    if cfg.zero_init_residual:  # the recipe's initialisation, as the supernet got it
        zero_init_residual(model)
    torch.manual_seed(seed)
    return name, seed, train_static(model, data, cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds")
    ap.add_argument("--random", type=int, default=4, help="random sub-networks besides largest and smallest")
    ap.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    epochs = args.epochs or default_config().train.epochs
    net, _, _ = build(0)
    picks = sub_networks(net.space, args.random)
    macs = {n: count(net.extract(c).eval(), (1, net.in_channels, net.image_size, net.image_size))["macs"]
            for n, c in picks.items()}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        supers = [pool.submit(supernet_job, s, epochs, args.random) for s in seeds]
        scratch = [pool.submit(scratch_job, n, s, epochs, args.random) for s in seeds for n in picks]
        runs = [f.result() for f in supers]
        for r in runs:
            print(f"supernet seed {r['seed']}: {r['elapsed_s']:.0f} s (load {' '.join(r['load'])}) "
                  + ", ".join(f"{n} {100 * a:.2f}" for n, a in r["acc"].items()), flush=True)
        from_scratch: dict[str, dict[int, float]] = {n: {} for n in picks}
        for f in scratch:
            name, seed, acc = f.result()
            from_scratch[name][seed] = acc
            print(f"scratch {name} seed {seed}: {100 * acc:.2f}", flush=True)
    wall = time.perf_counter() - t0
    from_super = {n: {r["seed"]: r["acc"][n] for r in runs} for n in picks}
    gaps = {n: 100 * statistics.mean(from_scratch[n][s] - from_super[n][s] for s in seeds) for n in picks}

    def cell(values: dict[int, float]) -> str:
        v = [100 * values[s] for s in seeds]
        return f"{statistics.mean(v):.2f} [{min(v):.2f}–{max(v):.2f}]" if len(v) > 1 else f"{v[0]:.2f}"

    lines = ["| sub-network | MACs | from supernet (val %) | from scratch (val %) | gap (points) | gap per seed |",
             "|---|---|---|---|---|---|"]
    for n in picks:
        per_seed = " / ".join(f"{100 * (from_scratch[n][s] - from_super[n][s]):+.2f}" for s in seeds)
        lines.append(f"| {n} | {macs[n]:,} | {cell(from_super[n])} | {cell(from_scratch[n])} | {gaps[n]:+.2f} "
                     f"| {per_seed} |")
    rand = [n for n in picks if n.startswith("random")]
    worst = max(gaps.values())
    summary = [f"Random sub-networks: mean gap {statistics.mean(gaps[n] for n in rand):+.2f}, worst "
               f"{max(gaps[n] for n in rand):+.2f} points." if rand else "",
               f"Largest gap {worst:+.2f} points: goal (every sub-network <= {GOAL}) "
               f"{'met' if worst <= GOAL else 'NOT met'}.",
               "Supernet training per seed: " + ", ".join(f"{r['elapsed_s']:.0f} s (load {' '.join(r['load'])})"
                                                          for r in runs)
               + f"; whole benchmark {wall:.0f} s with {args.workers} worker(s)."]
    table = "\n".join(lines)
    print(table + "\n" + "\n".join(s for s in summary if s))
    if not args.no_write:
        write_section("no_retrain.py", f"Recipe `{RECIPE}` (digits 8x8, mbv3), {epochs} epochs for the supernet "
                      f"and for each from-scratch network, seeds {args.seeds} (one supernet and one from-scratch "
                      f"network per sub-network and seed; accuracy on the 270 validation images, one image = "
                      f"0.37 points; cells: mean [min–max] over seeds). {len(rand)} random sub-networks drawn "
                      f"uniformly over distinct sub-networks. Gap = scratch - supernet, mean over seeds.\n\n"
                      f"{table}\n\n" + "\n".join(f"- {s}" for s in summary if s))


if __name__ == "__main__":
    main()
