"""A self-contained HTML report: run summary, embedded PNG plots, the front table, links to exports."""
from __future__ import annotations

import base64
import html
import os
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..measure.objectives import direction
from .front import check_columns, write_front_table
from .plots import plot_fronts, plot_hypervolume

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em} th,td{border:1px solid #ccc;padding:.3em .5em;text-align:right}
th{background:#f2f2f2} td.cfg{text-align:left;max-width:32em;word-break:break-all;font-family:monospace}
tr.knee{background:#fff3c4} .plots img{max-width:100%;margin:.5em 0;border:1px solid #eee}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em} dt{font-weight:600}
"""


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
        items.append(("knee", str(knee["key"].iloc[0])))
    if isinstance(summary, str):
        items.append(("note", summary))
    elif summary:
        items.extend((str(k), _number(v)) for k, v in summary.items())
    return items


def _front_html(front: pd.DataFrame, columns: Sequence[str]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in ["#", "config", *columns])
    rows = []
    for i, (_, row) in enumerate(front.iterrows(), 1):
        cells = "".join(f"<td>{_esc(_number(row[c]))}</td>" for c in columns)
        cls = ' class="knee"' if row["knee"] else ""
        rows.append(f'<tr{cls}><td>{i}{" (knee)" if row["knee"] else ""}</td>'
                    f'<td class="cfg">{_esc(row["config"])}</td>{cells}</tr>')
    return (f'<table id="front"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _exports_html(exports: Sequence[str | Path], out_dir: Path) -> str:
    links = []
    for p in exports:
        path = Path(p)
        target = os.path.relpath(path.resolve(), out_dir.resolve()) if path.is_absolute() or path.exists() \
            else str(path)
        href = urllib.parse.quote(Path(target).as_posix())
        links.append(f'<li><a href="{_esc(href)}">{_esc(path.name)}</a></li>')
    return f'<ul id="exports">{"".join(links)}</ul>'


def write_report(out_dir: str | Path, evaluations: pd.DataFrame, columns: Sequence[str], *,
                 hv_history: Sequence[tuple[int, float]] | None = None,
                 exports: Sequence[str | Path] | None = None, title: str = "supernas report",
                 summary: Mapping[str, Any] | str | None = None, constraints: Any = None) -> Path:
    """Write ``report.html`` (self-contained), ``plots/*.png`` and ``front.csv`` into ``out_dir``.

    ``evaluations`` has one row per config (``key`` and/or ``config`` plus the metric ``columns``);
    ``hv_history`` is a list of (evaluation index, hypervolume); ``exports`` are paths of exported
    files to link (relative to the report); ``summary`` adds lines (a mapping) or a note (a string);
    ``constraints`` (the run's ``search.constraints``) restrict the front to feasible sub-networks.
    Returns the path of ``report.html``."""
    cols = check_columns(evaluations, columns)
    out = Path(out_dir)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    front = write_front_table(evaluations, cols, out / "front.csv", constraints)
    knee = front.index[front["knee"]][0] if front["knee"].any() else None
    plots = plot_fronts(evaluations, cols, plots_dir, knee, constraints)
    if hv_history:
        plots.append(plot_hypervolume(hv_history, plots_dir / "hypervolume.png"))
    summary_html = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
                           for k, v in _summary_items(evaluations, front, cols, summary))
    sections = [f"<h1>{_esc(title)}</h1>", f'<h2>Summary</h2><dl id="summary">{summary_html}</dl>',
                f"<h2>Pareto front ({len(front)} of {len(evaluations)} evaluated)</h2>",
                _front_html(front, cols)]
    if plots:
        sections.append('<h2>Plots</h2><div class="plots">' + "".join(_img(p) for p in plots) + "</div>")
    if exports:
        sections.append("<h2>Exported models</h2>" + _exports_html(exports, out))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(sections) + "\n</body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
