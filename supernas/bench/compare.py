"""Side-by-side strategy comparison on a benchmark table.

Every strategy runs through the real search driver (``supernas.search.search``) with a
:class:`TabularEvaluator`, for several seeds; pymoo's NSGA-II called directly (``pymoo-nsga2``) and DyNAS-T's
own LINAS (``dynast-linas``, when the ``dynast`` package is installed) are the outside references. Scores use one fixed normalisation, the table's full range per column, so the
hypervolume of any evaluated set is comparable to the true front's: *relative hypervolume*
``HV(evaluated) / HV(table)`` is 1 exactly when the true front's hypervolume is recovered. With
``constraints`` every strategy (and the true front) counts only feasible sub-networks, and the
``constrained`` strategy takes part; without them it is skipped (it needs a budget to optimise under).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..search import list_strategies, parse_constraints, search
from ..search.pareto import Normalisation
from .dynast_peer import DYNAST_NAME, dynast_problem, run_dynast_linas
from .reference import PYMOO_NAME, run_pymoo_nsga2
from .table import Table
from .tabular import TabularEvaluator

DEFAULT_STRATEGIES = ("random", "nsga2", "agemoea", "linas", "constrained", "optuna", PYMOO_NAME)
DEFAULT_BUDGETS = (50, 100, 200, 400)
LEVELS = (0.95, 0.99)
CHEAP = ("random", PYMOO_NAME)  # strategies with no model to fit: affordable far beyond the budget


def hypervolume_curve(norm: Normalisation, rows: Sequence[Mapping[str, float]], feasible: Sequence[bool],
                      reference_hv: float) -> np.ndarray:
    """Relative hypervolume after each of ``rows`` (infeasible rows never count); recomputed only when a
    new point is not dominated by the current front."""
    F = norm.transform(rows) if rows else np.zeros((0, len(norm.columns)))
    curve = np.zeros(len(F))
    kept: list[int] = []
    hv = 0.0
    for i, (f, ok) in enumerate(zip(F, feasible)):
        if ok and not any(np.all(F[j] <= f) for j in kept):
            kept = [j for j in kept if not np.all(f <= F[j])] + [i]
            hv = norm.hypervolume([rows[j] for j in kept])
        curve[i] = hv / reference_hv if reference_hv > 0 else 1.0
    return curve


def evaluations_to_reach(curve: np.ndarray, level: float) -> float:
    """1-based number of evaluations after which ``curve >= level`` (``inf`` when never)."""
    hit = np.nonzero(curve >= level - 1e-12)[0]
    return float(hit[0] + 1) if len(hit) else float("inf")


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    out = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not out:
        raise ConfigError("compare_strategies needs at least one seed")
    return out


def _check_strategies(strategies: Sequence[str]) -> list[str]:
    known = set(list_strategies()) | {PYMOO_NAME, DYNAST_NAME}
    bad = [s for s in strategies if s not in known]
    if bad:
        raise ConfigError(f"unknown strategy {bad[0]!r}; known: {', '.join(sorted(known))}")
    if not strategies:
        raise ConfigError("compare_strategies needs at least one strategy")
    if DYNAST_NAME in strategies and (why := dynast_problem()) is not None:
        raise ConfigError(f"{DYNAST_NAME}: {why}")
    return list(dict.fromkeys(strategies))


def run_curves(table: Table, columns: Sequence[str] | None = None, *, strategies: Sequence[str] = DEFAULT_STRATEGIES,
               seeds: int | Sequence[int] = 5, budget: int = 400, constraints: Any = None,
               strategy_options: Mapping[str, Mapping[str, Any]] | None = None, progress: bool = False,
               cheap_budget: int | None = None) -> pd.DataFrame:
    """Relative-hypervolume curves: one row per (strategy, seed, evaluation) with ``relative_hv``.
    ``budget`` evaluations per run; the cheap strategies (``random``, ``pymoo-nsga2``) get ``cheap_budget``
    (when larger) so their evaluations-to-99% can be counted beyond ``budget``."""
    cols = table._check(columns)
    cons = parse_constraints(constraints)
    names = [s for s in _check_strategies(strategies) if s != "constrained" or cons]
    if budget < 1:
        raise ConfigError(f"the budget must be at least 1 evaluation, got {budget}")
    norm = table.normalisation(cols)
    rows = table.rows(cols)
    feasible_rows = [r for r in rows if all(c.ok(r) for c in cons)]
    if not feasible_rows:
        raise ConfigError("no sub-network of the table satisfies the constraints")
    true_hv = norm.hypervolume(feasible_rows)
    bounds = {c: (float(table.frame[c].min()), float(table.frame[c].max())) for c in cols}
    evaluator = TabularEvaluator(table)
    opts = dict(strategy_options or {})
    frames = []
    from rich.progress import Progress

    with Progress(disable=not progress) as bar:
        task = bar.add_task("strategies", total=len(names) * len(_seeds(seeds)))
        for name in names:
            n = max(budget, cheap_budget or 0) if name in CHEAP else budget
            for seed in _seeds(seeds):
                if name == PYMOO_NAME:
                    signs = np.array([1.0 if norm_sign > 0 else -1.0 for norm_sign in _signs(cols)])
                    got = run_pymoo_nsga2(evaluator, cols, signs, min(n, len(table)), seed, constraints=cons,
                                          **dict(opts.get(name, {})))
                elif name == DYNAST_NAME:
                    if cons:
                        raise ConfigError(f"{DYNAST_NAME} searches without constraints; compare it unconstrained")
                    got = run_dynast_linas(evaluator, cols, min(n, len(table)), seed, **dict(opts.get(name, {})))
                else:
                    res = search(table.space, evaluator, cols, strategy=name, evaluations=min(n, len(table)),
                                 seed=seed, constraints=cons or None, progress=False, bounds=bounds,
                                 strategy_options=opts.get(name))
                    got = [e.values for e in res.evaluations if e.status == "ok"]
                curve = hypervolume_curve(norm, got, [all(c.ok(v) for c in cons) for v in got], true_hv)
                if len(curve) < n:  # the space ran out: the curve stays where it ended
                    curve = np.concatenate([curve, np.full(n - len(curve), curve[-1] if len(curve) else 0.0)])
                frames.append(pd.DataFrame({"strategy": name, "seed": seed, "evaluation": np.arange(1, n + 1),
                                            "relative_hv": curve}))
                bar.advance(task)
    return pd.concat(frames, ignore_index=True)


def _signs(columns: Sequence[str]) -> list[float]:
    from ..measure.objectives import sign

    return [float(sign(c)) for c in columns]


def summarise(curves: pd.DataFrame, budgets: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-run table, per-strategy summary): relative HV at each budget, evaluations to reach 95%/99%
    (median and quartiles over seeds; ``inf`` = not reached within the runs' budget)."""
    runs = []
    for (name, seed), g in curves.groupby(["strategy", "seed"], sort=False):
        curve = g["relative_hv"].to_numpy()
        row: dict[str, Any] = {"strategy": name, "seed": seed}
        for k in budgets:
            row[f"hv@{k}"] = float(curve[min(k, len(curve)) - 1])
        for level in LEVELS:
            row[f"evals{round(level * 100)}"] = evaluations_to_reach(curve, level)
        runs.append(row)
    per_run = pd.DataFrame(runs)
    summary = []
    for name, g in per_run.groupby("strategy", sort=False):
        row = {"strategy": name, "seeds": len(g)}
        for k in budgets:
            row[f"hv@{k} median"] = float(g[f"hv@{k}"].median())
        for level in LEVELS:
            col = f"evals{round(level * 100)}"
            v = g[col].to_numpy()
            row[f"{col} median"] = float(np.median(v))
            with np.errstate(invalid="ignore"):  # inf (never reached) is a valid order statistic
                q25, q75 = np.quantile(v, [0.25, 0.75], method="lower"), np.quantile(v, [0.25, 0.75], method="higher")
            row[f"{col} q25"], row[f"{col} q75"] = float(q25[0]), float(q75[1])
            row[f"{col} reached"] = int(np.isfinite(v).sum())
        summary.append(row)
    return per_run, pd.DataFrame(summary)


