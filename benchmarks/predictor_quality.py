"""Predictor quality on the embedded default: fit on 200 measured sub-networks, test on 100 others.

Needs a trained run directory (default ``runs/demo``, made by ``make demo``). Every measurement is cached in
the run's ``results.db`` (runs ``<tag>``, ``<tag>-latency[-p<k>]``, ``<tag>-bn<k>``, ``<tag>-test``), so a
killed call resumes and a second call only refits. Prints and records, side by side:

* every objective's predictor on ``space.features`` alone and with the derived features (``FeatureMap``
  with the supernet's counted cost table): CV and held-out Kendall tau / MAPE and fit time;
* the accuracy measurement's noise ceiling, on the held-out sub-networks: ties among their validation
  accuracies, agreement of independent BN recalibrations, the mean of those as an oracle predictor,
  validation vs test split;
* what limits the accuracy predictor: its held-out Kendall tau when fitted on fewer of the training
  sub-networks (a learning curve), and its held-out error beside the measurement's own noise;
* latency (as the search measures it: drift-corrected against the median sub-network, thread clock)
  against a low-noise proxy, the median of ``--passes`` more passes of the same measurement.

Goals: accuracy Kendall tau >= 0.9 (or the noise ceiling, where that is lower), latency MAPE <= 5%.
Accuracy is measured with ``--threads`` threads (latency with its target's own); the RESULTS.md section is
named after the run (one per supernet measured).
Run: .venv/bin/python benchmarks/predictor_quality.py [--run runs/demo] [--passes 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from rich.progress import track
from scipy.stats import kendalltau

from supernas.data import loaders
from supernas.measure import Evaluator
from supernas.run import make_evaluator, run_from_dir, trained_supernet
from supernas.predict import MODELS, FeatureMap, build_cost_table, fit_predictor, quality
from supernas.store import Store

from _results import write_section

ACC, LAT = "accuracy", "latency_ms@cpu"


def cached(db: Store, run: str, items: list[tuple[str, dict]], measure: Callable[[dict], dict],
           cols: Sequence[str], label: str) -> list[dict]:
    """``measure(cfg)`` of every ``(key, cfg)``, read from / written to run ``run`` of the store."""
    out = []
    for key, c in track(items, description=label, transient=True):
        got = db.get(run, key)
        if got is None or not all(k in got for k in cols):
            got = measure(c)
            db.put(run, key, c, got)
        out.append(got)
    return out


def verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def tie_ceiling(y: Sequence[float]) -> tuple[float, float]:
    """(fraction of tied pairs, largest Kendall tau-b any untied prediction can reach against ``y``)."""
    y = np.asarray(y)
    n0 = len(y) * (len(y) - 1) / 2
    _, counts = np.unique(y, return_counts=True)
    n1 = float(np.sum(counts * (counts - 1) / 2))
    return n1 / n0, math.sqrt((n0 - n1) / n0)


def tau(a: Sequence[float], b: Sequence[float]) -> float:
    return float(kendalltau(a, b).statistic)


def oracle_tau(tau1: float, k: float) -> float:
    """Kendall tau between one measurement and the mean of ``k`` independent others, when one repeat
    pair agrees with tau ``tau1``: bivariate-normal ranks (tau = 2/pi asin rho), signal share rho1 =
    sin(pi tau1 / 2), rho_k = rho1 / sqrt(rho1 + (1 - rho1) / k); ``k = inf`` is the noise ceiling."""
    rho1 = math.sin(math.pi * tau1 / 2)
    rho = math.sqrt(rho1) if math.isinf(k) else rho1 / math.sqrt(rho1 + (1 - rho1) / k)
    return 2 / math.pi * math.asin(min(rho, 1.0))


def accuracy_noise(acc: np.ndarray, reps: np.ndarray, acc_test: np.ndarray, pred: np.ndarray,
                   held_out: list, sizes: tuple[int, int]) -> list[str]:
    """Table rows on how repeatable the accuracy measurement of the ``held_out`` sub-networks is: ``acc``
    their validation accuracies, ``reps`` the same after other BN recalibrations, ``acc_test`` on the test
    split, ``pred`` the predictor's; ``sizes`` = (validation, test) images (see the module docstring)."""
    tie_frac, tie_max = tie_ceiling(acc)
    rep_tau = [tau(acc, r) for r in reps]
    tau1, k = float(np.mean(rep_tau)), len(reps)
    res = np.array([c.get("resolution", 0) for c in held_out])
    denoised = np.vstack([acc, reps]).mean(axis=0)
    rows = [
        f"| tied pairs among the held-out accuracies | {100 * tie_frac:.1f}% (tau-b of an untied prediction <= {tie_max:.3f}) |",
        f"| tau(measurement, same measurement after BN recalibration on another draw), {k} repeats | "
        + ", ".join(f"{t:.3f}" for t in rep_tau) + " |",
        f"| oracle: tau(measurement, mean of the {k} repeats): measured / rank-normal model | "
        f"{tau(acc, reps.mean(axis=0)):.3f} / {oracle_tau(tau1, k):.3f} |",
        f"| **noise ceiling**: tau(measurement, its expected value), rank-normal model, k -> inf | **{oracle_tau(tau1, math.inf):.3f}** |",
        f"| tau(validation accuracy, test-split accuracy: {sizes[1]:,} other images), {len(acc)} held out | {tau(acc, acc_test):.3f} |",
    ]
    if len(np.unique(res)) > 1:
        within = ", ".join(f"{r}: {tau(acc[res == r], acc_test[res == r]):.2f}" for r in np.unique(res))
        within_bn = ", ".join(f"{r}: {tau(acc[res == r], reps[0][res == r]):.2f}" for r in np.unique(res))
        rows.append(f"| within each resolution: validation vs test split / validation vs BN repeat | {within} / {within_bn} |")
    return rows + [
        f"| predictor (fitted on validation accuracy) vs validation / vs test split / vs mean of {k + 1} "
        f"validation measurements | {tau(acc, pred):.3f} / {tau(acc_test, pred):.3f} / {tau(denoised, pred):.3f} |",
    ]


