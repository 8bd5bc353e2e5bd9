"""Interactive plots of a run (plotly), for a page that works offline: plotly.js is inlined once
(``plotly_js``) and every figure is a ``<div class="plotly-plot">`` with its figure as JSON next to it
(``plot_block``), drawn by ``BOOT_JS``. The front comes from ``pareto_mask`` (constraints honoured)."""
from __future__ import annotations

import functools
import html
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from ..measure.objectives import direction
from ..search.pareto import REFERENCE
from .arch import arch_summary, parse_config, short_name
from .front import config_text, pareto_mask
from .plots import axis_label, file_safe, objective_pairs, reference_series

_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
_URL_ATTR = re.compile(r"""((?:src|href)=["'](?:https?:)?)//""")

BOOT_JS = """
document.querySelectorAll("div.plotly-plot").forEach(function (div) {
  var fig = JSON.parse(document.getElementById(div.id + "-fig").textContent);
  Plotly.newPlot(div, fig.data, fig.layout, {responsive: true, displaylogo: false});
});
"""


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js to inline in a ``<script>``. The map-attribution links in the bundle are written with
    ``\\/\\/`` (the same string in JavaScript) so the page holds no remote ``href=``/``src=`` text."""
    from plotly.offline import get_plotlyjs

    return _URL_ATTR.sub(r"\1\\/\\/", get_plotlyjs()).replace("</script", "<\\/script")


def figure_json(fig: go.Figure) -> str:
    """The figure as JSON safe inside ``<script type="application/json">`` (``<``, ``>``, ``&`` escaped)."""
    text = pio.to_json(fig, validate=False, pretty=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def plot_block(plot_id: str, fig: go.Figure, height: int = 460) -> str:
    """The plot's ``<div>`` and its figure JSON (``<script id="<plot_id>-fig">``); a figure with its own
    layout height gets that height and the page's full width."""
    pid = html.escape(plot_id, quote=True)
    wide = " wide" if fig.layout.height else ""
    return (f'<div class="plotly-plot{wide}" id="{pid}" style="height:{fig.layout.height or height}px"></div>'
            f'<script type="application/json" id="{pid}-fig">{figure_json(fig)}</script>')


