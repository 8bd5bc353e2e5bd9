"""Zero-cost proxies against measured accuracy on the embedded default's trained supernet.

Needs a trained run directory (default ``runs/demo``, made by ``make demo``). Measures ``--n`` random
sub-networks (seeded) on accuracy, MACs, params and every proxy of ``supernas.measure.proxies``, through an
evaluation session on the run's ``results.db`` (run ``proxies``), so a killed call resumes. Prints and
records each column's Kendall tau against accuracy (MACs and params are the baselines a proxy must beat),
the tie ceiling of the accuracy measurement (270 validation images), and each proxy's time per sub-network
next to a full accuracy evaluation's, in the RESULTS.md section of the run's name.

Run: .venv/bin/python benchmarks/proxies.py [--run runs/demo] [--n 200]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from supernas.measure.proxies import PROXIES  # noqa: E402
from supernas.run import make_evaluator, run_from_dir, trained_supernet  # noqa: E402
from supernas.search.session import EvaluationSession  # noqa: E402

BASELINES = ("macs", "params")


def tie_ceiling(y: np.ndarray) -> float:
    """The largest Kendall tau-b an untied score can reach against ``y`` (ties in the measurement)."""
    n0 = len(y) * (len(y) - 1) / 2
    _, counts = np.unique(y, return_counts=True)
    n1 = float(np.sum(counts * (counts - 1) / 2))
    return math.sqrt((n0 - n1) / n0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--timing", type=int, default=20, help="sub-networks timed per column")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, paths = run_from_dir(args.run)
    net, bundle = trained_supernet(cfg, paths)
    net.eval()
    cols = ["accuracy", *BASELINES, *PROXIES]
    evaluator = make_evaluator(cfg, net, bundle, cols)
    configs = {net.space.key(c): c for c in net.space.sample_many(args.n, seed=0)}
    t0 = time.perf_counter()
    with EvaluationSession(net.space, evaluator, cols, store=paths.results, run="proxies",
                           meta={"kind": "proxies", "n": args.n}) as session:
        rows = [got.outcome for got in session.evaluate_many(list(configs.values()))]
    failed = [o for o in rows if not o.ok]
    ok = [o.values for o in rows if o.ok]
    wall = time.perf_counter() - t0
    acc = np.array([v["accuracy"] for v in ok])
    taus = {c: float(kendalltau([v[c] for v in ok], acc).statistic) for c in (*BASELINES, *PROXIES)}

    times = {}  # seconds per sub-network for each column alone (BN recalibration included for accuracy)
    sample = list(configs.values())[: args.timing]
    for c in ("accuracy", *PROXIES):
        one = make_evaluator(cfg, net, bundle, [c])
        t = time.perf_counter()
        for conf in sample:
            one(conf)
        times[c] = (time.perf_counter() - t) / len(sample)
    best_baseline = max(abs(taus[b]) for b in BASELINES)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [f"{len(ok)} random sub-networks of `{args.run}` ({cfg.name}; {len(failed)} failed), measured in "
             f"{wall:.0f} s this call (cached ones read back); accuracy on {len(bundle.val)} validation images, "
             f"tie ceiling of Kendall tau {tie_ceiling(acc):.3f}. One thread, load {load}.", "",
             "| column | Kendall tau vs accuracy | beats MACs/params | s per sub-network |", "|---|---:|:-:|---:|"]
    for c in (*BASELINES, *PROXIES):
        beats = "baseline" if c in BASELINES else ("yes" if abs(taus[c]) > best_baseline else "no")
        lines.append(f"| {c} | {taus[c]:+.3f} | {beats} | {times.get(c, float('nan')):.3f} |")
    lines.append(f"| accuracy (full evaluation) | | | {times['accuracy']:.3f} |")
    beating = [c for c in PROXIES if abs(taus[c]) > best_baseline]
    lines += ["", "A proxy beats the baselines when its |tau| exceeds the larger |tau| of MACs and params "
              f"({best_baseline:.3f}); here: {', '.join(beating) or 'none'}. Proxies are objective columns a run "
              "may request; none is used by a strategy by default."]
    body = "\n".join(lines)
    print(body)
    if failed:
        print("failed:", failed[0].error)
    if not args.no_write:
        write_section(f"proxies.py ({cfg.name})", body)  # one section per supernet measured


if __name__ == "__main__":
    main()
