"""Once-for-All's own MobileNetV3 supernets (the ``ofa`` package, random weights) loaded into the ``mbv3``
family: the largest, the smallest and 20 random sub-networks give Once-for-All's outputs within 1e-5, for
w1.0 and w1.2, both through the elastic forward and the extracted static model. Only torchvision, which
Once-for-All's data-loading modules import and which cannot be installed next to this torch, is stubbed."""
from __future__ import annotations

import random
import sys
import types

import pytest
import torch

import supernas as sn
from supernas.errors import CheckpointError, ConfigError, SupernasWarning
from supernas.measure.counting import count_macs, count_params
from supernas.supernets.ofa import from_ofa, from_ofa_net_config, load_ofa_mbv3, to_ofa


STUBS = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.datasets")


def _import_ofa_networks():
    """Once-for-All's network module, imported with torchvision stubbed; the stubs are removed afterwards so
    no other test (or library probing for torchvision) sees them."""
    added = [name for name in STUBS if name not in sys.modules]
    for name in added:
        sys.modules[name] = types.ModuleType(name)
    if "torchvision.transforms" in added:
        sys.modules["torchvision.transforms"].RandomResizedCrop = type("RandomResizedCrop", (), {})
    try:
        return pytest.importorskip("ofa.imagenet_classification.elastic_nn.networks")
    finally:
        for name in added:
            sys.modules.pop(name, None)


networks = _import_ofa_networks()

KS, E, D = [3, 5, 7], [3, 4, 6], [2, 3, 4]


def ofa_supernet(width: float) -> torch.nn.Module:
    torch.manual_seed(0)
    net = networks.OFAMobileNetV3(n_classes=1000, dropout_rate=0, width_mult=width, ks_list=KS,
                                  expand_ratio_list=E, depth_list=D)
    for m in net.modules():  # trained-looking normalisation statistics, so a wrong mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module", params=[1.0, 1.2], ids=["w1.0", "w1.2"])
def pair(request, tmp_path_factory):
    ofa = ofa_supernet(request.param)
    path = tmp_path_factory.mktemp("ofa") / f"ofa_mbv3_d234_e346_k357_w{request.param}"
    torch.save({"state_dict": ofa.state_dict()}, path)  # Once-for-All's own file layout
    return ofa, sn.create_supernet("mbv3", pretrained=str(path)), request.param, path


def _lists(rng: random.Random, pick) -> tuple[list[int], list[int], list[int]]:
    return [pick(KS) for _ in range(20)], [pick(E) for _ in range(20)], [pick(D) for _ in range(5)]


def reference_cases(lists, n: int = 20) -> list:
    """Once-for-All lists of the largest, the smallest and ``n`` seeded random sub-networks (``lists(rng, pick)``)."""
    rng = random.Random(0)
    return [lists(rng, max), lists(rng, min)] + [lists(rng, rng.choice) for _ in range(n)]


def assert_outputs_equal(ofa, net, cfg, x, atol: float = 1e-5, rtol: float = 0.0) -> torch.nn.Module:
    """The elastic forward at ``cfg`` and its extracted model give ``ofa``'s (its active sub-network's) outputs;
    returns the extracted model."""
    net.set_active(cfg)
    with torch.no_grad():
        want = ofa(x)
        torch.testing.assert_close(net(x), want, atol=atol, rtol=rtol)
        sub = net.extract(cfg).eval()
        torch.testing.assert_close(sub(x), want, atol=atol, rtol=rtol)
    return sub


def test_every_sub_network_gives_once_for_alls_outputs(pair):
    ofa, net, width, _ = pair
    assert net.arch["width_mult"] == width and net.arch["num_classes"] == 1000
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for ks, e, d in reference_cases(_lists):
        ofa.set_active_subnet(ks=ks, e=e, d=d)
        cfg = from_ofa(net, ks, e, d)
        assert_outputs_equal(ofa, net, cfg, x)
        back = to_ofa(net, cfg)
        assert back["d"] == d and from_ofa(net, back["ks"], back["e"], back["d"]) == cfg
    assert from_ofa(net, *_lists(random.Random(0), max)) == net.space.largest()


def test_counts_match_once_for_alls_largest(pair):
    ofa, net, _, _ = pair
    ofa.set_active_subnet(ks=[7] * 20, e=[6] * 20, d=[4] * 5)
    sub = net.extract(net.space.largest())
    assert sum(p.numel() for p in sub.parameters()) == sum(p.numel() for p in ofa.get_active_subnet().parameters())