def hover_texts(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Per row: short name, every objective and the architecture summary (HTML-escaped, ``<br>`` lines)."""
    out = []
    for _, row in df.iterrows():
        key = row["key"] if "key" in df.columns else config_text(row)
        lines = [f"<b>{html.escape(short_name(key))}</b>"]
        lines += [f"{html.escape(c)}: {_num(row[c])}" for c in columns]
        summary = arch_summary(parse_config(row.get("config", key)), sep="\n")
        lines += [html.escape(s) for s in summary.splitlines()]
        out.append("<br>".join(lines))
    return out


def _num(value: Any) -> str:
    try:
        return f"{float(value):.5g}"
    except (TypeError, ValueError):
        return html.escape(str(value))


def _values(df: pd.DataFrame, col: str) -> list[float | None]:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
    return [None if np.isnan(a) else float(a) for a in v]


def _layout(title: str, x: str, y: str) -> dict[str, Any]:
    return dict(title=dict(text=html.escape(title)), template="plotly_white", hovermode="closest",
                margin=dict(l=70, r=20, t=50, b=60), legend=dict(orientation="h", y=-0.18),
                xaxis=dict(title=dict(text=html.escape(x))), yaxis=dict(title=dict(text=html.escape(y))))


def front_figure(df: pd.DataFrame, y_name: str, x_name: str, series: Sequence[tuple[str, str, str]],
                 hover: Sequence[str], knee: Any = None, marks: Mapping[str, Any] | None = None,
                 constraints: Any = None, reference: tuple[str, pd.DataFrame] | None = None) -> go.Figure:
    """One marker trace per series with every evaluation (front points coloured, the knee a star, marked
    rows diamonds), a line through its front, and an annotation per knee / marked row. The legend entry
    is a point-less proxy (plotly would draw it with the first point's symbol). ``reference`` (label,
    evaluations of the same columns: a quantized run's FP32 measurements) adds hollow markers and a dashed
    front per series."""
    marks = {k: v for k, v in (marks or {}).items() if v in df.index}
    labels: dict[Any, list[str]] = {knee: ["knee"]} if knee is not None and knee in df.index else {}
    for name, idx in marks.items():
        if name not in labels.setdefault(idx, []):
            labels[idx].append(name)
    fig = go.Figure()
    annotations = []
    for i, (ycol, xcol, target) in enumerate(series):
        colour = _COLOURS[i % len(_COLOURS)]
        x, y = _values(df, xcol), _values(df, ycol)
        on_front = pareto_mask(df, [ycol, xcol], constraints)
        symbols = ["star" if idx == knee else "diamond" if idx in labels else "circle" for idx in df.index]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="markers", name=f"{target}: evaluated ({len(df)})", meta="evaluations",
            legendgroup=target, showlegend=False, hovertext=list(hover),
            hovertemplate=f"%{{hovertext}}<extra>{html.escape(target)}</extra>",
            marker=dict(color=[colour if f else "#b8b8b8" for f in on_front], symbol=symbols,
                        size=[16 if idx in labels else 9 if f else 6 for idx, f in zip(df.index, on_front)],
                        line=dict(width=[1.5 if idx in labels else 0 for idx in df.index], color="#222"),
                        opacity=[1.0 if f or idx in labels else 0.6 for idx, f in zip(df.index, on_front)])))
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{target}: evaluated ({len(df)})",
                                 meta="legend", legendgroup=target, marker=dict(color=colour, size=8)))
        pos = np.flatnonzero(on_front)
        order = pos[np.argsort([x[p] for p in pos], kind="stable")]
        fig.add_trace(go.Scatter(x=[x[p] for p in order], y=[y[p] for p in order], mode="lines",
                                 name=f"{target}: front ({len(pos)})", meta="front", hoverinfo="skip",
                                 legendgroup=target,
                                 line=dict(color=colour, width=2,
                                           shape="hv" if direction(ycol) == "max" else "linear")))
        for idx, names in labels.items():
            p = df.index.get_loc(idx)
            if x[p] is not None and y[p] is not None:
                annotations.append(dict(x=x[p], y=y[p], text=html.escape(", ".join(names)), showarrow=True,
                                        arrowhead=2, ax=30, ay=-30, font=dict(size=11)))
        if reference is not None:
            label, c = reference_series(reference, target, i, len(series))
            _reference_traces(fig, reference[1], ycol, xcol, label, _COLOURS[c % len(_COLOURS)], constraints)
    fig.update_layout(**_layout(f"{y_name} vs {x_name}", axis_label(series[0][1]), axis_label(series[0][0])),
                      annotations=annotations)
    return fig


def _reference_traces(fig: go.Figure, ref: pd.DataFrame, ycol: str, xcol: str, label: str, colour: str,
                      constraints: Any) -> None:
    """Every reference evaluation as a hollow marker and a dashed line through the reference's front."""
    x, y = _values(ref, xcol), _values(ref, ycol)
    on_front = pareto_mask(ref, [ycol, xcol], constraints)
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=f"{label}: evaluated ({len(ref)})", meta="reference",
                             hovertext=hover_texts(ref, [ycol, xcol]), legendgroup=label,
                             hovertemplate=f"%{{hovertext}}<extra>{html.escape(label)}</extra>",
                             marker=dict(symbol="circle-open", color=colour, size=9, line=dict(width=2))))
    pos = np.flatnonzero(on_front)
    order = pos[np.argsort([x[p] for p in pos], kind="stable")]
    fig.add_trace(go.Scatter(x=[x[p] for p in order], y=[y[p] for p in order], mode="lines", hoverinfo="skip",
                             name=f"{label}: front ({len(pos)})", meta="reference-front", legendgroup=label,
                             line=dict(color=colour, width=2, dash="dash",
                                       shape="hv" if direction(ycol) == "max" else "linear")))


def front_figures(df: pd.DataFrame, columns: Sequence[str], knee: Any = None,
                  marks: Mapping[str, Any] | None = None, constraints: Any = None,
                  reference: tuple[str, pd.DataFrame] | None = None) -> list[tuple[str, go.Figure]]:
    """(plot id, figure) per pair of objectives (``objective_pairs``), then a scatter matrix of every
    objective column when there are three or more; ``reference`` as in :func:`front_figure`."""
    hover = hover_texts(df, columns)
    out = [(f"plot-front-{file_safe(y)}-vs-{file_safe(x)}", front_figure(df, y, x, series, hover, knee, marks,
                                                                  constraints, reference))
           for y, x, series in objective_pairs(columns)]
    if len(columns) >= 3:
        out.append(("plot-matrix", matrix_figure(df, columns, hover, constraints)))
    return out


