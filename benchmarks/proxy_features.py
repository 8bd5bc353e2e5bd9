"""Zero-cost proxies as accuracy-predictor features: does adding a proxy's value to a sub-network's encoding
predict held-out accuracy better than adding its MACs (the baseline a proxy must beat)?

Reads the sub-networks ``benchmarks/proxies.py`` measured on a trained run (default ``runs/demo``; run that
script first: every value comes back from the run's ``results.db``, run ``proxies``, nothing is measured
again). For ``--splits`` seeded random splits (``--train`` sub-networks to fit, the rest held out), an
accuracy predictor (``fit_predictor``: cross-validated model choice, as the search does) is fitted on
``space.features`` alone, plus MACs, plus each proxy, plus MACs and the proxy; prints and records the median
held-out Kendall tau of each feature set, and which proxies beat the better baseline (the encoding alone or
with MACs) in the median and split by split (paired one-sided Wilcoxon signed-rank test, p < 0.05).

Run: .venv/bin/python benchmarks/proxy_features.py [--run runs/demo] [--splits 10] [--train 150]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import publish  # noqa: E402

from supernas.measure.proxies import PROXIES  # noqa: E402
from supernas.predict import fit_predictor, quality  # noqa: E402
from supernas.run import make_evaluator, run_from_dir, trained_supernet  # noqa: E402
from supernas.search.session import EvaluationSession  # noqa: E402

from proxies import BASELINES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--n", type=int, default=200, help="as benchmarks/proxies.py measured them")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, paths = run_from_dir(args.run)
    net, bundle = trained_supernet(cfg, paths)
    cols = ["accuracy", *BASELINES, *PROXIES]
    configs = net.space.sample_many(args.n, seed=0)  # the sub-networks proxies.py measured
    with EvaluationSession(net.space, make_evaluator(cfg, net, bundle, cols), cols, store=paths.results,
                           run="proxies", meta={"kind": "proxies", "n": args.n}) as session:
        got = [(c, g.outcome) for c, g in zip(configs, session.evaluate_many(configs))]
    rows = [(c, o.values) for c, o in got if o.ok]
    X = net.space.features_many([c for c, _ in rows])
    acc = np.array([v["accuracy"] for _, v in rows])
    extra = {name: np.array([v[name] for _, v in rows], dtype=float) for name in (*BASELINES, *PROXIES)}
    sets = {"encoding": []} | {"+ macs": ["macs"]} | {f"+ {p}": [p] for p in PROXIES} | \
        {f"+ macs + {p}": ["macs", p] for p in PROXIES}
    taus: dict[str, list[float]] = {name: [] for name in sets}
    t0 = time.perf_counter()
    for split in range(args.splits):
        order = np.random.default_rng(split).permutation(len(rows))
        tr, te = order[: args.train], order[args.train:]
        for name, added in sets.items():
            Z = np.column_stack([X, *[extra[a] for a in added]]) if added else X
            p = fit_predictor(Z[tr], acc[tr], column="accuracy", seed=split)
            taus[name].append(quality(acc[te], p.predict(Z[te]))["kendall_tau"])
    med = {name: float(np.median(v)) for name, v in taus.items()}
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [f"{len(rows)} sub-networks of `{args.run}` measured by `benchmarks/proxies.py` (accuracy on "
             f"{len(bundle.val)} validation images); {args.splits} random splits, {args.train} to fit, "
             f"{len(rows) - args.train} held out; `fit_predictor` (CV model choice) on `space.features` plus the "
             f"columns named. Fits {time.perf_counter() - t0:.0f} s, one thread, load {load}.", "",
             "| features | held-out Kendall tau, median | min | max |", "|---|---:|---:|---:|"]
    for name, v in taus.items():
        lines.append(f"| {name} | {med[name]:.3f} | {min(v):.3f} | {max(v):.3f} |")
    base = max(("encoding", "+ macs"), key=lambda name: med[name])
    baseline = med[base]

    def p_better(name: str) -> float:
        """One-sided Wilcoxon signed-rank p-value of ``name`` beating the better baseline, paired by split."""
        d = np.array(taus[name]) - np.array(taus[base])
        return float(wilcoxon(d, alternative="greater").pvalue) if np.any(d != 0) else 1.0

    with_proxy = {p: (f"+ {p}", f"+ macs + {p}") for p in PROXIES}
    p_values = {p: min(p_better(name) for name in names) for p, names in with_proxy.items()}
    # one feature set must do both: beat the baseline's median and win split by split
    better = [p for p, names in with_proxy.items()
              if any(med[name] > baseline and p_better(name) < 0.05 for name in names)]
    lines += ["", f"A proxy is worth a feature when a set with it beats the better baseline ({base}, median "
              f"{baseline:.3f}) in the median and split by split (one-sided Wilcoxon signed-rank p < 0.05; p: "
              + ", ".join(f"{p} {v:.2f}" for p, v in p_values.items()) + f"): {', '.join(better) or 'none'}. "
              + ("**Not switched on**: no proxy feature in the search's predictors." if not better else
                 "Worth switching on for these proxies (each costs a forward and backward pass per candidate the "
                 "inner search scores).")]
    lines.append(f"Command: `.venv/bin/python benchmarks/proxy_features.py --run {args.run} --splits {args.splits} "
                 f"--train {args.train} --n {args.n}` (after `benchmarks/proxies.py --n {args.n}` on the same run).")
    publish(f"proxy_features.py ({cfg.name})", lines, write=not args.no_write)  # a section per supernet


if __name__ == "__main__":
    main()
