"""A user's own models made elastic (``sn.make_elastic``): CPU latency of (a) the supernet forward with a config
active, (b) the extracted sub-network (a plain torch.fx GraphModule), (c) the same architecture built by hand
with the user's own classes (weights copied from (b), outputs checked equal), side by side in interleaved rounds.

Goals: (b)/(c) <= 1.02 and (a)/(b) <= 1.15.   Run: .venv/bin/python benchmarks/own_model.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import supernas as sn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import own_model_net as own  # noqa: E402

from _results import write_section  # noqa: E402


def resnet_case():
    """SmallResNet(16, 32, 64; 3 blocks) and its sub-network of half widths and one block fewer per stage,
    which SmallResNet(8, 16, 32; 2 blocks) builds by hand."""
    net = sn.make_elastic(own.small_resnet(), torch.zeros(2, 3, 32, 32))
    half = {c.name: c.options[0] for c in net.space.choices if c.name.endswith(".width")}
    cfg = {**net.space.largest(), **half, "stage0.depth": 2, "stage1.depth": 1, "stage2.depth": 1}
    return "SmallResNet", net, cfg, own.small_resnet(widths=(8, 16, 32), depth=2)


def mobilenet_case():
    """MobileNetV2Style(expand 4; 2/3/3 blocks) and its sub-network of half expansion (and SE) widths with one
    block fewer per stage, which MobileNetV2Style(expand 2; 1/2/2 blocks) builds by hand."""
    net = sn.make_elastic(own.mobilenet_v2_style(), torch.zeros(2, 3, 32, 32))
    inner = {c.name: c.options[0] for c in net.space.choices
             if c.name.endswith(".width") and (".expand." in c.name or ".se." in c.name)}
    cfg = {**net.space.largest(), **inner, "stage0.depth": 1, "stage1.depth": 1, "stage2.depth": 1}
    return "MobileNetV2Style", net, cfg, own.mobilenet_v2_style(stages=((16, 1, 1), (24, 2, 2), (32, 2, 2)), expand=2)


def copy_by_position(net, sub: torch.nn.Module, twin: torch.nn.Module) -> None:
    """Load ``sub``'s tensors into ``twin`` in the order the user's model registers them, shapes checked."""
    order = {k: i for i, k in enumerate(net.state_dict())}
    src, dst = [v for _, v in sorted(sub.state_dict().items(), key=lambda kv: order[kv[0]])], twin.state_dict()
    assert len(src) == len(dst), (len(src), len(dst))
    for (k, v), s in zip(dst.items(), src):
        assert v.shape == s.shape, (k, tuple(v.shape), tuple(s.shape))
    twin.load_state_dict(dict(zip(dst, src)))


def median_ms(fn, x, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    load = os.getloadavg()
    rows = []
    for case in (resnet_case, mobilenet_case):
        name, net, cfg, twin = case()
        net.eval()
        for label, c in (("largest", net.space.largest()), ("hand-buildable", cfg)):
            sub = net.extract(c).eval()
            x = torch.randn(args.batch, 3, 32, 32)
            hand = (twin if label == "hand-buildable" else own.small_resnet() if name == "SmallResNet"
                    else own.mobilenet_v2_style()).eval()
            copy_by_position(net, sub, hand)
            net.set_active(c)
            with torch.inference_mode():
                diff = max((net(x) - sub(x)).abs().max().item(), (hand(x) - sub(x)).abs().max().item())
                assert diff <= 1e-4, diff
                assert sn.count(hand, (1, 3, 32, 32)) == sn.count(sub, (1, 3, 32, 32))
                times = {"a": [], "b": [], "c": []}
                for f in (net, sub, hand):
                    median_ms(f, x, 3)
                for _ in range(args.rounds):
                    for k, f in (("a", net), ("b", sub), ("c", hand)):
                        times[k].append(median_ms(f, x, args.reps))
            a, b, h = (statistics.median(times[k]) for k in "abc")
            macs = sn.count(sub, (1, 3, 32, 32))["macs"]
            rows.append((name, label, macs, a, b, h, diff))
            print(f"{name:17s} {label:15s} {macs / 1e6:7.2f} MMACs  supernet {a:7.3f} ms  extracted {b:7.3f} ms  "
                  f"hand-built {h:7.3f} ms  (b)/(c)={b / h:.3f}  (a)/(b)={a / b:.3f}  max|diff| {diff:.1e}")
    end = os.getloadavg()
    lines = [f"Models of `examples/own_model_net.py` made elastic by `sn.make_elastic`; input {args.batch}x3x32x32, "
             f"torch {torch.__version__}, {args.threads} thread(s), median of {args.rounds} interleaved rounds x "
             f"{args.reps} runs; (c) is the user's own class built at the sub-network's sizes, weights copied from "
             f"(b), outputs equal (max |diff| column). Load average {load[0]:.2f} at start, {end[0]:.2f} at end.", "",
             "| model | config | MMACs | (a) supernet ms | (b) extracted ms | (c) hand-built ms | (b)/(c) | (a)/(b) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {lab} | {m / 1e6:.2f} | {a:.3f} | {b:.3f} | {h:.3f} | {b / h:.3f} | {a / b:.3f} |"
              for n, lab, m, a, b, h, _ in rows]
    lines += ["", "Goals: (b)/(c) <= 1.02, (a)/(b) <= 1.15."]
    write_section("own_model.py", "\n".join(lines))


if __name__ == "__main__":
    main()
