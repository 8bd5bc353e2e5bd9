"""Latency lookup tables per target: build (each distinct unit shape timed once, linear calibration on 8
measured sub-networks), then MAPE of the predicted vs the measured latency on N random sub-networks
(not used for calibration), for mbv3 and resnet.

Goal: MAPE <= 5%.   Run: .venv/bin/python benchmarks/lut_mape.py [--n 50] [--targets cpu,onnxruntime]
"""
from __future__ import annotations

import argparse
import time

import torch

import supernas as sn
from supernas.measure import build_latency_table, lut_mape, make_target

from _results import write_section

FAMILIES = {
    "mbv3": dict(num_classes=10, image_size=32, width_mult=0.5),
    "resnet": dict(num_classes=10, image_size=32, width_mults=(0.25, 0.35, 0.5)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--targets", default="cpu,onnxruntime")
    ap.add_argument("--families", default="mbv3,resnet")
    args = ap.parse_args()
    torch.manual_seed(0)
    lines = [f"Families at 32x32 input, batch 1, 1 thread; {args.n} random sub-networks per (family, target); "
             f"torch {torch.__version__}.", "",
             "| family | target | LUT entries | build s | MAPE % | measured ms (min-max) |", "|---|---|---|---|---|---|"]
    for fam in args.families.split(","):
        net = sn.create_supernet(fam, **FAMILIES[fam]).eval()
        for backend in args.targets.split(","):
            spec = make_target({"name": backend, "backend": backend, "threads": 1, "warmup": 5, "repeats": 20})
            t0 = time.perf_counter()
            table = build_latency_table(net, spec, calib=8)
            build = time.perf_counter() - t0
            res = lut_mape(table, net, n=args.n, seed=1)
            meas = res["measured_ms"]
            lines.append(f"| {fam} | {backend} | {res['entries']} | {build:.1f} | {res['mape']:.2f} | "
                         f"{min(meas):.2f}-{max(meas):.2f} |")
            print(lines[-1], flush=True)
            write_section("lut_mape.py", "\n".join(lines + ["", "Goal: MAPE <= 5% (partial: run still going)."]))
    lines += ["", "Goal: MAPE <= 5%."]
    print("\n".join(lines))
    write_section("lut_mape.py", "\n".join(lines))


if __name__ == "__main__":
    main()
