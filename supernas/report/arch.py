"""A sub-network's configuration drawn compactly, for every family by one renderer.

Config keys are dotted paths (``resolution``, ``stage1.depth``, ``stage1.block2.kernel``, ``layer3.heads``).
Keys are grouped by their numbered prefixes (``stageN``, ``blockN``, ``layerN``): a group's plain values
become chips and its numbered children either nested boxes or, when they hold only values, a grid (one
row per value name, one column per child: per block kernel/expand, per layer heads/FFN). Cell shading
is the value's position in its range (``value_ranges`` over the configs shown together).

The drawing's labels are CSS generated content (``data-t`` attributes), so a cell holding a drawing and
a ``<details>`` with the JSON has the JSON as its only text; ``aria-label`` carries the text summary."""
from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

_NUMBERED = re.compile(r"^([A-Za-z_]+?)(\d+)$")


@dataclass
class _Node:
    values: dict[str, Any] = field(default_factory=dict)
    children: dict[str, "_Node"] = field(default_factory=dict)


def _tree(config: Mapping[str, Any]) -> _Node:
    root = _Node()
    for key in sorted(config, key=_natural):
        parts, node = str(key).split("."), root
        while len(parts) > 1 and _NUMBERED.match(parts[0]):
            node = node.children.setdefault(parts.pop(0), _Node())
        node.values[".".join(parts)] = config[key]
    return root


def _natural(key: Any) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(key))]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def short_name(key: Any) -> str:
    """A short stable name for a row key (8 hex digits of its SHA-1)."""
    return hashlib.sha1(str(key).encode("utf-8")).hexdigest()[:8]


def parse_config(config: Any) -> dict[str, Any]:
    """A config as a dict (from a dict or its JSON; anything else gives ``{}``)."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            return {}
    return dict(config) if isinstance(config, Mapping) else {}


def _leaf_name(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def value_ranges(configs: Iterable[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """(min, max) of every numeric value name (the key's last part) over ``configs``."""
    out: dict[str, tuple[float, float]] = {}
    for cfg in configs:
        for key, v in cfg.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                lo, hi = out.get(_leaf_name(str(key)), (float(v), float(v)))
                out[_leaf_name(str(key))] = (min(lo, float(v)), max(hi, float(v)))
    return out


def arch_summary(config: Mapping[str, Any], sep: str = "; ") -> str:
    """One line (groups joined by ``sep``): plain values, then per group its values, a grid's rows as
    ``name a/b/c`` (e.g. ``stage1: depth 3, kernel 3/5/7, expand 4/6/6``)."""
    def node_text(node: _Node) -> list[str]:
        parts = [f"{k} {_fmt(v)}" for k, v in node.values.items()]
        kids = list(node.children.values())
        if kids and all(not c.children for c in kids):
            names = list(dict.fromkeys(k for c in kids for k in c.values))
            parts += [f"{n} " + "/".join(_fmt(c.values.get(n, "-")) for c in kids) for n in names]
        return parts

    root = _tree(config)
    groups = [", ".join(node_text(_Node(values=root.values)))] if root.values else []
    kids = list(root.children.items())
    if kids and all(not c.children for _, c in kids):
        m = _NUMBERED.match(kids[0][0])
        groups.append(f"per {m.group(1) if m else 'group'}: " + ", ".join(node_text(_Node(children=root.children))))
    else:
        groups += [f"{name}: " + ", ".join(node_text(c)) for name, c in kids]
    return sep.join(g for g in groups if g)


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


def _shade(name: str, value: Any, ranges: Mapping[str, tuple[float, float]]) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or name not in ranges:
        return ""
    lo, hi = ranges[name]
    frac = 0.5 if hi <= lo else (float(value) - lo) / (hi - lo)
    return f' style="--a:{0.12 + 0.6 * frac:.2f}"'


def _chip(name: str, value: Any) -> str:
    return f'<span class="chip" data-t="{_attr(f"{name} {_fmt(value)}")}"></span>'


def _grid(kids: Mapping[str, _Node], ranges: Mapping[str, tuple[float, float]]) -> str:
    names = list(dict.fromkeys(k for c in kids.values() for k in c.values))
    cells = ['<span class="h" data-t=""></span>']
    for k in kids:
        m = _NUMBERED.match(k)
        cells.append(f'<span class="h" data-t="{_attr(m.group(2) if m else k)}" title="{_attr(k)}"></span>')
    for n in names:
        cells.append(f'<span class="h r" data-t="{_attr(n)}"></span>')
        for k, c in kids.items():
            v = c.values.get(n)
            cells.append(f'<span class="c"{_shade(_leaf_name(n), v, ranges)} data-t="{_attr(_fmt(v))}" '
                         f'title="{_attr(f"{k} {n} {_fmt(v)}")}"></span>' if v is not None
                         else '<span class="c" data-t="-"></span>')
    return f'<span class="grid" style="--n:{len(kids)}">{"".join(cells)}</span>'


def _box(name: str, node: _Node, ranges: Mapping[str, tuple[float, float]]) -> str:
    body = "".join(_chip(k, v) for k, v in node.values.items())
    kids = node.children
    if kids and all(not c.children for c in kids.values()):
        body += _grid(kids, ranges)
    else:
        body += "".join(_box(k, c, ranges) for k, c in kids.items())
    head = f'<span class="bh" data-t="{_attr(name)}"></span>' if name else ""
    return f'<span class="box">{head}{body}</span>'


def arch_html(config: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]] | None = None) -> str:
    """A compact drawing of ``config`` (see the module docstring); empty for an empty config."""
    if not config:
        return ""
    ranges = ranges if ranges is not None else value_ranges([config])
    root = _tree(config)
    body = "".join(_chip(k, v) for k, v in root.values.items())
    kids = root.children
    if kids and all(not c.children for c in kids.values()):
        body += _box("", _Node(children=kids), ranges)
    else:
        body += "".join(_box(k, c, ranges) for k, c in kids.items())
    return f'<span class="arch" role="img" aria-label="{_attr(arch_summary(config))}">{body}</span>'


ARCH_CSS = """
.arch{display:flex;flex-wrap:wrap;gap:.3em;align-items:flex-start;font-family:monospace;font-size:.8em}
.arch [data-t]::before{content:attr(data-t)}
.arch .chip{background:#eef2f7;border-radius:.3em;padding:0 .35em;white-space:nowrap}
.arch .box{display:inline-flex;flex-direction:column;gap:.15em;border:1px solid #cdd6e0;border-radius:.3em;
 padding:.15em .3em}
.arch .bh{font-weight:600;color:#345}
.arch .grid{display:grid;grid-template-columns:auto repeat(var(--n),minmax(1.6em,auto));gap:1px}
.arch .grid .h{color:#678;text-align:center} .arch .grid .r{text-align:left;padding-right:.3em}
.arch .grid .c{text-align:center;background:rgba(31,119,180,var(--a,.1));border-radius:2px;padding:0 .15em}
"""
