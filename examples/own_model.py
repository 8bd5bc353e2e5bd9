"""Your own PyTorch model through the whole pipeline: made elastic, trained, searched, exported.

    .venv/bin/python examples/own_model.py [--out runs/own-model] [--model mobilenet_v2_style]

The network is a plain module from a file (``examples/own_model_net.py``: a ResNet and a MobileNetV2 with
squeeze-and-excitation, no supernas code in them). ``sn.make_elastic`` finds its channel groups and
skippable residual blocks, ``check()`` proves the result sound, the sandwich rule trains it on the embedded
digits, LINAS searches accuracy x MACs x parameters, and the knee of the front is exported as ONNX,
checked in ONNX Runtime. The run-file equivalent is ``supernet: {family: custom, args: {model:
examples/own_model_net.py:small_resnet}}``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch

import supernas as sn
from supernas.data import load_dataset, loaders
from supernas.measure import Evaluator
from supernas.measure import evaluate_accuracy
from supernas.search import search
from supernas.train import recalibrate_bn, train


def user_factory(name: str):
    path = Path(__file__).with_name("own_model_net.py")
    spec = importlib.util.spec_from_file_location("own_model_net", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/own-model")
    ap.add_argument("--model", default="small_resnet", choices=["small_resnet", "mobilenet_v2_style"])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--evaluations", type=int, default=40)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    data = load_dataset("digits", image_size=16)                     # 1x16x16 digits, 10 classes
    model = user_factory(args.model)(num_classes=data.num_classes, in_channels=data.in_channels)
    net = sn.make_elastic(model, torch.zeros(2, data.in_channels, 16, 16),
                          rules={"conv": [0.25, 0.5, 0.75, 1.0], "linear": [0.5, 1.0]})
    for group in net.check():                                        # every choice changes the network
        print(group["choice"], group["options"])
    print(f"{net.space.size():,} sub-networks")

    train(net, data, config={"epochs": args.epochs, "batch_size": 64, "lr": 0.05, "num_random": 2},
          checkpoint_dir=out / "checkpoints")
    evaluator = Evaluator(net, ["accuracy", "macs", "params"], data=data)
    result = search(net, evaluator, ["accuracy", "macs", "params"], strategy="linas",
                    evaluations=args.evaluations, store=out / "results.db", run="search")
    print(f"front: {len(result.front)} sub-networks, hypervolume {result.hypervolume[-1]:.3f}")
    knee = result.knee
    assert knee is not None
    print("knee", json.dumps(knee.values))
    sub = net.extract(knee.config)                                   # a plain torch.fx GraphModule
    train_loader, _, test_loader = loaders(data, batch_size=64, seed=0)
    recalibrate_bn(sub, train_loader, 20)                            # its own batch-norm statistics
    print(f"knee test accuracy {evaluate_accuracy(sub, test_loader)['accuracy']:.4f}")
    exported = sn.export.export(sub, knee.config, out, formats=["onnx"], name="knee",
                                input_shape=net.input_shape(knee.config))
    print(exported.summary)


if __name__ == "__main__":
    main()