def learning_curve(space: Any, fmap: FeatureMap | None, tr: list, te: list, acc: np.ndarray, n_train: int,
                   reps: np.ndarray, draws: int = 5) -> list[str]:
    """Table rows: held-out Kendall tau of the accuracy predictor (CV model choice on ``fmap``) fitted on
    random subsets of the training sub-networks (mean of ``draws``, all of them once), then its held-out error
    beside the calibration noise (standard deviations of prediction - measurement and, from the ``reps``, of
    one measurement's draw)."""
    Xtr, Xte = space.features_many(tr), space.features_many(te)
    rng = np.random.default_rng(0)
    sizes = sorted({m for m in (n_train // 4, n_train // 2, 3 * n_train // 4) if m >= 20} | {n_train})
    cells = []
    for m in sizes:
        subsets = [np.arange(n_train)] if m == n_train else [np.sort(rng.choice(n_train, m, replace=False))
                                                             for _ in range(draws)]
        taus = [tau(acc[n_train:], fit_predictor(Xtr[i], acc[i], column=ACC, features=fmap, seed=0).predict(Xte))
                for i in subsets]
        cells.append(f"{np.mean(taus):.3f}")
    err = acc[n_train:] - fit_predictor(Xtr, acc[:n_train], column=ACC, features=fmap, seed=0).predict(Xte)
    noise = float(np.mean([np.std(acc[n_train:] - r) for r in reps])) / math.sqrt(2)
    return [
        f"| held-out Kendall tau fitted on {', '.join(map(str, sizes))} training sub-networks (mean of {draws} random "
        f"subsets; all once) | {' / '.join(cells)} |",
        f"| standard deviation (points): held-out accuracies / predictor error / one calibration draw's noise | "
        f"{100 * np.std(acc[n_train:]):.2f} / {100 * np.std(err):.2f} / {100 * noise:.2f} |",
    ]


def fit_rows(space: Any, fmaps: dict[str, FeatureMap | None], cols: list[str], tr: list, te: list,
             y: dict[str, np.ndarray], n_train: int) -> tuple[list[str], dict]:
    """Table rows: every column under every feature map; returns also the fitted predictors."""
    rows, fitted = [], {}
    Xtr, Xte = space.features_many(tr), space.features_many(te)
    for col in cols:
        for fname, fmap in fmaps.items():
            p = fit_predictor(Xtr, y[col][:n_train], column=col, features=fmap, seed=0)
            q = quality(y[col][n_train:], p.predict(Xte))
            fitted[col, fname] = p
            cv = p.quality
            rows.append(f"| {col} | {fname} | {p.model} | {cv['kendall_tau']:.3f} | {100 * cv['mape']:.2f}% | "
                        f"{q['kendall_tau']:.3f} | {q['spearman_rho']:.3f} | {100 * q['mape']:.2f}% | {cv['fit_s']:.2f} |")
            print(rows[-1], flush=True)
    return rows, fitted


def model_rows(space: Any, fmaps: dict[str, FeatureMap | None], tr: list, te: list, acc: np.ndarray,
               n_train: int) -> list[str]:
    """Table rows: accuracy's CV / held-out Kendall tau for every predictor model on every feature set."""
    Xtr, Xte = space.features_many(tr), space.features_many(te)
    rows = []
    for model in MODELS:
        cells = []
        for fmap in fmaps.values():
            p = fit_predictor(Xtr, acc[:n_train], column=ACC, models=[model], features=fmap, seed=0)
            cells.append(f"{p.quality['kendall_tau']:.3f} / {quality(acc[n_train:], p.predict(Xte))['kendall_tau']:.3f}")
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="independent BN recalibrations for the noise ceiling")
    ap.add_argument("--passes", type=int, default=3, help="latency passes whose median is the proxy")
    ap.add_argument("--tag", default="predictor-bench", help="store run name of the cached measurements")
    ap.add_argument("--threads", type=int, default=1, help="threads for accuracy (latency uses its target's)")
    ap.add_argument("--no-write", action="store_true", help="print only; RESULTS.md unchanged")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg, paths = run_from_dir(args.run)
    net, bundle = trained_supernet(cfg, paths)
    net.eval()
    space, cols, n = net.space, list(cfg.search.objectives), args.train
    configs = space.sample_many(args.train + args.test, seed=123)
    items = [(space.key(c), c) for c in configs]
    held_out = items[n:]  # the noise ceiling is measured where the predictor is scored
    with Store(paths.results) as db:
        others = [c for c in cols if c != LAT]
        values = cached(db, args.tag, items, make_evaluator(cfg, net, bundle, others), others, "measuring")
        y = {c: np.array([v[c] for v in values]) for c in others}
        # latency as the search measures it (drift-corrected, one baseline kept in the store for resumes);
        # the proxy is the median of `passes` more such measurements
        ev_lat = make_evaluator(cfg, net, bundle, [LAT])
        db.add_run(f"{args.tag}-latency")
        ev_lat.keep_latency_baselines(db.run_meta(f"{args.tag}-latency").get("latency_baselines", {}))
        baselines = ev_lat.latency_baselines()
        db.add_run(f"{args.tag}-latency", {"latency_baselines": baselines})
        lat_runs = [f"{args.tag}-latency"] + [f"{args.tag}-latency-p{p}" for p in range(1, args.passes + 1)]
        lats = [np.array([v[LAT] for v in cached(db, r, items, ev_lat, [LAT], r)]) for r in lat_runs]
        y[LAT] = lats[0]
        # independent re-measurements of accuracy: other BN-recalibration batches, and the test split
        _, val_loader, test_loader = loaders(bundle, batch_size=cfg.train.batch_size, seed=cfg.seed)
        reps = []
        for k in range(1, args.repeats + 1):
            calib = loaders(bundle, batch_size=cfg.train.batch_size, seed=1000 + k)[0]
            ev = Evaluator(net, [ACC], calib_loader=calib, eval_loader=val_loader, calib_batches=cfg.search.calib_batches)
            reps.append([v[ACC] for v in cached(db, f"{args.tag}-bn{k}", held_out, ev, [ACC], f"BN repeat {k}")])
        ev = Evaluator(net, [ACC], calib_loader=loaders(bundle, batch_size=cfg.train.batch_size, seed=2000)[0],
                       eval_loader=test_loader, calib_batches=cfg.search.calib_batches)
        acc_test = np.array([v[ACC] for v in cached(db, f"{args.tag}-test", held_out, ev, [ACC], "test split")])
    sizes = (len(val_loader.dataset), len(test_loader.dataset))
    proxy = np.median(lats[1:], axis=0)
    pairs = [(a, b) for i, a in enumerate(lats) for b in lats[i + 1:]]
    lat_rep = float(np.mean([tau(a, b) for a, b in pairs]))
    lat_mape = float(np.mean([np.mean(np.abs(a - b) / b) for a, b in pairs]))

    t0 = time.perf_counter()
    table = build_cost_table(net, seed=0)
    table_s = time.perf_counter() - t0
    fmaps = {"space.features": None, "+ lookup + costs": FeatureMap(space, table)}
    tr, te = configs[:n], configs[n:]
    rows, fitted = fit_rows(space, fmaps, cols, tr, te, y, n)

    best = "+ lookup + costs"
    acc_best = max(fmaps, key=lambda f: fitted[ACC, f].quality["kendall_tau"])  # chosen by CV, not held out
    acc_tau = quality(y[ACC][n:], fitted[ACC, acc_best].predict(space.features_many(te)))["kendall_tau"]
    lat_mape_best = quality(y[LAT][n:], fitted[LAT, best].predict(space.features_many(te)))["mape"]
    by_model = model_rows(space, fmaps, tr, te, y[ACC], n)
    ceiling = oracle_tau(float(np.mean([tau(y[ACC][n:], r) for r in reps])), math.inf)
    goal = min(0.9, ceiling)
    noise = accuracy_noise(y[ACC][n:], np.array(reps), acc_test,
                           fitted[ACC, acc_best].predict(space.features_many(te)), te, sizes)
    noise += learning_curve(space, fmaps[acc_best], tr, te, y[ACC], n, np.array(reps))
    # --- latency against the low-noise proxy
    lat = y[LAT]
    Xtr, Xte = space.features_many(tr), space.features_many(te)
    fm = fmaps["+ lookup + costs"]
    on_proxy = fit_predictor(Xtr, proxy[:n], column=LAT, features=fm, seed=0)
    p_meas = fitted[LAT, "+ lookup + costs"].predict(Xte)
    q_pp = quality(proxy[n:], on_proxy.predict(Xte))
    q_mp = quality(proxy[n:], p_meas)
    q_mm = quality(proxy[n:], lat[n:])
    latency = [
        f"| measured latency vs proxy (held-out) | {q_mm['kendall_tau']:.3f} | {100 * q_mm['mape']:.2f}% |",
        f"| predictor fitted on measured latency, scored against the proxy | {q_mp['kendall_tau']:.3f} | {100 * q_mp['mape']:.2f}% |",
        f"| predictor fitted on the proxy ({on_proxy.model}), scored against the proxy | {q_pp['kendall_tau']:.3f} | {100 * q_pp['mape']:.2f}% |",
    ]
    lines = [
        f"Run `{args.run}` ({cfg.name}); {args.train} training and {args.test} held-out sub-networks (uniform "
        f"samples, seed 123). CV quality is on the training set, held-out quality on the others. Feature sets: "
        f"`space.features` (ordinal + one-hot per choice) and the same plus the derived features of "
        f"`supernas.predict.FeatureMap` (per-block lookup one-hots; per-block MACs / params / bytes / "
        f"activations / operator calls from a cost table counted on {table.probes} sub-networks in {table_s:.0f} s, "
        f"exact for {', '.join(table.exact)}). Model chosen by 5-fold CV among ridge, RBF SVR, GBM, MLP; "
        f"`exact` = computed from the table. Fit time includes the CV. Load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}.", "",
        "| objective | features | model | CV Kendall tau | CV MAPE | held-out Kendall tau | held-out Spearman | held-out MAPE | fit s |",
        "|---|---|---|---|---|---|---|---|---|", *rows, "",
        f"Accuracy, every model on every feature set (CV / held-out Kendall tau; the goal is judged on the "
        f"CV-chosen feature set, `{acc_best}`, and its CV-chosen model):", "",
        "| model | " + " | ".join(fmaps) + " |", "|---|" + "---|" * len(fmaps), *by_model, "",
        f"Noise ceiling of the accuracy measurement ({sizes[0]:,} validation images, BN recalibrated on "
        f"{cfg.search.calib_batches} training batches, one seeded random draw the same for every sub-network; a "
        f"repeat recalibrates on another draw), and what limits the predictor, on the {args.test} held-out "
        f"sub-networks; accuracy measured with {args.threads} thread(s):", "",
        "| quantity | value |", "|---|---|", *noise, "",
        f"Latency (`{LAT}`, drift-corrected, reference baseline "
        f"{', '.join(f'{t} {ms:.2f} ms' for t, ms in baselines.items())}) against a low-noise proxy: the median of "
        f"{args.passes} more passes of the same measurement over all {len(configs)} sub-networks. Two passes agree "
        f"with Kendall tau {lat_rep:.3f} and differ by {100 * lat_mape:.1f}% (mean over pass pairs); held-out {args.test}:", "",
        "| comparison | Kendall tau | MAPE |", "|---|---|---|", *latency, "",
        f"Goals: accuracy tau >= {goal:.3f} (0.9, or the noise ceiling where lower): {verdict(acc_tau >= goal)} "
        f"(held-out {acc_tau:.3f}; the measurement's own noise ceiling is {ceiling:.3f}); "
        f"latency MAPE <= 5%: {verdict(lat_mape_best <= 0.05)} (held-out {100 * lat_mape_best:.2f}%). "
        f"Command: `.venv/bin/python benchmarks/predictor_quality.py {' '.join(sys.argv[1:])}`.",
    ]
    print("\n".join(noise + latency + lines[-1:]))
    if not args.no_write:
        write_section(f"predictor_quality.py ({cfg.name})", "\n".join(lines))  # one section per supernet


if __name__ == "__main__":
    main()
