"""A run that starts from a pretrained CNN checkpoint (``supernet.pretrained`` with the mbv3/resnet families):
the checkpoint's network is the largest sub-network, a classifier for other classes is new, a grey-scale
input sums the RGB filters, ``train.epochs: 0`` searches the checkpoint as it is, and what cannot work is one
line before or at the start of training. The checkpoint is a small torchvision-layout ResNet written here."""
from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

import supernas as sn
from cli_helpers import cli
from supernas.config import parse_config
from supernas.errors import CheckpointError, ConfigError, SupernasWarning
from supernas.train import load_supernet


class Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class SmallResNet(nn.Module):
    """torchvision's ResNet layout and names (conv1, bn1, layer1..4, fc) with basic blocks, 2 per stage."""

    def __init__(self, num_classes: int, widths=(8, 16, 16, 32)) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 8
        for i, w in enumerate(widths, 1):
            setattr(self, f"layer{i}", nn.Sequential(Basic(cin, w, 1 if i == 1 else 2), Basic(w, w, 1)))
            cin = w
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x.mean((2, 3)))


def checkpoint(path, num_classes: int, seed: int = 0) -> SmallResNet:
    torch.manual_seed(seed)
    net = SmallResNet(num_classes)
    for m in net.modules():  # trained-looking statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 1.5), m.weight.data.uniform_(0.5, 1.5)
    torch.save({"state_dict": net.state_dict()}, path)
    return net.eval()


SPACE = {"depth_deltas": [0, 1], "width_mults": [0.5, 1.0]}


def run_doc(tmp_path, pretrained, epochs: int = 1, **args) -> dict:
    return {"name": "pretrained", "out": str(tmp_path / "run"), "seed": 0,
            "supernet": {"family": "resnet", "pretrained": str(pretrained), "args": {**SPACE, **args}},
            "data": {"dataset": "digits", "image_size": 16, "channels": 1},
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01, "num_random": 1, "num_threads": 1,
                      "eval_every": 0, "bn_calib_batches": 2},
            "targets": {"cpu": {"backend": "cpu", "threads": 1, "warmup": 1, "repeats": 3}},
            "search": {"strategy": "random", "objectives": ["accuracy", "macs"], "evaluations": 4},
            "export": {"picks": ["best-accuracy"], "formats": ["torch"]}}


def write(tmp_path, doc, name="run.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def test_grey_input_sums_the_rgb_filters_and_keeps_the_function(tmp_path):
    original = checkpoint(tmp_path / "r.pt", num_classes=10)
    net = sn.create_supernet("resnet", pretrained=str(tmp_path / "r.pt"), in_channels=1, **SPACE)
    grey = torch.randn(4, 1, 32, 32)
    largest = net.extract(net.space.largest()).eval()
    with torch.no_grad():
        assert torch.allclose(largest(grey), original(grey.expand(-1, 3, -1, -1)), atol=1e-5)


def test_other_classes_get_a_new_classifier_unless_refused(tmp_path):
    original = checkpoint(tmp_path / "r.pt", num_classes=7)
    with pytest.warns(SupernasWarning, match=r"classifier is new \(7 -> 10 classes\)"):
        net = sn.create_supernet("resnet", pretrained=str(tmp_path / "r.pt"), num_classes=10, reorder=False, **SPACE)
    assert net.fc.weight.shape[0] == 10
    assert torch.equal(net.stages[0].blocks[0].conv1.weight, original.layer1[0].conv1.weight)  # the rest kept
    with pytest.raises(CheckpointError, match="classifies 7 classes, the supernet 10"):
        sn.create_supernet("resnet", pretrained=str(tmp_path / "r.pt"), num_classes=10, allow_new_head=False, **SPACE)


def test_run_fine_tunes_a_pretrained_resnet_then_searches_and_exports(tmp_path, capsys):
    checkpoint(tmp_path / "r.pt", num_classes=1000)
    code, err = cli(["run", "--config", write(tmp_path, run_doc(tmp_path, tmp_path / "r.pt"))], capsys)
    assert code == 0, err
    run = tmp_path / "run"
    assert (run / "best-accuracy.pt2").is_file() and (run / "report.html").is_file()
    net = load_supernet(run / "checkpoints")
    assert list(net.arch["stage_widths"]) == [8, 16, 16, 32] and net.arch["num_classes"] == 10  # from file and data
    assert net.trained_epochs == 1


def test_epochs_0_searches_the_checkpoint_as_it_is_and_the_run_can_grow(tmp_path, capsys):
    checkpoint(tmp_path / "r.pt", num_classes=10)
    doc = run_doc(tmp_path, tmp_path / "r.pt", epochs=0)
    code, err = cli(["run", "--config", write(tmp_path, doc)], capsys)
    assert code == 0, err
    saved = load_supernet(tmp_path / "run" / "checkpoints")
    with pytest.warns(SupernasWarning, match="RGB filters are summed"):
        loaded = sn.create_supernet("resnet", pretrained=str(tmp_path / "r.pt"), num_classes=10, in_channels=1,
                                    image_size=16, **SPACE)
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), loaded.state_dict().values()))
    assert saved.trained_epochs is None  # weights only: nothing was trained
    doc["train"]["epochs"] = 1  # grown: trains from the checkpoint's weights
    code, err = cli(["run", "--config", write(tmp_path, doc, "grown.yaml")], capsys)
    assert code == 0, err
    assert load_supernet(tmp_path / "run" / "checkpoints").trained_epochs == 1


def test_epochs_0_with_other_classes_is_one_line(tmp_path, capsys):
    checkpoint(tmp_path / "r.pt", num_classes=7)
    code, err = cli(["run", "--config", write(tmp_path, run_doc(tmp_path, tmp_path / "r.pt", epochs=0))], capsys)
    assert code != 0 and "classifies 7 classes, the supernet 10" in err and "Traceback" not in err


@pytest.mark.parametrize("change, message", [
    (lambda d: d["supernet"].update(family="vit"), "the vit family loads no checkpoint"),
    (lambda d: d["train"].update(zero_init_residual=True), "zero_init_residual would reset the pretrained"),
    (lambda d: d["supernet"]["args"].update(depth_deltaz=[0]), "depth_deltaz"),
    (lambda d: d["supernet"].update(pretrained=None) or d["train"].update(epochs=0), "needs supernet.pretrained"),
])
def test_run_files_that_cannot_use_the_checkpoint_fail_at_load_time(tmp_path, change, message):
    doc = run_doc(tmp_path, tmp_path / "r.pt")
    change(doc)
    with pytest.raises(ConfigError, match=message):
        parse_config(doc)


def test_a_missing_checkpoint_is_named_before_training(tmp_path, capsys):
    code, err = cli(["run", "--config", write(tmp_path, run_doc(tmp_path, tmp_path / "nope.pt"))], capsys)
    assert code != 0 and "nope.pt is not a file" in err and not (tmp_path / "run" / "checkpoints").exists()


def test_the_readme_run_file_for_a_published_supernet_is_valid():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Start from a published supernet"):]
    snippet = section[section.index("```yaml") + len("```yaml"):]
    cfg = parse_config(yaml.safe_load(snippet[:snippet.index("```")]))
    assert cfg.supernet.family == "mbv3" and cfg.supernet.pretrained.endswith("w1.0") and cfg.train.epochs == 5