def test_a_checkpoint_that_does_not_fit_names_the_first_tensor(pair, tmp_path):
    ofa, _, width, path = pair
    state = {k: v.clone() for k, v in ofa.state_dict().items()}
    state["blocks.3.conv.point_linear.conv.conv.weight"] = torch.zeros(1, 2, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(CheckpointError, match=r"blocks\.3\.conv\.point_linear\.conv\.conv\.weight is \(1, 2, 1, 1\)"):
        load_ofa_mbv3(bad, width_mult=width)
    state = {**ofa.state_dict(), "blocks.1.conv.extra.weight": torch.zeros(1)}
    torch.save(state, bad)  # a bare state dict is read too; a tensor no rule knows is named
    with pytest.raises(CheckpointError, match="blocks.1.conv.extra.weight"):
        load_ofa_mbv3(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_ofa_mbv3(tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="cannot load a pretrained"):
        sn.create_supernet("vit", pretrained=str(path))


def test_once_for_all_lists_of_the_wrong_length_are_one_line(pair):
    _, net, _, _ = pair
    with pytest.raises(ConfigError, match="need 20 kernel sizes"):
        from_ofa(net, [3] * 19, [3] * 20, [2] * 5)


def test_below_width_one_the_feature_mix_follows_the_chosen_rule(tmp_path):
    ofa = ofa_supernet(0.75)
    ours = {rule: sn.create_supernet("mbv3", width_mult=0.75, feature_mix_rule=rule) for rule in ("torchvision", "ofa")}
    count = {rule: sum(p.numel() for p in n.parameters()) for rule, n in ours.items()}
    assert count == {"torchvision": 5_409_664, "ofa": 4_859_264}
    assert count["ofa"] == sum(p.numel() for p in ofa.parameters())
    path = tmp_path / "w075.pth"
    torch.save({"state_dict": ofa.state_dict()}, path)
    net = load_ofa_mbv3(path)  # width found, Once-for-All's rule
    assert net.arch["width_mult"] == 0.75 and net.feature_mix[0].out_channels == 960
    x = torch.randn(1, 3, 64, 64)
    for ks, e, d in ([7] * 20, [6] * 20, [4] * 5), ([3] * 20, [3] * 20, [2] * 5):
        ofa.set_active_subnet(ks=ks, e=e, d=d)
        net.set_active(from_ofa(net, ks, e, d))
        with torch.no_grad():
            torch.testing.assert_close(net(x), ofa(x), atol=1e-5, rtol=0)


def test_net_configs_of_once_for_alls_sub_networks_convert(pair):
    ofa, net, _, _ = pair
    rng = random.Random(3)
    for ks, e, d in [_lists(rng, rng.choice) for _ in range(10)]:
        ofa.set_active_subnet(ks=ks, e=e, d=d)
        assert from_ofa_net_config(net, ofa.get_active_subnet().config) == from_ofa(net, ks, e, d)


def published_net_config(ks, e, d, width: float) -> dict:
    """A net.config in the format of Once-for-All's published specialised nets (``mobile_inverted_conv``)."""
    from supernas.elastic import make_divisible

    blocks = [{"mobile_inverted_conv": {"kernel_size": 3, "expand_ratio": 1, "out_channels": 24},
               "shortcut": {"name": "IdentityLayer"}}]
    for s, (w, depth) in enumerate(zip((24, 40, 80, 112, 160), d)):
        for b in range(depth):
            blocks.append({"mobile_inverted_conv": {"kernel_size": ks[4 * s + b], "expand_ratio": e[4 * s + b],
                                                    "out_channels": make_divisible(w * width)},
                           "shortcut": None if b == 0 else {"name": "IdentityLayer"}})
    return {"name": "MobileNetV3", "blocks": blocks}


# flops@595M_top1@80.0_finetune@75 (w1.2, run.config image_size 236), read off its published net.config;
# Once-for-All's README gives it 9.1M parameters and 595M MACs
FLOPS_595M = ([3, 5, 3, 3, 5, 5, 3, 5, 7, 5, 3, 5, 3, 5, 7, 3, 3, 3, 5, 3],
              [3, 4, 3, 3, 4, 4, 6, 3, 6, 6, 3, 4, 6, 6, 6, 4, 6, 6, 6, 3], [3, 4, 4, 4, 4])


def test_a_published_specialised_net_has_once_for_alls_counts():
    net = sn.create_supernet("mbv3", width_mult=1.2, feature_mix_rule="ofa", dropout=0.0)
    cfg = from_ofa_net_config(net, published_net_config(*FLOPS_595M, width=1.2), image_size=236)
    sub = net.extract(cfg).eval()
    assert round(count_params(sub) / 1e6, 1) == 9.1
    assert round(count_macs(sub, (1, 3, 236, 236)) / 1e6) == 595
    with pytest.raises(ConfigError, match="stages are .* channels wide"):
        from_ofa_net_config(sn.create_supernet("mbv3", width_mult=1.0), published_net_config(*FLOPS_595M, width=1.2))
    with pytest.raises(ConfigError, match="not a Once-for-All MobileNetV3 net.config"):
        from_ofa_net_config(net, {"name": "ResNets", "blocks": []})


def test_a_once_for_all_checkpoint_for_other_classes_gets_a_new_classifier(pair):
    ofa, _, width, path = pair
    with pytest.warns(SupernasWarning, match=r"classifier is new \(1000 -> 10 classes\)"):
        net = load_ofa_mbv3(path, num_classes=10)
    assert net.classifier.weight.shape == (10, net.classifier.weight.shape[1]) and net.arch["width_mult"] == width
    assert torch.equal(net.feature_mix[0].weight, ofa.feature_mix_layer.conv.weight)
    with pytest.raises(CheckpointError, match="classifies 1000 classes, the supernet 10"):
        load_ofa_mbv3(path, num_classes=10, allow_new_head=False)
