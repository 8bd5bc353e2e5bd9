"""Predictor quality on the embedded default: fit on 200 measured sub-networks, test on 100 others.

Needs a trained run directory (default ``runs/demo``, made by ``make demo``). Evaluations are cached in
the run's ``results.db`` under run ``predictor-bench``, so a second call only refits.
Goals: accuracy Kendall tau >= 0.9, latency MAPE <= 5%.   Run: .venv/bin/python benchmarks/predictor_quality.py
"""
from __future__ import annotations

import argparse

import torch

from supernas.pipeline import make_evaluator, run_from_dir, trained_supernet
from supernas.predict import fit_predictors, quality
from supernas.store import Store

from _results import write_section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--test", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, paths = run_from_dir(args.run)
    net, bundle = trained_supernet(cfg, paths)
    net.eval()
    cols = cfg.search.objectives
    evaluate = make_evaluator(cfg, net, bundle)
    configs = net.space.sample_many(args.train + args.test, seed=123)
    values = []
    with Store(paths.results) as db:
        for i, c in enumerate(configs):
            key = net.space.key(c)
            got = db.get("predictor-bench", key)
            if got is None or not all(k in got for k in cols):
                got = evaluate(c)
                db.put("predictor-bench", key, c, got)
            values.append(got)
            if i % 50 == 0:
                print(f"measured {i}/{len(configs)}", flush=True)
    tr_c, te_c = configs[:args.train], configs[args.train:]
    tr_v, te_v = values[:args.train], values[args.train:]
    preds = fit_predictors(net.space, tr_c, tr_v, cols, seed=0)
    lines = [f"Run `{args.run}` ({cfg.name}); {args.train} training and {args.test} held-out sub-networks "
             f"(uniform samples, seed 123). Cross-validated quality is on the training set; held-out quality "
             f"on the others.", "",
             "| objective | model | CV Kendall tau | CV MAPE | held-out Kendall tau | held-out Spearman | held-out MAPE |",
             "|---|---|---|---|---|---|---|"]
    for c in cols:
        p = preds[c]
        q = quality([v[c] for v in te_v], p.predict_configs(net.space, te_c))
        cv = p.quality
        lines.append(f"| {c} | {p.model} | {cv['kendall_tau']:.3f} | {100 * cv['mape']:.2f}% | "
                     f"{q['kendall_tau']:.3f} | {q['spearman_rho']:.3f} | {100 * q['mape']:.2f}% |")
        print(lines[-1])
    lines += ["", "Goals: accuracy tau >= 0.9, latency MAPE <= 5%."]
    write_section("predictor_quality.py", "\n".join(lines))


if __name__ == "__main__":
    main()
