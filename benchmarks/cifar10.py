"""CIFAR-10 from a folder of JPEGs: a supernet trained with a run file's recipe vs the same architectures
trained from scratch, test accuracy side by side, plus the loader's and the training step's images/s.

Data: ``train/<class>/*.jpg`` + ``test/<class>/*.jpg`` (``../shared/data/cifar10``); validation = 5,000
images carved out of train (seeded, stratified), test = the 10,000 test images. The supernet is trained with
the run file's supernet, data and train sections (``examples/cifar10_cpu.yaml`` by default); its largest,
smallest and ``--random`` sub-networks are extracted, BN-recalibrated on training batches (no retraining)
and measured on the test split. Each is also trained from scratch (fresh weights, same epochs, optimizer,
schedule, batch size and augmentation) and measured the same way. Goals (2-core CPU, about an hour of
supernet training): largest >= 85 %, smallest >= 75 %, every sub-network within 1.5 points of its twin.
Run: ``.venv/bin/python benchmarks/cifar10.py [--config examples/cifar10_cpu.yaml] [--epochs N]
[--scratch-epochs N] [--random 3] [--no-scratch] [--work DIR]``. With ``--work`` the supernet's checkpoints and
each finished from-scratch twin are kept there, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from supernas import count  # noqa: E402
from supernas.config import load_config  # noqa: E402
from supernas.data import loaders  # noqa: E402
from supernas.run import build_supernet, load_data  # noqa: E402
from supernas.train import (TrainConfig, evaluate_accuracy, make_optimizer, make_scheduler, subnet_accuracy,  # noqa: E402
                            train)
from supernas.train.bn import recalibrate_bn, zero_init_residual  # noqa: E402
from supernas.train.trainer import autocast_dtype, autocast_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"largest": 85.0, "smallest": 75.0, "gap": 1.5}
# the settings a from-scratch twin trains with (train_static): a cached twin with other values is stale
TWIN_RECIPE = ("batch_size", "lr", "momentum", "nesterov", "weight_decay", "no_decay_bn_bias", "label_smoothing",
               "warmup_epochs", "min_lr_ratio", "optimizer", "zero_init_residual", "cpu_amp", "channels_last", "seed")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loader_speed(data, batch_size: int, seed: int, batches: int = 60) -> float:
    """Images/s of the augmented training loader alone (its workers decode and augment; nothing trains)."""
    loader = data.train_loader(batch_size, seed=seed)
    it = iter(loader)
    next(it)  # worker start-up
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            x, _ = next(it)
        except StopIteration:
            break
        n += len(x)
    return n / (time.perf_counter() - t0)


def train_static(model: torch.nn.Module, data, cfg: TrainConfig) -> float:
    """One static network trained with the recipe (optimizer, schedule, label smoothing, augmented batches,
    memory layout, the trainer's autocast precision on this CPU); returns the wall time."""
    cpu = torch.device("cpu")
    autocast = autocast_for(autocast_dtype(cfg, cpu), cpu)
    loader = data.train_loader(cfg.batch_size, seed=cfg.seed)
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    opt, model = make_optimizer(model, cfg), model.to(memory_format=layout).train()
    sched = make_scheduler(opt, cfg, len(loader))
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        loader.batch_sampler.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            x = x.contiguous(memory_format=layout)
            with autocast():
                out = model(x)
            F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing).backward()
            opt.step()
            sched.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "examples" / "cifar10_cpu.yaml"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--epochs", type=int, default=None, help="supernet epochs (default: the run file's)")
    ap.add_argument("--scratch-epochs", type=int, default=None, help="default: the supernet's")
    ap.add_argument("--random", type=int, default=3)
    ap.add_argument("--no-scratch", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--work", default=None, help="keep checkpoints and finished twins here (resumable)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    cfg.data.dataset = args.data
    if args.epochs:
        cfg.train = TrainConfig.make(cfg.train, epochs=args.epochs,
                                     warmup_epochs=min(cfg.train.warmup_epochs, args.epochs - 1))
    t_load = time.perf_counter()
    data = load_data(cfg, progress=True)
    t_load = time.perf_counter() - t_load
    print(f"{data.describe()} ({data.layout}, {data.workers} workers); loaded in {t_load:.1f} s", flush=True)
    tc = cfg.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    loader_ips = loader_speed(data, tc.batch_size, cfg.seed)
    print(f"loader alone: {loader_ips:,.0f} images/s (load {load()})", flush=True)
    net = build_supernet(cfg, data)
    work = Path(args.work) if args.work else None
    ckpt = work / "supernet" if work else None
    result = train(net, data, config=tc, progress=True, checkpoint_dir=ckpt,
                   resume=bool(ckpt and (ckpt / "last.pt").exists()))
    twins_file = work / "twins.json" if work else None
    twins = json.loads(twins_file.read_text()) if twins_file and twins_file.exists() else {}
    train_s = sum(r["epoch_s"] for r in result.history)  # resumed: the earlier epochs' own times count too
    step_ips = sum(r["images_per_s"] for r in result.history) / len(result.history)
    print(f"supernet: {train_s:.0f} s, {step_ips:,.0f} training images/s (load {load()})", flush=True)
    picks = {"largest": net.space.largest(), "smallest": net.space.smallest()}
    for i, c in enumerate(net.space.sample_many(args.random, seed=7), 1):
        picks[f"random {i}"] = c
    shape = net.input_shape(picks["largest"])
    calib = loaders(data, tc.batch_size, seed=cfg.seed)[0]
    test = data.eval_loader("test", 500)
    rows = []
    for name, sub in picks.items():  # every supernet number first: they do not wait for the twins
        macs = count(net.extract(sub).eval(), shape)["macs"]
        acc = 100 * subnet_accuracy(net, sub, calib, test, tc.bn_calib_batches)
        rows.append([name, macs, acc, None, None])
        print(f"{name}: {macs:,} MACs, supernet {acc:.2f} %", flush=True)

    def summarise() -> None:
        """Print and write the table so far (a killed run leaves the twins measured up to then)."""
        lines = ["| sub-network | MACs | from supernet (test %) | from scratch (test %) | gap (points) |",
                 "|---|---|---|---|---|"]
        for name, macs, acc, scratch, _ in rows:
            pending = "-" if args.no_scratch else "pending"
            lines.append(f"| {name} | {macs:,} | {acc:.2f} | {pending if scratch is None else f'{scratch:.2f}'} | "
                         f"{pending if scratch is None else f'{scratch - acc:+.2f}'} |")
        gaps = [s - a for _, _, a, s, _ in rows if s is not None]
        big, small = rows[0][2], rows[1][2]
        summary = [
            f"Supernet training: {train_s / 60:.1f} min for {tc.epochs} epochs; training step {step_ips:,.0f} "
            f"images/s vs loader alone {loader_ips:,.0f} images/s ({loader_ips / step_ips:.1f}x); data indexed and "
            f"cached in {t_load:.0f} s; peak resident memory {peak_rss_mb():,.0f} MB; load {load()} now.",
            f"Largest {big:.2f} % (goal >= {GOALS['largest']:.0f}: {'met' if big >= GOALS['largest'] else 'NOT met'}), "
            f"smallest {small:.2f} % (goal >= {GOALS['smallest']:.0f}: "
            f"{'met' if small >= GOALS['smallest'] else 'NOT met'})."]
        if gaps:
            done = f"{len(gaps)} of {len(rows)}" if len(gaps) < len(rows) else "all"
            summary.append(f"Worst gap (scratch - supernet) so far {max(gaps):+.2f} points (goal <= {GOALS['gap']}: "
                           f"{'met' if max(gaps) <= GOALS['gap'] else 'NOT met'}; {done} twins measured); "
                           f"from-scratch twins trained {args.scratch_epochs or tc.epochs} epochs each, "
                           f"{sum(r[4] for r in rows if r[4]) / 60:.1f} min in all.")
        table = "\n".join(lines)
        print(table + "\n" + "\n".join(summary), flush=True)
        if not args.no_write:
            rel = os.path.relpath(args.config, ROOT)
            write_section("cifar10.py", f"Run file `{rel}` ({cfg.supernet.family} {cfg.supernet.args}), "
                          f"{tc.epochs} supernet epochs (sandwich: largest + smallest + {tc.num_random} random), "
                          f"batch {tc.batch_size}, augment {data.augment}, forward passes in "
                          f"{result.last().get('precision', 'float32')} (train.cpu_amp {tc.cpu_amp}), "
                          f"{tc.num_threads or torch.get_num_threads()} training thread(s), {data.workers} loader "
                          f"worker(s). Data: {data.describe()}; test = the 10,000 test JPEGs. No GPU in this "
                          f"session: the GPU goals were not measured.\n\n{table}\n\n"
                          + "\n".join(f"- {s}" for s in summary))

    recipe = {k: v for k, v in tc.model_dump().items() if k in TWIN_RECIPE} | {"augment": data.augment}
    recipe |= {k: v for k, v in (("mixup", data.mixup), ("cutmix", data.cutmix)) if v}  # unmixed: keys as before

    def twin_key(name: str, sub: dict) -> str:
        """A finished twin is reused only for the same architecture, epochs and recipe."""
        return json.dumps([name, sub, args.scratch_epochs or tc.epochs, recipe], sort_keys=True)

    for row, sub in zip(rows, picks.values()):  # twins finished by an earlier, killed run
        if not args.no_scratch and twin_key(row[0], sub) in twins:
            row[3], row[4] = twins[twin_key(row[0], sub)]
    summarise()
    for row, sub in zip(rows, picks.values()):
        if args.no_scratch or row[3] is not None:
            continue
        key = twin_key(row[0], sub)
        torch.manual_seed(cfg.seed)
        fresh = build_supernet(cfg, data)
        model = fresh.extract(sub).train()
        if tc.zero_init_residual:  # the same initialisation the supernet's training starts from
            zero_init_residual(model)
        stc = TrainConfig.make(tc, epochs=args.scratch_epochs or tc.epochs,
                               warmup_epochs=min(tc.warmup_epochs, (args.scratch_epochs or tc.epochs) - 1))
        torch.manual_seed(cfg.seed)
        scratch_s = train_static(model, data, stc)
        model.to(memory_format=torch.contiguous_format)
        recalibrate_bn(model, calib, tc.bn_calib_batches)
        twins[key] = (100 * evaluate_accuracy(model, test)["accuracy"], scratch_s)
        if twins_file:
            twins_file.write_text(json.dumps(twins))
        row[3], row[4] = twins[key]
        print(f"{row[0]}: scratch {row[3]:.2f} % ({row[4]:.0f} s)", flush=True)
        summarise()


if __name__ == "__main__":
    main()