def markdown(summary: pd.DataFrame, budgets: Sequence[int]) -> str:
    """The summary as a Markdown table: median relative HV at each budget, evaluations to 95%/99%."""
    def evals(r: pd.Series, col: str) -> str:
        f = lambda v: "never" if not np.isfinite(v) else f"{v:.0f}"  # noqa: E731
        return f"{f(r[col + ' median'])} [{f(r[col + ' q25'])}–{f(r[col + ' q75'])}] ({r[col + ' reached']}/{r['seeds']})"

    rows = [{"strategy": r["strategy"], **{f"rel. HV @{k}": f"{r[f'hv@{k} median']:.4f}" for k in budgets},
             "evals to 95%": evals(r, "evals95"), "evals to 99%": evals(r, "evals99")}
            for _, r in summary.iterrows()]
    return pd.DataFrame(rows).to_markdown(index=False)


def plot_curves(curves: pd.DataFrame, path: str | os.PathLike) -> Path:
    """PNG of median relative hypervolume (quartile band) vs evaluations, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, g in curves.groupby("strategy", sort=False):
        q = g.groupby("evaluation")["relative_hv"].quantile([0.25, 0.5, 0.75]).unstack()
        ax.plot(q.index, q[0.5], label=name)
        ax.fill_between(q.index, q[0.25], q[0.75], alpha=0.15)
    for level in LEVELS:
        ax.axhline(level, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume / true front's hypervolume")
    ax.set_ylim(max(0.0, float(curves["relative_hv"].quantile(0.05)) - 0.05), 1.005)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compare_strategies(table: Table, columns: Sequence[str] | None = None, *,
                       strategies: Sequence[str] = DEFAULT_STRATEGIES, seeds: int | Sequence[int] = 5,
                       budgets: Sequence[int] = DEFAULT_BUDGETS, out_dir: str | os.PathLike | None = None,
                       constraints: Any = None, strategy_options: Mapping[str, Mapping[str, Any]] | None = None,
                       progress: bool = False, cheap_budget: int | None = None) -> pd.DataFrame:
    """Run each strategy for each seed on ``table`` (``columns``: default all of the table's) with
    ``max(budgets)`` evaluations; returns the per-strategy summary (see :func:`summarise`).

    ``cheap_budget``: longer runs for ``random`` and ``pymoo-nsga2`` (see :func:`run_curves`).
    ``seeds`` is a count (seeds 0..n-1) or a list. ``strategy_options`` maps a strategy name to its options.
    With ``out_dir`` writes ``runs.csv``, ``curves.csv``, ``summary.csv``, ``summary.md`` and
    ``relative_hv.png`` there."""
    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] < 1:
        raise ConfigError(f"budgets must be positive evaluation counts, got {list(budgets)}")
    curves = run_curves(table, columns, strategies=strategies, seeds=seeds, budget=budgets[-1],
                        constraints=constraints, strategy_options=strategy_options, progress=progress,
                        cheap_budget=cheap_budget)
    per_run, summary = summarise(curves, budgets)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        per_run.to_csv(out / "runs.csv", index=False)
        curves.to_csv(out / "curves.csv", index=False, float_format="%.6g")
        summary.to_csv(out / "summary.csv", index=False)
        (out / "summary.md").write_text(markdown(summary, budgets) + "\n")
        plot_curves(curves, out / "relative_hv.png")
    return summary
