"""Repeatability of latency measurement: 5 independent runs of ``measure_latency`` (each: warm-up, then
``repeats`` timed calls, median) per target and sub-network; reports max/min of the 5 per-run medians.

Goal: max/min <= 1.05.   Run: .venv/bin/python benchmarks/latency_repeatability.py
"""
from __future__ import annotations

import argparse

import torch

import supernas as sn
from supernas.measure import make_target, measure_latency
from supernas.measure.lut import example_input

from _results import write_section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    net = sn.create_supernet("mbv3", num_classes=10, image_size=64, width_mult=0.5).eval()
    targets = [make_target({"name": n, "backend": b, "threads": 1, "warmup": 10, "repeats": args.repeats})
               for n, b in (("cpu", "cpu"), ("onnxruntime", "onnxruntime"))]
    cfgs = {"smallest": net.space.smallest(), "median": net.space.median(), "largest": net.space.largest()}
    lines = [f"mbv3 (w0.5, 64x64, batch 1), 1 thread, {args.runs} runs x (10 warm-up + {args.repeats} timed "
             f"calls); torch {torch.__version__}.", "",
             "| target | config | per-run medians ms | max/min |", "|---|---|---|---|"]
    worst = 0.0
    for spec in targets:
        for name, cfg in cfgs.items():
            model, x = net.extract(cfg).eval(), example_input(net, cfg, spec)
            medians = [measure_latency(model, x, spec).median_ms for _ in range(args.runs)]
            ratio = max(medians) / min(medians)
            worst = max(worst, ratio)
            lines.append(f"| {spec.name} | {name} | {', '.join(f'{m:.3f}' for m in medians)} | {ratio:.3f} |")
            print(lines[-1], flush=True)
    lines += ["", f"**worst max/min of per-run medians: {worst:.3f}** (goal <= 1.05)."]
    print("\n".join(lines))
    write_section("latency_repeatability.py", "\n".join(lines))


if __name__ == "__main__":
    main()
