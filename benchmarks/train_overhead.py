"""One sandwich step of the supernet (k sub-networks, gradients accumulated, one optimizer step) vs the
sum of the k extracted static networks' own train steps (forward, backward, optimizer step each).

Same configs, same batch; the two are timed alternately, and the ratio of medians is reported
(goal <= 1.15). Run: ``.venv/bin/python benchmarks/train_overhead.py [--repeats 30]``.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from supernas.run import build_supernet, default_config, load_data  # noqa: E402
from supernas.train import TrainConfig, make_optimizer, sandwich_step, step_configs  # noqa: E402
from supernas.train.distributed import DistInfo  # noqa: E402
from supernas.train.sampling import step_rng  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    run = default_config()
    net = build_supernet(run, load_data(run)).train()
    cfg = TrainConfig.make(run.train, distill=True)
    cfgs = step_configs(net.space, "sandwich", cfg.num_random, step_rng(0, 0, 0))
    k = len(cfgs)
    x = torch.randn(args.batch, net.in_channels, net.image_size, net.image_size)
    y = torch.randint(0, net.num_classes, (args.batch,))
    opt = make_optimizer(net, cfg)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    statics = [net.extract(c).train() for c in cfgs]
    static_opts = [make_optimizer(m, cfg) for m in statics]
    with torch.no_grad():
        teacher = statics[0](x)

    def supernet_step() -> None:
        opt.zero_grad(set_to_none=True)
        sandwich_step(net, net, cfgs, x, y, cfg, scaler, contextlib.nullcontext, DistInfo())
        opt.step()

    def static_steps() -> None:
        for i, (m, o) in enumerate(zip(statics, static_opts)):
            o.zero_grad(set_to_none=True)
            out = m(x)
            loss = (F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing) if i == 0 else
                    F.kl_div(F.log_softmax(out, -1), F.log_softmax(teacher, -1), reduction="batchmean",
                             log_target=True))
            loss.backward()
            o.step()

    for _ in range(3):
        supernet_step(), static_steps()
    t_super, t_static = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter(); supernet_step(); t_super.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); static_steps(); t_static.append(time.perf_counter() - t0)
    ms_super, ms_static = 1000 * statistics.median(t_super), 1000 * statistics.median(t_static)
    ratio = ms_super / ms_static
    table = (f"| k sub-networks | batch | threads | sandwich step (ms, median) | sum of static steps (ms, median) "
             f"| ratio (goal <= 1.15) |\n|---|---|---|---|---|---|\n"
             f"| {k} | {args.batch} | {args.threads} | {ms_super:.1f} | {ms_static:.1f} | {ratio:.3f} |")
    print(table)
    if not args.no_write:
        write_section("train_overhead.py", f"Recipe `embedded-default` supernet (mbv3, 8x8x1 digits), "
                      f"{args.repeats} alternating repeats.\n\n{table}")


if __name__ == "__main__":
    main()
