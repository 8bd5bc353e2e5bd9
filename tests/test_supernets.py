"""Extraction equality, cost counts against fvcore and published figures, channel re-ordering."""
import copy

import pytest
import torch
from torch import nn

import supernas as sn
from supernas.errors import ConfigError
from supernas.elastic import ElasticBatchNorm2d, ElasticConv2d
from supernas.supernets.mbv3 import ElasticMBConv
from supernas.supernets.resnet import ElasticResidualBlock


def _assert_static(sub: nn.Module) -> None:
    elastic = (ElasticConv2d, ElasticBatchNorm2d, ElasticMBConv, ElasticResidualBlock, sn.Supernet)
    assert not any(isinstance(m, elastic) for m in sub.modules())


def _configs(space, n, seed):
    return [space.largest(), space.smallest()] + space.sample_many(n, seed=seed)


@pytest.mark.parametrize("fixture", ["small_mbv3", "small_resnet", "small_basic_resnet", "small_deep_resnet"])
def test_extracted_equals_elastic_forward(fixture, request):
    net = request.getfixturevalue(fixture)
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for cfg in _configs(net.space, 50, seed=7):
        sub = net.extract(cfg)
        _assert_static(sub)
        assert not sub.training
        x = torch.randn(net.input_shape(cfg, batch=2), generator=g)
        net.set_active(cfg)
        with torch.no_grad():
            worst = max(worst, (net(x) - sub(x)).abs().max().item())
    assert worst <= 1e-5, worst


def test_extract_copies_weights(small_mbv3):
    net = copy.deepcopy(small_mbv3)
    sub = net.extract(net.space.smallest())
    before = [p.clone() for p in sub.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, sub.parameters()))


def test_resolution_choice():
    net = sn.create_supernet("mbv3", num_classes=3, image_size=32, width_mult=0.35, resolutions=(24, 32))
    cfg = dict(net.space.smallest())
    assert net.input_shape(cfg, batch=4) == (4, 3, 24, 24)
    sub = net.extract(cfg).eval()
    net.eval().set_active(cfg)
    x = torch.randn(net.input_shape(cfg, batch=2))
    full = torch.randn(2, 3, 32, 32)  # any input size: both resize to the sub-network's resolution
    with torch.no_grad():
        assert torch.allclose(net(x), sub(x), atol=1e-5)
        assert torch.allclose(net(full), sub(full), atol=1e-5)
        small = net(torch.nn.functional.interpolate(full, size=(24, 24), mode="bilinear", antialias=True))
        assert torch.allclose(net(full), small, atol=1e-5)
    assert sn.count(sub, net.input_shape(cfg))["macs"] < sn.count(net.extract(net.space.largest()), (1, 3, 32, 32))["macs"]


def _fvcore_macs(model: nn.Module, shape) -> int:
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn import jit_handles as h

    fca = FlopCountAnalysis(model.eval(), torch.zeros(shape))
    # the same quantity as ours: MACs of convolutions, linear layers and matrix products only
    fca.clear_op_handles().set_op_handle(
        "aten::_convolution", h.conv_flop_jit, "aten::addmm", h.addmm_flop_jit, "aten::linear", h.linear_flop_jit,
        "aten::matmul", h.matmul_flop_jit, "aten::bmm", h.bmm_flop_jit, "aten::einsum", h.einsum_flop_jit)
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(fca.total())


@pytest.mark.parametrize("fixture", ["small_mbv3", "small_resnet", "small_basic_resnet", "small_deep_resnet"])
def test_macs_agree_with_fvcore(fixture, request):
    net = request.getfixturevalue(fixture)
    for cfg in _configs(net.space, 4, seed=3):
        sub = net.extract(cfg)
        shape = net.input_shape(cfg)
        ours = sn.count(sub, shape)
        theirs = _fvcore_macs(sub, shape)
        assert abs(ours["macs"] - theirs) <= 0.01 * theirs, (ours["macs"], theirs)
        assert ours["params"] == sum(p.numel() for p in sub.parameters())


def test_resnet50_preset_matches_reference():
    net = sn.create_supernet("resnet", num_classes=1000)
    sub = net.extract(net.space.preset("resnet50"))
    c = sn.count(sub, (1, 3, 224, 224))
    assert c["params"] == 25_557_032  # torchvision ResNet-50
    assert abs(c["macs"] / 4.1e9 - 1) < 0.01, c["macs"]  # published 4.1 GMACs
    assert c["bytes"] >= 4 * c["params"]
    assert [len(layer) for layer in _stages(sub)] == [3, 4, 6, 3]


def _stages(sub):
    widths = [b.conv3.out_channels for b in sub.layers]
    return [[w for w in widths if w == t] for t in (256, 512, 1024, 2048)]


def test_mbv3_largest_is_ofa_w1():
    net = sn.create_supernet("mbv3", num_classes=1000)
    sub = net.extract(net.space.largest())
    c = sn.count(sub, (1, 3, 224, 224))
    # Once-for-All MobileNetV3 w1.0 largest: 7.7 M params, ~ 0.46 GMACs at 224 (k7, e6, d4 everywhere)
    assert abs(c["params"] / 7.7e6 - 1) < 0.03, c["params"]


