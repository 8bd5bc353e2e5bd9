"""CPU latency of (a) the supernet forward with a config active, (b) the extracted sub-network,
(c) a hand-written static twin of the same architecture, measured side by side (interleaved rounds).

Goals: (b)/(c) <= 1.02 and (a)/(b) <= 1.15.   Run: .venv/bin/python benchmarks/elastic_overhead.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import supernas as sn
from supernas.elastic import make_divisible
from supernas.supernets.mbv3 import STAGE_HSWISH, STAGE_SE, STAGE_STRIDES, STAGE_WIDTHS

from _results import write_section


# --------------------------------------------------------------- hand-written MobileNetV3 twin
def cba(cin, cout, k, s=1, groups=1, act=nn.Hardswish):
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act()]


class HandSE(nn.Module):
    def __init__(self, c):
        super().__init__()
        m = make_divisible(c // 4)
        self.fc = nn.Sequential(nn.Conv2d(c, m, 1), nn.ReLU(), nn.Conv2d(m, c, 1), nn.Hardsigmoid())

    def forward(self, x):
        return x * self.fc(x.mean((2, 3), keepdim=True))


class HandBlock(nn.Module):
    def __init__(self, cin, cout, k, e, s, hs, se, expand=True):
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        mid = make_divisible(round(cin * e)) if expand else cin
        layers = (cba(cin, mid, 1, act=act) if expand else []) + cba(mid, mid, k, s, mid, act)
        if se:
            layers.append(HandSE(mid))
        layers += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body, self.res = nn.Sequential(*layers), s == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.res else self.body(x)


def hand_mbv3(cfg, num_classes=1000, w=1.0):
    c = make_divisible(16 * w)
    layers = cba(3, c, 3, 2) + [HandBlock(c, c, 3, 1, 1, False, False, expand=False)]
    for s, (width, stride, hs, se) in enumerate(zip(STAGE_WIDTHS, STAGE_STRIDES, STAGE_HSWISH, STAGE_SE), 1):
        cout = make_divisible(width * w)
        for b in range(1, cfg[f"stage{s}.depth"] + 1):
            layers.append(HandBlock(c, cout, cfg[f"stage{s}.block{b}.kernel"], cfg[f"stage{s}.block{b}.expand"],
                                    stride if b == 1 else 1, hs, se))
            c = cout
    layers += cba(c, 960, 1) + [nn.AdaptiveAvgPool2d(1), nn.Conv2d(960, 1280, 1, bias=False), nn.Hardswish(),
                                nn.Flatten(), nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


def median_ms(fn, x, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights produce denormals that trained weights do not
    torch.manual_seed(0)
    net = sn.create_supernet("mbv3", num_classes=1000).eval()
    rows = []
    for name in ("largest", "median", "smallest"):
        cfg = net.space.preset(name)
        sub = net.extract(cfg).eval()
        twin = hand_mbv3(cfg).eval()
        assert sn.count(twin, (1, 3, args.size, args.size)) == sn.count(sub, (1, 3, args.size, args.size))
        x = torch.randn(1, 3, args.size, args.size)
        net.set_active(cfg)
        times = {"a": [], "b": [], "c": []}
        with torch.inference_mode():
            for f in (net, sub, twin):  # warm-up
                median_ms(f, x, 3)
            for _ in range(args.rounds):  # interleaved rounds
                for k, f in (("a", net), ("b", sub), ("c", twin)):
                    times[k].append(median_ms(f, x, args.reps))
        a, b, c = (statistics.median(times[k]) for k in "abc")
        macs = sn.count(sub, (1, 3, args.size, args.size))["macs"]
        rows.append((name, macs, a, b, c))
        print(f"{name:9s} {macs / 1e6:7.1f} MMACs  supernet {a:7.2f} ms  extracted {b:7.2f} ms  "
              f"hand-written {c:7.2f} ms  (b)/(c)={b / c:.3f}  (a)/(b)={a / b:.3f}")
    lines = [f"mbv3 (OFA space, w1.0, 1000 classes), input 1x3x{args.size}x{args.size}, torch "
             f"{torch.__version__}, {args.threads} threads, median of {args.rounds} interleaved rounds x "
             f"{args.reps} runs.", "",
             "| config | MMACs | (a) supernet ms | (b) extracted ms | (c) hand-written ms | (b)/(c) | (a)/(b) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {m / 1e6:.1f} | {a:.2f} | {b:.2f} | {c:.2f} | {b / c:.3f} | {a / b:.3f} |"
              for n, m, a, b, c in rows]
    lines += ["", "Goals: (b)/(c) <= 1.02, (a)/(b) <= 1.15."]
    write_section("elastic_overhead.py", "\n".join(lines))


if __name__ == "__main__":
    main()
