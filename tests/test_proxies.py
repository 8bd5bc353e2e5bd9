"""Zero-cost proxies: values checked by hand on tiny networks, finite and deterministic on a supernet's
sub-networks, the measured model left alone, cached in the store like any objective, bad input in one line."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from supernas.errors import ConfigError
from supernas.measure import Evaluator
from supernas.measure.objectives import direction
from supernas.measure.proxies import PROXIES, grad_norm, naswot, proxy_score, snip, synflow, zen
from supernas.search.session import EvaluationSession


@pytest.fixture(scope="module")
def batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=32)


def linear_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))


def test_synflow_of_a_linear_network_is_the_conserved_flow_once_per_layer():
    """With |weights| and no negative pre-activations, each layer's sum |w dR/dw| equals R = 1'|W2||W1|1."""
    net = linear_net()
    w1, w2 = net[0].weight.detach().abs().double(), net[2].weight.detach().abs().double()
    r = float(torch.ones(2, dtype=torch.float64) @ w2 @ w1 @ torch.ones(4, dtype=torch.float64))
    assert synflow(net, torch.zeros(1, 4)) == pytest.approx(math.log(2 * r), rel=1e-12)


def test_gradient_proxies_match_autograd_by_hand():
    net = linear_net()
    x, y = torch.randn(8, 4, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1] * 4)
    ref = linear_net()
    nn.functional.cross_entropy(ref(x), y).backward()
    ws = [ref[0].weight, ref[2].weight]
    assert grad_norm(net, x, y) == pytest.approx(float(sum(w.grad.norm() for w in ws)), rel=1e-6)
    assert snip(net, x, y) == pytest.approx(float(sum((w * w.grad).abs().sum() for w in ws).detach()), rel=1e-6)
    assert net[0].weight.grad is None  # the measured model is not touched


def test_naswot_is_the_log_determinant_of_the_activation_code_kernel():
    net = nn.Sequential(nn.Identity(), nn.ReLU())
    x = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -1.0, 3.0], [1.0, 1.0, -1.0]])
    c = (x > 0).double()
    k = c @ c.T + (1 - c) @ (1 - c).T  # agreements between codes: [[3,2,1],[2,3,0],[1,0,3]]
    assert naswot(net, x) == pytest.approx(math.log(torch.linalg.det(k).item()), rel=1e-12)
    assert torch.linalg.det(k).item() == pytest.approx(12.0)


@pytest.mark.parametrize("name", PROXIES)
def test_every_proxy_is_finite_deterministic_and_leaves_the_model_alone(name, tiny_net, batches):
    batch = next(iter(batches))
    example = torch.zeros(1, 3, 16, 16)
    scores = []
    for cfg in (tiny_net.space.smallest(), tiny_net.space.largest()):
        sub = tiny_net.extract(cfg).eval()
        before = {k: v.clone() for k, v in sub.state_dict().items()}
        a = proxy_score(name, sub, batch, example)
        b = proxy_score(name, sub, batch, example)
        assert math.isfinite(a) and a == b
        assert not sub.training and all(torch.equal(v, before[k]) for k, v in sub.state_dict().items())
        scores.append(a)
    assert scores[0] != scores[1]  # the score sees the architecture
    assert direction(name) == "max"


def test_proxies_are_objectives_cached_in_the_store(tiny_net, batches, tmp_path):
    cols = ["macs", *PROXIES]
    ev = Evaluator(tiny_net, cols, calib_loader=batches, eval_loader=batches)
    cfgs = tiny_net.space.sample_many(3, seed=0)
    with EvaluationSession(tiny_net.space, ev, cols, store=tmp_path / "s.db") as s:
        first = [g.outcome for g in s.evaluate_many(cfgs)]
    assert all(o.ok for o in first), [o.error for o in first]
    assert ev(cfgs[0]) == first[0].values  # the same batch every time: the same scores
    with EvaluationSession(tiny_net.space, ev, cols, store=tmp_path / "s.db") as s:
        again = list(s.evaluate_many(cfgs))
    assert all(g.cached for g in again) and [g.outcome.values for g in again] == [o.values for o in first]


def test_proxies_refuse_what_they_cannot_score_in_one_line():
    with pytest.raises(ConfigError, match="synflow needs a model with floating-point inputs"):
        synflow(nn.Embedding(5, 2), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="naswot needs activation modules"):
        naswot(nn.Linear(3, 2), torch.randn(4, 3))
    with pytest.raises(ConfigError, match="zen needs a feature map"):
        zen(nn.Linear(3, 2), torch.randn(1, 3))
    with pytest.raises(ConfigError, match="unknown zero-cost proxy 'foo'"):
        proxy_score("foo", nn.Linear(3, 2), (torch.randn(2, 3), torch.tensor([0, 1])), torch.randn(1, 3))
