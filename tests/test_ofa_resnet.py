"""Once-for-All's ResNet-50 supernet (``OFAResNets`` from the ``ofa`` package, random weights) loaded into the
``resnet`` family (deep stem, average-pool projections): the largest, the smallest and 20 random sub-networks
give Once-for-All's outputs within 1e-5, through the elastic forward and the extracted model, with
Once-for-All's parameter count; d/e/w lists convert both ways."""
from __future__ import annotations

import random

import pytest
import torch

import supernas as sn
from supernas.errors import CheckpointError, ConfigError, SupernasWarning
from supernas.supernets.resnet_checkpoints import from_ofa_resnet, to_ofa_resnet
from test_ofa import assert_outputs_equal, networks, reference_cases

D, E, W = [0, 1, 2], [0.2, 0.25, 0.35], [0.65, 0.8, 1.0]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    ofa = networks.OFAResNets(n_classes=1000, dropout_rate=0, depth_list=D, expand_ratio_list=E, width_mult_list=W)
    for m in ofa.modules():  # trained-looking normalisation statistics, so a wrong mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.2, 0.6), m.bias.data.uniform_(-0.2, 0.2)
    ofa.eval()
    path = tmp_path_factory.mktemp("ofa") / "ofa_resnet50"
    torch.save({"state_dict": ofa.state_dict()}, path)
    return ofa, sn.create_supernet("resnet", pretrained=str(path)), path


def _lists(rng: random.Random, pick) -> tuple[list[int], list[float], list[int]]:
    return [pick(D) for _ in range(5)], [pick(E) for _ in range(18)], [pick(range(3)) for _ in range(6)]


def test_every_sub_network_gives_once_for_alls_outputs(pair):
    ofa, net, _ = pair
    assert net.arch["stem"] == "deep" and net.arch["num_classes"] == 1000
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in ofa.parameters())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for d, e, w in reference_cases(_lists):
        ofa.set_active_subnet(d=d, e=e, w=w)
        cfg = from_ofa_resnet(net, d, e, w)
        sub = assert_outputs_equal(ofa, net, cfg, x)
        ours = sum(p.numel() for p in sub.parameters())
        assert ours == sum(p.numel() for p in ofa.get_active_subnet().parameters())
        back = to_ofa_resnet(net, cfg)
        assert from_ofa_resnet(net, back["d"], back["e"], back["w"]) == cfg


def test_a_checkpoint_for_other_classes_and_wrong_lists_are_one_line(pair, tmp_path):
    ofa, net, path = pair
    with pytest.warns(SupernasWarning, match=r"classifier is new \(1000 -> 10 classes\)"):
        ten = sn.create_supernet("resnet", pretrained=str(path), num_classes=10)
    assert ten.fc.weight.shape[0] == 10
    with pytest.raises(ConfigError, match="need a deep-stem supernet and 5 depths"):
        from_ofa_resnet(net, [2] * 4, [0.2] * 18, [0] * 6)
    state = {k: v for k, v in ofa.state_dict().items() if not k.startswith("blocks.4.")}
    torch.save(state, tmp_path / "bad")
    with pytest.raises(CheckpointError, match="Once-for-All ResNet"):
        sn.create_supernet("resnet", pretrained=str(tmp_path / "bad"))
