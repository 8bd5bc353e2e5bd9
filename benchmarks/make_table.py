"""Rebuild benchmarks/data/mbv3_digits.csv: every sub-network of a reduced mbv3 space (2,048 of them) on
the embedded digits data, with accuracy, MACs and CPU latency (batch 1, 1 thread).

Space: mbv3, width_mult 0.5, stem_stride 1, in_channels 1, depth 1 per stage, kernel (3, 5),
expand (3, 6), input resolution (12, 16). Supernet: trained with supernas.train (sandwich rule,
in-place distillation) for --epochs on digits 16x16. Resumable: results go to <work>/table.db first.

Run: .venv/bin/python benchmarks/make_table.py [--epochs 2] [--workers 2] [--work runs/bench_table]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import torch

from supernas.bench import build_table
from supernas.data import load_dataset
from supernas.measure.evaluator import Evaluator
from supernas.supernets import create_supernet
from supernas.train import TrainConfig, load_checkpoint, load_supernet, train

OUT = Path(__file__).parent / "data" / "mbv3_digits.csv"
ARCH = dict(num_classes=10, image_size=16, in_channels=1, width_mult=0.5, stem_stride=1, dropout=0.0,
            depths=(1,), kernel_sizes=(3, 5), expand_ratios=(3, 6), resolutions=(12, 16))
COLUMNS = ["accuracy", "macs", "latency_ms@cpu"]
TARGET = {"backend": "cpu", "threads": 1, "batch_size": 1, "warmup": 3, "repeats": 15}


def table_supernet(work: Path, epochs: int = 2) -> tuple[Any, Any, dict[str, Any]]:
    """(supernet, digits 16x16 data, its training record): trained into ``work/checkpoints`` unless there."""
    bundle = load_dataset("digits", image_size=16, seed=0)
    ckpt = work / "checkpoints"
    t0 = time.perf_counter()
    if (ckpt / "last.pt").exists():  # reuse (possibly interrupted) training
        net = load_supernet(ckpt)
    else:
        net = create_supernet("mbv3", **ARCH)
        train(net, bundle, config=TrainConfig(epochs=epochs, batch_size=64, lr=0.1, num_random=2,
                                               num_threads=2, seed=0), checkpoint_dir=ckpt)
    state = load_checkpoint(ckpt)
    print(f"supernet ready in {time.perf_counter() - t0:.0f} s; space size {net.space.size()}")
    return net, bundle, {**state["config"], "epochs_done": int(state["epoch"]) + 1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="runs/bench_table")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    work = Path(args.work)
    net, bundle, trained = table_supernet(work, args.epochs)
    torch.set_num_threads(1)
    evaluator = Evaluator(net.eval(), COLUMNS, data=bundle, targets={"cpu": TARGET}, calib_batches=10)
    t1 = time.perf_counter()
    table = build_table(net, evaluator, COLUMNS, args.out, store=work / "table.db", workers=args.workers,
                        meta={"made_by": "benchmarks/make_table.py", "arch": {"family": "mbv3", **ARCH},
                              "train": trained,
                              "data": "digits 16x16, seed 0 split; accuracy on the validation split",
                              "target": TARGET, "calib_batches": 10, "workers": args.workers,
                              "machine": platform.platform()})
    print(f"table: {len(table)} rows, {int(table.frame['on_front'].sum())} on the front, "
          f"built in {time.perf_counter() - t1:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
