"""Sub-networks taken from the trained supernet (extracted + BN-recalibrated, no retraining) vs the same
architectures trained from scratch with the same recipe for the same number of epochs (goal: within 1.5
accuracy points). Run: ``.venv/bin/python benchmarks/no_retrain.py [--epochs N]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from supernas import count  # noqa: E402
from supernas.data import loaders  # noqa: E402
from supernas.supernets import create_supernet  # noqa: E402
from supernas.train import TrainConfig, make_optimizer, make_scheduler, subnet_accuracy, top1  # noqa: E402
from supernas.train.recipes import train_recipe, recipe  # noqa: E402


def train_static(model: torch.nn.Module, data, cfg: TrainConfig) -> float:
    """Plain training of one static network with the recipe's optimizer, schedule and label smoothing."""
    train_loader, val_loader, _ = loaders(data, cfg.batch_size, seed=cfg.seed)
    opt, model = make_optimizer(model, cfg), model.train()
    sched = make_scheduler(opt, cfg, len(train_loader))
    for _ in range(cfg.epochs):
        for x, y in train_loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing).backward()
            opt.step()
            sched.step()
    return top1(model, val_loader)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = recipe("embedded-default")
    epochs = args.epochs or r["train"]["epochs"]
    t0 = time.perf_counter()
    net, data, result = train_recipe("embedded-default", progress=False, epochs=epochs, eval_every=0)
    t_super = time.perf_counter() - t0
    cfg = TrainConfig.make(r["train"], epochs=epochs)
    space = net.space
    picks = {"largest": space.largest(), "random": space.sample(seed=7), "smallest": space.smallest()}
    calib, val = loaders(data, cfg.batch_size, seed=0)[0], loaders(data, cfg.batch_size)[1]
    rows = []
    for name, sub in picks.items():
        acc_super = subnet_accuracy(net, sub, calib, val, cfg.bn_calib_batches)
        torch.manual_seed(1)
        fresh = create_supernet(**r["supernet"]).extract(sub)  # same architecture, fresh weights
        acc_scratch = train_static(fresh, data, cfg)
        macs = count(net.extract(sub).eval(), (1, net.in_channels, net.image_size, net.image_size))["macs"]
        rows.append((name, macs, acc_super, acc_scratch))
        print(name, macs, acc_super, acc_scratch, flush=True)
    lines = ["| sub-network | MACs | from supernet (val %) | from scratch (val %) | gap (points) |",
             "|---|---|---|---|---|"]
    for name, macs, a, b in rows:
        lines.append(f"| {name} | {macs:,} | {100 * a:.2f} | {100 * b:.2f} | {100 * (b - a):+.2f} |")
    table = "\n".join(lines)
    print(table)
    worst = max(100 * (b - a) for _, _, a, b in rows)
    print(f"supernet training {t_super:.0f} s; worst gap {worst:+.2f} points (goal <= 1.5)")
    if not args.no_write:
        write_section("no_retrain.py", f"Recipe `embedded-default` (digits 8x8, mbv3), {epochs} epochs for the "
                      f"supernet and for each from-scratch network; supernet training took {t_super:.0f} s "
                      f"(CPU shared with other jobs). Gap = scratch - supernet; worst {worst:+.2f} points "
                      f"(goal <= 1.5).\n\n{table}")


if __name__ == "__main__":
    main()
