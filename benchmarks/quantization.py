"""INT8 in ONNX Runtime: FP32 vs INT8 latency and size per family, and the front of a quantization co-search.

Part 1 (per family, random weights: speed and size do not depend on trained values): the largest, median and
smallest sub-networks exported to ONNX, timed FP32 and all-INT8 on the ``onnxruntime`` target (1 thread,
batch 1, drift-corrected), with their initialiser bytes.
Part 2 (one search budget; the supernet: an mbv3 — or with --family resnet a basic-block resnet — trained on the
embedded digits, or with --run DIR a trained run's supernet on its own data): on accuracy x INT8 latency, the
hypervolume of (a) the FP32 front (FP32 latency), (b) that front with every point quantized to all-INT8,
(c) the front of a search of architecture and per-block precision together (``policy: per-block``); all on one
normalisation. Goals: (c) dominates (b); at accuracy within 0.5 points of the FP32 largest, (c)'s fastest point
is >= 3x faster than the FP32 largest and >= 1.5x faster than the all-INT8 largest.
Run alone: ``.venv/bin/python benchmarks/quantization.py [--evaluations 30] [--epochs 6] [--seeds 3]
[--family mbv3 --family resnet] [--run DIR --skip-sizes]``; with several seeds the verdict is the median of
hv(c) / hv(b).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section  # noqa: E402

import supernas as sn  # noqa: E402
from supernas import quantize as Q  # noqa: E402
from supernas.measure import Evaluator  # noqa: E402
from supernas.measure.onnx_model import onnx_bytes, ort_session  # noqa: E402
from supernas.search.pareto import Normalisation, front_indices  # noqa: E402

LAT = "latency_ms@onnxruntime"
TARGETS = {"onnxruntime": {"backend": "onnxruntime", "threads": 1, "repeats": 50}}
FAMILIES = {
    "mbv3 (w0.5, 32 px)": ("mbv3", {"num_classes": 10, "image_size": 32, "width_mult": 0.5, "stem_stride": 1}),
    "resnet basic (CIFAR, 32 px)": ("resnet", {"num_classes": 10, "image_size": 32, "block": "basic",
                                               "small_input": True, "stem_width": 32,
                                               "stage_widths": (32, 64, 128, 256), "base_depths": (1, 1, 1, 1),
                                               "depth_deltas": (0, 1), "width_mults": (0.5, 0.75, 1.0),
                                               "expand_ratios": (0.5, 0.75, 1.0)}),
    "bert (h256, 4 layers, 64 tokens)": ("bert", {"vocab_size": 2000, "hidden_size": 256, "num_hidden_layers": 4,
                                                  "num_attention_heads": 4, "intermediate_size": 1024,
                                                  "max_position_embeddings": 64, "seq_len": 64, "num_classes": 2}),
    "vit (32 px, h192, 4 layers)": ("vit", {"image_size": 32, "patch_size": 4, "hidden_size": 192,
                                            "num_hidden_layers": 4, "num_attention_heads": 3,
                                            "intermediate_size": 768, "num_classes": 10}),
}


def part1() -> list[str]:
    lines = ["| family | sub-network | FP32 ms | INT8 ms | speed-up | FP32 bytes | INT8 bytes | ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, (family, args) in FAMILIES.items():
        torch.manual_seed(0)
        try:
            net = sn.create_supernet(family, **args).eval()
        except Exception as e:  # noqa: BLE001 - a family whose arguments differ: say so, go on
            lines.append(f"| {label} | (not built: {e}) | | | | | | |")
            continue
        inputs = [net.random_input(net.input_shape(net.space.largest(), batch=8), torch.Generator().manual_seed(i))
                  for i in range(4)]
        loader = [(x, torch.zeros(len(x), dtype=torch.long)) for x in inputs]
        fp = Evaluator(net, [LAT, "bytes"], targets=TARGETS, calib_loader=loader, calib_batches=0)
        q = Q.QuantizedEvaluator(net, [LAT, "bytes"], targets=TARGETS, calib_loader=loader, calib_batches=0,
                                 quantization={"policy": "int8", "calib_batches": 4},
                                 latency_baselines=fp.latency_baselines())
        for name in ("largest", "median", "smallest"):
            cfg = getattr(net.space, name)()
            a, b = fp(cfg), q(cfg)
            lines.append(f"| {label} | {name} | {a[LAT]:.3f} | {b[LAT]:.3f} | {a[LAT] / b[LAT]:.2f}x | "
                         f"{a['bytes']:,.0f} | {b['bytes']:,.0f} | {a['bytes'] / b['bytes']:.2f}x |")
            print(lines[-1], flush=True)
    return lines


def kernel_times(model_bytes: bytes, x: np.ndarray, runs: int = 200) -> dict[str, float]:
    """Microseconds per run that ONNX Runtime (1 thread, its own profiler) spends in each kind of kernel of a
    graph as it optimises it: convolutions split into depthwise (group > 1) and the others, the rest by type."""
    import json
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        optimised = os.path.join(tmp, "optimised.onnx")
        ort_session(model_bytes, cpu_only=True, optimized_model_filepath=optimised)
        kinds = {}
        for node in onnx.load(optimised).graph.node:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            kinds[node.name] = f"{node.op_type} ({'depthwise' if group > 1 else 'dense'})" if "Conv" in node.op_type \
                else node.op_type
        sess = ort_session(model_bytes, cpu_only=True, enable_profiling=True,
                           profile_file_prefix=os.path.join(tmp, "profile"))
        name = sess.get_inputs()[0].name
        for _ in range(runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    out: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            kind = kinds.get(e["name"][: -len("_kernel_time")], e["args"].get("op_name", "?"))
            out[kind] = out.get(kind, 0.0) + e["dur"] / runs
    return out


def kernels() -> list[str]:
    """Where the time of each family's largest sub-network goes in ONNX Runtime, FP32 vs all-INT8."""
    lines = ["Kernel time of the largest sub-network per run (ONNX Runtime's profiler, 1 thread, batch 1, 200 runs; "
             "profiling adds overhead, so compare within a row):", "",
             "| family | kernel | FP32 us | INT8 us |", "|---|---|---:|---:|"]
    for label, (family, args) in FAMILIES.items():
        if family not in ("mbv3", "resnet"):
            continue
        torch.manual_seed(0)
        net = sn.create_supernet(family, **args).eval()
        cfg = net.space.largest()
        calib = [(net.random_input(net.input_shape(cfg, batch=8)), torch.zeros(8, dtype=torch.long))
                 for _ in range(4)]
        q = Q.QuantizedEvaluator(net, ["bytes"], targets=TARGETS, calib_loader=calib, calib_batches=0,
                                 quantization={"policy": "int8", "calib_batches": 4})
        _, int8 = q.deploy(cfg)
        fp32 = onnx_bytes(int8.float_model, net.example_input(cfg, batch=2), dynamic={0: "batch"})
        x = net.example_input(cfg).numpy()
        a, b = kernel_times(fp32, x), kernel_times(int8.model_bytes, x)
        conv = lambda t, kind: sum(v for k, v in t.items() if "Conv" in k and kind in k)  # noqa: E731
        rows = [("convolutions, depthwise", conv(a, "depthwise"), conv(b, "depthwise")),
                ("convolutions, dense", conv(a, "dense"), conv(b, "dense")),
                ("everything else", sum(a.values()) - conv(a, "("), sum(b.values()) - conv(b, "(")),
                ("**all kernels**", sum(a.values()), sum(b.values()))]
        for kind, fa, fb in rows:
            lines.append(f"| {label} | {kind} | {fa:.0f} | {fb:.0f} |")
            print(lines[-1], flush=True)
    return lines


