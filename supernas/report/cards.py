"""Model cards: one per exported sub-network, from the ``.json`` written next to its files
(``supernas.export``: ``name``, ``files``, ``config``, ``input_shape``, ``checks``; the pipeline adds
``pick``, ``metrics``, ``test_accuracy``): accuracy, objectives, file sizes, ratios to the largest
sub-network, the runtime checks and snippets that load each file."""
from __future__ import annotations

import html
import json
import os
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..errors import ConfigError
from ..measure.objectives import direction, split_column
from .arch import arch_html, parse_config, value_ranges
from .front import config_text

_FORMAT_SUFFIXES = (".ts.pt", ".pt2", ".onnx", ".json")
_HERE = "# run in the folder that holds the file\n"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _record_path(export: Path) -> Path:
    name = export.name
    for suffix in _FORMAT_SUFFIXES:
        if name.endswith(suffix):
            return export.with_name(name[: -len(suffix)] + ".json")
    return export.with_suffix(".json")


def export_records(exports: Sequence[str | Path]) -> list[tuple[Path, dict[str, Any]]]:
    """(path, record) of the ``.json`` next to each export that names it among its ``files`` (or is
    the export itself), once per record, in the order of ``exports``."""
    out: dict[Path, dict[str, Any]] = {}
    for p in map(Path, exports):
        rec = _record_path(p)
        if rec in out or not rec.is_file():
            continue
        try:
            info = json.loads(rec.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        files = info.get("files") if isinstance(info, dict) else None
        if isinstance(files, dict) and (p == rec or p.name in files.values()):
            out[rec] = info
    return list(out.items())


def row_of(df: pd.DataFrame, config: Any) -> Any:
    """Index label of the evaluation with this config (canonical JSON), else None."""
    want = json.dumps(parse_config(config), sort_keys=True, separators=(",", ":"))
    for idx, row in df.iterrows():
        if json.dumps(parse_config(config_text(row)), sort_keys=True, separators=(",", ":")) == want:
            return idx
    return None


def largest_row(df: pd.DataFrame, records: Sequence[Mapping[str, Any]] = ()) -> Any:
    """Index label of the largest sub-network among the evaluations: the config of an export picked as
    ``largest``, else the evaluation whose config has every key seen in any evaluation, each at its
    largest value seen (the search's first evaluations are the smallest and largest); else None."""
    for info in records:
        if info.get("pick") == "largest" and (idx := row_of(df, info.get("config"))) is not None:
            return idx
    configs = {idx: parse_config(config_text(row)) for idx, row in df.iterrows()}
    keys = {k for c in configs.values() for k in c}
    if not keys:
        return None
    try:
        top = {k: max(c[k] for c in configs.values() if k in c) for k in keys}
    except TypeError:  # values that do not compare
        return None
    return next((idx for idx, c in configs.items() if c == top), None)


def _link(path: Path, out_dir: Path) -> str:
    href = urllib.parse.quote(Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix())
    return f'<a href="{_esc(href)}">{_esc(path.name)}</a>'


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB" if n >= 1024 else f"{n} B"


def _ratios(metrics: Mapping[str, Any], ref: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for col, value in metrics.items():
        base = ref.get(col)
        try:
            value, base, lower = float(value), float(base), direction(col) == "min"
        except (TypeError, ValueError, ConfigError):
            continue
        if not lower or value <= 0 or base <= 0:
            continue
        if split_column(col)[0] == "latency_ms":
            out.append((f"speed-up {col}", f"{base / value:.2f}x"))
        else:
            out.append((f"{col} vs largest", f"{value / base:.3f}x"))
    return out


def _snippets(info: Mapping[str, Any], files: Mapping[str, str]) -> str:
    shape = tuple(int(s) for s in info.get("input_shape") or (1,))
    dtype = str(info.get("input_dtype", "float32"))
    x = (f"x = np.zeros({shape}, dtype=np.{dtype})  # token ids" if dtype.startswith("int")
         else f"x = np.random.default_rng(0).standard_normal({shape}).astype(np.{dtype})")
    parts = []
    if "onnx" in files:
        parts.append(("ONNX Runtime", f"{_HERE}import numpy as np\nimport onnxruntime as ort\n\n"
                      f"session = ort.InferenceSession({files['onnx']!r}, providers=['CPUExecutionProvider'])\n"
                      f"{x}\nlogits = session.run(None, {{session.get_inputs()[0].name: x}})[0]\n"
                      f"print(logits.shape)"))
    if "torch" in files:
        parts.append(("PyTorch (torch.export)", f"{_HERE}import numpy as np\nimport torch\n\n"
                      f"model = torch.export.load({files['torch']!r}).module()\n{x}\n"
                      f"with torch.no_grad():\n    logits = model(torch.from_numpy(x))\nprint(logits.shape)"))
    if "torchscript" in files:
        parts.append(("PyTorch (TorchScript)", f"{_HERE}import numpy as np\nimport torch\n\n"
                      f"model = torch.jit.load({files['torchscript']!r}).eval()\n{x}\n"
                      f"with torch.no_grad():\n    logits = model(torch.from_numpy(x))\nprint(logits.shape)"))
    return "".join(f'<div class="snippet"><div class="sh">{_esc(t)}</div><pre><code>{_esc(code)}</code></pre></div>'
                   for t, code in parts)


def _checks(info: Mapping[str, Any]) -> str:
    rows = []
    for c in info.get("checks") or []:
        if not isinstance(c, Mapping):
            continue
        batches = ",".join(map(str, c.get("batch_sizes", [])))
        verdict = "ok" if c.get("passed") else "FAILED"
        rows.append("".join(f"<td>{_esc(_num(v))}</td>" for v in (
            c.get("format", ""), c.get("runtime", ""), batches, f"{float(c.get('max_abs_diff', 'nan')):.2e}",
            f"{float(c.get('atol', 'nan')):.0e}", f"{float(c.get('max_abs_output', 'nan')):.3g}", verdict)))
    if not rows:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("format", "runtime", "batch sizes", "max |diff|", "tolerance",
                                              "max |output|", "check"))
    return (f'<table class="checks"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(f"<tr>{r}</tr>" for r in rows) + "</tbody></table>")


def model_card(path: Path, info: Mapping[str, Any], out_dir: Path, largest: Mapping[str, Any] | None = None,
               largest_files: Mapping[str, int] | None = None,
               ranges: Mapping[str, tuple[float, float]] | None = None) -> str:
    """The card of one export record (``path`` its ``.json``); ``largest`` the largest sub-network's
    objectives and ``largest_files`` its file sizes per format, when known; ``ranges`` shade the drawing."""
    name = str(info.get("name", path.stem))
    metrics = info.get("metrics") if isinstance(info.get("metrics"), Mapping) else {}
    files = {str(k): str(v) for k, v in (info.get("files") or {}).items()}
    facts: list[tuple[str, str]] = []
    if "accuracy" in metrics:
        facts.append(("validation accuracy", _num(float(metrics["accuracy"]))))
    if info.get("test_accuracy") is not None:
        facts.append(("test accuracy", _num(float(info["test_accuracy"]))))
    facts += [(str(k), _num(v)) for k, v in metrics.items() if k != "accuracy"]
    if largest is not None and info.get("pick") != "largest":
        facts += _ratios(metrics, largest)
    file_rows = []
    for fmt, fname in files.items():
        fpath = path.parent / fname
        size = fpath.stat().st_size if fpath.is_file() else None
        ratio = ""
        if size and fmt != "config" and largest_files and largest_files.get(fmt) and info.get("pick") != "largest":
            ratio = f"{size / largest_files[fmt]:.3f}x"
        file_rows.append(f"<tr><td>{_esc(fmt)}</td><td>{_link(fpath, out_dir) if size is not None else _esc(fname)}"
                         f"</td><td>{_size(size) if size is not None else 'missing'}</td><td>{ratio}</td></tr>")
    config = parse_config(info.get("config"))
    dl = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts)
    shape = "x".join(map(str, info.get("input_shape") or []))
    pick = f" <small>pick: {_esc(info['pick'])}</small>" if info.get("pick") else ""
    dtype = _esc(info.get("input_dtype", "float32"))
    inputs = f"<p>input {_esc(shape)} ({dtype})</p>" if shape else ""
    drawing = arch_html(config, ranges if ranges is not None else value_ranges([config])) if config else ""
    return (f'<section class="card" id="card-{_esc(name)}"><h3>{_esc(name)}{pick}</h3>'
            f'<div class="cardrow"><dl>{dl}</dl><div><table class="files"><thead><tr><th>format</th>'
            f'<th>file</th><th>size</th><th>vs largest</th></tr></thead><tbody>{"".join(file_rows)}</tbody>'
            f'</table>{inputs}{_checks(info)}</div></div>{drawing}{_snippets(info, files)}</section>')


def model_cards(records: Sequence[tuple[Path, Mapping[str, Any]]], df: pd.DataFrame, out_dir: Path,
                ranges: Mapping[str, tuple[float, float]] | None = None) -> str:
    """Every record's card; ratios refer to the largest sub-network when it is among ``df``'s rows."""
    idx = largest_row(df, [info for _, info in records])
    largest = df.loc[idx].to_dict() if idx is not None else None
    largest_files = None
    for path, info in records:
        if largest is not None and info.get("pick") == "largest":
            largest_files = {str(k): (path.parent / str(v)).stat().st_size for k, v in info.get("files", {}).items()
                             if (path.parent / str(v)).is_file()}
    return '<div id="cards">' + "".join(model_card(p, i, out_dir, largest, largest_files, ranges)
                                   for p, i in records) + "</div>"


CARD_CSS = """
.card{border:1px solid #d5dbe3;border-radius:.5em;padding:.6em 1em;margin:1em 0;background:#fcfdff}
.card h3{margin:.2em 0 .5em} .card small{color:#567;font-weight:400}
.cardrow{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start;margin-bottom:.6em}
.snippet{margin-top:.5em} .sh{font-weight:600;font-size:.9em}
pre{background:#f5f7fa;padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8em;margin:.2em 0}
"""
