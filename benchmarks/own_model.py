"""A user's own models made elastic (``sn.make_elastic``): CPU latency of (a) the supernet forward with a config
active, (b) the extracted sub-network (a plain torch.fx GraphModule), (c) the same architecture built by hand
with the user's own classes (weights copied from (b), outputs checked equal), side by side, called in turn.

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


def clock(threads: int):
    """The calling thread's CPU time with one thread (what the OS gives other processes is not counted, as
    supernas's own single-threaded targets time), the wall clock otherwise."""
    return time.thread_time if threads == 1 else time.perf_counter


def interleaved_ms(fns, x, calls, now):
    """Median ms per model over ``calls`` rounds, each round one call of every model in turn (drift hits all)."""
    times = [[] for _ in fns]
    for _ in range(calls):
        for k, f in enumerate(fns):
            t0 = now()
            f(x)
            times[k].append((now() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--passes", type=int, default=5, help="whole measurements; ratios are their median")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    load = os.getloadavg()
    cases = []
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
            cases.append((name, label, net, c, sub, hand, x, diff, sn.count(sub, (1, 3, 32, 32))["macs"]))
    passes: list[list[tuple[float, float, float]]] = [[] for _ in cases]
    for _ in range(args.passes):  # every case once per pass: slow drift of the machine spreads over all
        for k, (name, label, net, c, sub, hand, x, diff, macs) in enumerate(cases):
            net.set_active(c)
            with torch.inference_mode():
                interleaved_ms((net, sub, hand), x, 10, clock(args.threads))  # warm-up
                passes[k].append(tuple(interleaved_ms((net, sub, hand), x, args.calls, clock(args.threads))))
    rows = []
    for (name, label, _, _, _, _, _, diff, macs), ts in zip(cases, passes):
        a, b, h = (statistics.median(t[i] for t in ts) for i in range(3))
        bc = [t[1] / t[2] for t in ts]
        ab = [t[0] / t[1] for t in ts]
        rows.append((name, label, macs, a, b, h, statistics.median(bc), min(bc), max(bc), statistics.median(ab),
                     min(ab), max(ab), diff))
        print(f"{name:17s} {label:15s} {macs / 1e6:7.2f} MMACs  supernet {a:7.3f} ms  extracted {b:7.3f} ms  "
              f"hand-built {h:7.3f} ms  (b)/(c)={rows[-1][6]:.3f} [{min(bc):.3f}-{max(bc):.3f}]  "
              f"(a)/(b)={rows[-1][9]:.3f} [{min(ab):.3f}-{max(ab):.3f}]  max|diff| {diff:.1e}")
    end = os.getloadavg()
    lines = [f"Models of `examples/own_model_net.py` made elastic by `sn.make_elastic`; input {args.batch}x3x32x32, "
             f"torch {torch.__version__}, {args.threads} thread(s); per pass {args.calls} calls of each model, "
             f"(a), (b), (c) called in turn, timed by the {'thread CPU' if args.threads == 1 else 'wall'} clock; "
             f"{args.passes} passes over all cases, ratios the median of the passes' ratios [min-max]. (c) is the "
             f"user's own class built at the sub-network's sizes, weights copied from (b), outputs equal (max |diff| "
             f"column). Load average {load[0]:.2f} at start, {end[0]:.2f} at end.", "",
             "| model | config | MMACs | (a) supernet ms | (b) extracted ms | (c) hand-built ms | (b)/(c) | (a)/(b) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {lab} | {m / 1e6:.2f} | {a:.3f} | {b:.3f} | {h:.3f} | {bc:.3f} [{bc0:.3f}-{bc1:.3f}] | "
              f"{ab:.3f} [{ab0:.3f}-{ab1:.3f}] |" for n, lab, m, a, b, h, bc, bc0, bc1, ab, ab0, ab1, _ in rows]
    lines += ["", "Goals: (b)/(c) <= 1.02, (a)/(b) <= 1.15."]
    write_section("own_model.py", "\n".join(lines))


if __name__ == "__main__":
    main()
