"""Tiered evaluation against full evaluation: wall time to 99 % of the full-evaluation front's hypervolume.

Needs a trained run directory (default ``runs/demo``, made by ``make demo``). For each strategy and seed, one
search evaluates every sub-network in full (``--evaluations``), and one screens each first
(``--screen-samples`` validation images, ``--screen-repeats`` timed calls) and evaluates in full only what can still enter the front
(budget ``--tiered-budget`` x as many evaluations, since a screened-out one counts as one). Both search the
run's objectives with the run's evaluator, in this process, one thread, no store; both hypervolumes use the
full run's normalisation and score a sub-network both runs evaluated with the full run's measurement of it
(:func:`canonical`: latency noise between two draws is not a difference between the methods). Target: 99 %
of the full run's final hypervolume; the time of an evaluation is when it (and every one before it) completed.
Also prints what a screen, a full evaluation after a screen and a plain full evaluation cost per sub-network.
Goal: tiered / full wall time <= 0.5.

The bound: what a free screen that measured every column exactly would give with the full run's proposals
(:func:`exact_screen_bound`): each sub-network weakly dominated by one evaluated before it is skipped at no
cost. No screen that only drops what cannot enter the front does better with those proposals; ``--history``
computes it for a run's own finished search from its store (no measurement), with the accuracy a dominated
sub-network would have needed to escape (the width a screen's accuracy margin must stay under to drop it);
``--paired N`` adds the margins an N-image screen would have for its accuracy and for the accuracy *difference*
from a neighbouring front member scored on the same images (paired), from per-image results on the front.

Run: .venv/bin/python benchmarks/tiered.py [--run runs/demo] [--seeds 3] [--evaluations 100]
     [--screen-samples N] [--screen-repeats N] (at least one)
     .venv/bin/python benchmarks/tiered.py --run DIR --history [--paired 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import publish  # noqa: E402

from supernas.run import make_evaluator, run_from_dir, trained_supernet  # noqa: E402
from supernas.search import search  # noqa: E402
from supernas.search.pareto import Normalisation, front_indices, minimisation  # noqa: E402
from supernas.search.tiered import may_enter  # noqa: E402
from supernas.store import Store  # noqa: E402

TARGET = 0.99


class Timed:
    """An evaluator (and its screen) that records when each evaluation of a config completed, and its cost."""

    def __init__(self, evaluator: Any) -> None:
        self.evaluator, self.done, self.cost = evaluator, {}, {"screen": [], "full": []}
        self.spent: dict[tuple[str, str], float] = {}
        self.t0 = time.perf_counter()

    def __call__(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        return self._timed("full", self.evaluator, cfg)

    def screen(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        return self._timed("screen", self.evaluator.screen, cfg)

    def _timed(self, kind: str, fn: Any, cfg: Mapping[str, Any]) -> dict[str, float]:
        t = time.perf_counter()
        out = fn(cfg)
        now = time.perf_counter()
        self.cost[kind].append(now - t)
        self.spent[(kind, self.evaluator.space.key(cfg))] = now - t
        self.done[(kind, self.evaluator.space.key(cfg))] = now - self.t0
        return out


def canonical(*results: Any) -> dict[str, Mapping[str, float]]:
    """One set of values per sub-network for scoring every run: its first full evaluation in ``results``
    (in order). Both runs measure latency, so a sub-network both evaluate gets two draws of its noise; scoring
    both with one keeps that noise out of their comparison (their decisions still use their own)."""
    out: dict[str, Mapping[str, float]] = {}
    for result in results:
        for e in result.evaluations:
            if e.status == "ok":
                out.setdefault(e.key, e.values)
    return out


def curve(result: Any, timed: Timed, norm: Any, values: Mapping[str, Mapping[str, float]]) -> list[tuple[float, float]]:
    """(seconds since the start, hypervolume under ``norm`` of the ``values`` of the fully evaluated) after
    each evaluation, in tell order."""
    points, out, t = [], [], 0.0
    for e in result.evaluations:
        kind = "screen" if e.status == "screened" else "full"
        t = max(t, timed.done.get((kind, e.key), t))
        if e.status == "ok":
            points.append(values[e.key])
        out.append((t, norm.hypervolume(points)))
    return out


def time_to(points: list[tuple[float, float]], level: float) -> tuple[float | None, int | None]:
    for i, (t, hv) in enumerate(points):
        if hv >= level:
            return t, i + 1
    return None, None


def exact_screen_bound(rows: list[tuple[Mapping[str, float], float]], norm: Normalisation,
                       level: float) -> tuple[float, float, int, int] | None:
    """(evaluation seconds to ``level`` evaluating everything, the same with each row weakly dominated by an
    earlier one skipped at no cost, rows skipped by then, rows evaluated by then) for ``rows`` of (values,
    seconds) in evaluation order; None if ``level`` is never reached. A free exact screen is the tiered search's
    own decision (:func:`may_enter`) with every margin 0. Dominated rows add no hypervolume, so both reach
    ``level`` at the same row."""
    full = bound = 0.0
    skipped = 0
    for i, (values, seconds) in enumerate(rows):
        dominated = not may_enter(values, [v for v, _ in rows[:i]], norm.columns)
        full += seconds
        bound += 0.0 if dominated else seconds
        skipped += dominated
        if norm.hypervolume([v for v, _ in rows[:i + 1]]) >= level:
            return full, bound, skipped, i + 1
    return None


def bound_cell(got: tuple[float, float, int, int] | None) -> str:
    if got is None:
        return "never"
    full, bound, skipped, n = got
    return f"{bound / full:.2f} ({skipped} of {n} skipped)"


def history(run: str, paired: int | None = None) -> None:
    """The bound for a run's own finished search (its store's evaluations and ``search.json``), printed."""
    cfg, paths = run_from_dir(run)
    if not paths.search_json.exists():
        raise SystemExit(f"{paths.search_json}: no finished search in this run directory")
    found = json.loads(paths.search_json.read_text())
    n = found["normalisation"]
    norm = Normalisation(list(n["columns"]), np.array(n["lower"]), np.array(n["upper"]), float(n["reference"]))
    with Store(paths.results) as db:
        recs = [r for r in db.records(found["run"]) if r.status == "ok"]
    if any(r.elapsed_s is None for r in recs):
        raise SystemExit(f"{paths.results}: the search's evaluations do not all record their seconds")
    rows = [(r.values, float(r.elapsed_s)) for r in recs]  # type: ignore[arg-type]
    level = TARGET * norm.hypervolume([v for v, _ in rows])
    got = exact_screen_bound(rows, norm, level)
    print(f"Run `{run}` ({cfg.name}; {found['strategy']}, seed {found['seed']}, {len(rows)} evaluations, objectives "
          f"{', '.join(norm.columns)}): free exact screen / full evaluation seconds to 99 % of its final "
          f"hypervolume = {bound_cell(got)}.")
    if "accuracy" in norm.columns:
        gaps = escape_gaps([v for v, _ in rows], norm.columns)
        print(f"Accuracy a dominated sub-network lacked to escape its dominators (points): "
              f"{', '.join(f'{100 * g:.2f}' for g in sorted(gaps))}.")
    if paired:
        front = [recs[i] for i in front_indices([r.values for r in recs], norm.columns)[0]]
        paired_margins(cfg, paths, sorted(front, key=lambda r: r.values["macs"]), paired)


def escape_gaps(values: list[Mapping[str, float]], columns: list[str]) -> list[float]:
    """For each row weakly dominated by earlier rows, how much more accuracy it needed to beat all of them."""
    F, acc = minimisation(values, columns), np.array([v["accuracy"] for v in values])
    out = []
    for i in range(1, len(F)):
        by = np.all(F[:i] <= F[i], axis=1)
        if by.any():
            out.append(float(acc[:i][by].max() - acc[i]))
    return out


def paired_margins(cfg: Any, paths: Any, front: list[Any], n: int, z: float = 3.0) -> None:
    """Per-image correctness of each front member on the evaluation set (the run's calibration), and for
    neighbours by MACs the ``z``-sigma margins of an ``n``-image sample: of one's accuracy, and of the paired
    difference (finite-population corrected)."""
    from supernas.measure.screening import binomial_margin

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    net, bundle = trained_supernet(cfg, paths)
    ev = make_evaluator(cfg, net, bundle, columns=["accuracy"])
    right = []
    with torch.no_grad():
        for r in front:
            model = ev.prepare(r.config)
            right.append(np.concatenate([(model(x).argmax(1) == y).numpy() for x, y in ev.eval_loader]))
    C = np.array(right, dtype=float)
    size = C.shape[1]
    pick = np.random.default_rng(0).choice(size, min(n, size), replace=False)
    fpc = np.sqrt(max(size - len(pick), 0) / max(size - 1, 1))
    own, pair, disagree = [], [], []
    for a, b in zip(C[:-1], C[1:]):
        own.append(binomial_margin(float(a[pick].mean()), len(pick), size, z))
        pair.append(z * float((a[pick] - b[pick]).std(ddof=1)) / np.sqrt(len(pick)) * fpc)
        disagree.append(float(np.mean(a != b)))
    print(f"{len(front)} front members, neighbours by MACs ({len(front) - 1} pairs), {len(pick):,}-image sample of "
          f"{size:,}: {z:g}-sigma margin of one's accuracy {100 * np.median(own):.2f} points (median), of the paired "
          f"difference {100 * np.median(pair):.2f} (min {100 * min(pair):.2f}, max {100 * max(pair):.2f}); "
          f"neighbours disagree on {100 * np.median(disagree):.1f} % of the images (median).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo")
    ap.add_argument("--strategies", default="linas,random")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--evaluations", type=int, default=100)
    ap.add_argument("--tiered-budget", type=float, default=2.0)
    ap.add_argument("--screen-samples", type=int, default=None)
    ap.add_argument("--screen-repeats", type=int, default=None)
    ap.add_argument("--screen-z", type=float, default=3.0)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--history", action="store_true", help="only the bound, for the run's own finished search")
    ap.add_argument("--paired", type=int, default=None, help="with --history: paired margins of an N-image screen")
    args = ap.parse_args()
    if args.history:
        return history(args.run, args.paired)
    if args.screen_samples is None and args.screen_repeats is None:
        ap.error("give --screen-samples, --screen-repeats or both")
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    cfg, paths = run_from_dir(args.run)
    net, bundle = trained_supernet(cfg, paths)
    net.eval()
    cols = list(cfg.search.objectives)
    screened = cfg.model_copy(update={"search": cfg.search.model_copy(
        update={"screen_samples": args.screen_samples, "screen_repeats": args.screen_repeats,
                "screen_z": args.screen_z})})
    baselines = make_evaluator(cfg, net, bundle).latency_baselines()  # every run times against one reference

    def evaluator(c: Any) -> Any:
        ev = make_evaluator(c, net, bundle)
        ev.keep_latency_baselines(baselines)
        return ev

    rows, ratios = [], {}
    costs: dict[str, list[float]] = {"screen": [], "full after a screen": [], "full": []}
    for strategy in args.strategies.split(","):
        for seed in range(args.seeds):
            full_t = Timed(evaluator(cfg))
            full = search(net.space, full_t, cols, strategy=strategy, evaluations=args.evaluations, seed=seed,
                          progress=False)
            tiered_ev = evaluator(screened)
            tiered_t = Timed(tiered_ev)
            tiered = search(net.space, tiered_t, cols, strategy=strategy, seed=seed, progress=False, tiered=True,
                            evaluations=int(args.evaluations * args.tiered_budget))
            norm = full.normalisation
            values = canonical(full, tiered)
            fc, tc = curve(full, full_t, norm, values), curve(tiered, tiered_t, norm, values)
            level = TARGET * fc[-1][1]
            (ft, fe), (tt, te) = time_to(fc, level), time_to(tc, level)
            out = sum(e.status == "screened" for e in tiered.evaluations)
            ratio = tt / ft if tt is not None and ft else None
            bound = exact_screen_bound([(e.values, full_t.spent[("full", e.key)]) for e in full.evaluations
                                        if e.status == "ok"], norm, level)
            ratios.setdefault(strategy, []).append(ratio)
            costs["screen"] += tiered_t.cost["screen"]
            costs["full after a screen"] += tiered_t.cost["full"][2:]  # the anchors are not screened
            costs["full"] += full_t.cost["full"]
            rows.append(f"| {strategy} | {seed} | {fc[-1][1]:.4f} | {fe} / {ft:.1f} s | "
                        f"{te if te else 'never'} / {f'{tt:.1f} s' if tt else 'never'} | "
                        f"{out} of {len(tiered.evaluations)} | {tc[-1][1] / fc[-1][1]:.4f} | "
                        f"{f'{ratio:.2f}' if ratio is not None else 'never'} | {bound_cell(bound)} |")
            print(rows[-1], flush=True)
    load1 = os.getloadavg()
    mean = {k: statistics.fmean(v) for k, v in costs.items() if v}
    screen = ", ".join(([f"accuracy on {args.screen_samples} of the {len(bundle.val)} validation images"]
                        if args.screen_samples else []) + ([f"latency from {args.screen_repeats} calls (full: "
                        f"{cfg.targets['cpu'].repeats if 'cpu' in cfg.targets else 30})"] if args.screen_repeats else []))
    lines = [f"Run `{args.run}` ({cfg.name}; objectives {', '.join(cols)}). A screen measures {screen}, margins "
             f"{args.screen_z:g} standard errors; everything else in full. Full runs: {args.evaluations} evaluations; tiered runs: "
             f"up to {int(args.evaluations * args.tiered_budget)} (a screened-out one counts as one). One thread, "
             f"no store; load {load0[0]:.2f} before, {load1[0]:.2f} after.", "",
             "| strategy | seed | full HV | full: evals / s to 99% | tiered: evals / s to 99% | screened out | "
             "tiered final HV / full | time ratio | bound: free exact screen |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
             "Seconds per sub-network: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()) + ". A screened-out "
             f"sub-network costs {mean['screen'] / mean['full']:.2f} of a full evaluation, one that goes on "
             f"{(mean['screen'] + mean['full after a screen']) / mean['full']:.2f}. Bound: evaluation seconds to 99 % "
             "if each full-run sub-network dominated by an earlier one had been skipped at no cost, over the "
             "same without skipping (strategy time excluded): no screen that drops only what cannot enter the "
             "front does better with the full run's proposals. Hypervolumes score a sub-network both runs "
             "evaluated in full with the full run's measurement of it."]
    for strategy, rs in ratios.items():
        got = [r for r in rs if r is not None]
        med = statistics.median(got) if len(got) == len(rs) else None
        lines.append(f"**{strategy}: tiered / full wall time to 99 % = "
                     f"{f'{med:.2f}' if med is not None else 'not reached in every seed'}** (median of "
                     f"{len(rs)} seeds; goal <= 0.5: {'met' if med is not None and med <= 0.5 else 'not met'}).")
    if args.screen_samples is None:
        lines.append("Accuracy (on all the validation images) and BN recalibration are measured in full inside the "
                     "screen, so a screen saves only the timed calls it does not make; `random` proposes the same "
                     "sub-networks whatever it is told, so it reaches the target after the same evaluations.")
    publish("tiered.py", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
