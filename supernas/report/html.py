"""A self-contained HTML report (one file, works offline): run summary, interactive plotly plots (plotly.js
inlined once), the front table with every architecture drawn (JSON on click), a model card per export
and the PNG plots (also written to ``plots/``)."""
from __future__ import annotations

import base64
import html
import os
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..measure.objectives import direction
from .arch import ARCH_CSS, arch_html, arch_summary, parse_config, short_name, value_ranges
from .cards import CARD_CSS, export_records, model_cards, row_of
from .front import check_columns, config_text, write_front_table
from .interactive import BOOT_JS, front_figures, hypervolume_figure, plot_block, plotly_js, training_figure
from .plots import plot_fronts, plot_hypervolume

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:2em auto;padding:0 1.5em;color:#222;max-width:1200px}
h1{font-size:1.6em;overflow-wrap:anywhere} h2{font-size:1.2em;margin-top:1.6em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.85em} th,td{border:1px solid #ccc;padding:.3em .5em;text-align:right}
th{background:#f2f2f2} th.cfg,td.cfg{text-align:left;min-width:14em} td .name{font-family:monospace;color:#567}
td.cfg details summary::after{content:"config JSON";font-size:.8em;color:#567}
tr.knee{background:#fff3c4} .plots img{max-width:100%;margin:.5em 0;border:1px solid #eee}
.iplots{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,520px),1fr));gap:1em}
.plotly-plot{width:100%;min-width:0} .plotly-plot.wide{grid-column:1/-1}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2em 1em;margin:.3em 0}
dt{font-weight:600} dd{margin:0;overflow-wrap:anywhere}
.factgrid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,360px),1fr));gap:.5em 1.5em}
.facts h3{font-size:1em;margin:.6em 0 .2em}
""" + ARCH_CSS + CARD_CSS


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_esc(path.stem)}" src="data:image/png;base64,{data}">'


def _summary_items(df: pd.DataFrame, front: pd.DataFrame, columns: Sequence[str],
                   summary: Mapping[str, Any] | str | None) -> list[tuple[str, str]]:
    items = [("evaluations", str(len(df))), ("front size", str(len(front))),
             ("objectives", ", ".join(f"{c} ({direction(c)})" for c in columns))]
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce")
        if values.notna().any():
            best = values.max() if direction(col) == "max" else values.min()
            items.append((f"best {col}", _number(float(best))))
    knee = front[front["knee"]]
    if len(knee):
        arch = arch_summary(parse_config(knee["config"].iloc[0]))
        items.append(("knee", short_name(knee["key"].iloc[0]) + (f" ({arch})" if arch else "")))
    if isinstance(summary, str):
        items.append(("note", summary))
    elif summary:
        items.extend((str(k), _number(v)) for k, v in summary.items())
    return items


def _front_html(front: pd.DataFrame, columns: Sequence[str],
                ranges: Mapping[str, tuple[float, float]] | None = None) -> str:
    """The front table: row number and short name, the architecture drawn (its JSON in a ``<details>``,
    the cell's only text), the objectives."""
    head = "<th>#</th><th class=\"cfg\">architecture</th>" + "".join(f"<th>{_esc(c)}</th>" for c in columns)
    configs = [parse_config(c) for c in front["config"]]
    ranges = ranges if ranges is not None else value_ranges(configs)
    rows = []
    for i, ((_, row), cfg) in enumerate(zip(front.iterrows(), configs), 1):
        cells = "".join(f"<td>{_esc(_number(row[c]))}</td>" for c in columns)
        cls = ' class="knee"' if row["knee"] else ""
        rows.append(f'<tr{cls}><td>{i}{" (knee)" if row["knee"] else ""}<br>'
                    f'<span class="name">{_esc(short_name(row["key"]))}</span></td>'
                    f'<td class="cfg">{arch_html(cfg, ranges)}<details><summary></summary>'
                    f'<pre class="json">{_esc(row["config"])}</pre></details></td>{cells}</tr>')
    return (f'<div class="scroll"><table id="front"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _exports_html(exports: Sequence[str | Path], out_dir: Path) -> str:
    links = []
    for p in exports:
        path = Path(p)
        target = os.path.relpath(path.resolve(), out_dir.resolve()) if path.is_absolute() or path.exists() \
            else str(path)
        href = urllib.parse.quote(Path(target).as_posix())
        links.append(f'<li><a href="{_esc(href)}">{_esc(path.name)}</a></li>')
    return f'<ul id="exports">{"".join(links)}</ul>'


def _facts_html(facts: Mapping[str, Mapping[str, str]]) -> str:
    """ "Run facts": one titled definition list per section."""
    groups = "".join(f'<div class="facts"><h3>{_esc(name)}</h3><dl>'
                     + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items.items()) + "</dl></div>"
                     for name, items in facts.items())
    return f'<h2>Run facts</h2><div id="facts" class="factgrid">{groups}</div>'


def write_report(out_dir: str | Path, evaluations: pd.DataFrame, columns: Sequence[str], *,
                 hv_history: Sequence[tuple[int, float]] | None = None,
                 exports: Sequence[str | Path] | None = None, title: str = "supernas report",
                 summary: Mapping[str, Any] | str | None = None, constraints: Any = None,
                 facts: Mapping[str, Mapping[str, str]] | None = None,
                 training: Sequence[Mapping[str, Any]] | None = None,
                 reference: tuple[str, pd.DataFrame] | None = None) -> Path:
    """Write ``report.html`` (self-contained), ``plots/*.png`` and ``front.csv`` into ``out_dir``.

    ``evaluations`` has one row per config (``key`` and/or ``config`` plus the metric ``columns``);
    ``hv_history`` is a list of (evaluation index, hypervolume); ``exports`` are paths of exported
    files to link (relative to the report): an export with a ``.json`` record next to it (as
    ``supernas.export`` writes) gets a model card and is marked in the plots; ``summary`` adds lines
    (a mapping) or a note (a string); ``constraints`` (the run's ``search.constraints``) restrict the
    front to feasible sub-networks; ``facts`` are sections of (label, value) lines shown as "Run facts";
    ``training`` the per-epoch metrics log, drawn as the training curve; ``reference`` (label, evaluations of
    the same columns: a quantized run's FP32 measurements) is drawn on every front plot next to the run's own
    points. Returns the path of ``report.html``."""
    cols = check_columns(evaluations, columns)
    if reference is not None:
        check_columns(reference[1], cols)
        kept = reference[1].dropna(subset=cols).reset_index(drop=True)
        reference = (reference[0], kept) if len(kept) else None
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    front = write_front_table(evaluations, cols, out / "front.csv", constraints)
    knee = front.index[front["knee"]][0] if front["knee"].any() else None
    plots = plot_fronts(evaluations, cols, plots_dir, knee, constraints, reference)
    if hv_history:
        plots.append(plot_hypervolume(hv_history, plots_dir / "hypervolume.png"))
    records = export_records(exports or [])
    ranges = value_ranges(parse_config(config_text(r)) for _, r in evaluations.iterrows())
    marks = {str(info.get("name", p.stem)): row_of(evaluations, info.get("config")) for p, info in records}
    figures = front_figures(evaluations, cols, knee, {k: v for k, v in marks.items() if v is not None},
                            constraints, reference)
    if hv_history:
        figures.append(("plot-hypervolume", hypervolume_figure(hv_history)))
    if training and (curve := training_figure(training)) is not None:
        figures.append(("plot-training", curve))
    summary_html = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
                           for k, v in _summary_items(evaluations, front, cols, summary))
    sections = [f"<h1>{_esc(title)}</h1>", f'<h2>Summary</h2><dl id="summary">{summary_html}</dl>']
    if figures:
        sections.append('<h2>Plots</h2><p>Every evaluated sub-network is a point (hover for its name, '
                        'objectives and architecture); the front is coloured and joined, the knee a star, '
                        'exported picks diamonds.</p><div class="iplots">'
                        + "".join(plot_block(pid, fig) for pid, fig in figures) + "</div>")
    sections += [f"<h2>Pareto front ({len(front)} of {len(evaluations)} evaluated)</h2>",
                 _front_html(front, cols, ranges)]
    if exports:
        cards = model_cards(records, evaluations, out, ranges) if records else ""
        sections.append("<h2>Exported models</h2>" + cards)
        listed = {(p.parent / str(f)).resolve() for p, info in records
                  for f in (info.get("files") or {}).values()}
        rest = [e for e in exports if Path(e).resolve() not in listed]
        if rest:
            sections.append(_exports_html(rest, out))
    if facts:
        sections.append(_facts_html(facts))
    if plots:
        sections.append('<h2>Static plots</h2><details class="plots"><summary>PNG images (also in plots/)'
                        '</summary>' + "".join(_img(p) for p in plots) + "</details>")
    script = f"<script>{plotly_js()}</script>" if figures else ""
    boot = f"<script>{BOOT_JS}</script>" if figures else ""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{_CSS}</style>{script}</head>\n<body>\n" + "\n".join(sections) + f"\n{boot}</body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