SEARCH_NETS = {  # label, supernet arguments, training settings
    "mbv3": ("mbv3 w0.5", dict(width_mult=0.5, stem_stride=1, depths=(1, 2, 3), kernel_sizes=(3, 5),
                               expand_ratios=(2, 4, 6)), {}),
    # the default recipe diverges on this resnet (loss 5.5 in epoch 1, 23 % after 6 epochs); BigNAS's
    # identity-initialised residual blocks and one warm-up epoch give 97.8 % (largest and smallest)
    "resnet": ("resnet basic half width", dict(block="basic", small_input=True, stem_width=32,
                                               stage_widths=(32, 64, 128, 256), base_depths=(1, 1, 1, 1),
                                               depth_deltas=(0, 1), width_mults=(0.5, 0.75, 1.0),
                                               expand_ratios=(0.5, 0.75, 1.0)),
               dict(zero_init_residual=True, warmup_epochs=1)),
}


def co_search(net, fp, mixed, cols: list[str], evaluations: int, seed: int) -> dict:
    """One seed of part 2: (a) the FP32 search's front, (b) it quantized all-INT8, (c) the per-block search's
    front; (b)'s and (c)'s points measured again in one pass by one evaluator (two separate timings of one
    graph differ by a few per cent, which would decide "dominates" by noise)."""
    t0 = time.perf_counter()
    a = sn.search.search(net, fp, cols, strategy="linas", evaluations=evaluations, seed=seed, progress=False)
    t1 = time.perf_counter()
    c = sn.search.search(mixed.space, mixed, cols, strategy="linas", evaluations=evaluations, seed=seed,
                         progress=False)
    t2 = time.perf_counter()
    measured_c = [e for e in c.evaluations if e.status == "ok"]
    c_front = [measured_c[i].config for i in front_indices([e.values for e in measured_c], cols)[0]]
    all_int8 = {ch.name: Q.PRECISIONS[0] for ch in mixed.space.choices if ch.name not in net.space}
    b_cfgs = [mixed.space.validate({**p.config, **all_int8}) for p in a.front]  # a point of the per-block space
    again = {mixed.space.key(cfg): mixed(cfg) for cfg in [*b_cfgs, *c_front]}
    b = [again[mixed.space.key(cfg)] for cfg in b_cfgs]
    front_a = [p.values for p in a.front]
    front_c = [again[mixed.space.key(cfg)] for cfg in c_front]
    norm = Normalisation.from_values(cols, front_a + b + front_c)
    hv = {"a": norm.hypervolume(front_a), "b": norm.hypervolume(b), "c": norm.hypervolume(front_c)}
    dominates = all(any(q["accuracy"] >= p["accuracy"] and q[LAT] <= p[LAT] for q in front_c) for p in b)
    fp32_blocks = [sum(v == "fp32" for k, v in cfg.items() if k not in net.space) for cfg in c_front]
    return {"hv": hv, "dominates": dominates, "front_c": front_c, "sizes": (len(front_a), len(b), len(front_c)),
            "fp32_blocks": fp32_blocks, "seconds": (t1 - t0, t2 - t1, time.perf_counter() - t2)}


