"""Report page: interactive plotly plots (offline), architectures drawn, a model card per export."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from supernas.report import front_table, knee_point, objective_pairs, pareto_mask, write_report
from supernas.report.arch import arch_html, arch_summary, short_name
from supernas.report.interactive import plotly_js

COLUMNS = ["accuracy", "params", "latency_ms@cpu", "latency_ms@onnxruntime"]
LARGEST = {"resolution": 32, "stage1.depth": 3, "stage2.depth": 3,
           **{f"stage{s}.block{b}.{k}": v for s in (1, 2) for b in (1, 2, 3) for k, v in (("kernel", 7),
                                                                                       ("expand", 6))}}


def _config(rng: np.random.Generator) -> dict:
    cfg = {"resolution": int(rng.choice([24, 28, 32]))}
    for s in (1, 2):
        depth = int(rng.integers(1, 4))
        cfg[f"stage{s}.depth"] = depth
        for b in range(1, depth + 1):
            cfg[f"stage{s}.block{b}.kernel"] = int(rng.choice([3, 5, 7]))
            cfg[f"stage{s}.block{b}.expand"] = int(rng.choice([3, 4, 6]))
    return cfg


def _evaluations(n: int = 24, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cfgs = [LARGEST] + [_config(rng) for _ in range(n - 1)]
    size = np.array([sum(v for k, v in c.items() if k.endswith("expand")) * c["resolution"] for c in cfgs], float)
    keys = [json.dumps(c, sort_keys=True, separators=(",", ":")) for c in cfgs]
    return pd.DataFrame({"key": keys, "config": keys,
                         "accuracy": 0.5 + 0.4 * np.sqrt(size / size.max()) * rng.uniform(0.9, 1.0, n),
                         "params": size * 100.0, "latency_ms@cpu": size / 50 * rng.uniform(0.8, 1.2, n),
                         "latency_ms@onnxruntime": size / 90 * rng.uniform(0.8, 1.2, n)})


def _record(out: Path, name: str, pick: str, row: pd.Series, formats: dict[str, bytes]) -> dict:
    files = {}
    for fmt, data in formats.items():
        fname = f"{name}{'.onnx' if fmt == 'onnx' else '.pt2'}"
        (out / fname).write_bytes(data)
        files[fmt] = fname
    files["config"] = f"{name}.json"
    info = {"name": name, "files": files, "config": json.loads(row["config"]), "input_shape": [1, 3, 32, 32],
            "checks": [{"format": f, "runtime": "onnxruntime" if f == "onnx" else "torch.export",
                        "batch_sizes": [1, 3], "max_abs_diff": 1.5e-6 * (i + 1), "max_abs_output": 7.25,
                        "atol": 1e-4, "passed": True} for i, f in enumerate(formats)],
            "input_dtype": "float32", "pick": pick, "metrics": {c: float(row[c]) for c in COLUMNS},
            "test_accuracy": 0.8125 if name == "knee" else 0.875, "summary": "exported", "torch": "2.6"}
    (out / f"{name}.json").write_text(json.dumps(info, indent=2))
    return info


TRAINING = [{"epoch": e, "loss_largest": 2.0 / (e + 1), "loss_others": 0.3, "val_acc_largest": 0.5 + e / 10}
            for e in range(3)]
FACTS = {"supernet": {"arguments": json.dumps({f"argument_{i}": list(range(8)) for i in range(12)})},
         "machine": {"train, search, export, report": "Some CPU Model Name @ 3.00GHz, 128 cores, 1024 GiB; NVIDIA "
                     "H200; flags avx2 avx512f avx512_vnni avx_vnni amx_int8 amx_tile"}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    df = _evaluations()
    knee = knee_point(df, COLUMNS)
    records = {"knee": _record(out, "knee", "knee", df.loc[knee], {"onnx": b"k" * 3000, "torch": b"t" * 5000}),
               "largest": _record(out, "largest", "largest", df.loc[0], {"onnx": b"L" * 12000})}
    (out / "orphan.onnx").write_bytes(b"o")
    exports = [out / "knee.onnx", out / "knee.pt2", out / "largest.onnx", out / "orphan.onnx"]
    hv = [(i, 0.5 + 0.02 * min(i, 20)) for i in range(1, len(df) + 1)]
    path = write_report(out, df, COLUMNS, hv_history=hv, exports=exports, title="run <b>x</b> & y",
                        summary={"data": "classes <cat>, <dog>"}, facts=FACTS, training=TRAINING)
    return df, path, path.read_text(encoding="utf-8"), records, hv


class _Page(HTMLParser):
    """Plot divs with their figure JSON, front-table cells (text outside <details>), cards, links."""

    def __init__(self) -> None:
        super().__init__()
        self.plots: list[str] = []
        self.figs: dict[str, dict] = {}
        self.cells: list[dict] = []
        self.cards: dict[str, str] = {}
        self.links: list[str] = []
        self.scripts: list[str] = []
        self._script: str | None = None
        self._in_front = False
        self._details = 0
        self._card: str | None = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and "plotly-plot" in (a.get("class") or ""):
            self.plots.append(a["id"])
        elif tag == "script":
            self._script = a.get("id") or ""
            self.scripts.append(a.get("src") or "")
        elif tag == "table" and a.get("id") == "front":
            self._in_front = True
        elif self._in_front and tag == "td":
            self.cells.append({"outside": "", "inside": "", "arch": 0, "class": a.get("class", "")})
        elif self._in_front and tag == "details":
            self._details += 1
        elif self._in_front and self.cells and "arch" in (a.get("class") or ""):
            self.cells[-1]["arch"] += 1
        elif tag == "section" and a.get("class") == "card":
            self._card, self._depth = a["id"].removeprefix("card-"), 0
            self.cards[self._card] = ""
        elif tag == "a":
            self.links.append(a.get("href", ""))
        if self._card is not None and tag == "section":
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None
        elif tag == "table":
            self._in_front = False
        elif tag == "details" and self._in_front:
            self._details -= 1
        elif tag == "section" and self._card is not None:
            self._depth -= 1
            if self._depth == 0:
                self._card = None

    def handle_data(self, data):
        if self._script and self._script.endswith("-fig"):
            self.figs[self._script.removesuffix("-fig")] = json.loads(data)
        elif self._in_front and self.cells:
            self.cells[-1]["inside" if self._details else "outside"] += data
        if self._card is not None:
            self.cards[self._card] += data


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def test_plotly_inlined_once_and_page_is_offline(run):
    _, path, page, _, _ = run
    bundle = plotly_js()
    assert page.count(bundle[:2000]) == 1 and len(page) > len(bundle)
    parser = _parse(page)
    assert all(src == "" for src in parser.scripts)  # no <script src=...>
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
    assert "</script" not in bundle
    assert sorted(p.name for p in (path.parent / "plots").glob("*.png"))  # PNG plots kept


def test_one_plot_div_per_plot_with_every_evaluation(run):
    df, _, page, records, _ = run
    parser = _parse(page)
    pairs = objective_pairs(COLUMNS)
    assert parser.plots == [f"plot-front-{y}-vs-{x}" for y, x, _ in pairs] + ["plot-matrix", "plot-hypervolume",
                                                                               "plot-training"]
    assert set(parser.figs) == set(parser.plots)
    knee = knee_point(df, COLUMNS)
    for (y, x, series), pid in zip(pairs, parser.plots):
        traces = parser.figs[pid]["data"]
        points = [t for t in traces if t.get("meta") == "evaluations"]
        assert len(points) == len(series)
        for t, (ycol, xcol, _) in zip(points, series):
            assert len(t["x"]) == len(t["y"]) == len(t["hovertext"]) == len(df)
            np.testing.assert_allclose(t["x"], df[xcol])
            np.testing.assert_allclose(t["y"], df[ycol])
            mask = pareto_mask(df, [ycol, xcol])
            assert [c != "#b8b8b8" for c in t["marker"]["color"]] == list(mask)
            symbols = t["marker"]["symbol"]
            assert symbols[df.index.get_loc(knee)] == "star"
            assert symbols[0] == "diamond"  # the exported largest
        fronts = [t for t in traces if t.get("meta") == "front"]
        assert [len(t["x"]) for t in fronts] == [int(pareto_mask(df, [s[0], s[1]]).sum()) for s in series]
        notes = [a["text"] for a in parser.figs[pid]["layout"]["annotations"]]
        assert notes.count("knee") == len(series) and notes.count("largest") == len(series)
    hover = parser.figs[parser.plots[0]]["data"][0]["hovertext"][0]
    assert hover.startswith(f"<b>{short_name(df['key'][0])}</b>") and "stage1: depth 3" in hover
    assert "kernel 7/7/7" in hover and "accuracy: " in hover
    matrix = [t for t in parser.figs["plot-matrix"]["data"] if t.get("meta") == "evaluations"]
    k = len(COLUMNS)
    assert len(matrix) == k * (k - 1) // 2 and all(len(t["x"]) == len(df) for t in matrix)
    front = pareto_mask(df, COLUMNS)
    assert all([c != "#b8b8b8" for c in t["marker"]["color"]] == list(front) for t in matrix)
    pairs_seen = {(t["xaxis"], t["yaxis"]) for t in matrix}
    assert len(pairs_seen) == len(matrix)  # one subplot each


def test_hypervolume_relative_to_best(run):
    _, _, page, _, hv = run
    fig = _parse(page).figs["plot-hypervolume"]
    best = max(v for _, v in hv)
    np.testing.assert_allclose(fig["data"][0]["y"], [v / best for _, v in hv])
    assert fig["data"][0]["x"] == [i for i, _ in hv]
    assert "relative to the best found" in fig["layout"]["yaxis"]["title"]["text"]
    assert "reference point 1.1" in fig["layout"]["title"]["text"]


def test_front_table_draws_architectures_json_only_in_details(run):
    df, _, page, _, _ = run
    parser = _parse(page)
    table = front_table(df, COLUMNS)
    cfg_cells = [c for c in parser.cells if c["class"] == "cfg"]
    assert len(cfg_cells) == len(table)
    for cell, (_, row) in zip(cfg_cells, table.iterrows()):
        assert cell["arch"] == 1 and json.loads(cell["inside"]) == json.loads(row["config"])
        assert cell["outside"].strip() == ""
    assert all(len(c["outside"].strip()) < 60 for c in parser.cells)  # no raw JSON outside <details>
    for name in table["key"].map(short_name):
        assert f'<span class="name">{name}</span>' in page


def test_arch_renderer_groups_by_prefix():
    html = arch_html(LARGEST)
    assert html.count('class="box"') == 2 and html.count('class="grid" style="--n:3"') == 2
    assert 'data-t="resolution 32"' in html and 'data-t="stage2"' in html and 'data-t="depth 3"' in html
    assert html.count('title="block2 kernel 7"') == 2
    assert arch_summary(LARGEST) == ("resolution 32; stage1: depth 3, expand 6/6/6, kernel 7/7/7; "
                                     "stage2: depth 3, expand 6/6/6, kernel 7/7/7")
    bert = {"hidden": 256, "layers": 3, "layer1.heads": 4, "layer1.ffn": 512, "layer2.heads": 2,
            "layer2.ffn": 256, "layer3.heads": 4, "layer3.ffn": 1024}
    assert arch_summary(bert) == "hidden 256, layers 3; per layer: ffn 512/256/1024, heads 4/2/4"
    html = arch_html(bert)
    assert html.count('class="grid" style="--n:3"') == 1 and 'data-t="heads"' in html
    resnet = {"stem.width": 0.5, "stage1.depth": 1, "stage1.width": 1.0, "stage1.block1.expand": 0.25}
    assert arch_summary(resnet) == "stem.width 0.5; stage1: depth 1, width 1, expand 0.25"
    assert arch_html({}) == ""
    assert '<b>' not in arch_html({"a<b>": 1}) and "a&lt;b&gt; 1" in arch_html({"a<b>": 1})


def test_every_export_json_gets_a_card(run):
    df, _, page, records, _ = run
    parser = _parse(page)
    assert sorted(parser.cards) == ["knee", "largest"]
    big = df.loc[0]
    for name, info in records.items():
        text = parser.cards[name]
        assert f"validation accuracy{info['metrics']['accuracy']:.6g}" in text
        assert f"test accuracy{info['test_accuracy']:.6g}" in text
        for col in COLUMNS[1:]:
            assert f"{col}{info['metrics'][col]:.6g}" in text
        for check in info["checks"]:
            assert f"{check['max_abs_diff']:.2e}" in text and check["runtime"] in text
        assert "ort.InferenceSession('" + info["files"]["onnx"] + "'" in text
    knee = parser.cards["knee"]
    assert "torch.export.load('knee.pt2')" in knee and "2.9 KiB" in knee and "4.9 KiB" in knee
    for col in ("latency_ms@cpu", "latency_ms@onnxruntime"):
        want = big[col] / records["knee"]["metrics"][col]
        assert f"speed-up {col}{want:.2f}x" in knee
    assert f"params vs largest{records['knee']['metrics']['params'] / big['params']:.3f}x" in knee
    assert f"{3000 / 12000:.3f}x" in knee  # onnx file size vs the largest's
    assert "speed-up" not in parser.cards["largest"]
    assert sorted(parser.links) == sorted(["knee.onnx", "knee.pt2", "knee.json", "largest.onnx", "largest.json",
                                           "orphan.onnx"])  # every file linked once


def test_user_strings_escaped_and_page_deterministic(run, tmp_path):
    df, path, page, _, hv = run
    assert "run &lt;b&gt;x&lt;/b&gt; &amp; y" in page and "<b>x</b>" not in page
    assert "classes &lt;cat&gt;, &lt;dog&gt;" in page and "<cat>" not in page
    again = write_report(tmp_path, df, COLUMNS, hv_history=hv, title="run <b>x</b> & y",
                         summary={"data": "classes <cat>, <dog>"})
    other = write_report(tmp_path / "b", df, COLUMNS, hv_history=hv, title="run <b>x</b> & y",
                         summary={"data": "classes <cat>, <dog>"})
    assert again.read_text() == other.read_text()


def test_single_objective_page_has_no_plotly(tmp_path):
    page = write_report(tmp_path, _evaluations(6), ["accuracy"]).read_text()
    assert 'class="plotly-plot"' not in page and plotly_js()[:2000] not in page
    assert len(_parse(page).cells) == 3 * len(front_table(_evaluations(6), ["accuracy"]))


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


_PROBE = """<script>window.addEventListener("load", function () { setTimeout(function () {
  var doc = document.documentElement, plots = {};
  document.querySelectorAll("div.plotly-plot").forEach(function (d) {
    plots[d.id] = d.querySelectorAll(".scatterlayer .trace:first-child .point").length; });
  document.body.setAttribute("data-probe", JSON.stringify({scroll: doc.scrollWidth, client: doc.clientWidth,
    plots: plots, cards: document.querySelectorAll("section.card").length}));
}, 500); });</script></body>"""


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_page_in_chromium_at_1280px_fits_and_draws_every_point(run):
    df, path, page, records, hv = run
    probe = path.with_name("probe.html")
    probe.write_text(page.replace("</body>", _PROBE), encoding="utf-8")
    args = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--window-size=1280,900",
            "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0"]
    proc = subprocess.run([*args, "--dump-dom", probe.resolve().as_uri()], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CONSOLE" not in proc.stderr and "Uncaught" not in proc.stderr
    found = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert found, "the page did not finish loading"
    facts = json.loads(html.unescape(found.group(1)))
    assert facts["scroll"] <= facts["client"] <= 1280  # no horizontal overflow
    fronts = [pid for pid in facts["plots"] if pid.startswith("plot-front-")]
    assert fronts and all(facts["plots"][pid] == len(df) for pid in fronts)
    k = len(COLUMNS)  # the matrix: one subplot (scatter layer) per pair of objective columns
    assert facts["plots"]["plot-matrix"] == k * (k - 1) // 2 * len(df)
    assert facts["plots"]["plot-hypervolume"] == len(hv)
    assert facts["plots"]["plot-training"] == 2 * len(TRAINING)  # a scatter layer per y axis: loss, accuracy
    assert facts["cards"] == len(records)
    shot = path.with_name("report.png")
    subprocess.run([*args[:3], "--no-sandbox", "--window-size=1280,2400", "--virtual-time-budget=10000",
                    f"--screenshot={shot}", path.resolve().as_uri()], capture_output=True, timeout=180)
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_run_facts_are_escaped_and_a_log_without_losses_draws_no_curve(tmp_path):
    df = _evaluations()
    facts = {"data": {"dataset": "<script>x</script>"}, "machine": {"train": "box & co"}}
    page = write_report(tmp_path, df, COLUMNS, facts=facts, training=[{"epoch": 0, "lr": 0.1}]).read_text()
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page and "box &amp; co" in page
    assert "plot-training" not in page
    page = write_report(tmp_path, df, COLUMNS, training=[{"epoch": 0, "loss": 2.0}, {"epoch": 1, "loss": 1.0}]).read_text()
    assert 'id="plot-training"' in page and 'id="facts"' not in page
