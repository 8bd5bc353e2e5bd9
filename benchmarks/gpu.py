"""The CUDA paths, side by side in one run on one GPU:

1. supernet training: epoch time with mixed precision (AMP, fp16 autocast + gradient scaling) vs fp32,
   same data, same seed, same sandwich rule (largest + smallest + 2 random, in-place distillation);
2. CUDA-event latency of the elastic supernet (active config) vs the extracted static sub-network.

Run on a GPU machine: ``python benchmarks/gpu.py [--images 4096] [--image-sizes 32,128] [--epochs 2]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

from supernas import create_supernet  # noqa: E402
from supernas.measure import make_target, measure_latency  # noqa: E402
from supernas.measure.lut import example_input  # noqa: E402
from supernas.train import train  # noqa: E402

NET = dict(num_classes=10, image_size=32, width_mult=1.0)


def synthetic(n: int, size: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g))


def epoch_seconds(amp: bool, data: tuple[TensorDataset, TensorDataset], size: int, epochs: int, batch: int
                  ) -> tuple[float, float]:
    torch.manual_seed(0)
    net = create_supernet("mbv3", **{**NET, "image_size": size})
    res = train(net, data, epochs=epochs, batch_size=batch, device="cuda", amp=amp, eval_every=0, progress=False,
                num_random=2, distill=True, seed=0)
    last = res.history[-1]
    return float(last["epoch_s"]), float(last["loss_largest"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--image-sizes", default="32,128")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    gpu = torch.cuda.get_device_name(0)
    lines = [f"GPU: {gpu}; torch {torch.__version__}.", "",
             f"**Training** mbv3 (OFA space, w1.0, 10 classes), {args.images} synthetic images, batch {args.batch}, "
             f"sandwich largest + smallest + 2 random with in-place distillation; time of the last of {args.epochs} "
             f"epochs, best of 2 alternated runs each.", "",
             "| input | precision | epoch s | loss of the largest (last epoch) | AMP speed-up |", "|---|---|---|---|---|"]
    for size in (int(v) for v in args.image_sizes.split(",")):
        data = (synthetic(args.images, size, 0), synthetic(256, size, 1))
        rows = []
        for amp in (False, True, False, True):  # alternated, so clocks and caches treat both alike
            rows.append((amp, *epoch_seconds(amp, data, size, args.epochs, args.batch)))
            print(f"{size}px amp={amp}: last epoch {rows[-1][1]:.2f} s, loss {rows[-1][2]:.3f}", flush=True)
        best = {amp: min((s, l) for a, s, l in rows if a == amp) for amp in (False, True)}
        for amp in (False, True):
            lines.append(f"| {size}x{size} | {'AMP (fp16 autocast)' if amp else 'fp32'} | {best[amp][0]:.2f} | "
                         f"{best[amp][1]:.3f} | {best[False][0] / best[True][0]:.2f}x |" if amp else
                         f"| {size}x{size} | fp32 | {best[amp][0]:.2f} | {best[amp][1]:.3f} | |")
    lines += ["", "**Latency** (CUDA events, median of 100 after 20 warm-up), elastic supernet with the config "
              "active vs the extracted static sub-network:", "",
              "| config | batch | supernet ms | extracted ms | supernet / extracted |", "|---|---|---|---|---|"]
    torch.manual_seed(0)
    net = create_supernet("mbv3", **NET).eval()
    for name, cfg in (("largest", net.space.largest()), ("smallest", net.space.smallest())):
        sub = net.extract(cfg).eval()
        for batch in (1, 128):
            spec = make_target({"name": "cuda", "backend": "cuda", "batch_size": batch, "warmup": 20, "repeats": 100})
            x = example_input(net, cfg, spec)
            net.set_active(cfg)
            t_super = measure_latency(net, x, spec).median_ms
            t_sub = measure_latency(sub, x, spec).median_ms
            lines.append(f"| {name} | {batch} | {t_super:.3f} | {t_sub:.3f} | {t_super / t_sub:.3f} |")
            print(lines[-1], flush=True)
    print("\n".join(lines))
    write_section("gpu.py", "\n".join(lines))


if __name__ == "__main__":
    main()