def matrix_figure(df: pd.DataFrame, columns: Sequence[str], hover: Sequence[str],
                  constraints: Any = None) -> go.Figure:
    """Scatter matrix (lower triangle, SVG so it draws without WebGL): every evaluation in every pair of
    objective columns, the front of all objectives coloured."""
    from plotly.subplots import make_subplots

    k = len(columns)
    front = pareto_mask(df, columns, constraints)
    fig = make_subplots(rows=k - 1, cols=k - 1, horizontal_spacing=0.04, vertical_spacing=0.05)
    colours = ["#1f77b4" if f else "#b8b8b8" for f in front]
    for i in range(1, k):
        for j in range(i):
            fig.add_trace(go.Scatter(
                x=_values(df, columns[j]), y=_values(df, columns[i]), mode="markers", meta="evaluations",
                hovertext=list(hover), hovertemplate="%{hovertext}<extra></extra>", showlegend=False,
                marker=dict(color=colours, size=[7 if f else 5 for f in front])), row=i, col=j + 1)
            if i == k - 1:
                fig.update_xaxes(title_text=html.escape(columns[j]), row=i, col=j + 1)
            if j == 0:
                fig.update_yaxes(title_text=html.escape(columns[i]), row=i, col=j + 1)
    fig.update_layout(title=dict(text=f"every pair of objectives: {len(df)} evaluations, the front of all "
                                      f"{k} ({int(front.sum())}) in blue"),
                      template="plotly_white", hovermode="closest", margin=dict(l=70, r=20, t=50, b=60),
                      height=190 * (k - 1) + 120)
    return fig


def hypervolume_figure(history: Sequence[tuple[int, float]]) -> go.Figure:
    """Hypervolume after each number of evaluations, divided by the best found (1 = the final front)."""
    hist = np.asarray(list(history), dtype=float)
    best = float(np.nanmax(hist[:, 1])) if len(hist) else 0.0
    rel = hist[:, 1] / best if best > 0 else hist[:, 1]
    fig = go.Figure(go.Scatter(x=hist[:, 0].tolist(), y=rel.tolist(), mode="lines+markers", meta="hypervolume",
                               line=dict(shape="hv"), marker=dict(size=4), name="hypervolume",
                               hovertemplate="after %{x} evaluations: %{y:.4f} of the best<extra></extra>"))
    note = (f"best found {best:.4g}; objectives normalised by the run's bounds to [0, 1], "
            f"reference point {REFERENCE:g} in each")
    fig.update_layout(**_layout("hypervolume of the front over the search", "evaluations",
                                "hypervolume relative to the best found (1 = best)"))
    fig.update_layout(title=dict(text=f"hypervolume of the front over the search<br><sup>{note}</sup>"))
    return fig


def training_figure(history: Sequence[Mapping[str, Any]]) -> go.Figure | None:
    """Training losses per epoch (left axis) and validation accuracy of the logged sub-networks (right axis,
    when the log has ``val_acc_*`` columns); None without a numeric loss."""
    epochs = [r.get("epoch") for r in history]
    losses = sorted({k for r in history for k, v in r.items() if k.startswith("loss") and isinstance(v, (int, float))})
    accs = sorted({k for r in history for k, v in r.items() if k.startswith("val_acc") and isinstance(v, (int, float))})
    if not losses or not all(isinstance(e, int) for e in epochs):
        return None
    fig = go.Figure()
    for key, axis in [*((k, "y") for k in losses), *((k, "y2") for k in accs)]:
        points = [(r["epoch"] + 1, r[key]) for r in history if isinstance(r.get(key), (int, float))]
        fig.add_trace(go.Scatter(x=[e for e, _ in points], y=[v for _, v in points], mode="lines+markers",
                                 name=html.escape(key), yaxis=axis, meta="training",
                                 hovertemplate=f"{html.escape(key)} after epoch %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(**_layout("training (from checkpoints/metrics.jsonl)", "epoch", "loss"))
    if accs:
        fig.update_layout(yaxis2=dict(title=dict(text="validation accuracy"), overlaying="y", side="right"))
    return fig
