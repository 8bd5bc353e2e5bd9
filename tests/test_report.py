"""Report: Pareto mask and knee, front table, PNG plots, the self-contained HTML page, headless Chromium."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from supernas.errors import ConfigError
from supernas.report import (front_table, knee_point, objective_pairs, pareto_mask, plot_hypervolume,
                             write_front_table, write_report)

COLUMNS = ["accuracy", "macs", "latency_ms@cpu", "latency_ms@onnxruntime"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _evaluations(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    macs = rng.uniform(1e6, 5e7, n)
    cfgs = [{"stage1.depth": int(rng.integers(2, 5)), "width": float(rng.choice([0.5, 1.0]))} for _ in range(n)]
    return pd.DataFrame({
        "key": [json.dumps(c, sort_keys=True, separators=(",", ":")) + f"#{i}" for i, c in enumerate(cfgs)],
        "config": [json.dumps(c) for c in cfgs],
        "accuracy": 0.5 + 0.45 * np.sqrt(macs / 5e7) * rng.uniform(0.8, 1.0, n),
        "macs": macs,
        "latency_ms@cpu": macs / 1e6 * rng.uniform(0.7, 1.3, n),
        "latency_ms@onnxruntime": macs / 2e6 * rng.uniform(0.7, 1.3, n),
    })


def _brute_force_front(F: np.ndarray) -> np.ndarray:
    """Rows not dominated by any other row (minimisation), by pairwise comparison."""
    n = len(F)
    return np.array([not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(n) if j != i)
                     for i in range(n)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pareto_mask_matches_pairwise_dominance(seed):
    df = _evaluations(40, seed)
    cols = ["accuracy", "macs", "latency_ms@cpu"]
    F = np.column_stack([-df["accuracy"], df["macs"], df["latency_ms@cpu"]])
    mask = pareto_mask(df, cols)
    assert mask.dtype == bool and mask.any() and not mask.all()
    np.testing.assert_array_equal(mask, _brute_force_front(F))


def test_pareto_mask_skips_incomplete_rows_and_keeps_ties():
    df = pd.DataFrame({"accuracy": [0.9, 0.9, 0.99, 0.5], "macs": [10.0, 10.0, np.nan, 1.0]})
    np.testing.assert_array_equal(pareto_mask(df, ["accuracy", "macs"]), [True, True, False, True])


def test_knee_is_the_bend_of_the_front():
    df = pd.DataFrame({"accuracy": [0.5, 0.9, 0.92, 0.93, 0.6], "macs": [1.0, 2.0, 10.0, 100.0, 50.0]},
                      index=[10, 11, 12, 13, 14])
    assert knee_point(df, ["accuracy", "macs"]) == 11
    assert knee_point(df.iloc[[3]], ["accuracy", "macs"]) == 13  # a single point is its own knee


def test_front_table_rows_and_csv_json(tmp_path):
    df = _evaluations()
    table = front_table(df, COLUMNS)
    assert len(table) == pareto_mask(df, COLUMNS).sum() and table["knee"].sum() == 1
    assert list(table["accuracy"]) == sorted(table["accuracy"], reverse=True)
    assert table.loc[table["knee"]].index[0] == knee_point(df, COLUMNS)
    returned = write_front_table(df, COLUMNS, tmp_path / "front.csv")
    csv = pd.read_csv(tmp_path / "front.csv")
    assert list(csv.columns) == ["key", "config", *COLUMNS, "knee"] and list(csv["key"]) == list(table["key"])
    assert list(returned["key"]) == list(table["key"])
    write_front_table(df, COLUMNS, tmp_path / "front.json")
    records = json.loads((tmp_path / "front.json").read_text())
    assert [r["key"] for r in records] == list(table["key"])
    assert json.loads(records[0]["config"]) == json.loads(df.loc[table.index[0], "config"])


def test_bad_columns_raise_config_error():
    df = _evaluations(5)
    with pytest.raises(ConfigError, match="unknown objective 'speed'"):
        pareto_mask(df, ["accuracy", "speed"])
    with pytest.raises(ConfigError, match="'peak_mem@cpu' is not in the evaluations"):
        pareto_mask(df, ["accuracy", "peak_mem@cpu"])
    with pytest.raises(ConfigError, match="at least one objective"):
        write_report("unused", df, [])
    with pytest.raises(ConfigError, match="hypervolume history"):
        plot_hypervolume([], "unused.png")


def test_objective_pairs_one_series_per_target():
    pairs = {(y, x): series for y, x, series in objective_pairs(COLUMNS)}
    assert set(pairs) == {("accuracy", "macs"), ("accuracy", "latency_ms"), ("macs", "latency_ms")}
    assert [s[2] for s in pairs[("accuracy", "latency_ms")]] == ["cpu", "onnxruntime"]
    assert pairs[("accuracy", "macs")] == [("accuracy", "macs", "all")]
    both = {(y, x): s for y, x, s in objective_pairs(["latency_ms@cpu", "latency_ms@gpu", "peak_mem@cpu",
                                                      "peak_mem@gpu"])}
    assert [s[2] for s in both[("latency_ms", "peak_mem")]] == ["cpu", "gpu"]  # matched by target


class _FrontParser(HTMLParser):
    """Collects the cells of the table with id ``front``, the embedded images and the links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self._in_front = self._in_body = self._in_cell = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "front":
            self._in_front = True
        elif self._in_front and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td":
            self._in_cell = True
            self.rows[-1].append("")
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "a":
            self.links.append(a.get("href", ""))

    def handle_endtag(self, tag):
        if tag == "td":
            self._in_cell = False
        elif tag == "table":
            self._in_front = self._in_body = False

    def handle_data(self, data):
        if self._in_cell:
            self.rows[-1][-1] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    df = _evaluations()
    exported = out / "models" / "knee.onnx"
    exported.parent.mkdir()
    exported.write_bytes(b"onnx")
    hv = [(i, 1.0 - 1.0 / i) for i in range(1, len(df) + 1)]
    path = write_report(out, df, COLUMNS, hv_history=hv, exports=[exported], title="demo <run>",
                        summary={"strategy": "nsga2"})
    return df, path


