"""Throughput of search evaluations with 1 and 2 Ray workers, measured side by side in one run.

Each evaluation does real CPU work: extract a sub-network of the mbv3 supernet and time forward passes
with one torch thread per worker. Goal: 2 workers >= 1.6x the throughput of 1 worker on 2 cores.
Run: .venv/bin/python benchmarks/parallel_eval.py [--configs 16 --rounds 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import ray
import torch

import supernas as sn
from supernas.search import RayPool

from _results import write_section

_NETS: dict[tuple, sn.Supernet] = {}


class ForwardEvaluator:
    """Builds the supernet once per worker process, then per config: extract and time ``passes`` forwards."""

    def __init__(self, image_size: int = 64, passes: int = 8) -> None:
        self.image_size, self.passes = image_size, passes

    def net(self) -> sn.Supernet:
        key = (self.image_size,)
        if key not in _NETS:
            torch.manual_seed(0)
            _NETS[key] = sn.create_supernet("mbv3", num_classes=10, image_size=self.image_size).eval()
        return _NETS[key]

    def __call__(self, cfg: dict) -> dict[str, float]:
        torch.set_num_threads(1)
        net = self.net()
        sub = net.extract(cfg).eval()
        x = torch.randn(*net.input_shape(cfg, batch=4))
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(self.passes):
                sub(x)
            ms = (time.perf_counter() - t0) * 1e3 / self.passes
        return {"latency_ms@cpu": ms, "params": float(sum(p.numel() for p in sub.parameters()))}


def throughput(pool: RayPool, cfgs: list[dict]) -> tuple[float, float]:
    """(evaluations per second, concurrency = summed task time / wall time)."""
    t0 = time.perf_counter()
    outs = list(pool.map(cfgs))
    wall = time.perf_counter() - t0
    assert all(o.ok for o in outs), [o.error for o in outs if not o.ok]
    return len(cfgs) / wall, sum(o.elapsed_s or 0.0 for o in outs) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([here, os.path.dirname(here)])}})
    evaluate = ForwardEvaluator()
    space = evaluate.net().space
    cfgs = space.sample_many(args.configs, seed=0)
    cols = ["latency_ms@cpu", "params"]
    pools = {w: RayPool(evaluate, cols, workers=w) for w in (1, 2)}
    for pool in pools.values():  # warm-up: start worker processes, build the supernet in each
        list(pool.map(space.sample_many(4, seed=1)))
    rates: dict[int, list[float]] = {1: [], 2: []}
    conc: dict[int, list[float]] = {1: [], 2: []}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):  # interleaved rounds
        for w, pool in pools.items():
            rate, c = throughput(pool, cfgs)
            rates[w].append(rate)
            conc[w].append(c)
    r1, r2 = statistics.median(rates[1]), statistics.median(rates[2])
    c1, c2 = statistics.median(conc[1]), statistics.median(conc[2])
    ratio = r2 / r1
    lines = [f"mbv3 supernet (10 classes, 64x64 input), {args.configs} random sub-networks per round, "
             f"{evaluate.passes} forward passes of batch 4 each, torch {torch.__version__}, 1 torch thread per "
             f"worker, {os.cpu_count()} cores, median of {args.rounds} interleaved rounds.",
             f"1-minute load average at start: {load:.1f} (other processes compete for the cores when > 0).",
             "", "| workers | evaluations/s | concurrency (task time / wall) |", "|---|---|---|",
             f"| 1 | {r1:.3f} | {c1:.2f} |", f"| 2 | {r2:.3f} | {c2:.2f} |", "",
             f"Speed-up 2 vs 1 workers: **{ratio:.2f}x** (goal >= 1.6x on 2 idle cores)."]
    print("\n".join(lines))
    write_section("parallel_eval.py", "\n".join(lines))
    ray.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
