"""Run facts in the report: what the run is, where and with what it ran, its training curve and the wall
time of each step (recorded in steps.jsonl as each step finishes)."""
from __future__ import annotations

import json
import re

import yaml

from supernas.config import parse_config
from supernas.measure.machine import cpu_flags, describe_machine, library_versions
from supernas.run.facts import record_step, run_facts, step_times, training_history


def _figure(page: str, plot_id: str) -> dict:
    m = re.search(rf'<script type="application/json" id="{plot_id}-fig">(.*?)</script>', page, re.S)
    assert m, plot_id
    return json.loads(m.group(1))


def test_a_finished_run_reports_its_facts_curve_and_step_times(finished_run):
    steps = [json.loads(line)["step"] for line in (finished_run / "steps.jsonl").read_text().splitlines()]
    assert steps == ["train", "search", "export", "report"]
    page = (finished_run / "report.html").read_text()
    facts = page[page.index('<div id="facts"'):]
    for section in ("data", "supernet", "training", "search", "wall time per step", "machine", "library versions"):
        assert f"<h3>{section}</h3>" in facts
    assert "<dt>train</dt>" in facts and "<dt>torch</dt>" in facts and describe_machine() in facts
    history = training_history(finished_run)
    assert [r["epoch"] for r in history] == [0, 1]
    curve = _figure(page, "plot-training")
    by_name = {t["name"]: t for t in curve["data"]}
    assert by_name["loss_largest"]["y"] == [r["loss_largest"] for r in history]
    assert by_name["val_acc_largest"]["x"] == [1, 2] and by_name["val_acc_largest"]["yaxis"] == "y2"


def test_step_times_add_up_invocations_and_name_each_machine(tmp_path):
    record_step(tmp_path, "train", 100.0)
    record_step(tmp_path, "train", 50.0)
    record_step(tmp_path, "search", 7.25)
    with open(tmp_path / "steps.jsonl", "a") as f:
        f.write('{"step": "export", "wall_s": 3\n')  # a line cut by a kill is skipped
        f.write(json.dumps({"step": "export", "wall_s": 2.0, "machine": "a GPU box"}) + "\n")
    times, machines = step_times(tmp_path)
    assert times == {"train": "2.5 min in 2 invocations", "search": "7.2 s", "export": "2.0 s"}
    assert machines == {"machine 1": f"{describe_machine()} (ran train, search)", "machine 2": "a GPU box (ran export)"}


def test_facts_of_a_run_file_without_any_step_yet(tmp_path):
    cfg = parse_config(yaml.safe_load("search: {strategy: random, constraints: {macs: 100}, objectives: "
                                      "[accuracy, macs]}\ntrain: {epochs: 3}\n"))
    facts = run_facts(cfg, tmp_path)
    assert facts["training"]["epochs"] == "0 of 3 logged" and "macs <= 100" in facts["search"]["constraints"]
    assert facts["machine"] == {"machine": f"{describe_machine()} (this report)"}
    assert set(library_versions()) >= {"python", "torch", "numpy"}
    assert all(f in describe_machine() for f in cpu_flags())


def test_cpu_flags_are_the_named_ones_this_cpu_has():
    import os

    from supernas.measure.machine import CPU_FLAGS

    flags = cpu_flags()
    assert all(f in CPU_FLAGS for f in flags)
    text = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    assert ("avx2" in flags) == (" avx2" in text)
