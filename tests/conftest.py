"""Shared fixtures: deterministic torch, small supernets with randomised statistics."""
from __future__ import annotations

import pytest
import torch
from torch import nn

# The test models are tiny: one intra-op thread is as fast as two and never stalls on a busy machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _image_cache(tmp_path_factory):
    """Image caches of the tests go to a temporary folder, never to the user's ~/.cache."""
    import os

    old = os.environ.get("SUPERNAS_CACHE")
    os.environ["SUPERNAS_CACHE"] = str(tmp_path_factory.mktemp("image-cache"))
    yield
    if old is None:
        os.environ.pop("SUPERNAS_CACHE", None)
    else:
        os.environ["SUPERNAS_CACHE"] = old


@torch.no_grad()
def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN non-trivial statistics/affine params and every kernel transform a non-identity
    matrix, so equality tests compare real computations (not identities)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in net.named_parameters():
        if "transform_" in name:
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return net


@pytest.fixture(scope="module")
def tiny_net():
    """A 16x16 mbv3 supernet of width 0.25 (depth 1-2, kernel 3/5, expand 3/4), fresh per test module."""
    import supernas as sn
    torch.manual_seed(0)
    return sn.create_supernet("mbv3", num_classes=10, image_size=16, width_mult=0.25, depths=(1, 2),
                              kernel_sizes=(3, 5), expand_ratios=(3, 4)).eval()


@pytest.fixture(scope="session")
def small_mbv3():
    import supernas as sn
    torch.manual_seed(0)
    return randomise(sn.create_supernet("mbv3", num_classes=10, image_size=32, width_mult=0.5)).eval()


@pytest.fixture(scope="session")
def small_resnet():
    import supernas as sn
    torch.manual_seed(0)
    net = sn.create_supernet("resnet", num_classes=10, image_size=16, small_input=True,
                             base_depths=(1, 1, 1, 1), depth_deltas=(0, 1), width_mults=(0.25, 0.5))
    return randomise(net).eval()


@pytest.fixture(scope="session")
def small_deep_resnet():
    """Once-for-All's ResNet-D layout (deep stem with a skippable middle conv, average-pool projections)."""
    import supernas as sn
    torch.manual_seed(0)
    net = sn.create_supernet("resnet", num_classes=10, image_size=32, stem="deep", avg_down=True, stem_width=16,
                             base_depths=(1, 1, 1, 1), depth_deltas=(0, 1), width_mults=(0.5, 1.0),
                             stage_widths=(32, 64, 64, 128))
    return randomise(net).eval()


@pytest.fixture(scope="session")
def small_basic_resnet():
    import supernas as sn
    torch.manual_seed(0)
    net = sn.create_supernet("resnet", num_classes=10, image_size=16, small_input=True, block="basic",
                             base_depths=(1, 1, 1, 1), depth_deltas=(0, 1), width_mults=(0.25, 0.5),
                             stage_widths=(32, 64, 128, 256), stem_width=32)
    return randomise(net).eval()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A tiny digits run trained (2 epochs, validation logged), searched, exported (knee, ONNX) and reported
    once through the CLI. Tests that change it copy it first."""
    from supernas.cli import main
    from test_reliability_inputs import run_file

    root = tmp_path_factory.mktemp("finished")
    cfgfile = run_file(root, "done", export={"picks": ["knee"], "formats": ["onnx"]},
                       train={"epochs": 2, "batch_size": 32, "num_threads": 1, "eval_every": 1})
    main(["run", "-c", str(cfgfile), "-q"])
    return root / "done"