@pytest.mark.parametrize("fixture", ["small_mbv3", "small_resnet", "small_basic_resnet", "small_deep_resnet"])
def test_reorder_channels_keeps_function(fixture, request):
    net = copy.deepcopy(request.getfixturevalue(fixture))
    cfg = net.space.largest()
    x = torch.randn(net.input_shape(cfg, batch=2))
    net.set_active(cfg)
    with torch.no_grad():
        before = net(x)
        net.reorder_channels()
        net.set_active(cfg)
        after = net(x)
    assert torch.allclose(before, after, atol=1e-5)


def test_reorder_puts_important_channels_first(small_mbv3):
    net = copy.deepcopy(small_mbv3)
    net.reorder_channels()
    blk = net.stages[0].blocks[0]
    imp = blk.project.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(imp[:-1] >= imp[1:])


def test_elastic_bn_updates_only_active_slice():
    bn = ElasticBatchNorm2d(8)
    bn.train()
    bn(torch.randn(4, 5, 3, 3) + 3.0)
    assert torch.all(bn.running_mean[:5] > 0.1) and torch.all(bn.running_mean[5:] == 0)


def test_kernel_transform_is_used():
    conv = ElasticConv2d(4, 4, (3, 5, 7), depthwise=True)
    with torch.no_grad():
        conv.transform_5to3.mul_(2.0)
    conv.active_kernel = 3
    w = conv.active_weight(4)
    plain = conv.weight[:, :, 2:5, 2:5]
    assert w.shape == (4, 1, 3, 3) and not torch.allclose(w, plain)


def test_create_supernet_errors():
    with pytest.raises(sn.ConfigError, match="unknown supernet family 'mbv4'"):
        sn.create_supernet("mbv4")
    with pytest.raises(sn.ConfigError, match="unknown argument 'num_class'"):
        sn.create_supernet("mbv3", num_class=10)
    with pytest.raises(sn.ConfigError, match="bad arguments"):
        sn.create_supernet("mbv3", width_mult=-1)
    net = sn.create_supernet("mbv3", num_classes=4, width_mult=0.35)
    assert net.arch["family"] == "mbv3" and net.arch["num_classes"] == 4
    with pytest.raises(sn.ConfigError, match="invalid value 9"):
        net.set_active({**net.space.largest(), "stage1.block1.kernel": 9})


def active_copy(net: sn.Supernet, seed: int) -> tuple[sn.Supernet, torch.Tensor]:
    """A copy of ``net`` set to a sampled sub-network, and an input batch of 2 for it."""
    net = copy.deepcopy(net)
    cfg = net.space.sample(seed=seed)
    net.set_active(cfg)
    return net, torch.randn(net.input_shape(cfg, batch=2))


def test_weight_cache_follows_weight_changes(small_mbv3):
    net, x = active_copy(small_mbv3, 5)
    with torch.no_grad():
        cached = net(x)
        assert torch.equal(cached, net(x))
        for p in net.parameters():
            p.mul_(1.05)  # an in-place update, like an optimizer step
        after = net(x)
    with torch.enable_grad():
        uncached = net(x).detach()
    assert not torch.allclose(cached, after)
    assert torch.allclose(after, uncached, atol=1e-6)


def test_weight_cache_follows_a_move_to_another_dtype_or_device(small_mbv3):
    """``Module.to`` swaps parameter storage without bumping version counters: the cache must notice (a
    supernet used on the CPU, then moved to the GPU, crashed with CPU weights in the cache)."""
    net, x = active_copy(small_mbv3, 6)
    with torch.no_grad():
        single = net(x)
        net.double()
        double = net(x.double())  # a stale float32 cache would raise a dtype mismatch here
    assert double.dtype == torch.float64
    assert torch.allclose(double.float(), single, atol=1e-5)


@pytest.mark.parametrize("args, needle", [
    ({"width_mult": 1e39}, "bad arguments for supernet 'mbv3'"),
    ({"width_mult": 60.0}, "GiB of weights; this machine has"),
])
def test_absurd_sizes_are_refused_before_allocation(args, needle, monkeypatch):
    import supernas.supernets.base as base

    monkeypatch.setattr(base, "available_memory", lambda: 8 << 30)  # the same answer on every machine
    with pytest.raises(sn.ConfigError, match=needle):
        sn.create_supernet("mbv3", num_classes=10, image_size=32, **args)


@pytest.mark.parametrize("family, args", [("mbv3", {"depths": [6135]}), ("resnet", {"base_depths": [2, 2, 500, 2]}),
                                          ("bert", {"num_hidden_layers": 1000}), ("vit", {"num_hidden_layers": 129})])
def test_absurd_depths_are_one_line_before_anything_is_built(family, args):
    # a damaged checkpoint asked for 6,135 blocks per stage: building it took 217 s before it failed
    with pytest.raises(ConfigError, match="exceeds 128 blocks"):
        sn.create_supernet(family, **args)


def test_the_resnet50_preset_is_offered_only_in_torchvisions_layout():
    assert "resnet50" in sn.create_supernet("resnet").space.presets
    for layout in ({"avg_down": True}, {"stem": "deep", "avg_down": True}):  # ResNet-D is not torchvision's network
        assert "resnet50" not in sn.create_supernet("resnet", **layout).space.presets
