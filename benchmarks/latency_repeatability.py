"""Repeatability of latency measurement: 5 independent runs of ``measure_latency`` (each: warm-up, then
``repeats`` timed calls, median) per target and sub-network; reports max/min of the 5 per-run medians for
three ways of timing, their runs interleaved so that all see the same machine: the wall clock; the
calling thread's CPU clock; and what supernas does by default on a 1-thread CPU target, the thread clock
with drift correction (timed alternately with the median sub-network, see supernas.measure.latency).
On CUDA (when present) the clock is CUDA events, with and without drift correction.

Goal: max/min <= 1.05.   Run: .venv/bin/python benchmarks/latency_repeatability.py [--targets cpu,onnxruntime,cuda]
"""
from __future__ import annotations

import argparse
import os

import torch

import supernas as sn
from supernas.measure import make_target, measure_latency
from supernas.measure.latency import LatencyReference
from supernas.measure.lut import example_input

from _results import write_section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--targets", default="cpu,onnxruntime,cuda")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = sn.create_supernet("mbv3", num_classes=10, image_size=64, width_mult=0.5).eval()
    backends = [b for b in args.targets.split(",") if b != "cuda" or torch.cuda.is_available()]
    targets = [make_target({"name": b, "backend": b, "threads": 1, "warmup": 10, "repeats": args.repeats})
               for b in backends]
    cfgs = {"smallest": net.space.smallest(), "median": net.space.median(), "largest": net.space.largest()}
    mid = net.space.median()
    lines = [f"mbv3 (w0.5, 64x64, batch 1), 1 thread, {args.runs} runs x (10 warm-up + {args.repeats} timed "
             f"calls) per way of timing, interleaved; reference = the median sub-network (baseline: fastest "
             f"median of 5 rounds); torch {torch.__version__}; 1-min load average at start "
             f"{os.getloadavg()[0]:.1f}.", "",
             "| target | config | wall clock (CUDA: events): per-run medians ms (max/min) | thread clock (max/min) "
             "| supernas default: thread clock (CUDA: events) + drift correction (max/min) |", "|---|---|---|---|---|"]
    worst: dict[str, float] = {}
    as_default = 0.0  # what supernas reports
    for spec in targets:
        ref = LatencyReference(net.extract(mid), example_input(net, mid, spec))
        ways = {"wall": (spec.model_copy(update={"clock": "wall"}), None)}
        if spec.backend != "cuda":
            ways["thread"] = (spec.model_copy(update={"clock": "thread"}), None)
        ways["default"] = (spec, ref)
        for name, cfg in cfgs.items():
            model, x = net.extract(cfg).eval(), example_input(net, cfg, spec)
            medians: dict[str, list[float]] = {w: [] for w in ways}
            for _ in range(args.runs):
                for w, (s, r) in ways.items():
                    medians[w].append(measure_latency(model, x, s, r).median_ms)
            cells = []
            for w in ("wall", "thread", "default"):
                if w not in medians:
                    cells.append("-")
                    continue
                ratio = max(medians[w]) / min(medians[w])
                worst[w] = max(worst.get(w, 0.0), ratio)
                if w == "default":
                    as_default = max(as_default, ratio)
                cells.append(f"{', '.join(f'{m:.3f}' for m in medians[w])} ({ratio:.3f})")
            lines.append(f"| {spec.name} | {name} | {' | '.join(cells)} |")
            print(lines[-1], flush=True)
    lines += ["", "Worst max/min of per-run medians: " + ", ".join(f"{w} {v:.3f}" for w, v in worst.items())
              + f". **As supernas measures by default: {as_default:.3f}** (goal <= 1.05)."]
    print("\n".join(lines))
    write_section("latency_repeatability.py", "\n".join(lines))


if __name__ == "__main__":
    main()
