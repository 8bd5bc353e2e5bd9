"""PNG plots of a run: the Pareto front for every pair of objectives, and hypervolume over evaluations."""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..errors import ConfigError  # noqa: E402
from ..measure.objectives import direction, split_column  # noqa: E402
from .front import check_columns, pareto_mask  # noqa: E402


def axis_label(column: str) -> str:
    name, _ = split_column(column)
    return f"{name} ({'higher' if direction(column) == 'max' else 'lower'} is better)"


def objective_pairs(columns: Sequence[str]) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """One entry per pair of distinct objectives: (y objective, x objective, series), each series being
    (y column, x column, target label). An objective measured on several targets gives one series per
    target (matched by target when both objectives are per target). Maximised objectives go on y."""
    by_name: dict[str, list[str]] = {}
    for col in columns:
        by_name.setdefault(split_column(col)[0], []).append(col)
    pairs = []
    for a, b in itertools.combinations(by_name, 2):
        if direction(by_name[b][0]) == "max" and direction(by_name[a][0]) == "min":
            a, b = b, a
        ys, xs = by_name[a], by_name[b]
        targets_y = {split_column(c)[1]: c for c in ys}
        targets_x = {split_column(c)[1]: c for c in xs}
        common = [t for t in targets_y if t in targets_x]
        if len(ys) > 1 and len(xs) > 1 and common:
            series = [(targets_y[t], targets_x[t], t) for t in common]
        else:
            series = [(y, x, split_column(y)[1] or split_column(x)[1] or "all") for y in ys for x in xs]
        pairs.append((a, b, series))
    return pairs


def file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def reference_series(reference: tuple[str, pd.DataFrame], target: str, i: int, n_series: int) -> tuple[str, int]:
    """(legend label, colour index) of ``reference``'s points beside series ``i`` of ``n_series`` (the series'
    target named when there are several; colours after the series' own)."""
    return reference[0] + (f" · {target}" if n_series > 1 else ""), i + n_series


def plot_front_pair(df: pd.DataFrame, y_name: str, x_name: str, series: Sequence[tuple[str, str, str]],
                    path: Path, knee: Any = None, constraints: Any = None,
                    reference: tuple[str, pd.DataFrame] | None = None) -> Path:
    """All points of each series faint, its 2-D front (of the feasible points) bold and joined, the overall
    knee starred; ``reference`` (label, evaluations of the same columns) as hollow points, its front dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=100)
    colours = plt.get_cmap("tab10").colors
    for i, (ycol, xcol, target) in enumerate(series):
        colour = colours[i % len(colours)]
        x = pd.to_numeric(df[xcol], errors="coerce").to_numpy(float)
        y = pd.to_numeric(df[ycol], errors="coerce").to_numpy(float)
        ax.scatter(x, y, s=14, color=colour, alpha=0.3, linewidths=0, label=f"{target}: evaluated")
        on_front = pareto_mask(df, [ycol, xcol], constraints)
        order = np.argsort(x[on_front], kind="stable")
        ax.plot(x[on_front][order], y[on_front][order], "o-", color=colour, markersize=6,
                drawstyle="steps-post" if direction(ycol) == "max" else "default",
                label=f"{target}: front ({int(on_front.sum())})")
        if knee is not None and knee in df.index:
            pos = df.index.get_loc(knee)
            ax.scatter([x[pos]], [y[pos]], marker="*", s=220, color="black", zorder=5,
                       label="knee (all objectives)" if i == 0 else None)
        if reference is not None:
            label, c = reference_series(reference, target, i, len(series))
            ref, colour = reference[1], colours[c % len(colours)]
            rx = pd.to_numeric(ref[xcol], errors="coerce").to_numpy(float)
            ry = pd.to_numeric(ref[ycol], errors="coerce").to_numpy(float)
            ax.scatter(rx, ry, s=30, facecolors="none", edgecolors=colour, label=f"{label}: evaluated")
            ref_front = pareto_mask(ref, [ycol, xcol], constraints)
            order = np.argsort(rx[ref_front], kind="stable")
            ax.plot(rx[ref_front][order], ry[ref_front][order], "--", color=colour,
                    drawstyle="steps-post" if direction(ycol) == "max" else "default",
                    label=f"{label}: front ({int(ref_front.sum())})")
    ax.set_xlabel(axis_label(series[0][1]))
    ax.set_ylabel(axis_label(series[0][0]))
    ax.set_title(f"{y_name} vs {x_name}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def plot_fronts(df: pd.DataFrame, columns: Sequence[str], out_dir: str | Path, knee: Any = None,
                constraints: Any = None, reference: tuple[str, pd.DataFrame] | None = None) -> list[Path]:
    """One ``front_<y>_vs_<x>.png`` per pair of objectives in ``out_dir``; returns their paths."""
    cols = check_columns(df, columns)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [plot_front_pair(df, y, x, series, out / f"front_{file_safe(y)}_vs_{file_safe(x)}.png", knee, constraints,
                            reference)
            for y, x, series in objective_pairs(cols)]


def plot_hypervolume(history: Sequence[tuple[int, float]], path: str | Path) -> Path:
    """Hypervolume (y) after each number of evaluations (x), as a PNG."""
    hist = np.asarray(list(history), dtype=float)
    if hist.ndim != 2 or hist.shape[1] != 2 or len(hist) == 0:
        raise ConfigError("hypervolume history must be a non-empty list of (evaluation index, hypervolume)")
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.plot(hist[:, 0], hist[:, 1], "o-", markersize=3, drawstyle="steps-post")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (higher is better)")
    ax.set_title("hypervolume of the front over the search")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