def test_report_files_and_page_content(report):
    df, path = report
    out = path.parent
    assert path.name == "report.html" and (out / "front.csv").exists()
    pngs = sorted((out / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["front_accuracy_vs_latency_ms.png", "front_accuracy_vs_macs.png",
                                      "front_macs_vs_latency_ms.png", "hypervolume.png"]
    assert all(p.read_bytes().startswith(PNG_MAGIC) and p.stat().st_size > 5000 for p in pngs)
    page = path.read_text()
    parser = _FrontParser()
    parser.feed(page)
    table = front_table(df, COLUMNS)
    assert len(parser.rows) == len(table)
    for row, (_, want) in zip(parser.rows, table.iterrows()):
        assert json.loads(row[1]) == json.loads(want["config"])
        assert float(row[2]) == pytest.approx(want["accuracy"], rel=1e-5)
    assert sum("(knee)" in r[0] for r in parser.rows) == 1
    assert len(parser.images) == len(pngs)
    assert all(base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC) for src in parser.images)
    assert parser.links == ["models/knee.onnx"]
    assert "demo &lt;run&gt;" in page and "nsga2" in page  # escaped title, user summary
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)  # self-contained: nothing fetched


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(page: Path) -> tuple[str, str]:
    """DOM after load and the browser's log (console messages appear as ``CONSOLE`` lines)."""
    proc = subprocess.run([_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
                           "--v=0", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_page_opens_in_headless_chromium_without_console_errors(report, tmp_path):
    df, path = report
    control = tmp_path / "control.html"  # the console check can fail: a page with an error is caught
    control.write_text("<html><body><script>console.error('boom'); notDefined();</script></body></html>")
    _, control_log = _headless(control)
    assert "CONSOLE" in control_log and "Uncaught ReferenceError" in control_log
    dom, log = _headless(path)
    assert "CONSOLE" not in log and "Uncaught" not in log
    parser = _FrontParser()
    parser.feed(dom)
    assert len(parser.rows) == len(front_table(df, COLUMNS)) > 0
    assert len(parser.images) == 4
