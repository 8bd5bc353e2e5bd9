"""Full sub-network evaluation (extract + BN recalibration + validation, as the Evaluator does it) vs the
pure forward passes over the same data (the extracted model already built: BN-recalibration batches in
train mode, validation batches in inference mode), measured side by side, interleaved per config.

Goal: full / pure <= 1.3.   Run: .venv/bin/python benchmarks/measure_overhead.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import supernas as sn
from supernas.data import load_dataset, loaders
from supernas.measure import Evaluator

from _results import write_section


def pure_forwards(model: torch.nn.Module, calib, val, calib_batches: int) -> None:
    model.train()
    with torch.no_grad():
        for i, (x, _) in enumerate(calib):
            if i >= calib_batches:
                break
            model(x)
    model.eval()
    with torch.inference_mode():
        for x, _ in val:
            model(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=6)
    ap.add_argument("--calib-batches", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bundle = load_dataset("digits", image_size=32)
    calib, val, _ = loaders(bundle, batch_size=64)
    net = sn.create_supernet("mbv3", num_classes=bundle.num_classes, image_size=32,
                             in_channels=bundle.in_channels, width_mult=0.5).eval()
    ev = Evaluator(net, ["accuracy", "top5"], calib_loader=calib, eval_loader=val, calib_batches=args.calib_batches)
    cfgs = [net.space.smallest(), net.space.largest(), *net.space.sample_many(args.configs - 2, seed=0)]
    ev(cfgs[0])  # warm-up (first-call allocations, kernel selection)
    full, pure = [], []
    for cfg in cfgs:
        t0 = time.perf_counter()
        ev(cfg)
        full.append(time.perf_counter() - t0)
        model = net.extract(cfg)
        t0 = time.perf_counter()
        pure_forwards(model, calib, val, args.calib_batches)
        pure.append(time.perf_counter() - t0)
    ratios = [f / p for f, p in zip(full, pure)]
    lines = [f"mbv3 (w0.5, 32x32, 10 classes) on digits: {args.calib_batches} BN-recalibration batches of 64, "
             f"{len(val.dataset)} validation images; torch {torch.__version__}, {args.threads} thread(s); "
             f"{len(cfgs)} configs, full and pure interleaved per config.", "",
             "| config | full s | pure forwards s | ratio |", "|---|---|---|---|"]
    names = ["smallest", "largest"] + [f"random{i}" for i in range(len(cfgs) - 2)]
    for n, f, p, r in zip(names, full, pure, ratios):
        lines.append(f"| {n} | {f:.3f} | {p:.3f} | {r:.3f} |")
    total = sum(full) / sum(pure)
    lines += ["", f"**full / pure: total {total:.3f}, median per config {statistics.median(ratios):.3f}** "
              "(goal <= 1.3)."]
    print("\n".join(lines))
    write_section("measure_overhead.py", "\n".join(lines))


if __name__ == "__main__":
    main()
