"""Tiered evaluation against full evaluation: wall time to 99 % of the full-evaluation front's hypervolume.

Needs a trained run directory (default ``runs/demo``, made by ``make demo``). For each strategy and seed, one
search evaluates every sub-network in full (``--evaluations``), and one screens each first
(``--screen-samples`` validation images, ``--screen-repeats`` timed calls) and evaluates in full only what can still enter the front
(budget ``--tiered-budget`` x as many evaluations, since a screened-out one counts as one). Both search the
run's objectives with the run's evaluator, in this process, one thread, no store; both hypervolumes use the
full run's normalisation. Target: 99 % of the full run's final hypervolume; the time of an evaluation is when
it (and every one before it) completed. Also prints what a screen, a full evaluation after a screen and a
plain full evaluation cost per sub-network. Goal: tiered / full wall time <= 0.5.

Run: .venv/bin/python benchmarks/tiered.py [--run runs/demo] [--seeds 3] [--evaluations 100]
     [--screen-samples N] [--screen-repeats N] (at least one)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import publish  # noqa: E402

from supernas.run import make_evaluator, run_from_dir, trained_supernet  # noqa: E402
from supernas.search import search  # noqa: E402

TARGET = 0.99


class Timed:
    """An evaluator (and its screen) that records when each evaluation of a config completed, and its cost."""

    def __init__(self, evaluator: Any) -> None:
        self.evaluator, self.done, self.cost = evaluator, {}, {"screen": [], "full": []}
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
        self.done[(kind, self.evaluator.space.key(cfg))] = now - self.t0
        return out


def curve(result: Any, timed: Timed, norm: Any) -> list[tuple[float, float]]:
    """(seconds since the start, hypervolume under ``norm``) after each evaluation, in tell order."""
    points, out, t = [], [], 0.0
    for e in result.evaluations:
        kind = "screen" if e.status == "screened" else "full"
        t = max(t, timed.done.get((kind, e.key), t))
        if e.status == "ok":
            points.append(e.values)
        out.append((t, norm.hypervolume(points)))
    return out


def time_to(points: list[tuple[float, float]], level: float) -> tuple[float | None, int | None]:
    for i, (t, hv) in enumerate(points):
        if hv >= level:
            return t, i + 1
    return None, None


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
    args = ap.parse_args()
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
            fc, tc = curve(full, full_t, norm), curve(tiered, tiered_t, norm)
            level = TARGET * fc[-1][1]
            (ft, fe), (tt, te) = time_to(fc, level), time_to(tc, level)
            out = sum(e.status == "screened" for e in tiered.evaluations)
            ratio = tt / ft if tt is not None and ft else None
            ratios.setdefault(strategy, []).append(ratio)
            costs["screen"] += tiered_t.cost["screen"]
            costs["full after a screen"] += tiered_t.cost["full"][2:]  # the anchors are not screened
            costs["full"] += full_t.cost["full"]
            rows.append(f"| {strategy} | {seed} | {fc[-1][1]:.4f} | {fe} / {ft:.1f} s | "
                        f"{te if te else 'never'} / {f'{tt:.1f} s' if tt else 'never'} | "
                        f"{out} of {len(tiered.evaluations)} | {tc[-1][1] / fc[-1][1]:.4f} | "
                        f"{f'{ratio:.2f}' if ratio is not None else 'never'} |")
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
             "tiered final HV / full | time ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
             "Seconds per sub-network: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()) + ". A screened-out "
             f"sub-network costs {mean['screen'] / mean['full']:.2f} of a full evaluation, one that goes on "
             f"{(mean['screen'] + mean['full after a screen']) / mean['full']:.2f}."]
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
