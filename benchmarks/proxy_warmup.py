"""A zero-cost proxy as LINAS's warm start, against MACs, on the committed exhaustive table.

LINAS starts from ``initial`` (20) uniform samples. Three ways to choose them from one seeded pool of
``--pool`` uniform samples: ``random`` (LINAS's default: the first ones), ``macs-strata`` (the pool cut into
``initial`` equal-count MACs strata, one random pick in each: the best use of MACs alone, a cost-diverse start)
and ``<proxy>-strata`` (in each MACs stratum, the sub-network the proxy ranks best). The proxy is measured on
the table's supernet, retrained as ``benchmarks/make_table.py`` trains it (``--work``), for every sub-network
of the table, with their accuracy (both cached in ``<work>/proxies.db``): the table's MACs and latency
(architecture only) with that accuracy are the table searched. The proxy's Kendall tau against accuracy is
printed next to MACs'. Each variant runs LINAS (ridge predictors, as ``benchmarks/strategies.py``) for ``--budget``
evaluations on the table, ``--seeds`` seeds; cells as in strategies.py. The proxy is switched on for LINAS
only if it reaches 99 % of the true front's hypervolume in fewer evaluations than both others.

Run: .venv/bin/python benchmarks/proxy_warmup.py [--proxy naswot] [--seeds 5] [--budget 300]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402
from make_table import table_supernet  # noqa: E402

from supernas.bench import TabularEvaluator, load_table, make_table  # noqa: E402
from supernas.bench.compare import hypervolume_curve, markdown, summarise  # noqa: E402
from supernas.measure import Evaluator  # noqa: E402
from supernas.search import search  # noqa: E402
from supernas.search.linas import LINAS  # noqa: E402
from supernas.search.session import EvaluationSession  # noqa: E402

TABLE = Path(__file__).parent / "data" / "mbv3_digits.csv"
Pick = Callable[[list[dict], int, random.Random], list[dict]]


class WarmLINAS(LINAS):
    """LINAS whose first uniform draw after the anchors is replaced by ``pick`` over a pool of ``pool``."""

    def __init__(self, *args: Any, pick: Pick, pool: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pick, self.pool, self.warm = pick, pool, False

    def random_unseen(self, n: int, exclude: Any = (), tries: int = 50) -> list[dict]:
        if self.warm or n < 2:
            return super().random_unseen(n, exclude, tries)
        self.warm = True
        return self.pick(super().random_unseen(self.pool, exclude, tries), n, random.Random(self.seed))


def strata(values: Mapping[str, Mapping[str, float]], space: Any, proxy: str | None) -> Pick:
    """One pick per equal-count MACs stratum of the pool: random, or the best by ``proxy``."""
    def pick(pool: list[dict], n: int, rng: random.Random) -> list[dict]:
        order = sorted(pool, key=lambda c: values[space.key(c)]["macs"])
        groups = np.array_split(np.arange(len(order)), n)
        if proxy is None:
            return [order[int(rng.choice(list(g)))] for g in groups]
        return [order[max(g, key=lambda i: values[space.key(order[i])][proxy])] for g in groups]
    return pick


def first(pool: list[dict], n: int, rng: random.Random) -> list[dict]:
    return pool[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default="naswot")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--pool", type=int, default=200)
    ap.add_argument("--work", default="runs/bench_table")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load0 = os.getloadavg()
    table = load_table(TABLE)
    net, bundle, _ = table_supernet(Path(args.work))
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    configs = list(table.frame["config"])
    measured = {}
    for col, calib in ((args.proxy, 0), ("accuracy", 10)):  # as make_table.py measures accuracy
        scorer = Evaluator(net.eval(), [col], data=bundle, calib_batches=calib)
        with EvaluationSession(table.space, scorer, [col], store=Path(args.work) / "proxies.db", run=col,
                               meta={"kind": "proxy-warmup", "column": col}) as session:
            measured[col] = {got.key: got.outcome.values[col] for got in session.evaluate_many(configs)}
    measure_s = time.perf_counter() - t0
    # MACs and latency depend on the architecture only: the table's; accuracy on the retrained weights
    values = {k: {**v, "accuracy": measured["accuracy"][k], args.proxy: measured[args.proxy][k]}
              for k, v in table.values().items()}
    table = make_table(table.space, table.columns, values, meta=table.meta)
    acc = [values[k]["accuracy"] for k in values]
    tau = {c: float(kendalltau([values[k][c] for k in values], acc).statistic) for c in ("macs", args.proxy)}

    cols = list(table.columns)
    norm = table.normalisation(cols)
    true_hv = norm.hypervolume(table.rows(cols))
    bounds = {c: (float(table.frame[c].min()), float(table.frame[c].max())) for c in cols}
    variants = {"random": first, "macs-strata": strata(values, table.space, None),
                f"{args.proxy}-strata": strata(values, table.space, args.proxy)}
    frames = []
    t1 = time.perf_counter()
    for name, pick in variants.items():
        for seed in range(args.seeds):
            strat = WarmLINAS(table.space, cols, seed=seed, models=("ridge",), pick=pick, pool=args.pool)
            res = search(table.space, TabularEvaluator(table), cols, strategy=strat, evaluations=args.budget,
                         seed=seed, progress=False, bounds=bounds)
            got = [e.values for e in res.evaluations if e.status == "ok"]
            curve = hypervolume_curve(norm, got, [True] * len(got), true_hv)
            frames.append(pd.DataFrame({"strategy": name, "seed": seed, "evaluation": np.arange(1, len(curve) + 1),
                                        "relative_hv": curve}))
            print(name, seed, f"{curve[-1]:.4f}", flush=True)
    budgets = [k for k in (25, 50, 100, 200, 300) if k <= args.budget]
    _, summary = summarise(pd.concat(frames, ignore_index=True), budgets)
    med = dict(zip(summary["strategy"], summary["evals99 median"]))
    best = min(med, key=lambda s: med[s])
    on = med[f"{args.proxy}-strata"] < min(med["random"], med["macs-strata"])
    load1 = os.getloadavg()
    body = "\n".join([
        f"The {len(values)} sub-networks of `benchmarks/data/mbv3_digits.csv` with its MACs and latency (they depend "
        f"on the architecture only) and accuracy and `{args.proxy}` measured on the supernet retrained as "
        f"`make_table.py` trains it ({int(table.frame['on_front'].sum())} on the front; {measure_s:.0f} s this call, "
        f"cached ones read back). Kendall tau vs accuracy: "
        f"{args.proxy} {tau[args.proxy]:+.3f}, macs {tau['macs']:+.3f}. LINAS (ridge), {args.seeds} seeds, "
        f"{args.budget} evaluations; warm start = its 18 draws after the two anchors, chosen from a pool of "
        f"{args.pool} uniform samples. Searches {time.perf_counter() - t1:.0f} s; load {load0[0]:.2f} before, "
        f"{load1[0]:.2f} after.", "", markdown(summary, budgets), "",
        f"Fewest evaluations to 99 %: {best}. **{args.proxy} warm start: "
        f"{'switched on' if on else 'not switched on'}** (it must beat both the random and the MACs-strata "
        "start)."])
    print(body)
    if not args.no_write:
        write_section("proxy_warmup.py", body)


if __name__ == "__main__":
    main()