def digits_supernet(family: str, epochs: int) -> tuple[Any, Any, str]:
    """A supernet of ``family`` trained ``epochs`` on the embedded digits at 16 px: (net, data, label)."""
    from supernas.data import load_dataset
    from supernas.train.trainer import train

    torch.manual_seed(0)
    data = load_dataset("digits", image_size=16, channels=1, seed=0)
    label, args, recipe = SEARCH_NETS[family]
    net = sn.create_supernet(family, num_classes=10, image_size=16, in_channels=1, **args)
    t0 = time.perf_counter()
    train(net, data, epochs=epochs, batch_size=64, progress=False, **recipe)
    return net, data, (f"{label} on digits 16 px, {epochs} epochs{' ' + str(recipe) if recipe else ''} "
                       f"({time.perf_counter() - t0:.0f} s)")


def run_supernet(run: str) -> tuple[Any, Any, str, str]:
    """The trained supernet of a run directory and the run's data: (net, data, run name, label)."""
    from supernas.run import run_from_dir, trained_supernet

    cfg, paths = run_from_dir(run)
    net, data = trained_supernet(cfg, paths)
    return net, data, cfg.name, f"run `{run}` ({cfg.supernet.family} {cfg.supernet.args}; {data.describe()})"


def part2(net: Any, data: Any, label: str, evaluations: int, seeds: int = 1) -> list[str]:
    net.eval()
    cols = ["accuracy", LAT]
    fp = Evaluator(net, cols, data=data, targets=TARGETS)
    base = fp.latency_baselines()
    int8 = Q.QuantizedEvaluator(net, cols, data=data, targets=TARGETS, quantization="int8", latency_baselines=base)
    mixed = Q.QuantizedEvaluator(net, cols, data=data, targets=TARGETS, quantization="per-block",
                                 latency_baselines=base)
    largest = net.space.largest()
    fp_largest, int8_largest = fp(largest), int8(largest)
    n_val = len(data.eval_loader("val", 256).dataset)
    lines = [f"{label}; {evaluations} evaluations per search, LINAS, seeds 0-{seeds - 1}; accuracy on the "
             f"{n_val:,} validation images (one image = {100 / n_val:.2f} points). Per-block samples keep a block "
             f"FP32 with probability 1/blocks (the precision prior). (b)'s "
             f"and (c)'s points are measured again side by side by the per-block evaluator. FP32 largest: accuracy "
             f"{fp_largest['accuracy']:.4f}, {fp_largest[LAT]:.3f} ms; all-INT8 largest: "
             f"{int8_largest['accuracy']:.4f}, {int8_largest[LAT]:.3f} ms.", "",
             "| seed | hv (a) FP32 | hv (b) (a) all-INT8 | hv (c) per-block | points a/b/c | (c) dominates (b) | "
             "FP32 blocks on (c) | fastest (c) within 0.5 points: x FP32 / x INT8 largest | seconds a / c |",
             "|---:|---:|---:|---:|---|:-:|---|---|---|"]
    ratios, speeds = [], []
    for seed in range(seeds):
        r = co_search(net, fp, mixed, cols, evaluations, seed)
        ok = [p for p in r["front_c"] if p["accuracy"] >= fp_largest["accuracy"] - 0.005]
        fastest = min(ok, key=lambda p: p[LAT]) if ok else None
        speed = (fp_largest[LAT] / fastest[LAT], int8_largest[LAT] / fastest[LAT]) if fastest else None
        ratios.append(r["hv"]["c"] / r["hv"]["b"])
        speeds.append(speed)
        lines.append(f"| {seed} | {r['hv']['a']:.4f} | {r['hv']['b']:.4f} | {r['hv']['c']:.4f} | "
                     f"{'/'.join(map(str, r['sizes']))} | {'yes' if r['dominates'] else 'no'} | "
                     f"{r['fp32_blocks']} | {f'{speed[0]:.2f}x / {speed[1]:.2f}x' if speed else 'none'} | "
                     f"{r['seconds'][0]:.0f} / {r['seconds'][1]:.0f} |")
        print(lines[-1], flush=True)
    med = float(np.median(ratios))
    s1 = float(np.median([sp[0] if sp else 0.0 for sp in speeds]))
    s2 = float(np.median([sp[1] if sp else 0.0 for sp in speeds]))
    lines += ["", f"- hv(c) / hv(b): median {med:.3f} over {seeds} seed(s) (>= 1 in {sum(x >= 1 for x in ratios)} of "
                  f"{seeds}); goal (c) dominates (b): {'met' if med >= 1 else 'NOT met'} by hypervolume",
              f"- fastest (c) point within 0.5 points of the FP32 largest, median: {s1:.2f}x faster than the FP32 "
              f"largest (goal 3x: {'met' if s1 >= 3 else 'NOT met'}), {s2:.2f}x than the all-INT8 largest (goal "
              f"1.5x: {'met' if s2 >= 1.5 else 'NOT met'})"]
    for line in lines[-2:]:
        print(line, flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaluations", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=1, help="co-search seeds (the median is the verdict)")
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--family", choices=sorted(SEARCH_NETS), action="append",
                    help="supernet(s) trained on digits for the co-search part (default: mbv3 unless --run)")
    ap.add_argument("--run", default=None, help="a trained run directory: the co-search part searches its supernet "
                    "on its data (RESULTS.md section of the run's name)")
    ap.add_argument("--skip-sizes", action="store_true", help="skip part 1 (FP32 vs INT8 per family)")
    ap.add_argument("--kernels", action="store_true", help="also profile where the largest mbv3's and resnet's "
                    "time goes, FP32 vs INT8, by kind of kernel")
    ap.add_argument("--no-write", action="store_true", help="print only; RESULTS.md unchanged")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    body = [f"CPU flags: {', '.join(Q.cpu_flags()) or 'none found'}; onnxruntime "
            f"{__import__('onnxruntime').__version__}; static: QDQ, uint8 activations, per-channel int8 weights, "
            f"minmax calibration; transformers: dynamic. Load average at start "
            f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}.", *([] if args.skip_sizes else ["", *part1()]),
            *(["", *kernels()] if args.kernels else [])]
    # a co-search on a run's supernet alone gets a section of the run's name; the kernel profile alone its own
    section = "quantization.py" + (" (kernels)" if args.skip_sizes and args.skip_search else "")
    if not args.skip_search:
        for family in args.family or ([] if args.run else ["mbv3"]):
            body += ["", *part2(*digits_supernet(family, args.epochs), args.evaluations, args.seeds)]
        if args.run:
            net, data, name, label = run_supernet(args.run)
            body += ["", *part2(net, data, label, args.evaluations, args.seeds)]
            section += "" if args.family else f" ({name})"
    command = (f"--evaluations {args.evaluations} --epochs {args.epochs} --seeds {args.seeds}"
               + "".join(" --family " + f for f in args.family or []) + (f" --run {args.run}" if args.run else "")
               + (" --skip-sizes" if args.skip_sizes else "") + (" --skip-search" if args.skip_search else "")
               + (" --kernels" if args.kernels else ""))
    body.append(f"\nLoad average at end {os.getloadavg()[0]:.2f}. "
                f"Command: `.venv/bin/python benchmarks/quantization.py {command}`")
    if not args.no_write:
        write_section(section, "\n".join(body))


if __name__ == "__main__":
    main()
