"""A pretrained torchvision-layout ResNet (random weights, trained-looking statistics) made elastic: the
largest sub-network of the ``resnet`` supernet equals the original network within 1e-5 after the channels
are re-ordered by importance, and smaller widths keep the most important channels. The reference network
is written here independently, in torchvision's layout and names."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import supernas as sn
from supernas.errors import CheckpointError, ConfigError


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, mid * 4, 1, bias=False), nn.BatchNorm2d(mid * 4)
        self.relu = nn.ReLU()
        self.downsample = (nn.Sequential(nn.Conv2d(cin, mid * 4, 1, stride, bias=False), nn.BatchNorm2d(mid * 4))
                           if stride != 1 or cin != mid * 4 else None)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (self.downsample(x) if self.downsample is not None else x))


class TorchvisionResNet(nn.Module):
    """torchvision's ResNet (v1.5) with its parameter names: conv1, bn1, layer1..4, fc."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, mid) in enumerate(zip(layers, (64, 128, 256, 512)), 1):
            blocks = []
            for b in range(n):
                blocks.append(Bottleneck(cin, mid, 2 if b == 0 and i > 1 else 1))
                cin = mid * 4
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    torch.manual_seed(0)
    net = TorchvisionResNet(num_classes=37)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("tv") / "resnet50.pth"
    torch.save(net.state_dict(), path)
    return net.eval(), path


def test_the_largest_sub_network_is_the_original_after_reordering(original):
    ref, path = original
    net = sn.create_supernet("resnet", pretrained=str(path))
    assert net.arch["num_classes"] == 37 and net.arch["block"] == "bottleneck"
    cfg = net.space.largest()
    assert [cfg[f"stage{s}.depth"] for s in range(1, 5)] == [3, 4, 6, 3]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref(x)
        net.set_active(cfg)
        torch.testing.assert_close(net(x), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net.extract(cfg).eval()(x), want, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in net.extract(cfg).parameters()) == sum(p.numel() for p in ref.parameters())


def test_smaller_widths_keep_the_most_important_channels(original):
    _, path = original
    ordered = sn.create_supernet("resnet", pretrained=str(path))
    raw = sn.create_supernet("resnet", pretrained=str(path), reorder=False)
    # reordering changes which channels come first (the function is checked above)
    assert not torch.equal(ordered.stages[0].blocks[0].conv1.weight, raw.stages[0].blocks[0].conv1.weight)
    blk = ordered.stages[2].blocks[1]
    importance = blk.conv3.weight.abs().sum(dim=(0, 2, 3))  # of the hidden channels, to the next layer
    assert torch.all(importance[:-1] >= importance[1:] - 1e-6)


def test_checkpoints_that_do_not_fit_are_named(original, tmp_path):
    ref, path = original
    state = ref.state_dict()
    bad = tmp_path / "bad.pth"
    torch.save({**state, "layer2.0.extra.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="layer2.0.extra.weight"):
        sn.create_supernet("resnet", pretrained=str(bad))
    torch.save({"state_dict": {**state, "layer3.1.conv2.weight": torch.zeros(256, 256, 1, 1)}}, bad)
    with pytest.raises(CheckpointError, match=r"layer3\.1\.conv2\.weight is \(256, 256, 1, 1\)"):
        sn.create_supernet("resnet", pretrained=str(bad))
    with pytest.raises(ConfigError, match="must end at the checkpoint's ratio"):
        sn.create_supernet("resnet", pretrained=str(path), expand_ratios=(0.2, 0.35))
    with pytest.raises(ConfigError, match="without a block"):
        sn.create_supernet("resnet", pretrained=str(path), depth_deltas=(0, 3))
